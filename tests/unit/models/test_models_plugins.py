"""Tests of the model facts (task, description, baseline, origin) and of entry-point plugins.

Each plugin test writes a fake installed distribution into ``tmp_path``: a tiny package and a
``*.dist-info`` folder (``METADATA``, ``entry_points.txt``), found by :mod:`importlib.metadata`
once ``tmp_path`` is on ``sys.path``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl

import genfair.models as models
from genfair.models import registry

DIST_NAME = "fake-genfair-plugin"
DIST_VERSION = "1.2.3"
PLUGIN_ORIGIN = f"plugin {DIST_NAME} {DIST_VERSION}"

MODEL_SOURCE = '''
from dataclasses import dataclass

import pytorch_lightning as pl

from genfair.models import register


@dataclass(frozen=True, kw_only=True)
class TheirConfig:
    image_size: int = 8
    channels: int = 1
    seed: int = 0


@register({key!r}, config=TheirConfig, description="a fake plugin model", baseline="pca")
class TheirModule(pl.LightningModule):
    @classmethod
    def from_config(cls, config):
        module = cls()
        module.config = config
        return module
'''
"""Source of a plugin module registering ``TheirModule`` under ``{key}``."""

BUILT_INS = {
    # name: (task, baseline)
    "ae": ("reconstruction", "pca"),
    "bicubic": ("upsampling", None),
    "cnn": ("reconstruction", "pca"),
    "gan": ("generation", None),
    "pca": ("reconstruction", None),
    "pulse": ("upsampling", "bicubic"),
    "sr": ("upsampling", "bicubic"),
    "vae": ("reconstruction", "pca"),
}


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Plugins not loaded yet at the start, and forgotten again at the end, of one test."""
    registry._reset_plugins()
    yield
    registry._reset_plugins()


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Iterator[Callable[..., str]]:
    """Factory ``install(entry_points, source)``: a fake distribution on ``sys.path``; returns its package name.

    ``entry_points`` maps entry-point names to ``"{package}.model:Attribute"`` templates; ``source``
    is the package's ``model.py`` (``{key}`` filled in with ``key``).
    """
    packages: list[str] = []

    def make(entry_points: dict[str, str], source: str = MODEL_SOURCE, *, key: str = "theirs") -> str:
        package = f"genfair_fake_plugin_{uuid.uuid4().hex[:12]}"
        packages.append(package)
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "model.py").write_text(source.replace("{key!r}", repr(key)))
        dist_info = tmp_path / f"{DIST_NAME.replace('-', '_')}-{DIST_VERSION}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {DIST_VERSION}\n")
        lines = [f"{name} = {value.format(package=package)}" for name, value in entry_points.items()]
        (dist_info / "entry_points.txt").write_text("[genfair.models]\n" + "\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        return package

    yield make
    for package in packages:
        for module in [name for name in sys.modules if name == package or name.startswith(package + ".")]:
            del sys.modules[module]


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_every_built_in_states_task_description_baseline_origin(name: str) -> None:
    spec = models.get(name)
    assert (spec.task, spec.baseline) == BUILT_INS[name]
    assert spec.origin == registry.BUILT_IN == "built in"
    assert spec.description and "\n" not in spec.description and spec.description == spec.description.strip()
    assert spec.task in models.TASKS
    assert spec.baseline is None or spec.baseline in models.names()


def test_upsampling_models_are_exactly_those_with_a_scale() -> None:
    for name in models.names():
        spec = models.get(name)
        has_scale = "scale" in spec.config.__dataclass_fields__
        assert (spec.task == "upsampling") == has_scale, name


def test_plugin_model_is_registered_with_its_origin(install: Callable[..., str]) -> None:
    package = install({"theirs": "{package}.model:TheirModule"})
    assert f"{package}.model" not in sys.modules  # lazy: nothing imported before the first names()/get()
    assert "theirs" in models.names()
    spec = models.get("theirs")
    assert spec.module is sys.modules[f"{package}.model"].TheirModule
    assert (spec.origin, spec.task, spec.baseline, spec.description) == (PLUGIN_ORIGIN, "reconstruction", "pca", "a fake plugin model")
    assert spec.module.from_config(spec.config(image_size=8, channels=1, seed=0)).config.image_size == 8
    assert all(models.get(name).origin == "built in" for name in BUILT_INS)


def test_plugins_are_loaded_once(install: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    install({"theirs": "{package}.model:TheirModule"})
    calls = []
    real = registry.importlib.metadata.entry_points
    monkeypatch.setattr(registry.importlib.metadata, "entry_points", lambda **kw: calls.append(kw) or real(**kw))
    models.names()
    models.get("theirs")
    models.names()
    assert calls == [{"group": "genfair.models"}]


def test_reset_plugins_forgets_plugin_models(install: Callable[..., str]) -> None:
    install({"theirs": "{package}.model:TheirModule"})
    assert "theirs" in models.names()
    registry._reset_plugins()
    assert "theirs" not in registry.REGISTRY
    assert set(BUILT_INS) <= set(registry.REGISTRY)


def test_broken_plugin_warns_and_built_ins_still_work(install: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    install({"broken": "{package}.model:TheirModule"}, source="import genfair_no_such_dependency_xyz\n")
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        assert models.names() == tuple(sorted(BUILT_INS))
        assert models.get("vae").module is models.VAE
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert message.startswith(registry.PLUGIN_FAILED.format(entry_point="broken", distribution=f"{DIST_NAME} {DIST_VERSION}"))
    assert "ModuleNotFoundError" in message and "genfair_no_such_dependency_xyz" in message
    assert "\n" not in message


def test_plugin_raising_while_importing_is_skipped(install: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    install({"theirs": "{package}.model:TheirModule"}, source=MODEL_SOURCE + "\nraise RuntimeError('boom')\n")
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        assert "theirs" not in models.names()  # registered, then removed again: the import failed
    assert any("RuntimeError: boom" in r.getMessage() and DIST_NAME in r.getMessage() for r in caplog.records)


def test_entry_point_name_must_be_a_registered_key(install: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    install({"mine": "{package}.model:TheirModule"}, key="theirs")
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        got = models.names()
    assert "mine" not in got and "theirs" not in got  # what the failed plugin registered is rolled back
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert DIST_NAME in record.getMessage() and "registered no model 'mine'" in record.getMessage()


def test_entry_point_must_name_the_registered_class(install: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    install({"theirs": "{package}.model:TheirConfig"})
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        assert "theirs" not in models.names()
    assert any("model 'theirs' is registered to TheirModule" in r.getMessage() for r in caplog.records)


def test_plugin_clashing_with_a_built_in_is_refused(install: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    package = install({"vae": "{package}.model:TheirModule"}, key="vae")
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        spec = models.get("vae")
    assert spec.module is models.VAE and spec.origin == "built in"
    assert f"{package}.model" not in sys.modules  # refused before importing it
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage().startswith(registry.PLUGIN_CLASH.format(entry_point="vae", distribution=f"{DIST_NAME} {DIST_VERSION}"))
    assert "built in" in record.getMessage()


def test_plugin_registering_a_built_in_name_under_its_own_key_is_skipped(install: Callable[..., str], caplog: pytest.LogCaptureFixture) -> None:
    source = MODEL_SOURCE + '\n\n@register("vae", config=TheirConfig)\nclass Impostor(TheirModule):\n    pass\n'
    install({"theirs": "{package}.model:TheirModule"}, source=source)
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        assert "theirs" not in models.names()
        assert models.get("vae").module is models.VAE
    assert any("already registered to VAE" in r.getMessage() for r in caplog.records)


# --- the new register() arguments -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _ToyConfig:
    image_size: int = 8
    channels: int = 1
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class _ScaledConfig:
    image_size: int = 8
    channels: int = 1
    seed: int = 0
    scale: int = 2


class _ToyModule(pl.LightningModule):
    @classmethod
    def from_config(cls, config: object) -> _ToyModule:
        return cls()


@pytest.fixture
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fresh, empty registry (plugins counted as loaded) for one test."""
    fresh: dict = {}
    monkeypatch.setattr(registry, "REGISTRY", fresh)
    monkeypatch.setattr(registry, "_plugins_loaded", True)
    return fresh


def test_register_records_task_description_baseline(empty_registry: dict) -> None:
    registry.register("toy", config=_ScaledConfig, task="upsampling", description="a toy", baseline="bicubic")(_ToyModule)
    spec = registry.get("toy")
    assert (spec.task, spec.description, spec.baseline, spec.origin) == ("upsampling", "a toy", "bicubic", "built in")
    default = registry.ModelSpec(name="toy", module=_ToyModule, config=_ToyConfig)
    assert (default.task, default.description, default.baseline, default.origin) == ("reconstruction", "", None, "built in")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "denoising"}, r"task for model 'toy' must be one of 'reconstruction', 'upsampling', 'generation', got 'denoising'"),
        ({"task": "upsampling"}, r"task='upsampling' but its config _ToyConfig lacks a 'scale' field; use task='reconstruction'"),
        ({"config": _ScaledConfig}, r"task='reconstruction' but its config _ScaledConfig has a 'scale' field; use task='upsampling'"),
        ({"description": "two\nlines"}, r"description for model 'toy' must be one line of text"),
        ({"baseline": "toy"}, r"baseline for model 'toy' must be None or the lowercase registry key of another model, got 'toy'"),
        ({"baseline": "PCA"}, r"baseline for model 'toy' must be None or the lowercase registry key"),
    ],
)
def test_register_rejects_bad_facts(empty_registry: dict, kwargs: dict, match: str) -> None:
    options = {"config": _ToyConfig, **kwargs}
    with pytest.raises(ValueError, match=match):
        registry.register("toy", **options)
    assert registry.names() == ()
