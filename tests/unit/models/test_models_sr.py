"""Tests of genfair.models.sr: bicubic_upsample, the SR network and the Bicubic baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from genfair.models import SCALES, SR, Bicubic, BicubicConfig, SRConfig, bicubic_upsample

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*but have no `val_dataloader`:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

SMALL = SRConfig(image_size=16, channels=3, scale=4, features=8, residual_blocks=1)


def _reference(lowres: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(lowres, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


# --------------------------------------------------------------------------- bicubic_upsample


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_bicubic_upsample_equals_clamped_interpolate(scale: int) -> None:
    lowres = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(scale))
    got = bicubic_upsample(lowres, scale=scale)
    assert got.shape == (2, 3, 4 * scale, 5 * scale)
    torch.testing.assert_close(got, _reference(lowres, scale), rtol=0, atol=0)
    assert got.min() >= 0 and got.max() <= 1


def test_bicubic_upsample_clamps_overshoot() -> None:
    lowres = torch.zeros(1, 1, 4, 4)
    lowres[..., 1:3, 1:3] = 1.0  # a sharp edge: unclamped bicubic rings below 0 and above 1
    raw = F.interpolate(lowres, scale_factor=4, mode="bicubic", align_corners=False)
    assert raw.min() < 0 and raw.max() > 1
    torch.testing.assert_close(bicubic_upsample(lowres, scale=4), raw.clamp(0, 1))


def test_bicubic_upsample_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"lowres must be a \(N, C, h, w\) tensor, got \(3, 4, 4\)"):
        bicubic_upsample(torch.zeros(3, 4, 4), scale=2)
    with pytest.raises(ValueError, match=r"lowres must be a \(N, C, h, w\) tensor, got list"):
        bicubic_upsample([0.0], scale=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"scale must be a positive int, got 2.0"):
        bicubic_upsample(torch.zeros(1, 1, 2, 2), scale=2.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- configs


def test_defaults() -> None:
    assert SCALES == (2, 4, 8)
    config = SRConfig()
    assert (config.image_size, config.channels, config.scale, config.loss) == (64, 3, 4, "mse")
    assert (BicubicConfig().scale, BicubicConfig().image_size) == (4, 64)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 0}, r"SRConfig.image_size must be a positive int, got 0"),
        ({"channels": None}, r"SRConfig.channels must be a positive int, got None"),
        ({"features": 0}, r"SRConfig.features must be a positive int, got 0"),
        ({"scale": 3}, r"SRConfig.scale must be one of \(2, 4, 8\), got 3"),
        ({"scale": 4.0}, r"SRConfig.scale must be one of \(2, 4, 8\), got 4.0"),
        ({"image_size": 60, "scale": 8}, r"SRConfig.image_size must be divisible by scale, got image_size=60 with scale=8; use a multiple of 8"),
        ({"residual_blocks": -1}, r"SRConfig.residual_blocks must be an int >= 0, got -1"),
        ({"loss": "bce"}, r"SRConfig.loss must be one of \('mse', 'l1'\), got 'bce'"),
        ({"learning_rate": 0.0}, r"SRConfig.learning_rate must be a finite number > 0, got 0.0"),
        ({"seed": 1.5}, r"SRConfig.seed must be an int in \[0, 4294967295\], got 1.5"),
    ],
)
def test_sr_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SRConfig(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 0}, r"BicubicConfig.image_size must be a positive int, got 0"),
        ({"channels": -3}, r"BicubicConfig.channels must be a positive int, got -3"),
        ({"scale": 16}, r"BicubicConfig.scale must be one of \(2, 4, 8\), got 16"),
        ({"image_size": 18}, r"BicubicConfig.image_size must be divisible by scale, got image_size=18 with scale=4"),
        ({"seed": -2}, r"BicubicConfig.seed must be an int in \[0, 4294967295\], got -2"),
    ],
)
def test_bicubic_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BicubicConfig(**changes)


# --------------------------------------------------------------------------- SR


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("blocks", [0, 2])
def test_sr_shapes(scale: int, blocks: int) -> None:
    model = SR(replace(SMALL, scale=scale, residual_blocks=blocks))
    lowres = torch.rand(2, 3, 16 // scale, 16 // scale)
    assert model.residual(lowres).shape == (2, 3, 16, 16)
    assert model(lowres).shape == (2, 3, 16, 16)
    head = model.head[0]
    assert head.out_channels == 3 * scale * scale and isinstance(model.head[1], torch.nn.PixelShuffle)


def test_untrained_sr_is_bicubic(make_batch: Callable) -> None:
    batch = make_batch(scale=4)
    model = SR(SMALL)
    assert torch.equal(model.residual(batch["lowres"]), torch.zeros(4, 3, 16, 16))
    torch.testing.assert_close(model.predict_step(batch, 0)["output"], _reference(batch["lowres"], 4), rtol=0, atol=0)


def test_sr_with_a_zeroed_residual_head_is_bicubic(make_batch: Callable) -> None:
    model = SR(SMALL)
    batch = make_batch(scale=4, seed=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(model(batch["lowres"]), _reference(batch["lowres"], 4))  # a non-zero residual
    with torch.no_grad():
        model.head[0].weight.zero_()
        model.head[0].bias.zero_()
    torch.testing.assert_close(model(batch["lowres"]), _reference(batch["lowres"], 4), rtol=0, atol=0)


def test_sr_learns_to_beat_bicubic(make_loader: Callable, make_trainer: Callable) -> None:
    loader = make_loader(8, batch_size=8)
    model = SR(replace(SMALL, learning_rate=3e-3))
    trainer = make_trainer(max_steps=40)
    trainer.fit(model, train_dataloaders=loader)
    metrics = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]
    assert metrics["val/mse"] < 0.9 * metrics["val/bicubic_mse"]


def test_sr_loss_options(make_loader: Callable, make_trainer: Callable) -> None:
    loader = make_loader(4)
    batch = next(iter(loader))
    for loss, reduce in (("mse", torch.square), ("l1", torch.abs)):
        model = SR(replace(SMALL, loss=loss))
        with torch.no_grad():
            model.head[0].bias.fill_(0.5)  # push some pixels past 1: the loss sees them unclamped
        metrics = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]
        unclamped = _reference(batch["lowres"], 4) + 0.5
        assert metrics["val/loss"] == pytest.approx(float(reduce(unclamped - batch["image"]).mean()), rel=1e-5)
        assert metrics["val/mse"] == pytest.approx(float((unclamped.clamp(0, 1) - batch["image"]).square().mean()), rel=1e-5)
        assert metrics["val/bicubic_mse"] == pytest.approx(float((_reference(batch["lowres"], 4) - batch["image"]).square().mean()), rel=1e-5)


def test_sr_rejects_wrong_lowres_shape(batch: dict) -> None:
    with pytest.raises(ValueError, match=r"SR expects lowres images \(scale=4\) of shape \(B, 3, 4, 4\) for its config \(channels=3, image_size=16\), got \(4, 3, 16, 16\)"):
        SR(SMALL).predict_step({**batch, "lowres": batch["image"]}, 0)


def test_sr_predict_needs_lowres(batch: dict) -> None:
    with pytest.raises(ValueError, match=r"SR batches must be dicts with keys 'lowres' and 'index', got \['image', 'index', 'labels'\] \(missing 'lowres'\)"):
        SR(SMALL).predict_step({k: v for k, v in batch.items() if k != "lowres"}, 0)


def test_sr_training_needs_full_size_target(batch: dict, make_trainer: Callable) -> None:
    model = SR(SMALL)
    with pytest.raises(ValueError, match=r"SR expects target images of shape \(B, 3, 16, 16\) .*got \(4, 3, 4, 4\)"):
        model._shared_step({**batch, "image": batch["lowres"]}, "val")


# --------------------------------------------------------------------------- Bicubic


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_module_equals_interpolate(scale: int, make_batch: Callable) -> None:
    batch = make_batch(scale=scale)
    model = Bicubic(BicubicConfig(image_size=16, channels=3, scale=scale))
    out = model.predict_step(batch, 0)
    assert torch.equal(out["index"], batch["index"])
    torch.testing.assert_close(out["output"], _reference(batch["lowres"], scale), rtol=0, atol=0)


def test_bicubic_has_nothing_to_train(make_loader: Callable, make_trainer: Callable) -> None:
    model = Bicubic(BicubicConfig(image_size=16, channels=3))
    assert list(model.parameters()) == [] and model.configure_optimizers() == []
    assert not model.automatic_optimization
    trainer = make_trainer(max_epochs=1)
    trainer.fit(model, train_dataloaders=make_loader(), val_dataloaders=make_loader())  # accepted, does nothing
    assert {"train/mse_epoch", "val/mse"} <= set(trainer.callback_metrics)


def test_bicubic_validate_and_test_log_mse(make_loader: Callable, make_trainer: Callable) -> None:
    loader = make_loader(4)
    batch = next(iter(loader))
    expected = float((_reference(batch["lowres"], 4) - batch["image"]).square().mean())
    model = Bicubic(BicubicConfig(image_size=16, channels=3))
    val = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]
    test = make_trainer().test(model, dataloaders=loader, verbose=False)[0]
    assert val["val/mse"] == pytest.approx(expected) and val["val/loss"] == pytest.approx(expected)
    assert test["test/mse"] == pytest.approx(expected)
