"""Identity drift: how far a model's output moved a face away from the person in the original.

A face-recognition network maps a face to an embedding in which photos of one person lie close
together and photos of different people far apart. The **identity drift** of an output is the
Euclidean distance between its embedding and its original's; an output that a face recogniser
no longer matches to its own original (drift at or above :data:`SAME_PERSON_DISTANCE`) is
**no longer recognised** (``identity_lost = 1``). The PULSE failure, a face upsampled into
another person, is exactly such an output.

The embeddings come from an instrument that reads images (genfair's run uses dlib's ResNet face
recogniser, :mod:`genfair.audit.run.face_tools`); this module only compares them, so it holds
no model, no image decoding and no dlib. Per-image columns (:data:`IDENTITY_DRIFT`,
:data:`IDENTITY_LOST`, :data:`FACE_FOUND`) go into the per-image frame, and
:func:`identity_tables` turns them into per-group tables with subject-clustered intervals
(:func:`genfair.audit.stats.interval_tables`). A recogniser is itself less accurate for some
groups; the ``face_found`` share per group (how often the detector found a face in the
originals) is shown beside the drift so that a reader can see where the instrument struggled.

Pure functions: tensors in, tensors out, on the input's device, inputs left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor

__all__ = [
    "FACE_FOUND",
    "IDENTITY_DRIFT",
    "IDENTITY_LOST",
    "SAME_PERSON_DISTANCE",
    "identity_tables",
    "per_sample_identity_drift",
    "per_sample_identity_lost",
]

SAME_PERSON_DISTANCE = 0.6
"""Embedding distance below which dlib's face recogniser calls two faces one person.

The documented threshold of ``dlib_face_recognition_resnet_model_v1`` (dlib's
``python_examples/face_recognition.py`` and ``examples/dnn_face_recognition_ex.cpp``: "when
using a distance threshold of 0.6, the dlib model obtains an accuracy of 99.38% on the standard
LFW face recognition benchmark"). It belongs to that model: another recogniser needs its own.
"""

#: Per-image column: Euclidean distance between the output's and the original's face embedding
#: (lower is better; 0 for an output identical to its original).
IDENTITY_DRIFT = "identity_drift"
#: Per-image column: 1.0 when the drift reaches :data:`SAME_PERSON_DISTANCE` (the recogniser no
#: longer matches the output to its original), else 0.0; its group mean is the share lost.
IDENTITY_LOST = "identity_lost"
#: Per-image column: whether the face detector found a face in the original (bool); where it did
#: not, the face was located on the whole image.
FACE_FOUND = "face_found"

# Messages reused by the tests: each raise appends what it received.
NOT_EMBEDDINGS_MSG = "embeddings_out and embeddings_orig must be floating point torch.Tensor of shape (N, D)"
EMBEDDINGS_SHAPE_MSG = "embeddings_out and embeddings_orig must have the same shape"
EMBEDDINGS_DEVICE_MSG = "embeddings_out and embeddings_orig must be on the same device"
BAD_THRESHOLD_MSG = "threshold must be a positive finite number"


def _check_embeddings(embeddings_out: Tensor, embeddings_orig: Tensor) -> None:
    """Raise ValueError unless both are float (N, D) tensors of one shape on one device."""
    import torch

    for tensor in (embeddings_out, embeddings_orig):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.ndim != 2:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            dtype = f" {tensor.dtype}" if isinstance(tensor, torch.Tensor) else ""
            raise ValueError(f"{NOT_EMBEDDINGS_MSG}, got {got}{dtype}")
    if embeddings_out.shape != embeddings_orig.shape:
        raise ValueError(
            f"{EMBEDDINGS_SHAPE_MSG}, got {tuple(embeddings_out.shape)} and {tuple(embeddings_orig.shape)}"
        )
    if embeddings_out.device != embeddings_orig.device:
        raise ValueError(f"{EMBEDDINGS_DEVICE_MSG}, got {embeddings_out.device} and {embeddings_orig.device}")


def per_sample_identity_drift(embeddings_out: Tensor, embeddings_orig: Tensor) -> Tensor:
    """Identity drift of each image: the Euclidean distance between its two face embeddings.

    Args:
        embeddings_out: ``(N, D)`` float, the face embeddings of the model's outputs (``D = 128``
            for dlib's recogniser).
        embeddings_orig: ``(N, D)`` float, the embeddings of the originals, row for row.

    Returns:
        ``(N,)`` float tensor of distances ``>= 0`` (embedding units), on the input's device.

    Raises:
        ValueError: the inputs are not float 2-D tensors, differ in shape or in device.

    Example:
        >>> import torch
        >>> originals = torch.zeros(2, 3)
        >>> per_sample_identity_drift(torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]), originals)
        tensor([0., 5.])
    """
    import torch

    _check_embeddings(embeddings_out, embeddings_orig)
    return torch.linalg.vector_norm(embeddings_out - embeddings_orig, dim=1)


def per_sample_identity_lost(
    embeddings_out: Tensor, embeddings_orig: Tensor, *, threshold: float = SAME_PERSON_DISTANCE
) -> Tensor:
    """Whether each output is no longer recognised as its original's person: 1.0 or 0.0.

    An output is lost when its drift (:func:`per_sample_identity_drift`) is at least
    ``threshold``: dlib's rule calls two faces one person only when their distance is below it.

    Args:
        embeddings_out: ``(N, D)`` float, the outputs' face embeddings.
        embeddings_orig: ``(N, D)`` float, the originals' embeddings.
        threshold: the same-person distance of the recogniser that made the embeddings
            (:data:`SAME_PERSON_DISTANCE` for dlib's).

    Returns:
        ``(N,)`` tensor of the inputs' dtype, 1.0 where lost and 0.0 where still recognised.

    Raises:
        ValueError: invalid embeddings (see :func:`per_sample_identity_drift`), or a threshold
            that is not a positive finite number.

    Example:
        >>> import torch
        >>> originals = torch.zeros(3, 2)
        >>> per_sample_identity_lost(torch.tensor([[0.1, 0.0], [0.6, 0.0], [0.0, 2.0]]), originals)
        tensor([0., 1., 1.])
    """
    import math

    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
        math.isfinite(threshold) and threshold > 0
    ):
        raise ValueError(f"{BAD_THRESHOLD_MSG}, got {threshold!r}")
    drift = per_sample_identity_drift(embeddings_out, embeddings_orig)
    return (drift >= threshold).to(embeddings_out.dtype)


def identity_tables(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    seed: int = 0,
    reference: str | Mapping[str, str] = "best",
) -> dict[str, pd.DataFrame]:
    """The per-group identity tables of an audit, from the per-image frame.

    Args:
        per_image: one row per image with ``subject``, the ``attributes``, :data:`IDENTITY_DRIFT`,
            :data:`IDENTITY_LOST` and, optionally, :data:`FACE_FOUND`.
        attributes: the sensitive attribute columns.
        seed: seeds the resampling.
        reference: the group every group is compared with (see :func:`genfair.audit.interval_tables`).

    Returns:
        ``identity``: per group (overall first, as :func:`genfair.audit.group_table`) the mean
        drift, the share no longer recognised and the share of originals with a detected face
        (``face_found``, NaN without the column); ``identity_intervals`` and
        ``identity_disparities``: :func:`genfair.audit.interval_tables` of the drift and the
        share lost (subject-clustered intervals, permutation p-values).

    Raises:
        ValueError: a missing column, or a frame the statistics reject.

    Example:
        >>> import pandas as pd
        >>> per_image = pd.DataFrame({"subject": list("aabbccddeeffgghhiijj"), "gender": ["f"] * 10 + ["m"] * 10,
        ...                           "identity_drift": [0.2] * 10 + [0.7] * 10,
        ...                           "identity_lost": [0.0] * 10 + [1.0] * 10, "face_found": [True] * 20})
        >>> tables = identity_tables(per_image, attributes=["gender"])
        >>> tables["identity"][["group", "identity_drift", "identity_lost", "face_found"]].round(3).values.tolist()
        [['all', 0.45, 0.5, 1.0], ['f', 0.2, 0.0, 1.0], ['m', 0.7, 1.0, 1.0]]
    """
    import numpy as np

    from .grouping import group_table
    from .stats import interval_tables

    measures = [IDENTITY_DRIFT, IDENTITY_LOST]
    for column in measures:
        if column not in per_image.columns:
            raise ValueError(f"per_image lacks the identity column {column!r}; it has {list(per_image.columns)}")
    found_share = "genfair_face_found_score"  # a share, higher is better: the detector's own success per group
    frame = per_image
    if FACE_FOUND in per_image.columns:
        frame = per_image.assign(**{found_share: per_image[FACE_FOUND].astype("float64").to_numpy()})
    table = group_table(frame, attributes=attributes,
                        metrics=[*measures, *([found_share] if found_share in frame.columns else [])])
    table = table.rename(columns={found_share: FACE_FOUND})
    if FACE_FOUND not in table.columns:
        table[FACE_FOUND] = np.nan
    per_group, disparities = interval_tables(per_image, attributes=attributes, metrics=measures, seed=seed,
                                             reference=reference)
    return {"identity": table, "identity_intervals": per_group, "identity_disparities": disparities}
