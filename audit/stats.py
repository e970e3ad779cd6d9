"""Uncertainty and significance for the per-group audit: pure functions over a per-image frame.

Images of one person are not independent: a model that fails on one photo of a subject
tends to fail on the others. Every interval here therefore comes from a **cluster
bootstrap** that resamples *subjects* (with all their images) within each group, and every
p-value from a **permutation test** that shuffles the subject -> group assignment (each
subject keeps all its images).

What the functions compute, for each grouping (each single attribute, then the
intersection of all attributes, as :func:`genfair.audit.group_table` does) and metric:

- :func:`group_intervals`: one row per group: the group mean (exactly
  :func:`~genfair.audit.group_table`'s value), its interval, the group's ratio and
  difference to a reference group with intervals, and a one-sided permutation p-value
  for "this group is served worse than the rest" (raw and Holm-adjusted across the
  groups of the grouping).
- :func:`disparity_intervals`: one row per (grouping, metric): the worst and best group,
  ``ratio = worst / best`` and ``difference = |worst - best|`` with intervals and debiased
  values, and the permutation p-value of that disparity.

**The evidence rule.** A group with fewer than ``min_subjects`` subjects (default 5) is
reported with ``evidence = "insufficient"``: its mean is shown but it gets no interval
(NaN, never a zero-width one), no p-value, and it takes no part in the worst/best/disparity
computations or the permutation tests. It is never averaged into another group and never
called fair. A disparity row with fewer than two groups that have sufficient evidence is
itself ``"insufficient"`` and has NaN values.

**Intervals.** Percentile intervals of the bootstrap distribution. With the default
``interval="expanded"`` each group's resampled means are first spread about the group
mean by ``sqrt(n / (n - 1)) * t(n - 1) / z`` (``n`` its number of subjects, ``t`` and ``z``
the ``(1 + level) / 2`` quantiles of Student's t and the normal distribution): the
small-sample expansion of the percentile interval (Hesterberg 2015, "What teachers should
know about the bootstrap"). A plain percentile interval of a mean over 5-20 subjects
covers only ~90% instead of 95% (measured by ``benchmarks/simulation_coverage.py``);
``interval="percentile"`` gives the plain one.

**Disparity intervals.** A disparity is recomputed on every resample (the worst group may
change from one resample to the next): ``max - min`` over the groups' resampled means, on
the same resamples as the per-group intervals. That statistic is biased upwards (Lum, Zhang
& Bower 2022, "De-biasing 'bias' measurement": a group that is not the worst is sometimes
drawn into the worst, most when groups tie), and at an exact tie its truth, 0, is the
boundary of its range, where no bootstrap interval is exact. The worst group's mean, the
ratio and the difference therefore take the *lower* bound of the basic bootstrap interval
``(2 * estimate - q_high, 2 * estimate - q_low)`` and the *upper* bound of the percentile
interval ``(q_low, q_high)`` (precisely: the lower and the higher of the two intervals'
bounds), clipped to the statistic's range (difference >= 0; ratio >= 1 for errors, <= 1
for scores; clipping only removes values the truth cannot take). The interval always
contains its estimate. Measured on 500 simulated audits a design (groups of 5-40 people,
1-8 images each, intra-class correlation 0.5; ``benchmarks/simulation_coverage.py``, numbers
in ``docs/benchmarks.md``): the difference is covered 95.2-97.4% where one group is planted
worse or the means are distinct, 92.6-94.2% where 2 groups (or 4 of unequal spread) tie,
90.4% and 88.0% where 4 and 8 groups of equal spread tie (the boundary case, below the
target); the ratio 95.8-98.6%, the worst group's mean 93.2-97.0%. The alternatives on the
same resamples: the basic interval alone covers the difference 88.2-91.4% where groups are
apart (its reflection over-corrects whenever the two extreme groups come close), the
percentile interval 0% at a tie, the percentile interval shifted by the bootstrap's bias
estimate (this module's earlier choice) 35-83% at a tie, BCa 0% at a tie (its bias
correction diverges there) and 87-95% apart.

Beside each plain disparity the table gives a **debiased** one: for the difference
``2 * estimate - mean(resampled)`` (the bootstrap bias correction), for the ratio the ratio
of the worst and best means each so corrected (a ratio resampled over a small, noisy best
group has a heavy tail, and its mean would make the correction as noisy). It estimates the
disparity between the groups' true means, where the plain ``max - min`` estimates the
expected spread of the observed means, which exceeds the true disparity by the noise of
the groups' means. It is clipped to the statistic's range (0 for the difference, 1 for
the ratio); unclipped it goes below 0 when the resampled ``max - min`` averages more than
twice the observed one, which happens when groups tie and their means are noisy. In the
simulation the difference's bias at a tie drops from +0.0020..+0.0048 to +0.0014..+0.0026
(truth 0; a clipped value cannot average below it) and with one of 8 groups planted worse
from +0.0019 to +0.0005.

**Disparity test.** ``p_value`` of a disparity row tests "the eligible groups' true means
are equal" (ratio 1, difference 0) by relabelling subjects: the subject -> group labels of
the eligible groups' subjects are shuffled ``n_permutations`` times (each subject keeps its
images, each group its number of subjects), every group's mean is recomputed and the
statistic taken; ``p = (1 + #{permuted >= observed}) / (1 + n_permutations)``. With
``studentized=True`` (the default) the statistic is, over all pairs of groups, the largest
``-log p`` of Welch's two-sided test (the gap of two means over its subject-clustered
standard error, Welch-Satterthwaite degrees of freedom); with ``studentized=False`` it is
``max - min`` of the means. An unstudentized permutation test tests equal
*distributions*, not equal means (DiCiccio, Vasudevan, Basu, Kenthapadi & Agarwal 2020,
"Evaluating fairness using permutation tests"): when a small group is also the more
variable one it rejects a true "no disparity" 22-25% of the time at the 5% level in the
simulation; the studentized test 3.0-5.6% in every design (power is lower where the worse
group is small: it is also the least certain). ``p_holm`` adjusts across the groupings of
one metric (each attribute and the intersection).

**Per-group test.** For group ``g`` the statistic is ``mean(images of g) - mean(all
other images)`` (sign flipped for ``*_score`` metrics, so that large means "served
worse"), on the same relabellings as the disparity test (one set of shuffles serves both);
Holm's step-down adjusts the p-values across the groups of one grouping. It answers "is
this group served worse than the rest", a different question from the disparity row's.

The resampling engine (clusters, bootstrap draws, relabellings) is
:mod:`genfair.audit.resampling`.

A subject whose images fall into several groups of one grouping (an attribute that
changes between photos) counts as one cluster in each of those groups.

numpy, pandas and scipy are imported inside the functions so that importing
``genfair.audit`` stays cheap.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .grouping import (
    GROUP_SEPARATOR,
    GROUPING_SEPARATOR,
    OVERALL_GROUP,
    OVERALL_GROUPING,
    SUBJECT_COLUMN,
    _higher_is_better,
    validate_per_image,
)
from .resampling import (  # the engine; _BLOCK and _Clusters re-exported for compare.py and the tests
    _BLOCK,  # noqa: F401
    _bootstrap_means,
    _Clusters,  # noqa: F401
    _clusters,
    _permutation_tests,
    _rng,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "DISPARITY_INTERVAL_COLUMNS",
    "EVIDENCE_INSUFFICIENT",
    "EVIDENCE_SUFFICIENT",
    "GROUP_INTERVAL_COLUMNS",
    "INTERVAL_METHODS",
    "StatsConfig",
    "disparity_intervals",
    "group_intervals",
    "holm",
    "interval_tables",
]

logger = logging.getLogger(__name__)

#: ``evidence`` values: enough subjects to say something, or too few.
EVIDENCE_SUFFICIENT = "sufficient"
EVIDENCE_INSUFFICIENT = "insufficient"
#: Interval methods: the small-sample expanded percentile interval, or the plain one.
INTERVAL_METHODS = ("expanded", "percentile")
#: ``reference`` keywords: the best group by point estimate, or the one with most subjects.
REFERENCE_KEYWORDS = ("best", "largest")

#: The columns of :func:`group_intervals`, in order.
GROUP_INTERVAL_COLUMNS = (
    "grouping",
    "group",
    "metric",
    "higher_is_better",
    "n_images",
    "n_subjects",
    "evidence",
    "estimate",
    "ci_low",
    "ci_high",
    "reference_group",
    "ratio_to_reference",
    "ratio_ci_low",
    "ratio_ci_high",
    "difference_to_reference",
    "difference_ci_low",
    "difference_ci_high",
    "p_value",
    "p_holm",
)
#: The columns of :func:`disparity_intervals`, in order.
DISPARITY_INTERVAL_COLUMNS = (
    "grouping",
    "metric",
    "higher_is_better",
    "overall",
    "n_groups",
    "n_insufficient",
    "evidence",
    "worst_group",
    "worst",
    "worst_ci_low",
    "worst_ci_high",
    "best_group",
    "best",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "p_value",
    "p_holm",
    "ratio_debiased",
    "difference_debiased",
    "p_min",
)

# Messages reused by the tests: each raise appends what it received.
BAD_COUNT_MSG = "must be an integer"
BAD_LEVEL_MSG = "level must be a number strictly between 0 and 1"
BAD_SEED_MSG = "seed must be a non-negative integer"
BAD_INTERVAL_MSG = "interval must be one of"
BAD_STUDENTIZED_MSG = "studentized must be True or False"
BAD_REFERENCE_MSG = "reference must be 'best', 'largest', a group label or a mapping grouping -> group"
UNKNOWN_REFERENCE_MSG = "reference group not found"
INSUFFICIENT_REFERENCE_MSG = "reference group has insufficient evidence"
BAD_P_VALUES_MSG = "p_values must be a 1-D sequence of numbers in [0, 1] (NaN allowed)"

@dataclass(frozen=True, kw_only=True)
class StatsConfig:
    """Options of the audit statistics (plain data: ``asdict`` is what MLflow logs).

    Attributes:
        n_resamples: bootstrap resamples (of subjects, within each group), >= 1.
        n_permutations: permutations of the subject -> group labels for the p-values;
            0 skips the test (p-values NaN).
        level: confidence level of the intervals, in (0, 1).
        seed: seed of every random draw (non-negative int); equal seeds give equal tables.
        min_subjects: groups with fewer subjects are "insufficient evidence"; >= 2, since
            one subject shows no between-subject variation at all.
        interval: ``"expanded"`` (percentile interval with the small-sample expansion) or
            ``"percentile"`` (plain percentile interval).
        reference: ``"best"`` (the best group of each grouping by point estimate),
            ``"largest"`` (the group with most subjects, then most images), a group label
            (used in every grouping that has a group of that name, e.g. ``"female"`` or
            ``"female / darker"``), or a mapping ``{grouping: group}``.
        studentized: the disparity test's statistic: the largest Welch-type gap between two
            groups (True, the default) or plain ``max - min`` of the group means (False);
            see :mod:`genfair.audit.stats` for why.

    Raises:
        ValueError: if a value is out of range or of the wrong type.

    Example:
        >>> StatsConfig(n_resamples=200, seed=3).level
        0.95
    """

    n_resamples: int = 1000
    n_permutations: int = 1000
    level: float = 0.95
    seed: int = 0
    min_subjects: int = 5
    interval: Literal["expanded", "percentile"] = "expanded"
    reference: str | Mapping[str, str] = field(default="best")
    studentized: bool = True

    def __post_init__(self) -> None:
        _check_int(self.n_resamples, "n_resamples", minimum=1)
        _check_int(self.n_permutations, "n_permutations", minimum=0)
        _check_int(self.min_subjects, "min_subjects", minimum=2)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"{BAD_SEED_MSG}, got {self.seed!r}")
        if (
            isinstance(self.level, bool)
            or not isinstance(self.level, numbers.Real)
            or not 0.0 < float(self.level) < 1.0
        ):
            raise ValueError(f"{BAD_LEVEL_MSG}, got {self.level!r}; e.g. 0.95 for 95% intervals")
        if type(self.studentized) is not bool:
            raise ValueError(f"{BAD_STUDENTIZED_MSG}, got {self.studentized!r}")
        if self.interval not in INTERVAL_METHODS:
            raise ValueError(f"{BAD_INTERVAL_MSG} {list(INTERVAL_METHODS)}, got {self.interval!r}")
        reference = self.reference
        if isinstance(reference, Mapping):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in reference.items()):
                raise ValueError(f"{BAD_REFERENCE_MSG}, got {reference!r}")
        elif not isinstance(reference, str) or not reference:
            raise ValueError(f"{BAD_REFERENCE_MSG}, got {reference!r}")


def _check_int(value: Any, name: str, *, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} {BAD_COUNT_MSG} >= {minimum}, got {value!r}")


# --- Holm ------------------------------------------------------------------------------------------


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values (controls the family-wise error rate).

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i + 1`` (``i`` from 1),
    a running maximum keeps the adjusted values in the order of the raw ones, and values
    are capped at 1. NaN entries are ignored (they do not count in ``m``) and stay NaN.

    Args:
        p_values: 1-D p-values in [0, 1]; NaN allowed.

    Returns:
        (m,) float64 array of adjusted p-values, in the input order.

    Raises:
        ValueError: if ``p_values`` is not 1-D or has a value outside [0, 1].

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005]).round(4).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    import numpy as np

    try:
        p = np.asarray(p_values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{BAD_P_VALUES_MSG}, got {p_values!r}") from err
    if p.ndim != 1:
        raise ValueError(f"{BAD_P_VALUES_MSG}, got shape {p.shape}")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError(f"{BAD_P_VALUES_MSG}, got {p.tolist()}")
    out = np.full(p.shape, np.nan)
    q = p[ok]
    m = q.size
    if m:
        order = np.argsort(q, kind="stable")
        adjusted = np.minimum(np.maximum.accumulate((m - np.arange(m)) * q[order]), 1.0)
        result = np.empty(m)
        result[order] = adjusted
        out[ok] = result
    return out


# --- validation and groupings ------------------------------------------------------------------------


def _validate(per_image: Any, attributes: Sequence[str], metrics: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validate the per-image frame as :func:`group_table` does; return the name lists."""
    return validate_per_image(per_image, attributes=attributes, metrics=metrics)


def _groupings(per_image: pd.DataFrame, attrs: list[str]) -> list[tuple[str, list[str], np.ndarray]]:
    """``(grouping, group labels, (N,) group code of each row)`` in :func:`group_table` order."""
    import numpy as np
    import pandas as pd

    result = [(OVERALL_GROUPING, [OVERALL_GROUP], np.zeros(len(per_image), dtype=np.int64))]
    sets = [[attribute] for attribute in attrs]
    if len(attrs) > 1:
        sets.append(list(attrs))
    for columns in sets:
        if len(columns) == 1:  # the same sorted codes as groupby, without its overhead
            column = per_image[columns[0]]
            if isinstance(column.dtype, pd.StringDtype):  # strings: factorized in place, 6x faster
                codes, uniques = column.factorize(sort=True)
            else:
                codes, uniques = pd.factorize(column.to_numpy(dtype=object), sort=True)
            labels = [str(value) for value in uniques]
        else:
            grouped = per_image[columns].reset_index(drop=True).groupby(columns, sort=True)
            codes = grouped.ngroup().to_numpy()
            labels = [GROUP_SEPARATOR.join(str(part) for part in key) for key in grouped.size().index]
        result.append((GROUPING_SEPARATOR.join(columns), labels, np.asarray(codes, dtype=np.int64)))
    return result


def _expansion(n_subjects: np.ndarray, level: float, interval: str) -> np.ndarray:
    """(G,) factor that spreads each group's resampled means about its estimate."""
    import numpy as np

    factors = np.ones(n_subjects.shape, dtype=np.float64)
    if interval == "percentile":
        return factors
    from scipy import stats

    q = (1.0 + level) / 2.0
    n = n_subjects.astype(np.float64)
    ok = n >= 2
    factors[ok] = np.sqrt(n[ok] / (n[ok] - 1.0)) * stats.t.ppf(q, n[ok] - 1.0) / stats.norm.ppf(q)
    return factors


def _expand(boot: np.ndarray, centre: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``centre + factor * (boot - centre)`` per group; boot (B, G, M), centre (G, M)."""
    import numpy as np

    with np.errstate(invalid="ignore"):  # a non-finite group (inf - inf) gets NaN: no interval
        return centre[None] + factors[None, :, None] * (boot - centre[None])


def _quantiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0; NaN where any sample is NaN."""
    import numpy as np

    alpha = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    return low, high


def _clip(values: Any, floor: float | None, ceiling: float | None) -> Any:
    """``values`` clipped below at ``floor`` and above at ``ceiling`` (None: no bound); NaN stays NaN."""
    import numpy as np

    if floor is not None:
        values = np.maximum(values, floor)
    if ceiling is not None:
        values = np.minimum(values, ceiling)
    return values


def _bias_corrected_quantiles(
    samples: np.ndarray, estimate: Any, level: float, *, floor: float | None = None, ceiling: float | None = None
) -> tuple[Any, Any]:
    """Percentile interval of ``samples - bias``, ``bias = mean(samples) - estimate`` (axis 0), clipped.

    For statistics of extremes (worst group, max - min, worst / best) the resampled values sit
    above the estimate: a group that is not the worst is sometimes resampled into the worst.
    Subtracting the bootstrap's own estimate of that bias keeps the interval around the
    estimate (the plain percentile interval can exclude it); ``floor`` and ``ceiling`` clip the
    bounds to the statistic's range (a difference ``|worst - best|`` is never below 0).
    """
    import numpy as np

    with np.errstate(invalid="ignore"):
        shifted = samples - (samples.mean(axis=0) - estimate)
    low, high = _quantiles(shifted, level)
    return _clip(low, floor, ceiling), _clip(high, floor, ceiling)


def _basic_quantiles(
    samples: np.ndarray, estimate: Any, level: float, *, floor: float | None = None, ceiling: float | None = None
) -> tuple[Any, Any]:
    """Basic bootstrap interval ``(2 * estimate - q_high, 2 * estimate - q_low)`` over axis 0, clipped.

    ``q_low``/``q_high`` are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    resampled statistic. Reflecting them about the estimate removes the bootstrap's estimate
    of the bias once (the interval sits about ``2 * estimate - median(samples)``), where a
    percentile interval adds it once. ``floor`` and ``ceiling`` clip both bounds to the
    statistic's range; clipping drops only values the truth cannot take, so it never
    lowers coverage.
    """
    import numpy as np

    q_low, q_high = _quantiles(samples, level)
    with np.errstate(invalid="ignore"):
        low, high = 2.0 * estimate - q_high, 2.0 * estimate - q_low
    return _clip(low, floor, ceiling), _clip(high, floor, ceiling)


def _disparity_quantiles(
    samples: np.ndarray, estimate: Any, level: float, *, floor: float | None = None, ceiling: float | None = None
) -> tuple[Any, Any]:
    """Interval of an extreme (worst group, ``max - min``, ``worst / best``): basic and percentile joined.

    The lower bound is the lower of the basic and the percentile interval's, the upper bound
    the higher, then both are clipped to ``[floor, ceiling]``. The resampled extremes sit
    above the estimate (a group that is not the worst is sometimes resampled into it), so in
    practice the lower bound is the basic interval's (the bias taken off once) and the upper
    the percentile interval's. Why both, measured by ``benchmarks/simulation_coverage.py``
    (see :mod:`genfair.audit.stats`): the basic interval alone covers ``max - min`` only
    88-91% when the groups are apart (its reflection over-corrects whenever the two extreme
    groups come near each other), the percentile interval 0% when they tie.
    """
    import numpy as np

    basic_low, basic_high = _basic_quantiles(samples, estimate, level)
    percentile_low, percentile_high = _quantiles(samples, level)
    low, high = np.minimum(basic_low, percentile_low), np.maximum(basic_high, percentile_high)
    return _clip(low, floor, ceiling), _clip(high, floor, ceiling)


def _debiased(samples: np.ndarray, estimate: Any, *, floor: float | None = None, ceiling: float | None = None) -> Any:
    """Bootstrap bias-corrected estimate ``2 * estimate - mean(samples)`` (axis 0), clipped to the range."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        value = 2.0 * estimate - samples.mean(axis=0)
    return _clip(value, floor, ceiling)


def _debiased_ratio(
    resampled_worst: np.ndarray, resampled_best: np.ndarray, worst: float, best: float, ratio_range: Mapping[str, Any]
) -> float:
    """``worst / best`` of the bias-corrected worst and best means (:func:`_debiased`), clipped to the range.

    The difference's debiased value is exactly the difference of these two; the ratio's is
    their ratio, not ``2 * ratio - mean(resampled ratios)``: a ratio resampled over a small,
    noisy best group has a heavy upper tail, and its mean would make the correction as noisy.
    NaN when a corrected mean is not positive while the estimates are.
    """
    worst_debiased, best_debiased = _debiased(resampled_worst, worst), _debiased(resampled_best, best)
    if (ratio_range["floor"] is not None or ratio_range["ceiling"] is not None) and not (
        worst_debiased > 0 and best_debiased > 0
    ):
        return float("nan")
    return float(_clip(_ratio(worst_debiased, best_debiased), ratio_range["floor"], ratio_range["ceiling"]))


def _ratio(worst: np.ndarray, best: np.ndarray) -> np.ndarray:
    """worst / best, 1 where they are equal (also 0/0 and inf/inf), as disparity_table does."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(worst, best)
    return np.where(worst == best, 1.0, ratio)


def _extremes(values: np.ndarray, higher: bool) -> tuple[np.ndarray, np.ndarray]:
    """(worst, best) over the last axis: min/max for scores, max/min for errors."""
    if higher:
        return values.min(axis=-1), values.max(axis=-1)
    return values.max(axis=-1), values.min(axis=-1)


# --- the analysis ------------------------------------------------------------------------------------


def _exact_means(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, M) group means computed as ``np.mean`` of each group's values in row order.

    This is the same arithmetic as fairlearn's MetricFrame over the same rows, so the
    point estimates equal :func:`group_table`'s bit for bit.
    """
    import numpy as np

    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    means = np.full((n_groups, values.shape[1]), np.nan)
    for j in range(values.shape[1]):
        column = np.ascontiguousarray(values[order, j])
        for g in range(n_groups):
            if bounds[g + 1] > bounds[g]:
                means[g, j] = np.mean(column[bounds[g] : bounds[g + 1]])
    return means


def _reference_index(
    grouping: str,
    labels: list[str],
    reference: str | Mapping[str, str],
    eligible: np.ndarray,
    sufficient: np.ndarray,
    estimates: np.ndarray,
    n_subjects: np.ndarray,
    n_images: np.ndarray,
    higher: bool,
    min_subjects: int,
) -> int | None:
    """Index of the reference group of one (grouping, metric), or None when there is none."""
    import numpy as np

    if isinstance(reference, Mapping) or reference not in REFERENCE_KEYWORDS:
        name = reference.get(grouping) if isinstance(reference, Mapping) else reference
        if name is None or name not in labels:
            return None
        index = labels.index(name)
        if not sufficient[index]:
            raise ValueError(
                f"{INSUFFICIENT_REFERENCE_MSG}: {name!r} in grouping {grouping!r} has {int(n_subjects[index])} "
                f"subject(s), fewer than min_subjects={min_subjects}; pick another group, 'best' or 'largest'"
            )
        return index
    candidates = np.flatnonzero(eligible)
    if candidates.size == 0:
        return None
    if reference == "best":
        values = estimates[candidates]
        return int(candidates[np.argmax(values) if higher else np.argmin(values)])
    # "largest": most subjects, then most images, then first in table order.
    key = n_subjects[candidates] * (int(n_images.max()) + 1) + n_images[candidates]
    return int(candidates[np.argmax(key)])


def _check_named_reference(reference: str | Mapping[str, str], groupings: list[tuple[str, list[str], Any]]) -> None:
    """Raise if a named reference matches no group (or a mapping names an unknown grouping/group)."""
    labels = {name: group_labels for name, group_labels, _ in groupings}
    if isinstance(reference, Mapping):
        for grouping, group in reference.items():
            if grouping not in labels or group not in labels[grouping]:
                available = {name: values for name, values in labels.items() if name != OVERALL_GROUPING}
                raise ValueError(
                    f"{UNKNOWN_REFERENCE_MSG}: {grouping!r} -> {group!r}; available groups: {available}"
                )
    elif reference not in REFERENCE_KEYWORDS:
        if not any(reference in group_labels for name, group_labels in labels.items() if name != OVERALL_GROUPING):
            every = sorted({g for name, values in labels.items() if name != OVERALL_GROUPING for g in values})
            raise ValueError(
                f"{UNKNOWN_REFERENCE_MSG}: {reference!r}; use 'best', 'largest' or one of {every}"
            )


def _analyse(
    per_image: pd.DataFrame, attributes: Sequence[str], metrics: Sequence[str], config: StatsConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables from one set of resamples (so they agree with each other)."""
    import numpy as np

    attrs, mets = _validate(per_image, attributes, metrics)
    directions = [_higher_is_better(metric) for metric in mets]
    values = np.zeros((len(per_image), len(mets)))
    for j, metric in enumerate(mets):
        values[:, j] = per_image[metric].to_numpy(dtype=np.float64)
    subjects = per_image[SUBJECT_COLUMN].astype(str).factorize()[0].astype(np.int64)
    groupings = _groupings(per_image, attrs)
    _check_named_reference(config.reference, groupings)

    group_rows: list[dict[str, Any]] = []
    disparity_rows: list[dict[str, Any]] = []
    p_disparity: dict[int, float] = {}  # disparity row -> the permutation p of its max - min
    overall_estimates = None
    for index, (grouping, labels, codes) in enumerate(groupings):
        n_groups = len(labels)
        clusters = _clusters(codes, subjects, values, n_groups)
        n_subjects = clusters.n_subjects()
        n_images = np.bincount(codes, minlength=n_groups).astype(np.int64)
        sufficient = n_subjects >= config.min_subjects
        estimates = _exact_means(values, codes, n_groups)
        if overall_estimates is None:
            overall_estimates = estimates[0]
        boot = _bootstrap_means(clusters, sufficient, config.n_resamples, _rng(config.seed, index, 0))
        boot = _expand(boot, estimates, _expansion(n_subjects, config.level, config.interval))
        low, high = _quantiles(boot, config.level)
        is_overall = grouping == OVERALL_GROUPING

        for j, metric in enumerate(mets):
            higher = directions[j]
            finite = np.isfinite(estimates[:, j])
            eligible = sufficient & finite
            p_raw, p_range = np.full(n_groups, np.nan), float("nan")
            if not is_overall:  # the per-group and the disparity test share their relabellings
                p_raw, p_range = _permutation_tests(
                    clusters, j, eligible, higher, config.n_permutations, _rng(config.seed, index, 1, j),
                    studentized=config.studentized,
                )
            p_adj = holm(p_raw)
            ref = None
            if not is_overall:
                ref = _reference_index(
                    grouping, labels, config.reference, eligible, sufficient, estimates[:, j],
                    n_subjects, n_images, higher, config.min_subjects,
                )
            ratio_lo = ratio_hi = diff_lo = diff_hi = np.full(n_groups, np.nan)
            ratio_point = diff_point = np.full(n_groups, np.nan)
            if ref is not None:
                ratio_point = _ratio(estimates[:, j], np.full(n_groups, estimates[ref, j]))
                diff_point = estimates[:, j] - estimates[ref, j]
                ratio_lo, ratio_hi = _quantiles(_ratio(boot[:, :, j], boot[:, [ref], j]), config.level)
                diff_lo, diff_hi = _quantiles(boot[:, :, j] - boot[:, [ref], j], config.level)
            for g, label in enumerate(labels):
                has_interval = bool(eligible[g])
                compare = has_interval and ref is not None and g != ref
                group_rows.append(
                    {
                        "grouping": grouping,
                        "group": label,
                        "metric": metric,
                        "higher_is_better": higher,
                        "n_images": int(n_images[g]),
                        "n_subjects": int(n_subjects[g]),
                        "evidence": EVIDENCE_SUFFICIENT if sufficient[g] else EVIDENCE_INSUFFICIENT,
                        "estimate": estimates[g, j],
                        "ci_low": low[g, j] if has_interval else np.nan,
                        "ci_high": high[g, j] if has_interval else np.nan,
                        "reference_group": labels[ref] if ref is not None else None,
                        "ratio_to_reference": ratio_point[g],
                        "ratio_ci_low": ratio_lo[g] if compare else np.nan,
                        "ratio_ci_high": ratio_hi[g] if compare else np.nan,
                        "difference_to_reference": diff_point[g],
                        "difference_ci_low": diff_lo[g] if compare else np.nan,
                        "difference_ci_high": diff_hi[g] if compare else np.nan,
                        "p_value": p_raw[g],
                        "p_holm": p_adj[g],
                    }
                )
            if is_overall:
                continue
            row: dict[str, Any] = {
                "grouping": grouping,
                "metric": metric,
                "higher_is_better": higher,
                "overall": overall_estimates[j],
                "n_groups": int(eligible.sum()),
                "n_insufficient": int((~sufficient).sum()),
                "evidence": EVIDENCE_SUFFICIENT if eligible.sum() >= 2 else EVIDENCE_INSUFFICIENT,
                **dict.fromkeys(DISPARITY_INTERVAL_COLUMNS[7:], np.nan),
                "worst_group": None,
                "best_group": None,
            }
            if eligible.sum() >= 2:
                columns = np.flatnonzero(eligible)
                point = estimates[columns, j]
                worst_at = columns[np.argmin(point) if higher else np.argmax(point)]
                best_at = columns[np.argmax(point) if higher else np.argmin(point)]
                worst, best = estimates[worst_at, j], estimates[best_at, j]
                resampled_worst, resampled_best = _extremes(boot[:, columns, j], higher)
                ratio = float(_ratio(np.float64(worst), np.float64(best)))
                difference = abs(worst - best) if worst != best else 0.0
                worst_lo, worst_hi = _disparity_quantiles(resampled_worst, worst, config.level)
                positive = worst > 0 and best > 0  # then worst / best is on one side of 1
                ratio_range = {"floor": 1.0 if positive and not higher else None,
                               "ceiling": 1.0 if positive and higher else None}
                resampled_ratio = _ratio(resampled_worst, resampled_best)
                resampled_difference = np.abs(resampled_worst - resampled_best)
                ratio_lo1, ratio_hi1 = _disparity_quantiles(resampled_ratio, ratio, config.level, **ratio_range)
                diff_lo1, diff_hi1 = _disparity_quantiles(resampled_difference, difference, config.level, floor=0.0)
                p_disparity[len(disparity_rows)] = p_range
                row.update(
                    worst_group=labels[worst_at],
                    worst=worst,
                    worst_ci_low=worst_lo,
                    worst_ci_high=worst_hi,
                    best_group=labels[best_at],
                    best=best,
                    ratio=ratio,
                    ratio_ci_low=ratio_lo1,
                    ratio_ci_high=ratio_hi1,
                    difference=difference,
                    difference_ci_low=diff_lo1,
                    difference_ci_high=diff_hi1,
                    ratio_debiased=_debiased_ratio(resampled_worst, resampled_best, worst, best, ratio_range),
                    difference_debiased=float(_debiased(resampled_difference, difference, floor=0.0)),
                    p_min=_smallest_permutation_p(n_subjects[eligible], config.n_permutations),
                )
            disparity_rows.append(row)

    for metric in mets:  # Holm across the groupings of one metric
        rows_of_metric = [i for i, row in enumerate(disparity_rows) if row["metric"] == metric]
        p_raw = np.array([p_disparity.get(i, np.nan) for i in rows_of_metric])
        for i, p, adjusted in zip(rows_of_metric, p_raw, holm(p_raw), strict=True):
            disparity_rows[i].update(p_value=p, p_holm=adjusted)
    per_group = _frame(
        group_rows,
        GROUP_INTERVAL_COLUMNS,
        {
            "grouping": "str",
            "group": "str",
            "metric": "str",
            "higher_is_better": "bool",
            "n_images": "int64",
            "n_subjects": "int64",
            "evidence": "str",
            "reference_group": "str",
        },
    )
    disparities = _frame(
        disparity_rows,
        DISPARITY_INTERVAL_COLUMNS,
        {
            "grouping": "str",
            "metric": "str",
            "higher_is_better": "bool",
            "n_groups": "int64",
            "n_insufficient": "int64",
            "evidence": "str",
            "worst_group": "str",
            "best_group": "str",
        },
    )
    logger.debug("interval tables: %d group rows, %d disparity rows", len(per_group), len(disparities))
    return per_group, disparities


def _frame(rows: list[dict[str, Any]], columns: Sequence[str], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A frame of ``rows`` with ``columns`` in order; dtypes from ``dtypes``, float64 otherwise."""
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {}
    for column in columns:
        values = [row[column] for row in rows]
        dtype = dtypes.get(column, "float64")
        data[column] = pd.array(values, dtype="str") if dtype == "str" else np.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(columns))


def interval_tables(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metrics: Sequence[str],
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
    reference: str | Mapping[str, str] = "best",
    studentized: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`group_intervals` and :func:`disparity_intervals` from one set of resamples.

    Same arguments as :func:`group_intervals`, plus ``studentized`` (of
    :func:`disparity_intervals`); the two tables equal what the two functions return for the
    same arguments, computed once.

    Returns:
        ``(per_group, disparities)`` with columns :data:`GROUP_INTERVAL_COLUMNS` and
        :data:`DISPARITY_INTERVAL_COLUMNS`.
    """
    config = StatsConfig(
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        level=level,
        seed=seed,
        min_subjects=min_subjects,
        interval=interval,
        reference=reference,
        studentized=studentized,
    )
    return _analyse(per_image, attributes, metrics, config)


def group_intervals(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metrics: Sequence[str],
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
    reference: str | Mapping[str, str] = "best",
) -> pd.DataFrame:
    """Each group's mean with a subject-clustered interval, its gap to a reference, and a p-value.

    Rows come in :func:`~genfair.audit.group_table` order (the overall row, each single
    attribute's groups, then the intersection of all attributes when there are 2+), and
    within each grouping one block of groups per metric. For each (grouping, metric):

    - ``estimate``: the group mean, equal to ``group_table``'s; ``ci_low``/``ci_high``:
      the cluster-bootstrap interval (subjects resampled within the group).
    - ``reference_group`` and the group's ``ratio_to_reference`` (``estimate /
      reference``) and ``difference_to_reference`` (``estimate - reference``, signed:
      positive means a larger error or a larger score than the reference) with
      intervals from the same resamples. The reference row itself has ratio 1,
      difference 0 and no interval. The overall row, and a grouping without the named
      reference group, have no reference (a missing ``reference_group`` and NaN).
    - ``p_value``: one-sided permutation p-value for "this group is served worse than the
      other groups of the grouping" (subjects' group labels shuffled); ``p_holm``: Holm-
      adjusted across the groups of the grouping. NaN on the overall row.

    A group with fewer than ``min_subjects`` subjects has ``evidence = "insufficient"``:
    its estimate (and point ratio/difference) is shown, its intervals and p-values are
    NaN, and it is never the reference unless named. A group whose mean is not finite (a
    NaN image, an infinite PSNR) gets no interval and takes no part in the comparisons.

    Args:
        per_image: one row per image with ``subject``, the ``attributes`` and the
            ``metrics`` columns (numeric).
        attributes: sensitive-attribute columns, e.g. ``["gender", "skin_tone"]``.
        metrics: per-image metric columns; direction from the registry or the
            ``_score``/``_error``/``_loss`` suffix.
        n_resamples: bootstrap resamples.
        n_permutations: label permutations for the p-values (0 skips them).
        level: confidence level, e.g. 0.95.
        seed: seed of every random draw; equal seeds give equal tables.
        min_subjects: fewest subjects a group needs for intervals and comparisons (>= 2).
        interval: ``"expanded"`` (small-sample expanded percentile) or ``"percentile"``.
        reference: ``"best"``, ``"largest"``, a group label, or ``{grouping: group}``.

    Returns:
        DataFrame with columns :data:`GROUP_INTERVAL_COLUMNS` and a fresh RangeIndex.

    Raises:
        TypeError: if ``per_image`` is not a DataFrame.
        ValueError: on the inputs :func:`group_table` rejects, an option out of range,
            a reference group that does not exist or has insufficient evidence.

    Example:
        >>> import pandas as pd
        >>> per_image = pd.DataFrame({
        ...     "subject": [f"s{i}" for i in range(12)],
        ...     "gender": ["female"] * 6 + ["male"] * 6,
        ...     "mse_error": [0.3, 0.4, 0.35, 0.45, 0.5, 0.3, 0.1, 0.2, 0.15, 0.1, 0.2, 0.25],
        ... })
        >>> table = group_intervals(per_image, attributes=["gender"], metrics=["mse_error"], n_resamples=200)
        >>> table[["group", "evidence", "reference_group"]].values.tolist()[1:]
        [['female', 'sufficient', 'male'], ['male', 'sufficient', 'male']]
        >>> row = table.iloc[1]
        >>> bool(row["ci_low"] <= row["estimate"] <= row["ci_high"]), round(float(row["ratio_to_reference"]), 3)
        (True, 2.3)
    """
    return interval_tables(
        per_image,
        attributes=attributes,
        metrics=metrics,
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        level=level,
        seed=seed,
        min_subjects=min_subjects,
        interval=interval,
        reference=reference,
    )[0]


def disparity_intervals(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metrics: Sequence[str],
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
    studentized: bool = True,
) -> pd.DataFrame:
    """Worst and best group of each grouping, their ratio and difference, with intervals and p-values.

    One row per (grouping other than overall, metric), like
    :func:`~genfair.audit.disparity_table` but over the groups with sufficient evidence
    only, and with:

    - ``worst_ci_*``, ``ratio_ci_*``, ``difference_ci_*``: intervals of the worst value,
      ``worst / best`` and ``|worst - best|`` recomputed on every cluster resample (the
      worst group may change between resamples): the basic interval's lower bound and the
      percentile interval's upper bound, clipped to the statistic's range (see
      :mod:`genfair.audit.stats` for why and how well they cover).
    - ``ratio_debiased``, ``difference_debiased``: ``2 * estimate - mean(resampled)``, the
      bootstrap's bias correction of ``max - min`` (and of the ratio), clipped at 0 (at 1).
    - ``p_value`` / ``p_holm``: the permutation test of the printed disparity ("the groups'
      true means are equal"), subjects' group labels shuffled; studentized unless
      ``studentized=False``; Holm-adjusted across the groupings of the metric. The
      per-group "served worse than the rest" p-values are in :func:`group_intervals`.
    - ``n_groups`` (groups compared), ``n_insufficient`` (groups left out for too few
      subjects) and ``evidence`` (``"insufficient"`` when fewer than two groups can be
      compared; the values are then NaN: one group says nothing about fairness).

    With every group sufficient, ``worst``, ``best``, ``ratio`` and ``difference`` equal
    ``disparity_table``'s.

    Args:
        per_image, attributes, metrics, n_resamples, n_permutations, level, seed,
            min_subjects, interval: as in :func:`group_intervals`.
        studentized: the disparity test's statistic: the largest Welch statistic over pairs
            of groups (True) or ``max - min`` of the means (False).

    Returns:
        DataFrame with columns :data:`DISPARITY_INTERVAL_COLUMNS`.

    Raises:
        TypeError, ValueError: as :func:`group_intervals`.

    Example:
        >>> import pandas as pd
        >>> per_image = pd.DataFrame({
        ...     "subject": [f"s{i}" for i in range(12)],
        ...     "gender": ["female"] * 6 + ["male"] * 6,
        ...     "mse_error": [0.3, 0.4, 0.35, 0.45, 0.5, 0.3, 0.1, 0.2, 0.15, 0.1, 0.2, 0.25],
        ... })
        >>> row = disparity_intervals(per_image, attributes=["gender"], metrics=["mse_error"]).iloc[0]
        >>> row["worst_group"], round(float(row["difference"]), 4), bool(row["p_value"] < 0.01)
        ('female', 0.2167, True)
    """
    return interval_tables(
        per_image,
        attributes=attributes,
        metrics=metrics,
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        level=level,
        seed=seed,
        min_subjects=min_subjects,
        interval=interval,
        studentized=studentized,
    )[1]


def _smallest_permutation_p(people: np.ndarray, n_permutations: int) -> float:
    """The smallest p a relabelling test of groups of ``people`` subjects can give with ``n_permutations`` draws.

    ``(1 + #{T* >= T}) / (1 + B)`` is at least ``1 / (1 + B)``, and the observed labelling comes
    back in about ``B / A`` of the draws when there are only ``A`` distinct ways to deal the people
    to the groups (the multinomial coefficient; swapping two groups of one size gives the same
    max - min, so those count once): so at least ``1 / A`` too. Two groups of 5 people: ``A = 126``.
    """
    import math

    import numpy as np

    if n_permutations == 0:
        return float("nan")
    sizes = np.asarray(people, dtype=np.int64)
    log_ways = math.lgamma(int(sizes.sum()) + 1) - sum(math.lgamma(int(n) + 1) for n in sizes)
    log_ways -= sum(math.lgamma(int(count) + 1) for count in np.unique(sizes, return_counts=True)[1])
    return max(1.0 / (1 + n_permutations), math.exp(-log_ways))
