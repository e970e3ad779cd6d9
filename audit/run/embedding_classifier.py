"""The embedding attribute classifier (``audit run --classifier embedding``).

dlib's face recogniser turns each image into a 128-D embedding
(:func:`~genfair.audit.run.face_tools.face_embeddings`); per attribute a logistic regression
(scikit-learn, on standardised embeddings) reads the attribute from it. It trains on every image
of the balanced classifier set once, each weighted inverse to its intersectional group's image
count, so every group weighs the same, as the CNN's balanced draws do.

An image costs about 0.12 s on one core (detection and embedding), so this instrument is slower than the CNN
(docs/benchmarks.md gives both on real photos); it needs the ``faces`` extra. Where dlib finds no
face (drawings, synthetic cartoons), the whole image is read as the face: the classifier still
answers, and its validity on held-out originals says whether it can be trusted.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .face_tools import face_embeddings, locate_faces

__all__ = ["EMBEDDING_FILE", "EmbeddingClassifier", "embed", "fit_embedding_classifier"]

#: The fitted classifier's file in the run's folder (and the run's ``classifier/`` artifacts).
EMBEDDING_FILE = "classifier.pkl"
#: Images embedded per dlib call.
EMBED_BATCH = 64


def embed(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """dlib's face embedding of each image, and whether a face was found in it.

    Each image is aligned at the largest face dlib finds in it (else the whole image), in chunks
    of :data:`EMBED_BATCH`.

    Args:
        images: ``(N, C, H, W)`` float in [0, 1].

    Returns:
        ``(N, 128)`` float64 embeddings and ``(N,)`` bool ``face_found``.
    """
    embeddings, found = [np.zeros((0, 128))], [np.zeros(0, dtype=bool)]
    for chunk in images.split(EMBED_BATCH):
        faces = locate_faces(chunk, landmarks=False)
        embeddings.append(face_embeddings(chunk, faces).numpy())
        found.append(faces.found)
    return np.concatenate(embeddings), np.concatenate(found)


@dataclass(frozen=True)
class EmbeddingClassifier:
    """One fitted scikit-learn pipeline per attribute, over dlib embeddings.

    Attributes:
        attributes: the attributes, in the order of :meth:`classify`'s columns.
        pipelines: ``StandardScaler -> LogisticRegression`` for each attribute (a constant
            predictor where the training set holds one class only), predicting class codes.
        face_found: the share of training images in which dlib found a face.
    """

    attributes: tuple[str, ...]
    pipelines: tuple[Pipeline | DummyClassifier, ...]
    face_found: float

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """The most likely class code of each attribute: ``(N, C, H, W)`` in [0, 1] -> ``(N, A)`` long."""
        embeddings, _ = embed(images)
        if not len(embeddings):
            return torch.zeros(0, len(self.attributes), dtype=torch.long)
        codes = np.stack([pipeline.predict(embeddings) for pipeline in self.pipelines], axis=1)
        return torch.from_numpy(codes.astype(np.int64))

    def save(self, path: Path) -> None:
        """Pickle to ``path`` (what :meth:`load` reads)."""
        path.write_bytes(pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> EmbeddingClassifier:
        """The classifier :meth:`save` wrote (a pickle: load only files you trust)."""
        loaded = pickle.loads(path.read_bytes())
        if not isinstance(loaded, EmbeddingClassifier):
            raise ValueError(f"{path}: not an embedding classifier (got {type(loaded).__name__})")
        return loaded


def fit_embedding_classifier(embeddings: np.ndarray, codes: np.ndarray, groups: np.ndarray, *,
                             attributes: tuple[str, ...], face_found: float, seed: int = 0) -> EmbeddingClassifier:
    """Fit the embedding classifier on labelled embeddings, every intersectional group weighted equally.

    Args:
        embeddings: ``(N, 128)`` float, the training images' :func:`embed` (each image once).
        codes: ``(N, A)`` int, each image's class code per attribute (columns follow ``attributes``).
        groups: ``(N,)`` int, each image's intersectional group (the weights: ``N / (G * count)``,
            which is scikit-learn's ``class_weight="balanced"`` when the group is the class).
        attributes: the attribute names.
        face_found: the share of the training images in which dlib found a face (reported).
        seed: the logistic regressions' ``random_state``.

    Raises:
        ValueError: no embeddings, or shapes that do not agree.
    """
    if not len(embeddings):
        raise ValueError("the embedding classifier needs at least one training image")
    if codes.shape != (len(embeddings), len(attributes)) or groups.shape != (len(embeddings),):
        raise ValueError(f"codes {codes.shape} and groups {groups.shape} do not match {len(embeddings)} images of "
                         f"{len(attributes)} attributes")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weights = len(groups) / (len(counts) * counts[inverse])
    pipelines: list[Any] = []
    for column in range(len(attributes)):
        target = codes[:, column]
        if len(np.unique(target)) < 2:
            pipelines.append(DummyClassifier(strategy="most_frequent").fit(embeddings, target))
            continue
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        pipeline.fit(embeddings, target, logisticregression__sample_weight=weights)
        pipelines.append(pipeline)
    return EmbeddingClassifier(attributes=tuple(attributes), pipelines=tuple(pipelines), face_found=float(face_found))
