"""Tests of genfair.models.registry: register / get / names and their error messages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import pytorch_lightning as pl

import genfair.models as models
from genfair.models import registry


@dataclass(frozen=True, kw_only=True)
class _ToyConfig:
    image_size: int = 8
    channels: int = 1
    seed: int = 0


class _ToyModule(pl.LightningModule):
    def __init__(self, config: _ToyConfig) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def from_config(cls, config: _ToyConfig) -> _ToyModule:
        return cls(config)


@pytest.fixture
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fresh, empty registry for the duration of one test."""
    fresh: dict = {}
    monkeypatch.setattr(registry, "REGISTRY", fresh)
    return fresh


def test_vae_is_registered_on_import() -> None:
    assert "vae" in models.names()
    spec = models.get("vae")
    assert spec == models.ModelSpec(name="vae", module=models.VAE, config=models.VAEConfig)
    assert models.REGISTRY["vae"] is spec


def test_every_zoo_model_is_registered_on_import() -> None:
    assert models.names() == ("ae", "bicubic", "cnn", "gan", "pca", "pulse", "sr", "vae")
    assert models.get("ae").module is models.AE and models.get("cnn").module is models.ConvAE
    assert models.get("sr").config is models.SRConfig and models.get("bicubic").module is models.Bicubic
    assert (models.get("pca").max_epochs, models.get("bicubic").max_epochs, models.get("vae").max_epochs) == (1, 0, None)


def test_names_are_sorted_lowercase_tuple() -> None:
    got = models.names()
    assert isinstance(got, tuple)
    assert list(got) == sorted(got)
    assert all(name == name.lower() for name in got)


def test_spec_builds_a_model_from_its_config() -> None:
    spec = models.get("vae")
    config = spec.config(image_size=16, channels=1, hidden_channels=(4,))
    model = spec.module.from_config(config)
    assert isinstance(model, models.VAE)
    assert model.config == config


@pytest.mark.parametrize("typed", ["vea", "VAE", "vae "])
def test_get_unknown_suggests_close_key(typed: str) -> None:
    with pytest.raises(ValueError, match=r"unknown model .*; valid models: .*'vae'.*; did you mean 'vae'\?$"):
        models.get(typed)


def test_get_unknown_without_close_key_lists_valid_keys() -> None:
    with pytest.raises(ValueError, match=r"^unknown model 'zzzzzz'; valid models: 'ae', 'bicubic', 'cnn', 'gan', 'pca', 'pulse', 'sr', 'vae'$") as info:
        models.get("zzzzzz")
    assert "did you mean" not in str(info.value)
    assert "\n" not in str(info.value)


def test_get_unhashable_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown model \['vae'\]"):
        models.get(["vae"])  # type: ignore[arg-type]


def test_get_on_empty_registry_says_none_registered(empty_registry: dict) -> None:
    with pytest.raises(ValueError, match=r"valid models: \(none registered\)"):
        registry.get("vae")


def test_register_records_spec_and_returns_class(empty_registry: dict) -> None:
    decorated = registry.register("toy", config=_ToyConfig)(_ToyModule)
    assert decorated is _ToyModule
    assert registry.get("toy") == registry.ModelSpec(name="toy", module=_ToyModule, config=_ToyConfig)
    assert registry.names() == ("toy",)
    assert registry.get("toy").max_epochs is None


@pytest.mark.parametrize("max_epochs", [0, 1, 7])
def test_register_records_max_epochs(empty_registry: dict, max_epochs: int) -> None:
    registry.register("toy", config=_ToyConfig, max_epochs=max_epochs)(_ToyModule)
    assert registry.get("toy") == registry.ModelSpec(name="toy", module=_ToyModule, config=_ToyConfig, max_epochs=max_epochs)


@pytest.mark.parametrize("max_epochs", [-1, 1.0, True, "1"])
def test_register_rejects_bad_max_epochs(empty_registry: dict, max_epochs: object) -> None:
    with pytest.raises(ValueError, match=rf"max_epochs for model 'toy' must be None \(the user's choice\) or an int >= 0, got {max_epochs!r}"):
        registry.register("toy", config=_ToyConfig, max_epochs=max_epochs)  # type: ignore[arg-type]
    assert registry.names() == ()


@pytest.mark.parametrize("name", ["Toy", "", " toy", 3])
def test_register_rejects_bad_names(empty_registry: dict, name: object) -> None:
    with pytest.raises(ValueError, match=r"model names must be lowercase non-empty strings"):
        registry.register(name, config=_ToyConfig)  # type: ignore[arg-type]


def test_register_rejects_duplicate_names(empty_registry: dict) -> None:
    registry.register("toy", config=_ToyConfig)(_ToyModule)
    with pytest.raises(ValueError, match=r"model 'toy' is already registered to _ToyModule; .*'toy\.v2'"):
        registry.register("toy", config=_ToyConfig)


def test_register_rejects_non_dataclass_config(empty_registry: dict) -> None:
    with pytest.raises(TypeError, match=r"config for model 'toy' must be a dataclass class, got <class 'dict'>"):
        registry.register("toy", config=dict)


def test_register_rejects_dataclass_instance_as_config(empty_registry: dict) -> None:
    with pytest.raises(TypeError, match=r"must be a dataclass class"):
        registry.register("toy", config=_ToyConfig())  # type: ignore[arg-type]


def test_register_rejects_mutable_config(empty_registry: dict) -> None:
    @dataclass
    class Mutable:
        image_size: int = 8
        channels: int = 1

    with pytest.raises(TypeError, match=r"must be declared @dataclass\(frozen=True, kw_only=True\)"):
        registry.register("toy", config=Mutable)


def test_register_rejects_config_without_shape_fields(empty_registry: dict) -> None:
    @dataclass(frozen=True, kw_only=True)
    class NoChannels:
        image_size: int = 8
        seed: int = 0

    with pytest.raises(TypeError, match=r"lacks the required fields \['channels'\]"):
        registry.register("toy", config=NoChannels)


def test_register_rejects_non_lightning_module(empty_registry: dict) -> None:
    class NotLightning:
        @classmethod
        def from_config(cls, config: object) -> NotLightning:
            return cls()

    with pytest.raises(TypeError, match=r"must register a pytorch_lightning.LightningModule subclass"):
        registry.register("toy", config=_ToyConfig)(NotLightning)  # type: ignore[type-var]
    assert registry.names() == ()


def test_register_rejects_module_without_from_config(empty_registry: dict) -> None:
    class NoFromConfig(pl.LightningModule):
        pass

    with pytest.raises(TypeError, match=r"NoFromConfig must define a classmethod from_config\(config\)"):
        registry.register("toy", config=_ToyConfig)(NoFromConfig)
