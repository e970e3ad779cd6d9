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

__all__ = ["subject_disjoint_split", "ERR_TOO_FEW_SUBJECTS", "ERR_SINGLE_SUBJECT_GROUP", "describe_group"]

ERR_TOO_FEW_SUBJECTS = "too few subjects"
ERR_SINGLE_SUBJECT_GROUP = "group has a single subject"
_KEY_SEPARATOR = "\x1f"  # joins a subject's attribute values into its stratum key


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
    proportion as far as whole subjects allow; with ``test_fraction > 0`` every stratum gets at
    least one test subject (the audit must see every group), which can add a few test subjects
    when there are many small strata. A stratum of a single subject cannot be both trained on
    and audited, so it raises (give the manifest a split column to place it). Depends only on
    ``frame``'s content and ``seed``, not on the row order.

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
        ValueError: bad fractions, no ``subject`` column, an unknown attribute, an empty frame, a
            stratum with a single subject (when ``test_fraction > 0``), or too few subjects to leave
            one for training.
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
        keys = values if position == 0 else keys + _KEY_SEPARATOR + values
    n_subjects = len(keys)
    n_test = _share(n_subjects, test_fraction)
    n_val = _share(n_subjects, val_fraction)
    if n_test + n_val >= n_subjects:
        raise ValueError(
            f"{ERR_TOO_FEW_SUBJECTS}: {n_subjects} subject(s) cannot fill {n_test} test + {n_val} val subject(s) "
            f"and leave one for training; fix: add subjects, lower test_fraction/val_fraction, or give the "
            f"manifest a split column"
        )

    stratum_names = sorted(keys.unique())
    code = {name: position for position, name in enumerate(stratum_names)}
    stratum_of = keys.map(code).to_numpy(dtype=np.int64)
    sizes = np.bincount(stratum_of, minlength=len(stratum_names))
    if test_fraction > 0 and strata and (sizes == 1).any():
        _raise_single_subject(strata, stratum_names, sizes, stratum_of, keys.index)
    # each stratum's subjects in sorted order (a stable sort by stratum keeps it): O(S log S) for any number of strata
    by_stratum = keys.index.to_numpy()[np.argsort(stratum_of, kind="stable")]
    members = np.split(by_stratum, np.cumsum(sizes)[:-1])
    rng = np.random.default_rng(seed)
    test_counts = _apportion(n_test, sizes, sizes, rng)
    if test_fraction > 0:
        test_counts = np.maximum(test_counts, 1)  # every group is audited
    val_counts = _apportion(n_val, sizes, sizes - test_counts, rng)
    if n_subjects - int(test_counts.sum()) - int(val_counts.sum()) < 1:
        raise ValueError(
            f"{ERR_TOO_FEW_SUBJECTS}: {n_subjects} subject(s) in {len(sizes)} group(s) cannot give every group a "
            f"test subject, fill {int(val_counts.sum())} val subject(s) and leave one for training; fix: add "
            f"subjects, name fewer attributes, lower val_fraction, or give the manifest a split column"
        )
    # Within each stratum a seeded order: its first k_test subjects go to test, the next k_val to val.
    ordered, assigned = [], []
    for subjects_in_stratum, k_test, k_val in zip(members, test_counts, val_counts):
        ordered.append(rng.permutation(subjects_in_stratum))
        position = np.arange(len(subjects_in_stratum))
        assigned.append(np.where(position < k_test, "test", np.where(position < k_test + k_val, "val", "train")))
    labels = pd.Series(np.concatenate(assigned), index=pd.Index(np.concatenate(ordered), dtype="str"))
    return subjects.map(labels).astype("str").rename("split")


def describe_group(columns: Sequence[str], values: Sequence[object]) -> str:
    """``"gender='female', skin_tone='darker'"``: a group named by its attribute values."""
    return ", ".join(f"{column}={str(value)!r}" for column, value in zip(columns, values))


def _raise_single_subject(
    strata: list[str], stratum_names: list[str], sizes: np.ndarray, stratum_of: np.ndarray, subjects: pd.Index
) -> None:
    lonely = np.flatnonzero(sizes == 1)
    first = int(lonely[0])
    subject = subjects[int(np.flatnonzero(stratum_of == first)[0])]
    group = describe_group(strata, str(stratum_names[first]).split(_KEY_SEPARATOR))
    more = len(lonely) - 1
    also = f"; {more} more group{'s' if more != 1 else ''} like this" if more else ""
    raise ValueError(
        f"{ERR_SINGLE_SUBJECT_GROUP}: {group} has only subject {subject!r}, who cannot be both trained on and "
        f"audited{also}; fix: add subjects of this group, name fewer attributes, or give the manifest a split "
        f"column (e.g. {subject!r} in test)"
    )


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
