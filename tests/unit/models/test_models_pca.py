"""Tests of genfair.models.pca: fit_pca against an SVD reference, and the one-pass PCA module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from genfair.models import PCA, PCAConfig, fit_pca

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    "ignore:.*but have no `val_dataloader`:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

SMALL = PCAConfig(image_size=16, channels=3, bottleneck=4)


def _svd_reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the k leading right singular vectors of the centred data, and their variances (numpy)."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k], s[:k] ** 2 / (len(x) - 1)


@pytest.mark.parametrize(("n", "d"), [(12, 40), (40, 12)], ids=["dual-N<D", "primal-N>D"])
def test_fit_pca_matches_numpy_svd(n: int, d: int) -> None:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.linspace(3, 0.1, d, dtype=torch.float64)
    fit = fit_pca(x, n_components=5)
    mean, vt, variance = _svd_reference(x.numpy(), 5)
    np.testing.assert_allclose(fit["mean"].numpy(), mean, atol=1e-12)
    signs = np.sign(np.sum(fit["components"].numpy() * vt, axis=1))
    np.testing.assert_allclose(fit["components"].numpy(), signs[:, None] * vt, atol=1e-9)
    np.testing.assert_allclose(fit["explained_variance"].numpy(), variance, rtol=1e-9)
    np.testing.assert_allclose(float(fit["total_variance"]), float(x.var(dim=0).sum()), rtol=1e-12)
    torch.testing.assert_close(fit["components"] @ fit["components"].T, torch.eye(5, dtype=torch.float64))


def test_fit_pca_projection_equals_reference_projection() -> None:
    x = torch.rand(10, 30, generator=torch.Generator().manual_seed(1))
    fit = fit_pca(x, n_components=3)
    mean, vt, _ = _svd_reference(x.double().numpy(), 3)
    expected = mean + (x.double().numpy() - mean) @ vt.T @ vt
    got = fit["mean"] + (x.double() - fit["mean"]) @ fit["components"].T @ fit["components"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)


def test_fit_pca_components_past_the_rank_are_zero() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(20, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 30, generator=g, dtype=torch.float64)
    fit = fit_pca(x, n_components=6)
    assert torch.count_nonzero(fit["components"].abs().sum(dim=1)) == 2
    assert torch.equal(fit["components"][2:], torch.zeros(4, 30, dtype=torch.float64))
    assert torch.equal(fit["explained_variance"][2:], torch.zeros(4, dtype=torch.float64))
    centred = x - fit["mean"]
    torch.testing.assert_close(centred @ fit["components"].T @ fit["components"], centred)


def test_fit_pca_signs_are_fixed_and_one_sample_gives_no_components() -> None:
    x = torch.rand(8, 10, generator=torch.Generator().manual_seed(3))
    components = fit_pca(x, n_components=3)["components"]
    peaks = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    assert (peaks > 0).all()
    assert torch.equal(fit_pca(-x, n_components=3)["components"].abs(), components.abs())
    single = fit_pca(x[:1], n_components=2)
    assert torch.equal(single["components"], torch.zeros(2, 10, dtype=torch.float64))
    torch.testing.assert_close(single["mean"], x[0].double())


def test_fit_pca_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"samples must be an \(N, D\) tensor with N >= 1, got \(0, 4\)"):
        fit_pca(torch.zeros(0, 4), n_components=1)
    with pytest.raises(ValueError, match=r"samples must be an \(N, D\) tensor with N >= 1, got \(2, 2, 2\)"):
        fit_pca(torch.zeros(2, 2, 2), n_components=1)
    with pytest.raises(ValueError, match=r"n_components must be a positive int, got 0"):
        fit_pca(torch.zeros(2, 2), n_components=0)


# --------------------------------------------------------------------------- config and module


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 0}, r"PCAConfig.image_size must be a positive int, got 0"),
        ({"channels": 1.0}, r"PCAConfig.channels must be a positive int, got 1.0"),
        ({"bottleneck": -1}, r"PCAConfig.bottleneck must be a positive int, got -1"),
        ({"seed": "0"}, r"PCAConfig.seed must be an int in \[0, 4294967295\], got '0'"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PCAConfig(**changes)


def test_defaults_and_buffers() -> None:
    assert (PCAConfig().bottleneck, PCAConfig().image_size) == (64, 64)
    model = PCA(SMALL)
    assert [name for name, _ in model.named_parameters()] == ["_ddp_anchor"]  # only so DDP accepts the module
    assert model.configure_optimizers() == []
    assert not model.automatic_optimization and not model.is_fitted
    shapes = {name: tuple(buffer.shape) for name, buffer in model.named_buffers()}
    assert shapes == {"mean": (768,), "components": (4, 768), "explained_variance": (4,), "total_variance": (), "n_samples": ()}


def test_reconstruction_is_exact_when_bottleneck_covers_the_rank() -> None:
    g = torch.Generator().manual_seed(4)
    basis = torch.rand(3, 3 * 16 * 16, generator=g)
    weights = torch.rand(10, 3, generator=g)
    images = (weights @ basis / 3).view(10, 3, 16, 16)  # rank 3 after centring (<= 3), in [0, 1]
    model = PCA(SMALL).fit_images(images)
    assert model.is_fitted and int(model.n_samples) == 10
    torch.testing.assert_close(model(images), images, rtol=0, atol=1e-5)
    torch.testing.assert_close(model.decode(model.encode_latent(images)), images, rtol=0, atol=1e-5)


def test_module_projection_equals_svd_reference(make_images: Callable) -> None:
    images = make_images(12, seed=5)
    model = PCA(SMALL).fit_images(images)
    x = images.flatten(1).double().numpy()
    mean, vt, variance = _svd_reference(x, 4)
    expected = np.clip(mean + (x - mean) @ vt.T @ vt, 0, 1).reshape(images.shape)
    np.testing.assert_allclose(model(images).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(model.explained_variance.numpy(), variance, rtol=1e-4)
    scores = model.encode_latent(images)
    assert scores.shape == (12, 4)
    np.testing.assert_allclose(np.abs(scores.numpy()), np.abs((x - mean) @ vt.T), atol=1e-4)


def test_unfitted_model_refuses_to_predict(batch: dict) -> None:
    with pytest.raises(RuntimeError, match=r"PCA is not fitted; fit it first with trainer.fit\(model, ...\) .* or model.fit_images\(images\)"):
        PCA(SMALL).predict_step(batch, 0)


def test_fit_images_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"PCA.fit_images needs at least one image, got \(0, 3, 16, 16\)"):
        PCA(SMALL).fit_images(torch.zeros(0, 3, 16, 16))
    with pytest.raises(ValueError, match=r"PCA expects images of shape \(B, 3, 16, 16\) .*got \(2, 1, 16, 16\)"):
        PCA(SMALL).fit_images(torch.zeros(2, 1, 16, 16))


def test_trainer_fit_equals_direct_fit_whatever_the_batch_order(make_loader: Callable, make_trainer: Callable) -> None:
    fits = []
    for seed in (1, 2):
        model = PCA(SMALL)
        loader = make_loader(10, batch_size=3, shuffle=True)
        loader = DataLoader(loader.dataset, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(seed))
        trainer = make_trainer(max_epochs=1)
        trainer.fit(model, train_dataloaders=loader)
        fits.append(model)
        ratio = float(model.explained_variance.sum() / model.total_variance)
        assert trainer.callback_metrics["train/explained_variance_ratio"] == pytest.approx(ratio)
    direct = PCA(SMALL).fit_images(make_loader(10).dataset.images)
    for model in fits:
        assert int(model.n_samples) == 10
        for name, buffer in direct.named_buffers():
            torch.testing.assert_close(getattr(model, name), buffer, rtol=0, atol=0, msg=name)


def test_validation_during_fit_uses_the_fitted_components(make_loader: Callable, make_trainer: Callable) -> None:
    model = PCA(SMALL)
    trainer = make_trainer(max_epochs=1)  # the sanity check runs before the fit: it must log nothing
    trainer.fit(model, train_dataloaders=make_loader(8), val_dataloaders=make_loader(4, seed=9))
    images = make_loader(4, seed=9).dataset.images
    expected = float((model(images) - images).square().mean())
    assert trainer.callback_metrics["val/mse"] == pytest.approx(expected, rel=1e-5)
    assert trainer.callback_metrics["val/loss"] == pytest.approx(expected, rel=1e-5)


def test_repeated_rows_are_fitted_once_and_more_epochs_refit_the_same(make_loader: Callable, make_trainer: Callable) -> None:
    dataset = make_loader(6).dataset
    # A DistributedSampler pads ranks by repeating rows: the fit drops the repeats (same index).
    padded = DataLoader(dataset, batch_size=4, sampler=[0, 1, 2, 3, 4, 5, 0, 1])
    model = PCA(SMALL)
    make_trainer(max_epochs=3).fit(model, train_dataloaders=padded)
    direct = PCA(SMALL).fit_images(dataset.images)
    assert int(model.n_samples) == 6
    for name, buffer in direct.named_buffers():
        torch.testing.assert_close(getattr(model, name), buffer, rtol=0, atol=0, msg=name)


def test_bottleneck_larger_than_the_data_is_exact(make_trainer: Callable, make_images: Callable, make_dataset: Callable) -> None:
    images = make_images(3, seed=6)
    model = PCA(replace(SMALL, bottleneck=8))
    make_trainer(max_epochs=1).fit(model, train_dataloaders=DataLoader(make_dataset(images), batch_size=2))
    assert torch.count_nonzero(model.explained_variance) == 2  # 3 samples: rank 2 after centring
    torch.testing.assert_close(model(images), images, rtol=0, atol=1e-5)
