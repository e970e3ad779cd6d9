"""The synthetic Faces95-style generator: config, composition, determinism, cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from genfair.datasets import SyntheticFacesConfig, ensure_synthetic_faces, generate_synthetic_faces, load_manifest
from genfair.datasets import synthetic as syn

TINY = {
    "image_size": 16,
    "images_per_subject": 2,
    "train_lighter_male": 2,
    "train_lighter_female": 1,
    "train_darker_male": 1,
    "train_darker_female": 1,
    "val_subjects_per_group": 1,
    "test_subjects_per_group": 1,
}  # the same as conftest's tiny_config / tiny_faces


def file_digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- config ----------------------------------------------------------------------------------------


def test_default_config_mirrors_faces95():
    config = SyntheticFacesConfig()
    assert config.train_composition() == {
        ("male", "lighter"): 43,
        ("female", "lighter"): 6,
        ("male", "darker"): 12,
        ("female", "darker"): 1,
    }
    assert (config.image_size, config.images_per_subject, config.seed) == (64, 20, 0)
    assert config.n_subjects == 62 + 4 * (1 + 5)
    assert config.n_images == 86 * 20


def test_config_round_trips_through_json():
    config = SyntheticFacesConfig(**TINY)
    stored = json.loads(config.to_json())
    assert stored.pop("generator_version") == syn.GENERATOR_VERSION
    assert SyntheticFacesConfig(**stored) == config
    assert stored == dataclasses.asdict(config)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("image_size", 4, r"image_size must be in \[8, 1024\], got 4"),
        ("images_per_subject", 0, r"images_per_subject must be in \[1, 1000\], got 0"),
        ("seed", -1, r"seed must be in \[0, "),
        ("train_darker_female", -1, r"train_darker_female must be in \[0, 10000\], got -1"),
        ("val_subjects_per_group", -2, r"val_subjects_per_group must be in \[0, 10000\]"),
        ("test_subjects_per_group", 0, r"test_subjects_per_group must be in \[1, 10000\], got 0"),
    ],
)
def test_config_rejects_out_of_range(field, value, match):
    with pytest.raises(ValueError, match=match):
        SyntheticFacesConfig(**{field: value})


@pytest.mark.parametrize("value", [16.0, True, "16"])
def test_config_rejects_non_ints(value):
    with pytest.raises(TypeError, match=r"SyntheticFacesConfig.image_size must be an int, got"):
        SyntheticFacesConfig(image_size=value)


def test_config_needs_a_training_subject():
    zero = {"train_lighter_male": 0, "train_lighter_female": 0, "train_darker_male": 0, "train_darker_female": 0}
    with pytest.raises(ValueError, match=r"needs at least one training subject.*train_lighter_male=1"):
        SyntheticFacesConfig(**zero)


def test_config_is_frozen_and_keyword_only():
    config = SyntheticFacesConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        SyntheticFacesConfig(64)  # type: ignore[misc]


# -- output ----------------------------------------------------------------------------------------


def test_manifest_columns_and_composition(tiny_faces):
    frame = pd.read_csv(tiny_faces)
    assert list(frame.columns) == ["path", "mask_path", "subject", "split", "gender", "skin_tone", "tone"]
    subjects = frame.drop_duplicates("subject")
    counts = subjects.groupby(["split", "gender", "skin_tone"]).size().to_dict()
    assert counts == {
        ("train", "male", "lighter"): 2,
        ("train", "female", "lighter"): 1,
        ("train", "male", "darker"): 1,
        ("train", "female", "darker"): 1,
        **{("val", g, t): 1 for g in ("female", "male") for t in ("lighter", "darker")},
        **{("test", g, t): 1 for g in ("female", "male") for t in ("lighter", "darker")},
    }
    assert frame.groupby("subject").size().eq(2).all()
    assert frame.groupby("subject")["split"].nunique().eq(1).all()
    lighter = subjects.loc[subjects.skin_tone == "lighter", "tone"]
    darker = subjects.loc[subjects.skin_tone == "darker", "tone"]
    assert lighter.between(1, 5).all() and darker.between(6, 10).all()
    assert frame["path"].iloc[0] == f"images/{frame['subject'].iloc[0]}/{frame['subject'].iloc[0]}.1.png"
    assert (frame["mask_path"] == frame["path"].str.replace("images/", "masks/", n=1)).all()


def test_balanced_test_panel_scales_with_config(tmp_path):
    config = SyntheticFacesConfig(**{**TINY, "images_per_subject": 1, "test_subjects_per_group": 3, "val_subjects_per_group": 0})
    frame = pd.read_csv(generate_synthetic_faces(config, tmp_path / "out"))
    test = frame[frame.split == "test"].groupby(["gender", "skin_tone"])["subject"].nunique()
    assert test.to_dict() == {(g, t): 3 for g in ("female", "male") for t in ("darker", "lighter")}
    assert "val" not in set(frame.split)
    assert len(frame) == config.n_images


def test_manifest_validates_and_images_have_the_size(tiny_faces):
    manifest = load_manifest(tiny_faces, attributes=["gender", "skin_tone"])
    with Image.open(manifest.image_path(0)) as image:
        assert image.size == (16, 16) and image.mode == "RGB"
    assert manifest.has_mask
    assert load_manifest(tiny_faces).attributes == ("gender", "skin_tone", "tone")  # mask_path is reserved
    stored = json.loads((tiny_faces.parent / syn.CONFIG_NAME).read_text())
    assert stored == json.loads(SyntheticFacesConfig(**TINY).to_json())


def test_same_seed_gives_identical_bytes(tiny_faces, tmp_path):
    again = generate_synthetic_faces(SyntheticFacesConfig(**TINY), tmp_path / "again")
    assert file_digests(again.parent) == file_digests(tiny_faces.parent)


def test_different_seed_gives_different_faces(tiny_faces, tmp_path):
    other = generate_synthetic_faces(SyntheticFacesConfig(**{**TINY, "seed": 1}), tmp_path / "other")
    ours, theirs = file_digests(tiny_faces.parent), file_digests(other.parent)
    images = [name for name in ours if name.endswith(".png")]
    assert sum(ours[name] != theirs[name] for name in images) == len(images)


def test_images_of_a_subject_vary(tiny_faces):
    frame = pd.read_csv(tiny_faces)
    first, second = (np.asarray(Image.open(tiny_faces.parent / p)) for p in frame.path[:2])
    assert frame.subject[0] == frame.subject[1]
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1.0


def test_darker_faces_are_darker(tmp_path):
    config = SyntheticFacesConfig(
        **{**TINY, "image_size": 32, "images_per_subject": 3, "test_subjects_per_group": 3, "val_subjects_per_group": 0}
    )
    manifest = generate_synthetic_faces(config, tmp_path / "out")
    frame = pd.read_csv(manifest)
    # the middle of the face (below the eyes, beside the nose) is skin in every pose
    luma = [
        np.asarray(Image.open(manifest.parent / p).convert("L"), dtype=float)[16:19, 12:15].mean() for p in frame.path
    ]
    by_group = pd.Series(luma).groupby(frame.skin_tone).mean()
    assert by_group["lighter"] > by_group["darker"] + 60


# -- skin masks ------------------------------------------------------------------------------------


def read_masks(manifest: Path) -> tuple[pd.DataFrame, list[np.ndarray], list[np.ndarray]]:
    """The manifest frame, its images ``(H, W, 3)`` float and masks ``(H, W)`` bool."""
    frame = pd.read_csv(manifest)
    images, masks = [], []
    for path, mask_path in zip(frame.path, frame.mask_path):
        images.append(np.asarray(Image.open(manifest.parent / path), dtype=float))
        with Image.open(manifest.parent / mask_path) as mask:
            assert mask.mode == "L" and mask.size == (images[-1].shape[1], images[-1].shape[0])
            values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        masks.append(values == 255)
    return frame, images, masks


def face_ellipses(config: SyntheticFacesConfig) -> list[np.ndarray]:
    """Per image, in manifest order: the pixels the face ellipse touches, ``(H, W)`` bool (replayed pose)."""
    side = config.image_size * syn._SUPERSAMPLE
    faces = []
    for subject in syn._subjects(config):
        identity = syn._identity(config, subject)
        for number in range(1, config.images_per_subject + 1):
            rng = syn._image_rng(config, subject, number)
            center, unit, angle = syn._pose(rng, side, identity["face_height"])
            face = Image.new("L", (side, side), 0)
            canvas = Image.new("RGB", (side, side))
            pen = syn._Pen(ImageDraw.Draw(canvas), center, unit, angle, mask=ImageDraw.Draw(face))
            pen.ellipse((0.0, 0.0), (identity["aspect"], 1.0), (0, 0, 0), skin=True)
            faces.append(np.asarray(face.reduce(syn._SUPERSAMPLE)) > 0)
    return faces


@pytest.fixture(scope="module")
def faces32(tmp_path_factory) -> tuple[SyntheticFacesConfig, Path]:
    config = SyntheticFacesConfig(**{**TINY, "image_size": 32, "images_per_subject": 3, "val_subjects_per_group": 0})
    return config, generate_synthetic_faces(config, tmp_path_factory.mktemp("faces32") / "out")


@pytest.mark.parametrize("image_size", [8, 16])
def test_every_mask_is_non_empty_even_at_the_smallest_size(tmp_path, image_size):
    config = SyntheticFacesConfig(**{**TINY, "image_size": image_size})
    _, _, masks = read_masks(generate_synthetic_faces(config, tmp_path / "out"))
    assert len(masks) == config.n_images
    assert min(int(mask.sum()) for mask in masks) >= 1


def test_masks_lie_inside_the_face_and_leave_out_its_features(faces32):
    config, manifest = faces32
    _, _, masks = read_masks(manifest)
    faces = face_ellipses(config)
    assert len(faces) == len(masks)
    for mask, face in zip(masks, faces):
        assert not (mask & ~face).any()  # inside the face ellipse
        assert mask.sum() < 0.85 * face.sum()  # eyes, brows, mouth and hair cut out
        assert mask.sum() > 0.3 * face.sum()


def test_mean_colour_under_the_mask_is_the_subjects_tone(faces32):
    config, manifest = faces32
    frame, images, masks = read_masks(manifest)
    tones = np.array(syn.MONK_TONES_RGB, dtype=float)[frame.tone.to_numpy() - 1]
    means = np.stack([image[mask].mean(axis=0) for image, mask in zip(images, masks)])
    ratio = means / tones  # lighting scales each shot by about 0.78..1.15, with a gradient
    assert ratio.min() > 0.6 and ratio.max() < 1.4
    # a box around the mask (skin, eyes, hair, background) strays much further from the tone
    boxes = []
    for image, mask in zip(images, masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append(image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].reshape(-1, 3).mean(axis=0))
    assert np.abs(means - tones).mean() < 0.75 * np.abs(np.stack(boxes) - tones).mean()


def test_unlit_mask_colour_is_within_the_skin_shading(tmp_path, monkeypatch):
    """Without lighting and noise, only the nose and jaw shading (and edge pixels) move the mean off the tone."""
    monkeypatch.setattr(syn, "_light", lambda image, rng: image)
    config = SyntheticFacesConfig(**{**TINY, "image_size": 32, "images_per_subject": 2, "val_subjects_per_group": 0})
    frame, images, masks = read_masks(generate_synthetic_faces(config, tmp_path / "out"))
    tones = np.array(syn.MONK_TONES_RGB, dtype=float)[frame.tone.to_numpy() - 1]
    means = np.stack([image[mask].mean(axis=0) for image, mask in zip(images, masks)])
    assert (np.abs(means - tones) <= 0.12 * tones + 4).all()


def test_generator_version_is_in_the_cache_key(tiny_config, monkeypatch):
    before = syn.cache_key(tiny_config)
    assert syn.GENERATOR_VERSION >= 2  # 2 added the masks: caches without them are not reused
    monkeypatch.setattr(syn, "GENERATOR_VERSION", syn.GENERATOR_VERSION - 1)
    assert syn.cache_key(tiny_config) != before


def test_generate_refuses_a_non_empty_folder(tmp_path, tiny_config):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"out: output folder for synthetic faces is not empty; fix: pass a new"):
        generate_synthetic_faces(tiny_config, tmp_path / "out")


# -- cache -----------------------------------------------------------------------------------------


def test_cache_key_is_a_short_hash_of_the_config_json(tiny_config):
    assert syn.cache_key(tiny_config) == hashlib.sha256(tiny_config.to_json().encode()).hexdigest()[:12]
    assert syn.cache_key(tiny_config) != syn.cache_key(dataclasses.replace(tiny_config, seed=1))


def test_ensure_generates_once_then_reuses(tmp_path, tiny_config, monkeypatch):
    manifest = ensure_synthetic_faces(tiny_config, tmp_path / "cache")
    assert manifest == tmp_path / "cache" / f"faces-{syn.cache_key(tiny_config)}" / "manifest.csv"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [manifest.parent.name]  # no temp left

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(syn, "generate_synthetic_faces", fail)
    assert ensure_synthetic_faces(tiny_config, tmp_path / "cache") == manifest


def test_ensure_keys_by_config(tmp_path, tiny_config):
    first = ensure_synthetic_faces(tiny_config, tmp_path)
    second = ensure_synthetic_faces(dataclasses.replace(tiny_config, seed=7), tmp_path)
    assert first.parent != second.parent
    assert first.read_bytes() != second.read_bytes() or file_digests(first.parent) != file_digests(second.parent)


@pytest.mark.parametrize("damage", ["truncate_manifest", "other_config", "no_config"])
def test_ensure_replaces_an_incomplete_folder(tmp_path, tiny_config, damage):
    manifest = ensure_synthetic_faces(tiny_config, tmp_path)
    expected = file_digests(manifest.parent)
    if damage == "truncate_manifest":
        manifest.write_text("\n".join(manifest.read_text().splitlines()[:3]) + "\n")
    elif damage == "other_config":
        (manifest.parent / syn.CONFIG_NAME).write_text(dataclasses.replace(tiny_config, seed=9).to_json())
    else:
        (manifest.parent / syn.CONFIG_NAME).unlink()
    assert ensure_synthetic_faces(tiny_config, tmp_path) == manifest
    assert file_digests(manifest.parent) == expected
    assert [p.name for p in tmp_path.iterdir()] == [manifest.parent.name]
