"""Tests of genfair.models.cnn: the convolutional autoencoder and its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from genfair.models import ConvAE, ConvAEConfig, per_sample_pixel_loss
from genfair.models._blocks import ResidualBlock

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

SMALL = ConvAEConfig(image_size=16, channels=3, hidden_channels=(4, 8), bottleneck=4)


def test_defaults() -> None:
    config = ConvAEConfig()
    assert (config.image_size, config.channels, config.hidden_channels, config.bottleneck) == (64, 3, (16, 32, 64), 64)
    assert (config.loss, config.upsampling, config.learning_rate, config.weight_decay) == ("mse", "nearest", 3e-3, 0.05)
    assert (config.residual_blocks, config.flip) == (1, True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": -4}, r"ConvAEConfig.image_size must be a positive int, got -4"),
        ({"channels": 0}, r"ConvAEConfig.channels must be a positive int, got 0"),
        ({"bottleneck": "8"}, r"ConvAEConfig.bottleneck must be a positive int, got '8'"),
        ({"hidden_channels": ()}, r"ConvAEConfig.hidden_channels must be a non-empty tuple of positive ints, got \(\)"),
        ({"image_size": 20}, r"ConvAEConfig.image_size must be divisible by 2 \*\* len\(hidden_channels\) = 8, got image_size=20 with hidden_channels=\(16, 32, 64\); use a multiple of 8"),
        ({"loss": "l1"}, r"ConvAEConfig.loss must be one of \('mse', 'bce'\), got 'l1'"),
        ({"upsampling": "bilinear"}, r"ConvAEConfig.upsampling must be one of \('nearest', 'transpose'\), got 'bilinear'"),
        ({"learning_rate": -1.0}, r"ConvAEConfig.learning_rate must be a finite number > 0, got -1.0"),
        ({"weight_decay": -0.1}, r"ConvAEConfig.weight_decay must be a finite number >= 0, got -0.1"),
        ({"residual_blocks": -1}, r"ConvAEConfig.residual_blocks must be an int >= 0, got -1"),
        ({"residual_blocks": 1.5}, r"ConvAEConfig.residual_blocks must be an int >= 0, got 1.5"),
        ({"flip": 1}, r"ConvAEConfig.flip must be a bool, got 1"),
        ({"seed": 2**32}, r"ConvAEConfig.seed must be an int in \[0, 4294967295\], got 4294967296"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConvAEConfig(**changes)


def test_list_hidden_channels_become_a_tuple() -> None:
    assert ConvAEConfig(hidden_channels=[4, 8]).hidden_channels == (4, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("blocks", [0, 1, 2])
@pytest.mark.parametrize("upsampling", ["nearest", "transpose"])
@pytest.mark.parametrize(("channels", "hidden"), [(3, (4, 8)), (1, (4,)), (3, (2, 4, 8, 8))])
def test_shapes(upsampling: str, channels: int, hidden: tuple[int, ...], blocks: int) -> None:
    model = ConvAE(replace(SMALL, channels=channels, hidden_channels=hidden, upsampling=upsampling,
                           residual_blocks=blocks))
    images = torch.rand(2, channels, 16, 16)
    side = 16 // 2 ** len(hidden)
    assert model.encoder(images).shape == (2, hidden[-1] * side * side)
    assert model.encode_latent(images).shape == (2, 4)
    assert model.decode(torch.zeros(2, 4)).shape == (2, channels, 16, 16)
    assert model(images).shape == (2, channels, 16, 16)
    kinds = {type(m) for m in model.decoder}
    assert (torch.nn.ConvTranspose2d in kinds) == (upsampling == "transpose")
    assert (torch.nn.Upsample in kinds) == (upsampling == "nearest")
    # Strided convolutions downsample (no max-pooling); residual blocks after each resolution change.
    assert torch.nn.MaxPool2d not in {type(m) for m in model.encoder}
    assert [m.stride for m in model.encoder if isinstance(m, torch.nn.Conv2d)] == [(1, 1)] + [(2, 2)] * len(hidden)
    residual = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(residual) == blocks * (2 * len(hidden) + 1)


def test_no_normalisation_outside_the_residual_blocks() -> None:
    """A GroupNorm on the main path would erase each image's brightness and colour (skin tone)."""
    model = ConvAE(SMALL)
    for part in (model.encoder, model.decoder):
        assert not any(isinstance(m, torch.nn.GroupNorm) for m in part.children())


def test_a_fresh_residual_block_is_the_identity() -> None:
    block = ResidualBlock(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x), x)


def test_flip_mirrors_training_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ConvAE(SMALL)
    seen: list[torch.Tensor] = []
    encode = model.encode_latent
    monkeypatch.setattr(model, "encode_latent", lambda images: seen.append(images) or encode(images))
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16)
    batch = {"image": images, "index": torch.arange(64)}
    model.training_step(batch, 0)
    flipped = (seen[-1] == images.flip(-1)).flatten(1).all(1)
    kept = (seen[-1] == images).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 16 < int(flipped.sum()) < 48  # each image mirrored or not, about half
    for step in (model.validation_step, model.test_step):
        step(batch, 0)
        assert torch.equal(seen[-1], images)
    unflipped = ConvAE(replace(SMALL, flip=False))
    monkeypatch.setattr(unflipped, "encode_latent", lambda images: seen.append(images) or encode(images))
    monkeypatch.setattr(unflipped, "log", lambda *args, **kwargs: None)
    unflipped.training_step(batch, 0)
    assert torch.equal(seen[-1], images)


def test_a_short_fit_lowers_the_loss(make_loader: Callable, make_trainer: Callable) -> None:
    model = ConvAE(replace(SMALL, learning_rate=1e-2, lr_schedule="constant", flip=False))
    loader = make_loader(16, batch_size=8)
    before = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]["val/mse"]
    make_trainer(max_epochs=30).fit(model, loader)
    after = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]["val/mse"]
    assert after < 0.7 * before


def test_each_output_is_independent_of_its_batch() -> None:
    model = ConvAE(SMALL)
    images = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(model(images)[:1], model(images[:1]))


def test_encode_latent_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"ConvAE expects images of shape \(B, 3, 16, 16\) .*got \(2, 3, 8, 8\)"):
        ConvAE(SMALL).encode_latent(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_validation_logs_configured_loss_and_mse(loss: str, make_loader: Callable, make_trainer: Callable) -> None:
    model = ConvAE(replace(SMALL, loss=loss))
    loader = make_loader(4)
    metrics = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]
    images = next(iter(loader))["image"]
    with torch.no_grad():
        logits = model.decode(model.encode_latent(images))
    expected = per_sample_pixel_loss(logits, images, kind=loss, from_logits=True).mean()
    assert metrics["val/loss"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["val/mse"] == pytest.approx(float((torch.sigmoid(logits) - images).square().mean()), rel=1e-5)


def test_optimizer_is_adamw_with_config_values() -> None:
    opt = ConvAE(replace(SMALL, learning_rate=0.01, weight_decay=0.1, lr_schedule="constant")).configure_optimizers()
    assert type(opt) is torch.optim.AdamW
    assert (opt.defaults["lr"], opt.defaults["weight_decay"]) == (0.01, 0.1)


def test_plateau_schedule_halves_the_rate_when_the_validation_loss_stalls() -> None:
    planned = ConvAE(replace(SMALL, learning_rate=0.01)).configure_optimizers()  # the default schedule
    optimizer, scheduler = planned["optimizer"], planned["lr_scheduler"]["scheduler"]
    assert planned["lr_scheduler"]["monitor"] == "val/loss"
    rates = []
    for val_loss in (1.0, 0.5, 0.6, 0.7, 0.8):  # better, then three epochs without a better loss
        scheduler.step(val_loss)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [0.01, 0.01, 0.01, 0.005, 0.005]  # dropped once the stall outlasted patience 1


def test_config_rejects_unknown_lr_schedule() -> None:
    with pytest.raises(ValueError, match=r"ConvAEConfig.lr_schedule must be one of \('plateau', 'constant'\), got 'cosine'"):
        replace(SMALL, lr_schedule="cosine")
