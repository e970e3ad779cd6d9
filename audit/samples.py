"""Whom a generative model generates: the composition of its samples, as the attribute classifier reads them.

A model that can sample (``vae``, ``gan``, ``pulse``'s prior) draws N images from its prior; the
attribute classifier labels each. Per grouping (each attribute, then their intersection) and group:

- ``sample_share``: the share of samples labelled with the group, with a percentile interval over
  resampled samples (they are independent draws);
- ``corrected_share``: the same with the classifier's errors taken out
  (:func:`~genfair.audit.label_noise.corrected_shares`, CLEAM: the confusion matrix measured on
  held-out originals); its interval also redraws those people. NaN where the classifier reads some
  group's originals right less often than ``min_accuracy``;
- ``training_share`` and ``panel_share``: the group's share of the training images and of the
  audited panel's (balanced by design), what the samples are set against.

And per grouping, bias amplification (read from the corrected shares where the classifier is
valid, else from the raw labels, ``basis`` says which):

- ``majority_amplification``: the majority's share of the samples minus its share of the
  training images (the majority: the training set's largest group; NaN, and ``majority_group``
  ``""``, where the largest share is tied, as in a balanced set). Positive: the model
  generates the majority more often than its data showed it.
- ``directional_amplification``: Wang and Russakovsky's (ICML 2021) directional bias
  amplification in its marginal form: ``(1/K) Σ_g [y_g Δ_g - (1 - y_g) Δ_g]``, with
  ``Δ_g = sample share - training share`` and ``y_g = 1`` where the group is over-represented in
  training (share > 1/K). Positive: the model exaggerates the skew of its training data;
  0: it reproduces it; negative: it evens it out. On a balanced training set it is 0 whatever
  the samples (no group is over-represented, and the shares' changes sum to 0): read the
  composition table there.

Pure numpy and pandas; seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .attributes import classified_column
from .grouping import GROUP_SEPARATOR, GROUPING_SEPARATOR
from .label_noise import MIN_ACCURACY, corrected_shares

__all__ = ["SAMPLE_AMPLIFICATION_COLUMNS", "SAMPLE_COMPOSITION_COLUMNS", "sample_composition"]

SAMPLE_COMPOSITION_COLUMNS = (
    "grouping", "group", "n_samples", "sample_share", "sample_ci_low", "sample_ci_high",
    "corrected_share", "corrected_ci_low", "corrected_ci_high", "training_share", "panel_share",
)
"""Columns of :func:`sample_composition`'s first table, one row per grouping and group."""

SAMPLE_AMPLIFICATION_COLUMNS = (
    "grouping", "majority_group", "basis", "majority_training_share", "majority_sample_share",
    "majority_amplification", "majority_amplification_ci_low", "majority_amplification_ci_high",
    "directional_amplification", "directional_amplification_ci_low", "directional_amplification_ci_high",
)
"""Columns of :func:`sample_composition`'s second table, one row per grouping."""

NO_SAMPLES_MSG = "sample_labels has no rows"


def _labels(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One group label per row, the columns' values joined as :func:`~genfair.audit.grouping.group_table` does."""
    return frame[list(columns)].astype(str).agg(GROUP_SEPARATOR.join, axis=1).to_numpy(dtype=object)


def _directional(shares: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Wang and Russakovsky's marginal directional amplification of shares (..., K) against training (K,)."""
    over = training > 1.0 / training.size
    delta = shares - training
    return np.where(over, delta, -delta).mean(axis=-1)


def sample_composition(
    sample_labels: pd.DataFrame,
    *,
    attributes: Sequence[str],
    training: pd.DataFrame,
    panel: pd.DataFrame,
    held_out: pd.DataFrame | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_accuracy: float = MIN_ACCURACY,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The composition of a model's samples by group, against its training data and the audit panel.

    Args:
        sample_labels: one row per sample, one column per attribute: the classifier's label.
        attributes: the sensitive attributes (the classifier's heads), in order.
        training: one row per training image with the ``attributes`` (the people's own values).
        panel: one row per audited image with the ``attributes``.
        held_out: the classifier's labels of held-out originals (``subject``, the ``attributes``
            and :func:`~genfair.audit.attributes.classified_column` of each), for the correction;
            None: no correction (``corrected_*`` NaN, amplification read from the raw labels).
        n_resamples: bootstrap resamples for the intervals (corrected ones: at most 200), >= 1.
        level: the intervals' confidence level, in (0, 1).
        seed: seeds the resampling.
        min_accuracy: the accuracy every group's held-out originals need for the correction.

    Returns:
        ``(composition, amplification)`` with columns :data:`SAMPLE_COMPOSITION_COLUMNS` and
        :data:`SAMPLE_AMPLIFICATION_COLUMNS`. Groups: every label of the training set, the panel
        and the samples, sorted.

    Raises:
        ValueError: ``sample_labels`` is empty, a frame lacks an attribute column, or
            ``n_resamples`` or ``level`` is out of range.

    Example:
        >>> samples = pd.DataFrame({"gender": ["m", "m", "m", "f"]})
        >>> train = pd.DataFrame({"gender": ["m", "f"]})
        >>> composition, amplification = sample_composition(samples, attributes=["gender"], training=train,
        ...                                                 panel=train, n_resamples=10)
        >>> composition[["group", "sample_share", "training_share"]].to_dict("list")
        {'group': ['f', 'm'], 'sample_share': [0.25, 0.75], 'training_share': [0.5, 0.5]}
    """
    attrs = list(attributes)
    if not len(sample_labels):
        raise ValueError(f"{NO_SAMPLES_MSG}: draw at least one sample (--samples N with N >= 1)")
    for name, frame in (("sample_labels", sample_labels), ("training", training), ("panel", panel)):
        missing = [a for a in attrs if a not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks the attribute column(s) {missing}; it has {list(frame.columns)}")
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1, got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    corrects = held_out is not None and all(classified_column(a) in held_out for a in attrs)
    alpha = (1.0 - level) / 2.0
    rng = np.random.default_rng(seed)
    sets = [[a] for a in attrs] + ([attrs] if len(attrs) > 1 else [])
    compositions, amplifications = [], []
    for columns in sets:
        grouping = GROUPING_SEPARATOR.join(columns)
        sampled, trained, shown = (_labels(f, columns) for f in (sample_labels, training, panel))
        names = sorted({*sampled, *trained, *shown})
        code = {name: i for i, name in enumerate(names)}
        k = len(names)
        counts = np.bincount([code[s] for s in sampled], minlength=k).astype(float)
        share = counts / counts.sum()
        raw_draws = rng.multinomial(int(counts.sum()), share, size=n_resamples) / counts.sum()
        training_share = np.bincount([code[t] for t in trained], minlength=k) / max(len(trained), 1)
        panel_share = np.bincount([code[p] for p in shown], minlength=k) / max(len(shown), 1)
        corrected, corrected_draws = np.full(k, np.nan), np.full((1, k), np.nan)
        if corrects:
            truth, seen = _labels(held_out, columns), _labels(held_out, [classified_column(c) for c in columns])
            extra = sorted({*truth, *seen} - set(code))  # labels no sample, training or panel image has
            full = {**code, **{name: k + i for i, name in enumerate(extra)}}
            found = corrected_shares(np.array([full[s] for s in sampled]), np.array([full[t] for t in truth]),
                                     np.array([full[s] for s in seen]), held_out["subject"].astype(str).to_numpy(),
                                     len(full), n_resamples=min(n_resamples, 200), seed=seed,
                                     min_accuracy=min_accuracy)
            corrected, corrected_draws = found["share"][:k], found["draws"][:, :k]
        with warnings.catch_warnings():  # an unreliable classifier: NaN in every resample
            warnings.simplefilter("ignore", RuntimeWarning)
            raw_low, raw_high = np.quantile(raw_draws, [alpha, 1 - alpha], axis=0)
            corrected_low, corrected_high = np.nanquantile(corrected_draws, [alpha, 1 - alpha], axis=0)
        compositions.append(pd.DataFrame({
            "grouping": grouping, "group": names, "n_samples": counts.astype("int64"), "sample_share": share,
            "sample_ci_low": raw_low, "sample_ci_high": raw_high, "corrected_share": corrected,
            "corrected_ci_low": corrected_low, "corrected_ci_high": corrected_high,
            "training_share": training_share, "panel_share": panel_share,
        }))
        use_corrected = bool(np.isfinite(corrected).all())
        basis = "corrected" if use_corrected else "raw"
        estimate, draws = (corrected, corrected_draws) if use_corrected else (share, raw_draws)
        tied = np.isclose(training_share, training_share.max()).sum() > 1  # a balanced set: no majority
        majority = None if tied else int(np.argmax(training_share))
        majority_draws = (np.full(len(draws), np.nan) if majority is None
                          else draws[:, majority] - training_share[majority])
        directional_draws = _directional(draws, training_share)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            majority_low, majority_high = np.nanquantile(majority_draws, [alpha, 1 - alpha])
            directional_low, directional_high = np.nanquantile(directional_draws, [alpha, 1 - alpha])
        amplifications.append({
            "grouping": grouping, "majority_group": "" if majority is None else names[majority], "basis": basis,
            "majority_training_share": np.nan if majority is None else training_share[majority],
            "majority_sample_share": np.nan if majority is None else estimate[majority],
            "majority_amplification": np.nan if majority is None else estimate[majority] - training_share[majority],
            "majority_amplification_ci_low": majority_low, "majority_amplification_ci_high": majority_high,
            "directional_amplification": float(_directional(estimate, training_share)),
            "directional_amplification_ci_low": directional_low,
            "directional_amplification_ci_high": directional_high,
        })
    composition = pd.concat(compositions, ignore_index=True)[list(SAMPLE_COMPOSITION_COLUMNS)]
    amplification = pd.DataFrame(amplifications, columns=list(SAMPLE_AMPLIFICATION_COLUMNS))
    return composition, amplification
