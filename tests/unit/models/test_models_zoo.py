"""Contract tests run on every registered model: construction, prediction, fit, checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import pytest
import torch

import genfair.models as models

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
    "ignore:.*but have no `val_dataloader`:UserWarning",
    "ignore:.*contains no parameters:UserWarning",
)

TINY = {
    "ae": models.AEConfig(image_size=16, channels=3, hidden_units=(32,), bottleneck=4),
    "bicubic": models.BicubicConfig(image_size=16, channels=3, scale=4),
    "cnn": models.ConvAEConfig(image_size=16, channels=3, hidden_channels=(4, 8), bottleneck=4),
    "gan": models.GANConfig(image_size=16, channels=3, latent_dim=4, features=4, inversion_steps=2),
    "pca": models.PCAConfig(image_size=16, channels=3, bottleneck=4),
    "pulse": models.PulseConfig(image_size=16, channels=3, scale=4, latent_dim=4, restarts=1, steps=2),
    "sr": models.SRConfig(image_size=16, channels=3, scale=4, features=8, residual_blocks=1),
    "vae": models.VAEConfig(image_size=16, channels=3, latent_dim=4, hidden_channels=(8, 16)),
}
"""A small config of each registered model (a new model must add one here)."""

LATENT = {"ae": 4, "cnn": 4, "pca": 4, "vae": 4}
"""Latent size of the models that are autoencoders (``encode_latent``)."""

ALL = sorted(TINY)
TRAINABLE = [name for name in ALL if models.get(name).max_epochs != 0]


def test_every_registered_model_has_a_tiny_config() -> None:
    assert set(models.names()) == set(TINY) == {"ae", "bicubic", "cnn", "gan", "pca", "pulse", "sr", "vae"}


@pytest.mark.parametrize("name", ALL)
def test_registry_entry_and_config_contract(name: str) -> None:
    spec = models.get(name)
    assert spec.name == name and isinstance(TINY[name], spec.config)
    assert is_dataclass(spec.config) and spec.config.__dataclass_params__.frozen
    assert {"image_size", "channels", "seed"} <= {f.name for f in fields(spec.config)}
    default = spec.config(image_size=64, channels=3, seed=0)  # the pipeline's call
    assert spec.config(**asdict(default)) == default
    with pytest.raises(TypeError):
        spec.config(64)  # keyword-only


def test_fixed_epochs() -> None:
    assert {name: models.get(name).max_epochs for name in ALL} == {
        "ae": None, "bicubic": 0, "cnn": None, "gan": None, "pca": 1, "pulse": None, "sr": None, "vae": None,
    }


def _model(name: str, make_loader: Callable, make_trainer: Callable) -> torch.nn.Module:
    model = models.get(name).module.from_config(TINY[name])
    if name == "pca":
        make_trainer(max_epochs=1).fit(model, train_dataloaders=make_loader(8))
    return model


@pytest.mark.parametrize("name", ALL)
def test_predict_step_contract(name: str, make_loader: Callable, make_trainer: Callable, batch: dict) -> None:
    model = _model(name, make_loader, make_trainer)
    assert model.config == TINY[name]
    batch = {**batch, "index": torch.arange(10, 14)}
    model.train()  # prediction is deterministic whatever the mode
    first, second = model.predict_step(batch, 0), model.predict_step(batch, 1)
    assert set(first) == {"index", "output"}
    assert torch.equal(first["index"], batch["index"]) and first["index"].dtype == torch.long
    assert first["output"].shape == batch["image"].shape and first["output"].dtype == torch.float32
    assert torch.equal(first["output"], second["output"])
    assert first["output"].min() >= 0 and first["output"].max() <= 1


@pytest.mark.parametrize("name", ALL)
def test_outputs_stay_in_unit_interval_for_extreme_inputs(name: str, make_loader: Callable, make_trainer: Callable, batch: dict) -> None:
    model = _model(name, make_loader, make_trainer)
    extreme = {key: (value * 50 - 25 if value.is_floating_point() else value) for key, value in batch.items()}
    out = model.predict_step(extreme, 0)["output"]
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", ALL)
def test_predict_step_rejects_index_mismatch(name: str, make_loader: Callable, make_trainer: Callable, batch: dict) -> None:
    model = _model(name, make_loader, make_trainer)
    like = "lowres" if name in ("sr", "bicubic", "pulse") else "image"
    with pytest.raises(ValueError, match=rf"batch 'index' must have shape \(4,\) to match '{like}', got \(3,\)"):
        model.predict_step({**batch, "index": torch.arange(3)}, 0)


@pytest.mark.parametrize("name", sorted(LATENT))
def test_encode_latent_shape(name: str, make_loader: Callable, make_trainer: Callable, batch: dict) -> None:
    model = _model(name, make_loader, make_trainer)
    latent = model.encode_latent(batch["image"])
    assert latent.shape == (4, LATENT[name])


@pytest.mark.parametrize("name", TRAINABLE)
def test_fast_dev_run_fit(name: str, make_loader: Callable, make_trainer: Callable) -> None:
    model = models.get(name).module.from_config(TINY[name])
    before = {key: value.clone() for key, value in model.state_dict().items()}
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(model, train_dataloaders=make_loader(), val_dataloaders=make_loader())
    changed = [key for key, value in model.state_dict().items() if not torch.equal(value, before[key])]
    assert changed, "fit changed no weights or buffers"
    assert "val/loss" in trainer.callback_metrics, sorted(trainer.callback_metrics)


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_round_trip(name: str, make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    model = models.get(name).module.from_config(TINY[name])
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(model, train_dataloaders=make_loader(), val_dataloaders=make_loader())
    path = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == asdict(TINY[name])
    loaded = type(model).load_from_checkpoint(path)
    assert loaded.config == TINY[name]
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name", ALL)
def test_init_is_seeded_and_leaves_global_rng_alone(name: str) -> None:
    state = torch.get_rng_state()
    a, b = (models.get(name).module.from_config(TINY[name]) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)
    for (key, value), other in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(value, other), key


@pytest.mark.parametrize("name", ALL)
def test_construction_errors(name: str) -> None:
    module, config = models.get(name).module, TINY[name]
    cls, cfg = module.__name__, type(config).__name__
    assert module(**asdict(config)).config == config
    assert dict(module(config).hparams) == asdict(config)
    with pytest.raises(TypeError, match=rf"^{cls} takes either a {cfg} or its fields as keywords, not both; got config and \['seed'\]"):
        module(config, seed=1)
    with pytest.raises(TypeError, match=rf"^{cls} config must be a {cfg}, got dict; build one with {cfg}\(\*\*fields\)$"):
        module(asdict(config))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dropout_rate'"):
        module(dropout_rate=0.1)


@pytest.mark.parametrize("name", ALL)
def test_predict_step_rejects_non_dict_batches(name: str, make_loader: Callable, make_trainer: Callable, batch: dict) -> None:
    model = _model(name, make_loader, make_trainer)
    key = "lowres" if name in ("sr", "bicubic", "pulse") else "image"
    with pytest.raises(ValueError, match=rf"batches must be dicts with keys .*got list \(missing '{key}'\)"):
        model.predict_step([batch["image"], batch["index"]], 0)
