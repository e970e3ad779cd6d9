"""scikit-learn's digits as a cached image dataset: files, manifest, stratified split, cache, loader."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genfair.datasets import DigitsConfig, ensure_digits, generate_digits, load_manifest
from genfair.datasets import digits as dg


def file_digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def digits8(tmp_path_factory) -> Path:
    """The manifest of the real digits at 8x8 (seed 0), built once through the cache."""
    return ensure_digits(DigitsConfig(image_size=8, seed=0), tmp_path_factory.mktemp("digits-cache"))


@pytest.fixture
def few_digits(monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """Replace scikit-learn's 1,797 digits by 40 random ones (4 per digit), for fast variants."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    labels = np.tile(np.arange(10), 4)
    monkeypatch.setattr(dg, "_load_digits", lambda: (images, labels))
    return images, labels


# -- config ----------------------------------------------------------------------------------------


def test_config_defaults_and_json():
    config = DigitsConfig()
    assert (config.image_size, config.seed, config.n_images) == (32, 0, 1797)
    stored = json.loads(config.to_json())
    assert stored.pop("generator_version") == dg.DIGITS_VERSION
    assert stored == dataclasses.asdict(config)
    assert dg.cache_key(config) == hashlib.sha256(config.to_json().encode()).hexdigest()[:12]
    assert dg.cache_key(config) != dg.cache_key(dataclasses.replace(config, seed=1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image_size": 4}, ValueError, r"^DigitsConfig\.image_size must be in \[8, 1024\], got 4$"),
        ({"seed": -1}, ValueError, r"^DigitsConfig\.seed must be in \[0, "),
        ({"image_size": 16.0}, TypeError, r"^DigitsConfig\.image_size must be an int, got 16\.0$"),
        ({"seed": True}, TypeError, r"^DigitsConfig\.seed must be an int, got True$"),
    ],
)
def test_config_rejects_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        DigitsConfig(**kwargs)


# -- the real set at 8x8 ---------------------------------------------------------------------------


def test_manifest_columns_rows_and_subjects(digits8):
    frame = pd.read_csv(digits8)
    assert list(frame.columns) == ["path", "subject", "split", "digit"]
    assert len(frame) == dg.N_DIGITS
    assert frame["subject"].is_unique  # every image is its own subject
    assert frame["path"].tolist()[:2] == ["images/0/d0000.png", "images/1/d0001.png"]
    assert (frame["path"] == "images/" + frame["digit"].astype(str) + "/" + frame["subject"] + ".png").all()
    assert frame["digit"].value_counts().sort_index().index.tolist() == list(range(10))
    manifest = load_manifest(digits8)
    assert manifest.attributes == ("digit",) and manifest.has_split and not manifest.has_mask


def test_images_are_the_digits_in_grey(digits8):
    from sklearn.datasets import load_digits

    frame = pd.read_csv(digits8)
    bunch = load_digits()
    for row in (0, 1, 1000, 1796):
        with Image.open(digits8.parent / frame["path"][row]) as image:
            assert image.mode == "L" and image.size == (8, 8)
            pixels = np.asarray(image)
        assert np.array_equal(pixels, np.rint(bunch.images[row] * 255 / 16).astype(np.uint8))
        assert frame["digit"][row] == bunch.target[row]


def test_split_is_stratified_by_digit_and_disjoint(digits8):
    frame = pd.read_csv(digits8)
    assert frame["split"].value_counts().to_dict() == {"train": 1258, "test": 359, "val": 180}  # ~70/10/20
    counts = frame.groupby(["digit", "split"]).size().unstack()
    per_digit = counts.sum(axis=1)
    assert (abs(counts["test"] - per_digit * dg.TEST_FRACTION) < 1).all()
    assert (abs(counts["val"] - per_digit * dg.VAL_FRACTION) < 1).all()
    parts = [set(frame.loc[frame.split == s, "subject"]) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == len(frame)




def test_ensure_reuses_the_cache(digits8, monkeypatch):
    config = DigitsConfig(image_size=8, seed=0)
    assert digits8.parent.name == f"digits-{dg.cache_key(config)}"
    assert [p.name for p in digits8.parent.parent.iterdir()] == [digits8.parent.name]  # no temp left

    def fail(*args, **kwargs):
        raise AssertionError("rewrote cached digits")

    monkeypatch.setattr(dg, "generate_digits", fail)
    assert ensure_digits(config, digits8.parent.parent) == digits8


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
def test_datamodule_serves_grey_digits_as_rgb(digits8):
    from genfair.datasets import FacesDataModule

    module = FacesDataModule(load_manifest(digits8), image_size=8, channels=3, batch_size=16, lowres_scale=2)
    assert module.attribute_classes == {"digit": tuple(str(d) for d in range(10))}
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"image", "index", "labels", "lowres"}
    assert batch["image"].shape == (16, 3, 8, 8) and batch["lowres"].shape == (16, 3, 4, 4)
    assert torch_equal_channels(batch["image"])
    digits = module.manifest.frame["digit"].to_numpy()[batch["index"].numpy()]
    assert batch["labels"][:, 0].tolist() == [int(d) for d in digits]
    assert len(module.split_frame("test")) == 359


def torch_equal_channels(images) -> bool:
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


# -- variants on a few fake digits -----------------------------------------------------------------


def test_upscales_with_bicubic(few_digits, tmp_path):
    images, labels = few_digits
    manifest = generate_digits(DigitsConfig(image_size=16), tmp_path / "out")
    frame = pd.read_csv(manifest)
    # 4 subjects per digit: every digit gets a test subject (10, not round(40 * 0.2) = 8)
    assert len(frame) == 40 and frame["split"].value_counts().to_dict() == {"train": 26, "test": 10, "val": 4}
    assert frame[frame["split"] == "test"]["digit"].nunique() == 10
    with Image.open(manifest.parent / frame["path"][3]) as image:
        assert image.mode == "L" and image.size == (16, 16)
        expected = Image.fromarray(images[3], "L").resize((16, 16), Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_same_seed_gives_identical_bytes(few_digits, tmp_path):
    first = generate_digits(DigitsConfig(image_size=16, seed=3), tmp_path / "a")
    again = generate_digits(DigitsConfig(image_size=16, seed=3), tmp_path / "b")
    assert file_digests(first.parent) == file_digests(again.parent)
    assert len(file_digests(first.parent)) == 40 + 2  # images, manifest, config


def test_seed_changes_the_split_not_the_images(few_digits, tmp_path):
    first = generate_digits(DigitsConfig(image_size=8, seed=0), tmp_path / "a")
    second = generate_digits(DigitsConfig(image_size=8, seed=1), tmp_path / "b")
    a, b = pd.read_csv(first), pd.read_csv(second)
    assert not a["split"].equals(b["split"])
    assert a.drop(columns="split").equals(b.drop(columns="split"))
    digests_a, digests_b = file_digests(first.parent), file_digests(second.parent)
    assert all(digests_a[name] == digests_b[name] for name in digests_a if name.endswith(".png"))
    for frame in (a, b):
        assert (frame.groupby("digit")["split"].value_counts().unstack()["train"] >= 2).all()


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"out: output folder for digits is not empty; fix: pass a new or empty folder"):
        generate_digits(DigitsConfig(image_size=8), tmp_path / "out")


def test_missing_scikit_learn_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=rf"^{dg.ERR_NO_SKLEARN} .*; fix: pip install scikit-learn"):
        generate_digits(DigitsConfig(image_size=8), tmp_path / "out")
