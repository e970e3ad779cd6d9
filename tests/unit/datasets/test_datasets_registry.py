"""The dataset registry: keys, lookup errors, the faces builder."""

from __future__ import annotations

from pathlib import Path

import pytest

import genfair.datasets as datasets
from genfair.datasets import DatasetSpec, DigitsConfig, SyntheticFacesConfig
from genfair.datasets import registry as reg


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that tests may register into."""
    monkeypatch.setattr(reg, "REGISTRY", dict(reg.REGISTRY))
    return reg.REGISTRY


def test_faces_and_digits_are_registered():
    assert datasets.names() == ("cosmo", "digits", "faces")
    assert datasets.get("faces") is datasets.REGISTRY["faces"]
    assert datasets.get("digits") is datasets.REGISTRY["digits"]


def test_unknown_key_lists_keys_and_suggests():
    with pytest.raises(ValueError, match=r"^unknown dataset 'face'; valid keys: 'cosmo', 'digits', 'faces'; did you mean 'faces'\?$"):
        datasets.get("face")


def test_unknown_key_without_a_close_match():
    with pytest.raises(ValueError, match=r"^unknown dataset 'mnist'; valid keys: 'cosmo', 'digits', 'faces'$"):
        datasets.get("mnist")


def test_faces_builder_calls_the_cached_generator(monkeypatch, tmp_path):
    calls = []

    def fake_ensure(config, cache_dir):
        calls.append((config, cache_dir))
        return Path(cache_dir) / "faces-x" / "manifest.csv"

    monkeypatch.setattr(reg, "ensure_synthetic_faces", fake_ensure)
    spec = datasets.get("faces")(cache_dir=tmp_path, image_size=32, seed=3)
    assert spec == DatasetSpec(
        name="faces", manifest_path=tmp_path / "faces-x" / "manifest.csv", attributes=("gender", "skin_tone")
    )
    assert calls == [(SyntheticFacesConfig(image_size=32, seed=3), tmp_path)]


def test_digits_builder_calls_the_cached_writer(monkeypatch, tmp_path):
    calls = []

    def fake_ensure(config, cache_dir):
        calls.append((config, cache_dir))
        return Path(cache_dir) / "digits-x" / "manifest.csv"

    monkeypatch.setattr(reg, "ensure_digits", fake_ensure)
    spec = datasets.get("digits")(cache_dir=tmp_path, image_size=16, seed=2)
    assert spec == DatasetSpec(name="digits", manifest_path=tmp_path / "digits-x" / "manifest.csv", attributes=("digit",))
    assert calls == [(DigitsConfig(image_size=16, seed=2), tmp_path)]


def test_register_adds_a_builder(scratch_registry):
    @reg.register("toy.v2")
    def toy(*, cache_dir, image_size, seed):
        return DatasetSpec(name="toy.v2", manifest_path=cache_dir / "m.csv", attributes=())

    assert reg.get("toy.v2") is toy
    assert "toy.v2" in reg.names()


@pytest.mark.parametrize("key", ["Faces", "", "two words", 3])
def test_register_rejects_bad_keys(scratch_registry, key):
    with pytest.raises(ValueError, match=r"dataset key must be lowercase letters, digits"):
        reg.register(key)


def test_register_rejects_a_taken_key(scratch_registry):
    with pytest.raises(ValueError, match=r"dataset 'faces' is already registered; pick a new key \(e\.g\. 'faces\.v2'\)"):
        reg.register("faces")
