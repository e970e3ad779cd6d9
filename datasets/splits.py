"""The seeded, stratified, subject-disjoint train/val/test split (numpy and pandas only).

Lives apart from :mod:`genfair.datasets.datamodule` so that dataset builders can split without
importing torch or Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .manifest import RESERVED_COLUMNS

__all__ = ["subject_disjoint_split", "ERR_TOO_FEW_SUBJECTS"]

ERR_TOO_FEW_SUBJECTS = "too few subjects"


def subject_disjoint_split(
    frame: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    attributes: Sequence[str] | None = None,
) -> pd.Series:
    """Assign whole subjects to train/val/test, stratified by their attribute combination.

    Subjects (not images) are split: about ``round(S * test_fraction)`` of the ``S`` subjects go
    to test and ``round(S * val_fraction)`` to val (at least one each when the fraction is
    positive), the rest to train. Each split's share is apportioned to the strata (each subject's
    combination of attribute values) by largest remainder, so every stratum is represented in
    proportion as far as whole subjects allow. Depends only on ``frame``'s content and ``seed``,
    not on the row order.

    Args:
        frame: one row per image with a ``subject`` column (and the attribute columns).
        seed: seeds a ``numpy.random.Generator``.
        val_fraction: share of subjects for validation, in [0, 1).
        test_fraction: share of subjects for test, in [0, 1); ``val_fraction + test_fraction < 1``.
        attributes: columns to stratify by (a subject's first value is used). ``None`` means
            every non-reserved column; ``()`` means no stratification.

    Returns:
        Split labels (``"train"``, ``"val"``, ``"test"``) named ``split``, with ``frame``'s index.

    Raises:
        ValueError: bad fractions, no ``subject`` column, an unknown attribute, an empty frame, or
            too few subjects to leave one for training.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 to leave subjects for training, "
            f"got {val_fraction} + {test_fraction}"
        )
    if "subject" not in frame.columns:
        raise ValueError(f"frame needs a 'subject' column to split by subject, got columns {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("cannot split an empty frame: it has no rows")
    strata = (
        [c for c in frame.columns if c not in RESERVED_COLUMNS] if attributes is None else list(attributes)
    )
    unknown = [c for c in strata if c not in frame.columns]
    if unknown:
        raise ValueError(f"attributes {unknown} are not columns of the frame (columns: {list(frame.columns)})")

    subjects = frame["subject"].astype("str")
    per_subject = frame.assign(subject=subjects).groupby("subject", sort=True)[strata].first()
    keys = pd.Series("", index=per_subject.index, dtype="str")  # "value1\x1fvalue2...", one per subject
    for position, column in enumerate(strata):
        values = per_subject[column].astype("str")
        keys = values if position == 0 else keys + "\x1f" + values
    n_subjects = len(keys)
    n_test = _share(n_subjects, test_fraction)
    n_val = _share(n_subjects, val_fraction)
    if n_test + n_val >= n_subjects:
        raise ValueError(
            f"{ERR_TOO_FEW_SUBJECTS}: {n_subjects} subject(s) cannot fill {n_test} test + {n_val} val subject(s) "
            f"and leave one for training; fix: add subjects, lower test_fraction/val_fraction, or give the "
            f"manifest a split column"
        )

    rng = np.random.default_rng(seed)
    stratum_names = sorted(keys.unique())
    members = [keys.index[keys.to_numpy() == name].to_numpy() for name in stratum_names]
    sizes = np.array([len(m) for m in members])
    test_counts = _apportion(n_test, sizes, sizes, rng)
    val_counts = _apportion(n_val, sizes, sizes - test_counts, rng)
    labels: dict[str, str] = {}
    for subjects_in_stratum, k_test, k_val in zip(members, test_counts, val_counts):
        order = rng.permutation(subjects_in_stratum)
        for position, subject in enumerate(order):
            labels[subject] = "test" if position < k_test else "val" if position < k_test + k_val else "train"
    return subjects.map(labels).astype("str").rename("split")


def _share(total: int, fraction: float) -> int:
    """``round(total * fraction)`` (halves up), at least 1 when ``fraction > 0``."""
    count = math.floor(total * fraction + 0.5)
    return max(count, 1) if fraction > 0 else 0


def _apportion(total: int, sizes: np.ndarray, capacity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over strata in proportion to ``sizes`` (largest remainder), within ``capacity``."""
    quotas = total * sizes / sizes.sum()
    counts = np.minimum(np.floor(quotas).astype(int), capacity)
    remainder = quotas - counts
    order = np.lexsort((rng.random(len(sizes)), -remainder))  # largest remainder first, ties at random
    left = total - int(counts.sum())
    while left > 0:
        progressed = False
        for stratum in order:
            if left and counts[stratum] < capacity[stratum]:
                counts[stratum] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts
