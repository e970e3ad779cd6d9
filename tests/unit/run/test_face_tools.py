"""The run's face tools (dlib) on real London photos: where faces are, their embeddings, the
landmark skin masks, and the one-line error when the ``faces`` extra is missing.

The embeddings are checked against dlib run independently here (its own detector, predictor and
recogniser on PIL-resized images), not against genfair's own numbers."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from genfair.audit.identity import SAME_PERSON_DISTANCE
from genfair.audit.panel import score_batch
from genfair.audit.run import face_tools as ft
from genfair.audit.run.config import RunConfig
from genfair.audit.skin import central_face_mask

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="the faces extra is not installed: pip install 'genfair[faces]'")
PEOPLE = 6


@pytest.fixture(scope="module")
def london(london_faces: Path) -> tuple[pd.DataFrame, torch.Tensor]:
    """The neutral frontal photo of the first PEOPLE London people: rows and (N, 3, 64, 64) images."""
    frame = pd.read_csv(london_faces, dtype=str, keep_default_na=False)
    rows = frame[frame["view"] == "neutral_front"].head(PEOPLE).reset_index(drop=True)
    arrays = [np.asarray(Image.open(london_faces.parent / path).convert("RGB")) for path in rows["path"]]
    return rows, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def faces(london: tuple[pd.DataFrame, torch.Tensor]) -> ft.Faces:
    return ft.locate_faces(london[1])


def _independent_embeddings(paths: list[Path]) -> np.ndarray:
    """dlib's own pipeline: PIL bicubic to 150 px, detector (whole image if none), 5 points, recogniser."""
    import dlib

    folder = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]) / "models"
    detector = dlib.get_frontal_face_detector()
    five = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    recogniser = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    vectors = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB").resize((150, 150), Image.Resampling.BICUBIC))
        found = detector(image, 0)
        box = found[0] if len(found) else dlib.rectangle(0, 0, 149, 149)
        vectors.append(np.asarray(recogniser.compute_face_descriptor(image, five(image, box))))
    return np.array(vectors)


@needs_dlib
def test_the_detector_finds_every_frontal_london_face(faces: ft.Faces) -> None:
    assert faces.found.all()
    assert faces.landmarks.shape == (PEOPLE, 68, 2) and np.isfinite(faces.landmarks).all()
    # the landmarks are in the 64 x 64 image's own frame
    assert (faces.landmarks > -2).all() and (faces.landmarks < 66).all()


@needs_dlib
def test_an_identity_model_has_zero_drift_and_loses_no_one(london: tuple[pd.DataFrame, torch.Tensor]) -> None:
    _, images = london
    read = ft.read_batch(images, images.clone(), identity=True, landmark_masks=True)
    scores = score_batch(images, images.clone(), masks=read.pop("masks"), **read)
    np.testing.assert_array_equal(scores["identity_drift"], np.zeros(PEOPLE))
    assert scores["identity_lost"].sum() == 0
    assert list(scores["skin_mask"]) == ["landmarks"] * PEOPLE and scores["face_found"].all()


@needs_dlib
def test_another_persons_photo_is_no_longer_recognised(london: tuple[pd.DataFrame, torch.Tensor],
                                                       london_faces: Path) -> None:
    rows, images = london
    rolled = images.roll(1, dims=0)  # each output is the previous person's photo
    faces = ft.locate_faces(images, landmarks=False)
    ours = (ft.face_embeddings(rolled, faces) - ft.face_embeddings(images, faces)).norm(dim=1).numpy()
    theirs = _independent_embeddings([london_faces.parent / path for path in rows["path"]])
    independent = np.linalg.norm(np.roll(theirs, 1, axis=0) - theirs, axis=1)
    assert (independent >= SAME_PERSON_DISTANCE).mean() >= 0.8  # the oracle: dlib says they are other people
    assert (ours >= SAME_PERSON_DISTANCE).mean() >= 0.8
    assert ((ours >= SAME_PERSON_DISTANCE) == (independent >= SAME_PERSON_DISTANCE)).mean() >= 0.8
    assert np.median(np.abs(ours - independent)) < 0.05  # the same distances up to resizing and alignment
    # each person's own photo, embedded by genfair, is close to dlib's own embedding of it
    own = ft.face_embeddings(images, faces).numpy()
    assert np.median(np.linalg.norm(own - theirs, axis=1)) < 0.1


@needs_dlib
def test_the_landmark_mask_covers_cheeks_not_eyes_inside_the_image(faces: ft.Faces) -> None:
    masks, kinds = ft.skin_masks(faces)
    assert masks.shape == (PEOPLE, 1, 64, 64) and kinds == ["landmarks"] * PEOPLE
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    def at(mask: torch.Tensor, xy: np.ndarray) -> float:
        x, y = np.round(xy).astype(int)
        return float(mask[y, x])

    for mask, points in zip(masks[:, 0], faces.landmarks, strict=True):
        for eye in (points[36:42], points[42:48]):
            assert at(mask, eye.mean(axis=0)) == 0.0  # the eye's centre
        assert at(mask, points[60:68].mean(axis=0)) == 0.0  # the mouth
        for cheek in ((1, 4, 48, 31), (15, 12, 54, 35)):  # jaw, mouth corner and nostril of each side
            assert at(mask, points[list(cheek)].mean(axis=0)) == 1.0
        assert at(mask, (points[27] + points[30]) / 2) == 1.0  # the nose bridge
        assert at(mask, points[17:27].mean(axis=0) + 0.3 * (points[27] - points[33])) == 1.0  # the forehead
        assert 0.05 < float(mask.mean()) < 0.5


def test_a_landmark_mask_is_cut_at_the_image_border() -> None:
    # a synthetic face of 68 points whose polygons stick out of a 16 x 16 image on the left
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-10, 12, 68), rng.uniform(2, 14, 68)])
    mask = ft.landmark_skin_mask(points, (16, 16))
    assert mask.shape == (1, 16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"landmarks must be a finite \(68, 2\) array of x, y pixel coordinates, "
                                         r"got \(5, 2\)"):
        ft.landmark_skin_mask(np.zeros((5, 2)), (16, 16))
    with pytest.raises(ValueError, match=r"finite \(68, 2\) array"):
        ft.landmark_skin_mask(np.full((68, 2), np.nan), (16, 16))


@needs_dlib
def test_no_face_found_falls_back_to_the_whole_image_and_the_central_mask() -> None:
    grey = torch.full((2, 3, 32, 32), 0.5)
    faces = ft.locate_faces(grey)
    assert not faces.found.any() and np.isnan(faces.landmarks).all()
    masks, kinds = ft.skin_masks(faces)
    assert kinds == ["central", "central"]
    assert torch.equal(masks[0], central_face_mask(32)) and torch.equal(masks[1], central_face_mask(32))
    read = ft.read_batch(grey, grey, identity=True, landmark_masks=True)
    assert read["mask_kinds"] == ["central", "central"] and not read["face_found"].any()
    assert read["embeddings"][0].shape == (2, 128)  # embedded on the whole image all the same


@needs_dlib
def test_the_manifests_masks_win_and_grey_images_get_no_skin_masks(london: tuple[pd.DataFrame, torch.Tensor]) -> None:
    _, images = london
    own = torch.ones(PEOPLE, 1, 64, 64)
    read = ft.read_batch(images, images, identity=False, landmark_masks=True, masks=own)
    assert read["masks"] is own and read["mask_kinds"] == ["manifest"] * PEOPLE and "embeddings" not in read
    grey = images.mean(dim=1, keepdim=True)
    read = ft.read_batch(grey, grey, identity=True, landmark_masks=True)
    assert "masks" not in read and read["embeddings"][0].shape == (PEOPLE, 128)
    assert read["face_found"].sum() >= PEOPLE - 1  # the detector reads grey photos too


@needs_dlib
def test_embeddings_need_the_faces_of_the_same_images(faces: ft.Faces) -> None:
    with pytest.raises(ValueError, match=r"do not match the located faces: 6 of size \(64, 64\)"):
        ft.face_embeddings(torch.zeros(2, 3, 64, 64), faces)
    with pytest.raises(ValueError, match=r"images must be \(N, 1 or 3, H, W\) floats in \[0, 1\], got \(2, 4, 8, 8\)"):
        ft.locate_faces(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="skin_masks needs the 68 landmarks"):
        ft.skin_masks(ft.locate_faces(torch.zeros(1, 3, 8, 8), landmarks=False))


@needs_dlib
def test_the_models_load_once_per_process() -> None:
    assert ft._model("recogniser") is ft._model("recogniser")
    assert ft._model("five_point") is ft._model("five_point")


def test_without_dlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(ft.MissingFaceTools, match=r"no module dlib; pip install 'genfair\[faces\]'"):
        ft.require_face_tools()
    from genfair.audit.run.runner import _check_face_tools

    manifest = types.SimpleNamespace(has_mask=False)
    with pytest.raises(ValueError, match=r"^--identity: genfair's face tools need dlib .*pip install 'genfair\[faces\]'$"):
        _check_face_tools(RunConfig(identity=True), manifest)
    with pytest.raises(ValueError, match=r"^--skin-mask landmarks: .*pip install 'genfair\[faces\]'$"):
        _check_face_tools(RunConfig(skin_mask="landmarks"), manifest)


def test_without_the_model_files_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "dlib", types.ModuleType("dlib"))
    monkeypatch.setattr(ft.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ft.MissingFaceTools, match=r"no face-recognition-models package; pip install 'genfair\[faces\]'"):
        ft.require_face_tools()
    spec = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    (tmp_path / "models").mkdir()
    monkeypatch.setattr(ft.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ft.MissingFaceTools, match=r"models lacks shape_predictor_5_face_landmarks.dat, .*genfair\[faces\]"):
        ft.require_face_tools()


def test_the_run_options_for_face_tools() -> None:
    assert RunConfig(identity=True).landmark_masks and RunConfig(identity=True).face_tools
    assert not RunConfig(identity=True, skin_mask="central").landmark_masks
    assert RunConfig(skin_mask="landmarks").face_tools and not RunConfig().face_tools
    assert not RunConfig(identity=True, channels=1).landmark_masks
    with pytest.raises(ValueError, match="--skin-mask must be one of central, landmarks, got 'ellipse'"):
        RunConfig(skin_mask="ellipse")
    with pytest.raises(ValueError, match=r"--skin-mask landmarks applies to .* colour images.*drop --skin-mask"):
        RunConfig(skin_mask="landmarks", channels=1)
    with pytest.raises(ValueError, match="--primary-metric must be one of .*got 'identity_drift'"):
        RunConfig(primary_metric="identity_drift")
    assert RunConfig(identity=True, primary_metric="identity_lost").primary_metric == "identity_lost"
