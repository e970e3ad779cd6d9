"""The attribute classifier is an instrument with errors of its own; these measures take them out.

- :func:`label_flips` is **attribute preservation** as agreement: the share of a group's outputs
  whose label differs from the label the same classifier gives the original. A model that returns
  its input unchanged flips nothing, however wrong the classifier is about that person.
- :func:`corrected_representation` estimates how the outputs' *true* groups are distributed, from
  their labels and the classifier's confusion matrix measured on the audited originals (people it
  never trained on): labels of images whose true groups are distributed as ``q`` are distributed
  as ``p = Cᵀ q``, so ``q`` is recovered from the observed ``p`` (Teo, Abdollahzadeh and Cheung,
  "On Measuring Fairness in Generative Models", NeurIPS 2023: CLEAM). It assumes the classifier
  errs on an output of group ``i`` as it errs on an original of group ``i``.

One threshold, :data:`MIN_ACCURACY`, says when the classifier is good enough to read a group:
the representation claims of :mod:`genfair.audit.attributes` are withheld below it, and this
correction needs it of every group (``audit run --classifier-min-accuracy`` sets both).

Pure numpy, pandas and scipy; seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .grouping import group_table

__all__ = ["MIN_ACCURACY", "corrected_representation", "corrected_shares", "flip_column", "label_flips"]

_SIMPLEX_WEIGHT = 10.0  # how hard the least squares holds the corrected shares to summing to 1
MIN_ACCURACY = 0.8
"""The accuracy on originals the classifier needs for a group before any claim reads its labels.

Below it, a group's representation claims are withheld
(:func:`genfair.audit.attributes.classifier_validity`), and the correction here, which must read
every group, is NaN. The correction itself is identified above 0.5, but for two classes read
right a share ``a`` of the time it divides by ``2a - 1``: it multiplies the labels' sampling
noise, and any gap between how the classifier errs on outputs and on originals, by 5 at
``a = 0.6`` and by 1.67 at 0.8, where the raw rates it corrects are off by at most 0.2 to begin
with. 0.8 is far above chance, ``1 / K <= 0.5``, for any number of classes ``K``."""


def flip_column(attribute: str) -> str:
    """The column of :func:`label_flips` for ``attribute``: ``"<attribute>_flip_rate"``."""
    return f"{attribute}_flip_rate"


def label_flips(per_image: pd.DataFrame, *, attributes: Sequence[str], original: Sequence[str],
                output: Sequence[str]) -> pd.DataFrame:
    """Per group, the share of outputs whose classified label differs from their original's.

    Args:
        per_image: one row per image with ``subject``, the ``attributes`` and the label columns.
        attributes: the sensitive attributes.
        original, output: per attribute, the column of the classifier's label of the original
            and of the output.

    Returns:
        :func:`genfair.audit.grouping.group_table` rows (overall, each attribute, the
        intersection) with one column per attribute, :func:`flip_column`: a rate in [0, 1].

    Example:
        >>> frame = pd.DataFrame({"subject": ["a", "b"], "gender": ["f", "m"],
        ...                       "seen": ["m", "m"], "seen_out": ["m", "f"]})
        >>> label_flips(frame, attributes=["gender"], original=["seen"], output=["seen_out"])[
        ...     ["group", "gender_flip_rate"]].to_dict("list")
        {'group': ['all', 'f', 'm'], 'gender_flip_rate': [0.5, 0.0, 1.0]}
    """
    flips = per_image[["subject", *attributes]].copy()
    for attribute, before, after in zip(attributes, original, output, strict=True):
        flips[flip_column(attribute)] = (per_image[before].astype(str) != per_image[after].astype(str)).astype(float)
    return group_table(flips, attributes=list(attributes), metrics=[flip_column(a) for a in attributes])


def _confusion(true_codes: np.ndarray, seen_codes: np.ndarray, weights: np.ndarray,
               n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalised confusion ``C[i, j]`` (P, K) over the P present true groups, and the (K,) mask of them."""
    confusion = np.bincount(true_codes * n_classes + seen_codes, weights,
                            n_classes * n_classes).reshape(n_classes, n_classes)
    present = confusion.sum(axis=1) > 0
    return confusion[present] / confusion[present].sum(axis=1, keepdims=True), present


def _solve_shares(rates: np.ndarray, present: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The ``q`` (K,) on the simplex over the present groups that best solves ``Cᵀ q = labels / sum`` (NNLS)."""
    from scipy.optimize import nnls

    system = np.vstack([rates.T, np.full((1, rates.shape[0]), _SIMPLEX_WEIGHT)])
    target = np.append(labels / labels.sum(), _SIMPLEX_WEIGHT)
    q_present, _ = nnls(system, target)
    q = np.zeros(present.size)
    q[present] = q_present / q_present.sum() if q_present.sum() > 0 else q_present
    return q


def corrected_representation(
    true_codes: np.ndarray,
    original_codes: np.ndarray,
    output_codes: np.ndarray,
    subjects: np.ndarray,
    n_classes: int,
    *,
    n_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    min_accuracy: float = MIN_ACCURACY,
) -> dict[str, np.ndarray]:
    """The outputs' true-group shares and each group's own-group rate, the classifier's errors taken out.

    ``C[i, j]``, the share of originals of group ``i`` the classifier labels ``j``, comes from the
    audited originals. For the outputs of the people of group ``g``, whose labels are distributed
    as ``p_g``, the corrected distribution is the ``q`` on the simplex (over the groups that have
    people) that best solves ``Cᵀ q = p_g`` in least squares; the own-group rate is ``q[g]``.
    Intervals are percentile intervals over people resampled with replacement: each resample
    redraws the confusion matrix and the outputs' labels together, as both come from the same
    people. Where the classifier reads some group's originals right less often than
    ``min_accuracy``, the correction is not trusted and every value is NaN (in a resample, that
    resample is left out of the intervals).

    Args:
        true_codes, original_codes, output_codes: ``(N,)`` int codes in ``[0, n_classes)``: each
            image's group, the classifier's label of its original, and of its output.
        subjects: ``(N,)`` each image's person.
        n_classes: ``K``, the number of labels.
        n_resamples: bootstrap resamples of people (0: no intervals).
        level: the intervals' confidence level.
        seed: seeds the resampling.
        min_accuracy: the accuracy every group's originals need, in [0, 1] (see :data:`MIN_ACCURACY`).

    Returns:
        ``share``, ``share_low``, ``share_high``: ``(K,)`` the outputs' corrected shares of each
        group; ``own``, ``own_low``, ``own_high``: ``(K,)`` each group's corrected own-group rate
        (NaN for a label no person has).

    Example:
        >>> # a classifier that calls a quarter of group 0 "1"; every output keeps its person's look
        >>> true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
        >>> seen = np.array([0, 0, 0, 1, 1, 1, 1, 1])
        >>> out = corrected_representation(true, seen, seen, np.arange(8), 2, n_resamples=0, min_accuracy=0.75)
        >>> out["own"].round(3).tolist(), out["share"].round(3).tolist()
        ([1.0, 1.0], [0.5, 0.5])
    """
    true_codes, original_codes, output_codes = (np.asarray(a, dtype=np.int64)
                                                for a in (true_codes, original_codes, output_codes))
    person = pd.factorize(np.asarray(subjects, dtype=object))[0]
    n_people = int(person.max()) + 1 if person.size else 0

    def estimate(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rates, present = _confusion(true_codes, original_codes, weights, n_classes)
        if rates[np.arange(rates.shape[0]), np.flatnonzero(present)].min() < min_accuracy:
            return np.full(n_classes, np.nan), np.full(n_classes, np.nan)

        def solve(labels: np.ndarray) -> np.ndarray:
            return _solve_shares(rates, present, labels)

        outputs = np.bincount(output_codes, weights, n_classes)
        share = solve(outputs) if outputs.sum() > 0 else np.full(n_classes, np.nan)
        own = np.full(n_classes, np.nan)
        for group in np.flatnonzero(present):
            mine = true_codes == group
            labels = np.bincount(output_codes[mine], weights[mine], n_classes)
            if labels.sum() > 0:
                own[group] = solve(labels)[group]
        return share, own

    share, own = estimate(np.ones(true_codes.size))
    result = {"share": share, "own": own}
    if n_resamples == 0 or n_people == 0:
        nan = np.full(n_classes, np.nan)
        return {**result, "share_low": nan, "share_high": nan, "own_low": nan, "own_high": nan}
    rng = np.random.default_rng(seed)
    draws = [estimate(rng.multinomial(n_people, np.full(n_people, 1.0 / n_people))[person].astype(float))
             for _ in range(n_resamples)]
    alpha = (1.0 - level) / 2.0
    for name, values in (("share", np.array([d[0] for d in draws])), ("own", np.array([d[1] for d in draws]))):
        with warnings.catch_warnings():  # a label no person has is NaN in every resample
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanquantile(values, [alpha, 1.0 - alpha], axis=0)
        result[f"{name}_low"], result[f"{name}_high"] = low, high
    return result


def corrected_shares(
    sample_codes: np.ndarray,
    true_codes: np.ndarray,
    original_codes: np.ndarray,
    subjects: np.ndarray,
    n_classes: int,
    *,
    n_resamples: int = 200,
    seed: int = 0,
    min_accuracy: float = MIN_ACCURACY,
) -> dict[str, np.ndarray]:
    """The true-group shares of independent images (a generator's samples), the classifier's errors taken out.

    As :func:`corrected_representation`'s ``share``, but the labelled images belong to no person:
    the confusion matrix ``C`` comes from held-out originals (``true_codes``, ``original_codes``,
    one per image of ``subjects``), the labels ``p`` from the samples, and ``q`` solves ``Cᵀ q = p``
    on the simplex. Each resample redraws the people of the confusion matrix (with replacement) and,
    independently, the samples; a resample where some group's originals are read right less
    often than ``min_accuracy`` is NaN.

    Args:
        sample_codes: ``(S,)`` int codes in ``[0, n_classes)``, the classifier's label of each sample.
        true_codes, original_codes: ``(N,)`` int codes: each held-out image's group and its label.
        subjects: ``(N,)`` each held-out image's person.
        n_classes: ``K``.
        n_resamples: bootstrap resamples (0: none).
        seed: seeds the resampling.
        min_accuracy: the accuracy every group's originals need, in [0, 1].

    Returns:
        ``share``: ``(K,)`` the corrected shares (NaN where the classifier is unreliable);
        ``draws``: ``(n_resamples, K)`` the resampled shares.

    Example:
        >>> true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
        >>> seen = np.array([0, 0, 0, 1, 1, 1, 1, 1])  # a quarter of group 0 read as 1
        >>> samples = np.array([0] * 3 + [1] * 5)       # what 4 + 4 samples look like to it
        >>> corrected_shares(samples, true, seen, np.arange(8), 2, n_resamples=0, min_accuracy=0.75)["share"].round(3).tolist()
        [0.5, 0.5]
    """
    sample_codes, true_codes, original_codes = (np.asarray(a, dtype=np.int64)
                                                for a in (sample_codes, true_codes, original_codes))
    person = pd.factorize(np.asarray(subjects, dtype=object))[0]
    n_people = int(person.max()) + 1 if person.size else 0
    counts = np.bincount(sample_codes, minlength=n_classes).astype(float)

    def estimate(weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
        rates, present = _confusion(true_codes, original_codes, weights, n_classes)
        if not present.any() or rates[np.arange(rates.shape[0]), np.flatnonzero(present)].min() < min_accuracy:
            return np.full(n_classes, np.nan)
        return _solve_shares(rates, present, labels) if labels.sum() > 0 else np.full(n_classes, np.nan)

    share = estimate(np.ones(true_codes.size), counts)
    if n_resamples == 0 or n_people == 0 or counts.sum() == 0:
        return {"share": share, "draws": np.full((n_resamples, n_classes), np.nan)}
    rng = np.random.default_rng(seed)
    draws = np.array([
        estimate(rng.multinomial(n_people, np.full(n_people, 1.0 / n_people))[person].astype(float),
                 rng.multinomial(int(counts.sum()), counts / counts.sum()).astype(float))
        for _ in range(n_resamples)
    ])
    return {"share": share, "draws": draws}
