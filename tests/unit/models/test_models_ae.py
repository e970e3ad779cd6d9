"""Tests of genfair.models.ae: the dense autoencoder and its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from genfair.models import AE, DEFAULT_LEARNING_RATES, AEConfig, per_sample_pixel_loss

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

SMALL = AEConfig(image_size=16, channels=3, hidden_units=(32, 16), bottleneck=4)


def test_defaults() -> None:
    config = AEConfig()
    assert (config.image_size, config.channels, config.hidden_units, config.bottleneck) == (64, 3, (512,), 64)
    assert (config.loss, config.output_activation, config.optimizer, config.learning_rate) == ("mse", "sigmoid", "adam", None)
    assert config.effective_learning_rate == 1e-3
    assert replace(config, optimizer="adadelta").effective_learning_rate == DEFAULT_LEARNING_RATES["adadelta"] == 1.0
    assert replace(config, learning_rate=0.5).effective_learning_rate == 0.5


def test_list_hidden_units_become_a_tuple() -> None:
    assert AEConfig(hidden_units=[8, 4]).hidden_units == (8, 4)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 0}, r"AEConfig.image_size must be a positive int, got 0"),
        ({"channels": 2.0}, r"AEConfig.channels must be a positive int, got 2.0"),
        ({"bottleneck": True}, r"AEConfig.bottleneck must be a positive int, got True"),
        ({"hidden_units": (8, 0)}, r"AEConfig.hidden_units must be a tuple of positive ints, got \(8, 0\)"),
        ({"hidden_units": 8}, r"AEConfig.hidden_units must be a tuple of positive ints, got 8"),
        ({"loss": "l1"}, r"AEConfig.loss must be one of \('mse', 'bce'\), got 'l1'"),
        ({"output_activation": "tanh"}, r"AEConfig.output_activation must be one of \('sigmoid', 'linear'\), got 'tanh'"),
        ({"loss": "bce", "output_activation": "linear"}, r"AEConfig.loss='bce' needs output_activation='sigmoid' .*; use loss='mse' with a linear output"),
        ({"optimizer": "sgd"}, r"AEConfig.optimizer must be one of \('adam', 'adadelta'\), got 'sgd'"),
        ({"learning_rate": 0}, r"AEConfig.learning_rate must be a finite number > 0, got 0"),
        ({"learning_rate": float("nan")}, r"AEConfig.learning_rate must be a finite number > 0, got nan"),
        ({"seed": -1}, r"AEConfig.seed must be an int in \[0, 4294967295\], got -1"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AEConfig(**changes)


@pytest.mark.parametrize("hidden", [(), (8,), (32, 16, 8)])
def test_shapes(hidden: tuple[int, ...]) -> None:
    model = AE(replace(SMALL, hidden_units=hidden, channels=1))
    images = torch.rand(2, 1, 16, 16)
    assert model.encode_latent(images).shape == (2, 4)
    assert model.decode_raw(torch.zeros(2, 4)).shape == (2, 1, 16, 16)
    assert model(images).shape == (2, 1, 16, 16)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [*hidden, 4, *reversed(hidden), 256]


def test_bottleneck_is_linear() -> None:
    model = AE(SMALL)
    assert isinstance(model.encoder[-1], torch.nn.Linear)
    assert (model.encode_latent(torch.rand(8, 3, 16, 16)) < 0).any()


def test_linear_output_is_clamped_only_at_prediction(batch: dict) -> None:
    model = AE(replace(SMALL, output_activation="linear"))
    with torch.no_grad():
        model.decoder[-1].bias.fill_(3.0)
    raw = model.decode_raw(model.encode_latent(batch["image"]))
    assert raw.max() > 1
    out = model.predict_step(batch, 0)["output"]
    torch.testing.assert_close(out, raw.clamp(0, 1))


def test_sigmoid_output_is_sigmoid_of_raw(batch: dict) -> None:
    model = AE(SMALL)
    raw = model.decode_raw(model.encode_latent(batch["image"]))
    torch.testing.assert_close(model(batch["image"]), torch.sigmoid(raw))


def test_encode_latent_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"AE expects images of shape \(B, 3, 16, 16\) for its config \(channels=3, image_size=16\), got \(2, 1, 16, 16\)"):
        AE(SMALL).encode_latent(torch.zeros(2, 1, 16, 16))


@pytest.mark.parametrize(("optimizer", "cls", "lr"), [("adam", torch.optim.Adam, 1e-3), ("adadelta", torch.optim.Adadelta, 1.0)])
def test_optimizers(optimizer: str, cls: type, lr: float) -> None:
    opt = AE(replace(SMALL, optimizer=optimizer, lr_schedule="constant")).configure_optimizers()
    assert type(opt) is cls and opt.defaults["lr"] == lr
    planned = AE(replace(SMALL, optimizer=optimizer, learning_rate=0.25)).configure_optimizers()  # default: plateau
    assert type(planned["optimizer"]) is cls and planned["optimizer"].defaults["lr"] == 0.25
    assert isinstance(planned["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert planned["lr_scheduler"]["monitor"] == "val/loss"


@pytest.mark.parametrize(("loss", "activation"), [("mse", "sigmoid"), ("bce", "sigmoid"), ("mse", "linear")])
def test_validation_logs_configured_loss_and_mse(
    loss: str, activation: str, make_loader: Callable, make_trainer: Callable
) -> None:
    model = AE(replace(SMALL, loss=loss, output_activation=activation))
    loader = make_loader(4)
    metrics = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]
    images = next(iter(loader))["image"]
    raw = model.decode_raw(model.encode_latent(images)).detach()
    expected = per_sample_pixel_loss(raw, images, kind=loss, from_logits=activation == "sigmoid").mean()
    assert metrics["val/loss"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["val/mse"] == pytest.approx(float((model(images) - images).square().mean().detach()), rel=1e-5)


def test_fit_logs_step_and_epoch_keys(make_loader: Callable, make_trainer: Callable) -> None:
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(AE(replace(SMALL, optimizer="adadelta")), train_dataloaders=make_loader(), val_dataloaders=make_loader())
    metrics = trainer.callback_metrics
    assert {"train/loss_step", "train/loss_epoch", "train/mse_epoch", "val/loss", "val/mse"} <= set(metrics)
