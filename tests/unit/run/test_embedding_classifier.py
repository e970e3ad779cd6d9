"""The embedding attribute classifier (``--classifier embedding``): balanced weighting checked
against scikit-learn's own ``class_weight="balanced"``, and gender read from real London photos of
people it never trained on."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from genfair.audit.run import embedding_classifier as ec

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="the faces extra is not installed: pip install 'genfair[faces]'")


@pytest.fixture
def fake_embeddings(monkeypatch: pytest.MonkeyPatch):
    """Replace dlib by a lookup: image i (its pixel value encodes i) -> row i of ``vectors``."""
    def install(vectors: np.ndarray) -> torch.Tensor:
        def embed(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            index = images[:, 0, 0, 0].round().long().numpy()
            return vectors[index], np.ones(len(index), dtype=bool)

        monkeypatch.setattr(ec, "embed", embed)
        return torch.arange(len(vectors), dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()

    return install


def test_every_group_weighs_the_same_as_sklearns_balanced_class_weight(fake_embeddings) -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(90, dtype=np.int64), np.ones(10, dtype=np.int64)]  # 90 : 10
    vectors = rng.normal(size=(100, 5)) + labels[:, None] * 0.8
    fitted = ec.fit_embedding_classifier(vectors, labels[:, None], labels, attributes=("gender",), face_found=1.0)
    oracle = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=0).fit(
        StandardScaler().fit_transform(vectors), labels)
    model = fitted.pipelines[0][-1]
    np.testing.assert_allclose(model.coef_, oracle.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.intercept_, oracle.intercept_, rtol=1e-4, atol=1e-6)
    unweighted = LogisticRegression(max_iter=2000).fit(StandardScaler().fit_transform(vectors), labels)
    assert model.intercept_[0] > unweighted.intercept_[0], "the minority class is no longer outweighed"
    images = fake_embeddings(vectors)
    np.testing.assert_array_equal(fitted.classify(images)[:, 0].numpy(), fitted.pipelines[0].predict(vectors))


def test_two_attributes_give_two_columns_and_a_single_class_a_constant(fake_embeddings) -> None:
    rng = np.random.default_rng(1)
    codes = np.stack([np.tile([0, 1], 20), np.zeros(40, dtype=np.int64)], axis=1)
    vectors = rng.normal(size=(40, 3)) + codes[:, :1] * 3.0
    fitted = ec.fit_embedding_classifier(vectors, codes, codes[:, 0], attributes=("gender", "age"), face_found=0.75)
    labels = fitted.classify(fake_embeddings(vectors))
    assert labels.shape == (40, 2) and labels.dtype == torch.long
    assert (labels[:, 1] == 0).all() and (labels[:, 0].numpy() == codes[:, 0]).mean() > 0.9
    assert fitted.face_found == 0.75
    assert fitted.classify(torch.zeros(0, 3, 2, 2)).shape == (0, 2)


def test_save_and_load_round_trip_and_refuse_another_pickle(fake_embeddings, tmp_path: Path) -> None:
    codes = np.tile([0, 1], 10)[:, None]
    vectors = np.random.default_rng(2).normal(size=(20, 4)) + codes * 2.0
    fitted = ec.fit_embedding_classifier(vectors, codes, codes[:, 0], attributes=("gender",), face_found=1.0)
    fitted.save(tmp_path / ec.EMBEDDING_FILE)
    loaded = ec.EmbeddingClassifier.load(tmp_path / ec.EMBEDDING_FILE)
    images = fake_embeddings(vectors)
    assert torch.equal(loaded.classify(images), fitted.classify(images))
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"not": "a classifier"}))
    with pytest.raises(ValueError, match=r"other.pkl: not an embedding classifier \(got dict\)"):
        ec.EmbeddingClassifier.load(tmp_path / "other.pkl")


def test_shapes_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one training image"):
        ec.fit_embedding_classifier(np.zeros((0, 128)), np.zeros((0, 1)), np.zeros(0), attributes=("gender",),
                                    face_found=0.0)
    with pytest.raises(ValueError, match=r"do not match 4 images of 1 attributes"):
        ec.fit_embedding_classifier(np.zeros((4, 128)), np.zeros((3, 1)), np.zeros(4), attributes=("gender",),
                                    face_found=0.0)


@needs_dlib
def test_it_reads_gender_from_real_photos_of_people_it_never_saw(london_faces: Path) -> None:
    frame = pd.read_csv(london_faces, dtype=str, keep_default_na=False)
    people = frame[frame["view"] == "neutral_front"]
    # 12 women and 12 men to learn from, 6 and 6 others to be read
    by_gender = {g: people[people["gender"] == g] for g in ("female", "male")}
    train = pd.concat([rows.head(12) for rows in by_gender.values()])
    test = pd.concat([rows.iloc[12:18] for rows in by_gender.values()])
    assert set(train["subject"]).isdisjoint(test["subject"])

    def load(rows: pd.DataFrame) -> torch.Tensor:
        arrays = [np.asarray(Image.open(london_faces.parent / path).convert("RGB")) for path in rows["path"]]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0

    codes = (train["gender"] == "male").to_numpy().astype(np.int64)
    embeddings, found = ec.embed(load(train))
    assert embeddings.shape == (24, 128) and found.all()  # frontal real photos: dlib finds every face
    fitted = ec.fit_embedding_classifier(embeddings, codes[:, None], codes, attributes=("gender",),
                                         face_found=found.mean())
    read = fitted.classify(load(test))[:, 0].numpy()
    truth = (test["gender"] == "male").to_numpy().astype(np.int64)
    # dlib's embedding separates gender on real faces, from 24 photos of other people
    assert (read == truth).mean() >= 10 / 12
