"""Tests of genfair.models.vae: config validation, loss terms, network shapes, Lightning hooks."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from genfair.models import (
    VAE,
    VAEConfig,
    per_sample_kl_loss,
    per_sample_reconstruction_loss,
    vae_loss_terms,
)
from genfair.models.vae import NOISE_CHECKPOINT_KEY

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

B = 4
SMALL = VAEConfig(image_size=16, channels=3, latent_dim=4, hidden_channels=(8, 16))


class _DictImages(Dataset):
    """``n`` random 16x16 RGB images as contract batches ``{"image", "index"}``."""

    def __init__(self, n: int, *, seed: int = 0, channels: int = 3, size: int = 16) -> None:
        self.images = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "index": torch.tensor(i)}


def _loader(n: int = 2 * B) -> DataLoader:
    return DataLoader(_DictImages(n), batch_size=B)


def _trainer(**kwargs: object) -> pl.Trainer:
    options: dict = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(B, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def model() -> VAE:
    return VAE(SMALL)


# --------------------------------------------------------------------------- config


def test_default_config_matches_the_contract() -> None:
    config = VAEConfig()
    assert (config.image_size, config.channels, config.latent_dim) == (64, 3, 32)
    assert config.hidden_channels == (32, 64, 128)
    assert (config.beta, config.reconstruction_loss) == (1.0, "bce")
    assert (config.learning_rate, config.weight_decay) == (1e-3, 0.0)


def test_config_is_frozen_and_keyword_only() -> None:
    with pytest.raises(AttributeError):
        SMALL.beta = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        VAEConfig(16)  # type: ignore[misc]


def test_config_coerces_list_hidden_channels_and_round_trips_asdict() -> None:
    from_yaml = {**asdict(SMALL), "hidden_channels": [8, 16]}
    config = VAEConfig(**from_yaml)
    assert config.hidden_channels == (8, 16)
    assert config == SMALL
    assert VAEConfig(**asdict(config)) == config


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("image_size", 0, r"VAEConfig.image_size must be a positive int, got 0"),
        ("image_size", 16.0, r"VAEConfig.image_size must be a positive int, got 16.0"),
        ("channels", -1, r"VAEConfig.channels must be a positive int, got -1"),
        ("channels", True, r"VAEConfig.channels must be a positive int, got True"),
        ("latent_dim", 0, r"VAEConfig.latent_dim must be a positive int, got 0"),
        ("hidden_channels", (), r"hidden_channels must be a non-empty tuple of positive ints, got \(\)"),
        ("hidden_channels", (8, 0), r"hidden_channels must be a non-empty tuple of positive ints, got \(8, 0\)"),
        ("hidden_channels", "8", r"hidden_channels must be a non-empty tuple of positive ints, got '8'"),
        ("image_size", 18, r"image_size must be divisible by 2 \*\* len\(hidden_channels\) = 4, got image_size=18"),
        ("beta", -0.5, r"VAEConfig.beta must be a finite number >= 0, got -0.5"),
        ("beta", math.inf, r"VAEConfig.beta must be a finite number >= 0, got inf"),
        ("reconstruction_loss", "l1", r"reconstruction_loss must be one of \('bce', 'mse'\), got 'l1'"),
        ("learning_rate", 0.0, r"VAEConfig.learning_rate must be a finite number > 0, got 0.0"),
        ("learning_rate", "1e-3", r"VAEConfig.learning_rate must be a finite number > 0, got '1e-3'"),
        ("weight_decay", -1e-4, r"VAEConfig.weight_decay must be a finite number >= 0, got -0.0001"),
        ("seed", -1, r"VAEConfig.seed must be an int in \[0, 4294967295\], got -1"),
        ("seed", 2**32, r"VAEConfig.seed must be an int in \[0, 4294967295\], got 4294967296"),
    ],
)
def test_config_rejects_invalid_values(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        replace(SMALL, **{field: value})
    assert "\n" not in str(info.value)


def test_config_accepts_mse_and_zero_beta() -> None:
    config = replace(SMALL, reconstruction_loss="mse", beta=0, weight_decay=0.01)
    assert config.reconstruction_loss == "mse"


# --------------------------------------------------------------------------- loss terms


def test_kl_of_standard_normal_posterior_is_zero() -> None:
    zeros = torch.zeros(3, 5)
    assert torch.equal(per_sample_kl_loss(zeros, zeros), torch.zeros(3))


def test_kl_matches_hand_computed_value() -> None:
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [math.log(0.5), 0.0]])
    # 0.5 * sum(mu^2 + var - 1 - logvar)
    expected = torch.tensor(
        [
            0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 2 - 1 - math.log(2.0)),
            0.5 * (0 + 0.5 - 1 - math.log(0.5)),
        ]
    )
    torch.testing.assert_close(per_sample_kl_loss(mu, logvar), expected)


def test_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    posterior = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(dim=1)
    torch.testing.assert_close(per_sample_kl_loss(mu, logvar), expected)


def test_bce_reconstruction_is_per_image_sum_of_torch_bce(images: torch.Tensor) -> None:
    logits = torch.randn(images.shape, generator=torch.Generator().manual_seed(3))
    expected = torch.stack(
        [F.binary_cross_entropy(torch.sigmoid(lo), t, reduction="sum") for lo, t in zip(logits, images)]
    )
    got = per_sample_reconstruction_loss(logits, images, kind="bce")
    assert got.shape == (B,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_bce_reconstruction_is_stable_for_extreme_logits() -> None:
    logits = torch.full((1, 1, 2, 2), 200.0)
    target = torch.zeros(1, 1, 2, 2)
    got = per_sample_reconstruction_loss(logits, target, kind="bce")
    torch.testing.assert_close(got, torch.tensor([800.0]))


def test_mse_reconstruction_is_per_image_sum_of_squared_error(images: torch.Tensor) -> None:
    logits = torch.randn(images.shape, generator=torch.Generator().manual_seed(4))
    expected = torch.stack([F.mse_loss(torch.sigmoid(lo), t, reduction="sum") for lo, t in zip(logits, images)])
    torch.testing.assert_close(per_sample_reconstruction_loss(logits, images, kind="mse"), expected)


def test_loss_terms_average_over_batch_and_beta_weights_kl(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(images.shape, generator=g)
    mu, logvar = torch.randn(B, 4, generator=g), torch.randn(B, 4, generator=g)
    terms = {
        beta: vae_loss_terms(logits, images, mu, logvar, beta=beta, reconstruction_loss="bce")
        for beta in (0.0, 1.0, 2.5)
    }
    recon = per_sample_reconstruction_loss(logits, images, kind="bce").mean()
    kl = per_sample_kl_loss(mu, logvar).mean()
    for beta, got in terms.items():
        assert set(got) == {"loss", "reconstruction", "kl", "elbo"}
        torch.testing.assert_close(got["reconstruction"], recon)
        torch.testing.assert_close(got["kl"], kl)
        torch.testing.assert_close(got["loss"], recon + beta * kl)
        torch.testing.assert_close(got["elbo"], -(recon + kl))  # the bound itself, whatever beta
    torch.testing.assert_close(terms[2.5]["loss"] - terms[0.0]["loss"], 2.5 * kl)


def test_loss_functions_do_not_modify_inputs(images: torch.Tensor) -> None:
    logits = torch.randn(images.shape, generator=torch.Generator().manual_seed(6))
    mu, logvar = torch.ones(B, 2), torch.ones(B, 2)
    before = [t.clone() for t in (logits, images, mu, logvar)]
    vae_loss_terms(logits, images, mu, logvar, beta=1.0, reconstruction_loss="mse")
    for old, new in zip(before, (logits, images, mu, logvar)):
        assert torch.equal(old, new)


def test_reconstruction_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"logits and target must have the same \(N, C, H, W\) shape, got \(2, 3, 4, 4\) and \(2, 1, 4, 4\)"):
        per_sample_reconstruction_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))


def test_reconstruction_rejects_non_4d_inputs() -> None:
    with pytest.raises(ValueError, match=r"same \(N, C, H, W\) shape, got \(2, 16\) and \(2, 16\)"):
        per_sample_reconstruction_loss(torch.zeros(2, 16), torch.zeros(2, 16))


def test_reconstruction_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of \('bce', 'mse'\), got 'l1'"):
        per_sample_reconstruction_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), kind="l1")  # type: ignore[arg-type]


def test_kl_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"mu and logvar must have the same \(N, D\) shape, got \(2, 3\) and \(2, 4\)"):
        per_sample_kl_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_loss_terms_reject_batch_size_mismatch() -> None:
    with pytest.raises(ValueError, match=r"images and latents must have the same batch size, got \(2, 1, 2, 2\) and \(3, 4\)"):
        vae_loss_terms(
            torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.zeros(3, 4), torch.zeros(3, 4),
            beta=1.0, reconstruction_loss="bce",
        )


# --------------------------------------------------------------------------- network


def test_encoder_and_decoder_shapes(model: VAE, images: torch.Tensor) -> None:
    assert model.encoder(images).shape == (B, 16 * 4 * 4)
    mu, logvar = model.encode(images)
    assert mu.shape == logvar.shape == (B, 4)
    assert model.decode(mu).shape == (B, 3, 16, 16)
    assert model(images).shape == (B, 3, 16, 16)


@pytest.mark.parametrize("hidden", [(4,), (4, 8, 8)])
def test_grayscale_and_other_depths(hidden: tuple[int, ...]) -> None:
    config = VAEConfig(image_size=16, channels=1, latent_dim=3, hidden_channels=hidden)
    model = VAE(config)
    x = torch.rand(2, 1, 16, 16)
    assert model(x).shape == (2, 1, 16, 16)
    assert model.encode(x)[0].shape == (2, 3)


def test_encode_latent_is_the_posterior_mean(model: VAE, images: torch.Tensor) -> None:
    model.train()
    latent = model.encode_latent(images)
    assert latent.shape == (B, 4)
    assert torch.equal(latent, model.encode(images)[0])
    assert torch.equal(model.encode_latent(images), latent)  # deterministic, even in training mode


def test_outputs_are_in_unit_interval(model: VAE, images: torch.Tensor) -> None:
    out = model(images * 50 - 25)  # far outside [0, 1]: the sigmoid still bounds the output
    assert out.min() >= 0 and out.max() <= 1


def test_encode_rejects_wrong_image_shape(model: VAE) -> None:
    with pytest.raises(ValueError, match=r"VAE expects images of shape \(B, 3, 16, 16\) .*got \(2, 3, 32, 32\)"):
        model.encode(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"VAE expects images of shape \(B, 3, 16, 16\) .*got ndarray"):
        model.encode(torch.zeros(2, 3, 16, 16).numpy())  # type: ignore[arg-type]


def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = VAE(SMALL), VAE(SMALL), VAE(replace(SMALL, seed=1))
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.to_latent.weight, c.to_latent.weight)


def test_reparameterize_samples_in_training_and_uses_mean_otherwise(model: VAE) -> None:
    mu, logvar = torch.zeros(B, 4), torch.zeros(B, 4)
    model.train()
    first, second = model.reparameterize(mu, logvar), model.reparameterize(mu, logvar)
    assert not torch.equal(first, mu) and not torch.equal(first, second)
    # The noise stream is the module's own, seeded from the config: a twin replays it.
    twin = VAE(SMALL).train()
    assert torch.equal(twin.reparameterize(mu, logvar), first)
    model.eval()
    assert model.reparameterize(mu, logvar) is mu


def test_sample_decodes_prior_draws(model: VAE) -> None:
    samples = model.sample(3)
    assert samples.shape == (3, 3, 16, 16)
    assert samples.min() >= 0 and samples.max() <= 1
    assert torch.equal(model.sample(3), samples)  # default generator: seeded by config.seed
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(model.sample(2, generator=g1), model.sample(2, generator=g2))
    assert not samples.requires_grad


@pytest.mark.parametrize("n", [0, -2, 1.5])
def test_sample_rejects_bad_n(model: VAE, n: object) -> None:
    with pytest.raises(ValueError, match=rf"sample needs a positive int number of images, got {n!r}"):
        model.sample(n)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- construction


def test_from_config_and_keyword_construction_agree() -> None:
    assert VAE.from_config(SMALL).config == SMALL
    assert VAE(**asdict(SMALL)).config == SMALL
    model = VAE(SMALL)
    assert dict(model.hparams) == asdict(SMALL)


def test_init_rejects_config_plus_keywords() -> None:
    with pytest.raises(TypeError, match=r"either a VAEConfig or its fields as keywords, not both; got config and \['beta'\]"):
        VAE(SMALL, beta=2.0)


def test_init_rejects_non_config() -> None:
    with pytest.raises(TypeError, match=r"VAE config must be a VAEConfig, got dict"):
        VAE(asdict(SMALL))  # type: ignore[arg-type]


def test_init_rejects_unknown_keyword() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dropout'"):
        VAE(dropout=0.1)


# --------------------------------------------------------------------------- Lightning


def test_predict_step_is_deterministic_and_returns_index(model: VAE, images: torch.Tensor) -> None:
    index = torch.arange(10, 10 + B)
    batch = {"image": images, "index": index}
    model.train()  # even in training mode, prediction decodes the posterior mean
    first = model.predict_step(batch, 0)
    second = model.predict_step(batch, 1)
    assert set(first) == {"index", "output"}
    assert torch.equal(first["index"], index) and first["index"].dtype == torch.long
    assert first["output"].shape == images.shape
    assert torch.equal(first["output"], second["output"])
    assert first["output"].min() >= 0 and first["output"].max() <= 1


def test_predict_step_rejects_missing_index(model: VAE, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"batches must be dicts with keys 'image' and 'index', got \['image'\] \(missing 'index'\)"):
        model.predict_step({"image": images}, 0)


def test_predict_step_rejects_non_dict_batch(model: VAE, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"batches must be dicts .*got list \(missing 'image'\)"):
        model.predict_step([images, torch.arange(B)], 0)  # type: ignore[arg-type]


def test_predict_step_rejects_index_shape_mismatch(model: VAE, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"batch 'index' must have shape \(4,\) to match 'image', got \(3,\)"):
        model.predict_step({"image": images, "index": torch.arange(3)}, 0)


def test_fast_dev_run_fit_logs_stage_keys() -> None:
    trainer = _trainer(fast_dev_run=True)
    model = VAE(SMALL)
    before = model.to_latent.weight.detach().clone()
    trainer.fit(model, train_dataloaders=_loader(), val_dataloaders=_loader())
    assert not torch.equal(model.to_latent.weight, before)
    metrics = trainer.callback_metrics
    for stage in ("train", "val"):
        for name in ("loss", "reconstruction", "kl", "elbo"):
            assert f"{stage}/{name}" in metrics, (stage, name, sorted(metrics))
    assert "train/loss_step" in metrics and "val/loss_step" not in metrics


def test_validation_loss_is_reconstruction_plus_beta_kl() -> None:
    model = VAE(replace(SMALL, beta=3.0))
    metrics = _trainer().validate(model, dataloaders=_loader(), verbose=False)[0]
    torch.testing.assert_close(
        torch.tensor(metrics["val/loss"]), torch.tensor(metrics["val/reconstruction"] + 3.0 * metrics["val/kl"])
    )
    assert metrics["val/kl"] > 0
    torch.testing.assert_close(
        torch.tensor(metrics["val/elbo"]), torch.tensor(-(metrics["val/reconstruction"] + metrics["val/kl"]))
    )
    assert {"val/loss", "val/reconstruction", "val/kl", "val/elbo"} == set(metrics)


def test_trainer_predict_returns_contract_batches() -> None:
    predictions = _trainer().predict(VAE(SMALL), dataloaders=_loader(2 * B))
    assert torch.equal(torch.cat([p["index"] for p in predictions]), torch.arange(2 * B))
    assert all(p["output"].shape == (B, 3, 16, 16) for p in predictions)


def test_checkpoint_round_trip_rebuilds_config_and_weights(tmp_path: Path) -> None:
    config = replace(SMALL, beta=0.5, reconstruction_loss="mse", seed=3)
    model = VAE(config)
    trainer = _trainer(fast_dev_run=True)
    trainer.fit(model, train_dataloaders=_loader(), val_dataloaders=_loader())
    path = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == asdict(config)

    loaded = VAE.load_from_checkpoint(path)
    assert loaded.config == config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name

    overridden = VAE.load_from_checkpoint(path, beta=2.0)
    assert overridden.config == replace(config, beta=2.0)


def test_a_fit_resumed_from_a_checkpoint_continues_the_noise_and_ends_where_an_uninterrupted_one_does(
    tmp_path: Path,
) -> None:
    """Two epochs at once against one epoch, a checkpoint, and a resumed second epoch: the same weights."""
    uninterrupted = VAE(SMALL)
    _trainer(max_epochs=2).fit(uninterrupted, train_dataloaders=_loader(), val_dataloaders=_loader())

    first = VAE(SMALL)
    stopped = _trainer(max_epochs=1)
    stopped.fit(first, train_dataloaders=_loader(), val_dataloaders=_loader())
    path = tmp_path / "epoch-0.ckpt"
    stopped.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)[NOISE_CHECKPOINT_KEY]
    assert (saved["device"], saved["rank"]) == ("cpu", 0)
    replayed = torch.Generator().manual_seed(SMALL.seed)
    assert not torch.equal(saved["state"], replayed.get_state()), "the state after an epoch of draws, not the seed's"

    resumed = VAE(SMALL)
    _trainer(max_epochs=2).fit(resumed, train_dataloaders=_loader(), val_dataloaders=_loader(), ckpt_path=path)
    for name, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)


def test_a_fresh_fit_of_a_loaded_model_replays_the_noise_from_the_seed(tmp_path: Path) -> None:
    model = VAE(SMALL)
    trainer = _trainer(max_epochs=1)
    trainer.fit(model, train_dataloaders=_loader(), val_dataloaders=_loader())
    path = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(path)
    loaded = VAE.load_from_checkpoint(path)
    _trainer(fast_dev_run=True).fit(loaded, train_dataloaders=_loader(), val_dataloaders=_loader())
    replayed = torch.Generator().manual_seed(SMALL.seed)
    torch.randn((B, SMALL.latent_dim), generator=replayed)  # fast_dev_run: one training batch
    assert torch.equal(loaded._noise_generator.get_state(), replayed.get_state())


def test_kl_warmup_raises_the_training_weight_and_keeps_validation_at_beta() -> None:
    model = VAE(replace(SMALL, beta=2.0, kl_warmup_epochs=4))
    # outside a trainer (a prior trained inside another module) there is no epoch to warm up over
    assert (model.kl_weight("train"), model.kl_weight("val"), model.kl_weight("test")) == (2.0, 2.0, 2.0)
    seen: list[tuple[float, float]] = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, module: VAE) -> None:
            metrics = trainer.callback_metrics  # this epoch's training means
            seen.append((module.kl_weight("train"), float(metrics["train/loss_epoch"] - metrics["train/reconstruction_epoch"]) / float(metrics["train/kl_epoch"])))

    _trainer(max_epochs=2, limit_val_batches=0, callbacks=[Record()]).fit(model, train_dataloaders=_loader())
    assert [weight for weight, _ in seen] == [0.5, 1.0]  # 2.0 * (epoch + 1) / 4
    for weight, used in seen:
        assert used == pytest.approx(weight, rel=1e-4)  # the logged training loss weighed the KL by it
    assert VAE(replace(SMALL, beta=2.0, kl_warmup_epochs=0)).kl_weight("train") == 2.0


@pytest.mark.parametrize(("field", "value", "message"), [
    ("kl_warmup_epochs", -1, r"VAEConfig.kl_warmup_epochs must be an int >= 0, got -1"),
    ("kl_warmup_epochs", 1.5, r"VAEConfig.kl_warmup_epochs must be an int >= 0, got 1.5"),
    ("lr_schedule", "cosine", r"VAEConfig.lr_schedule must be one of \('plateau', 'constant'\), got 'cosine'"),
])
def test_config_rejects_bad_warmup_and_schedule(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(SMALL, **{field: value})
