"""Tests of genfair.models.pulse: the config, the prior (trained here or loaded), the search."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genfair.models import VAE, Pulse, PulseConfig, VAEConfig

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
    "ignore:.*but have no `val_dataloader`:UserWarning",
)

TINY = PulseConfig(image_size=16, channels=3, scale=4, prior="vae", latent_dim=4, restarts=1, steps=2)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("scale", 3, r"PulseConfig.scale must be one of \(2, 4, 8, 16\), got 3"),
    ("image_size", 20, r"PulseConfig.image_size must be divisible by scale, got image_size=20 with scale=8"),
    ("prior", "flow", r"PulseConfig.prior must be one of \('gan', 'vae'\), got 'flow'"),
    ("prior_checkpoint", None, r"PulseConfig.prior_checkpoint must be a path string \(''"),
    ("steps", -1, r"PulseConfig.steps must be an int >= 0, got -1"),
    ("restarts", 0, r"PulseConfig.restarts must be a positive int, got 0"),
    ("search_learning_rate", 0.0, r"PulseConfig.search_learning_rate must be a finite number > 0, got 0.0"),
])
def test_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PulseConfig(**{field: value})


def test_defaults_follow_pulse() -> None:
    config = PulseConfig()
    assert (config.scale, config.prior, config.trains) == (8, "gan", True)
    assert PulseConfig(prior_checkpoint="prior.ckpt", prior="vae").trains is False


def test_search_matches_the_input_better_than_its_start(make_batch: Callable) -> None:
    batch = make_batch(3, scale=4)
    config = PulseConfig(image_size=16, scale=4, prior="gan", latent_dim=8, restarts=2, steps=15, search_learning_rate=0.2)
    start = Pulse(PulseConfig(**{**config.__dict__, "steps": 0}))
    searched = Pulse(config)
    error = lambda out: F.mse_loss(F.avg_pool2d(out, 4), batch["lowres"], reduction="none").flatten(1).mean(1)  # noqa: E731
    before, after = error(start(batch["lowres"])), error(searched(batch["lowres"]))
    assert after.shape == (3,) and (after < before).all()


def test_trains_its_prior_and_loads_a_trained_one(make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    pulse = Pulse(TINY)
    before = [p.detach().clone() for p in pulse.prior.parameters()]
    trainer = make_trainer(max_epochs=1)
    trainer.fit(pulse, train_dataloaders=make_loader(8), val_dataloaders=make_loader(8))
    assert any(not torch.equal(a, b) for a, b in zip(before, pulse.prior.parameters()))
    assert {"train/loss", "train/kl", "val/loss"} <= set(trainer.callback_metrics)

    prior_trainer = make_trainer(max_epochs=1)
    vae = VAE(VAEConfig(image_size=16, latent_dim=4, seed=3))
    prior_trainer.fit(vae, train_dataloaders=make_loader(8))
    path = tmp_path / "prior.ckpt"
    prior_trainer.save_checkpoint(path)
    loaded = Pulse(PulseConfig(**{**TINY.__dict__, "prior_checkpoint": str(path)}))
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.prior.state_dict()[key], value), key


def test_refuses_an_unusable_prior_checkpoint(make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"prior_checkpoint=.*missing.ckpt: not a checkpoint of a 'vae' model .*drop prior_checkpoint"):
        Pulse(PulseConfig(**{**TINY.__dict__, "prior_checkpoint": str(tmp_path / "missing.ckpt")}))
    trainer = make_trainer(max_epochs=1)
    trainer.fit(VAE(VAEConfig(image_size=16, latent_dim=6)), train_dataloaders=make_loader(4))
    path = tmp_path / "wide.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match=r"the prior has latent_dim=6, this run needs latent_dim=4; set it to match"):
        Pulse(PulseConfig(**{**TINY.__dict__, "prior_checkpoint": str(path)}))


def test_sample_is_the_priors() -> None:
    pulse = Pulse(TINY)
    torch.testing.assert_close(pulse.sample(3), pulse.prior.sample(3))


# --------------------------------------------------------------------------- the VAE's likelihood (bits per dimension)


def test_vae_bits_per_dim_is_the_negative_elbo_by_hand(make_images: Callable) -> None:
    vae = VAE(VAEConfig(image_size=16, latent_dim=4, hidden_channels=(8, 16), seed=1)).eval()
    images = make_images(3)
    got = vae.bits_per_dim(images, draws=1, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():  # by hand: one reparameterised draw, Bernoulli log-likelihood, analytic KL
        mu, logvar = vae.encode(images)
        z = mu + torch.randn(mu.shape, generator=torch.Generator().manual_seed(7)) * torch.exp(0.5 * logvar)
        probabilities = torch.sigmoid(vae.decode(z)).double()
        x = images.double()
        log_likelihood = (x * probabilities.log() + (1 - x) * (1 - probabilities).log()).flatten(1).sum(1)
        kl = 0.5 * (mu.double() ** 2 + logvar.double().exp() - 1 - logvar.double()).sum(1)
        expected = (kl - log_likelihood) / (3 * 16 * 16 * torch.log(torch.tensor(2.0, dtype=torch.float64)))
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    assert (vae.bits_per_dim(images) > 0).all()
    torch.testing.assert_close(vae.bits_per_dim(images), vae.bits_per_dim(images))  # seeded: deterministic
    with pytest.raises(ValueError, match=r"draws must be a positive int, got 0"):
        vae.bits_per_dim(images, draws=0)
