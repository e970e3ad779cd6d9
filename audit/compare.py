"""Comparing two models on the same images, and representation metrics for upsampling.

**Paired comparisons** (:func:`paired_differences`, :func:`compare_models`). Two audits of
the same images (per-image frames joined on ``path``) are paired data: each image, and each
subject, is seen by both models. :func:`compare_models` reports, per group, the
difference of the group means ``B - A`` with a paired cluster-bootstrap interval (the same
subjects drawn for both models) and a Wilcoxon signed-rank p-value; and per grouping, the
change in disparity ``disparity(B) - disparity(A)`` (``disparity = |worst - best|`` over
the groups with sufficient evidence, recomputed on every resample) with its interval and
a one-sided p-value for "B is fairer than A" from a paired sign-flip permutation test
(each subject's A and B values swapped with probability 1/2: exact when the two models
are exchangeable).

**Representation metrics** (Jalal et al. 2021, "Fairness for image generation with
uncertain sensitive attributes"; Laszkiewicz et al. 2024, "Benchmarking the fairness of
image upsampling methods"). An attribute classifier labels the originals and the
outputs; these functions take its codes:

- :func:`representation_demographic_parity` (RDP): the rate at which an output is
  classified as its person's own group, ``P(class(output) = a | group = a)``, should be
  equal across groups. Per-group rates with cluster-bootstrap intervals, the gap
  ``max - min`` and ratio ``min / max`` with (bias-corrected) intervals, and a
  permutation test of homogeneity in which whole subjects swap groups.
- :func:`proportional_representation` (PR): the distribution of the outputs' predicted
  classes should match the true class distribution. Stuart-Maxwell chi-square test of
  marginal homogeneity (the two labels of one image are paired) with a Rao-Scott design
  correction estimated from each subject's counts, its p from resampling people within
  their groups.
- :func:`uninformative_conditional_proportional_representation` (UCPR): for
  uninformative inputs (e.g. a 4x4 average face) the outputs' predicted classes should
  follow the population (uniform by default). Pearson's chi-square statistic, its p from
  the exact multinomial null.

**People, not images, are the independent units.** A person's photos share the person: if
one of them keeps its group under the model, the others are likely to as well. Image-level
chi-square tests count each photo as a new piece of evidence, so with 20 photos a person
they reject a true null far more often than they say (an RDP test rejected 37% of
simulated audits with no group difference at the 5% level). RDP's and PR's tests count
subjects instead (see each function); UCPR's outputs come from independently drawn inputs
and are independent given the panel. Each result says which test it ran (``test``), how
many independent units it counted (``n_units``) and, for RDP and PR, the estimated design
effect: the factor by which clustering inflates the image-level chi-square
(``statistic`` is the image-level chi-square divided by it, so on the scale of a
chi-square with ``dof`` degrees of freedom under the null). ``benchmarks/
simulation_representation.py`` checks the type I error and power by simulation.

Each also reports the Pearson chi-square divergence ``sum((p - q)**2 / q)`` between the
observed and the target distribution, the effect size Laszkiewicz et al. report (0 is
perfectly fair; for RDP ``p`` is the vector of rates normalised to sum to 1 and ``q``
uniform).

numpy, pandas and scipy are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .grouping import OVERALL_GROUPING, SUBJECT_COLUMN, _check_columns, _check_frame, _higher_is_better
from .stats import (
    _BLOCK,
    _disparity_quantiles,
    _smallest_permutation_p,
    EVIDENCE_INSUFFICIENT,
    EVIDENCE_SUFFICIENT,
    StatsConfig,
    _bootstrap_means,
    _clusters,
    _exact_means,
    _expand,
    _expansion,
    _extremes,
    _frame,
    _groupings,
    _quantiles,
    _ratio,
    _rng,
    _validate,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "COMPARISON_DISPARITY_COLUMNS",
    "COMPARISON_GROUP_COLUMNS",
    "REPRESENTATION_TESTS",
    "Comparison",
    "RepresentationResult",
    "compare_models",
    "majority_rate",
    "paired_differences",
    "proportional_representation",
    "representation_demographic_parity",
    "uninformative_conditional_proportional_representation",
]

PATH_COLUMN = "path"
#: The columns of :attr:`Comparison.per_group`, in order.
COMPARISON_GROUP_COLUMNS = (
    "grouping",
    "group",
    "metric",
    "higher_is_better",
    "n_images",
    "n_subjects",
    "evidence",
    "mean_a",
    "mean_b",
    "difference",
    "ci_low",
    "ci_high",
    "statistic",
    "p_value",
    "p_min",
)
#: The columns of :attr:`Comparison.disparities`, in order.
COMPARISON_DISPARITY_COLUMNS = (
    "grouping",
    "metric",
    "higher_is_better",
    "n_groups",
    "evidence",
    "worst_group_a",
    "disparity_a",
    "worst_group_b",
    "disparity_b",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_min",
)

# Messages reused by the tests: each raise appends what it received.
DUPLICATE_PATH_MSG = "paths must be unique in each per-image frame"
PATHS_DIFFER_MSG = "the two per-image frames must cover the same images"
COLUMN_DIFFERS_MSG = "the two per-image frames disagree on"
BAD_UNIT_MSG = "unit must be 'subject' or 'image'"
BAD_CODES_MSG = "group codes must be a 1-D sequence of non-negative integers"
LENGTH_MISMATCH_MSG = "true and predicted group codes must have the same length"
CODE_OUT_OF_RANGE_MSG = "group code out of range"
BAD_NAMES_MSG = "group_names must be a sequence of distinct strings"
BAD_EXPECTED_MSG = "expected must be non-negative shares, one per group, summing to a positive number"
NO_CODES_MSG = "no group codes given"

#: What :attr:`RepresentationResult.test` names: the test behind each metric's ``p_value``.
REPRESENTATION_TESTS = {
    "rdp": "subject-permutation",  # Pearson chi-square of (group x kept/changed), subjects' groups permuted
    "pr": "rao-scott-bootstrap",  # marginal homogeneity / subjects' design effect, its null from resampling
    # people within their groups
    "ucpr": "chi-square-exact",  # Pearson's statistic, its null simulated from the multinomial: outputs of
    # independently drawn inputs
}


# --- paired comparison of two models -------------------------------------------------------------------


def paired_differences(
    per_image_a: pd.DataFrame,
    per_image_b: pd.DataFrame,
    *,
    metrics: Sequence[str],
    attributes: Sequence[str] = (),
) -> pd.DataFrame:
    """Join two models' per-image frames on ``path``: one row per image, both values and ``B - A``.

    Args:
        per_image_a: model A's per-image frame (``path, subject, <attributes>, <metrics>``).
        per_image_b: model B's per-image frame over the same images.
        metrics: metric columns to pair.
        attributes: attribute columns to carry over (they must agree between the frames).

    Returns:
        DataFrame in model A's row order with columns ``path, subject, <attributes>``,
        then per metric ``<metric>_a, <metric>_b, <metric>_diff`` (``B - A``), and a
        fresh RangeIndex.

    Raises:
        TypeError: if a frame is not a DataFrame.
        ValueError: if a column is missing, a path repeats, the frames cover different
            images, or they disagree on a path's subject or attributes.

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"path": ["x.png", "y.png"], "subject": ["s1", "s2"], "mse_error": [0.2, 0.4]})
        >>> b = pd.DataFrame({"path": ["y.png", "x.png"], "subject": ["s2", "s1"], "mse_error": [0.1, 0.3]})
        >>> paired_differences(a, b, metrics=["mse_error"])["mse_error_diff"].round(6).tolist()
        [0.1, -0.3]
    """
    import pandas as pd

    for frame, label in ((per_image_a, "per_image_a"), (per_image_b, "per_image_b")):
        _check_frame(frame, label)
        _check_columns(frame, [PATH_COLUMN, SUBJECT_COLUMN, *attributes, *metrics], label)
        repeated = frame[PATH_COLUMN][frame[PATH_COLUMN].duplicated()]
        if not repeated.empty:
            raise ValueError(f"{DUPLICATE_PATH_MSG}; {label} repeats {repeated.iloc[0]!r}")
    paths_a, paths_b = set(per_image_a[PATH_COLUMN]), set(per_image_b[PATH_COLUMN])
    if paths_a != paths_b:
        only_a, only_b = sorted(map(str, paths_a - paths_b)), sorted(map(str, paths_b - paths_a))
        raise ValueError(
            f"{PATHS_DIFFER_MSG}: {len(only_a)} only in A (e.g. {only_a[:3]}), {len(only_b)} only in B "
            f"(e.g. {only_b[:3]}); evaluate both models on the same split"
        )
    keys = [SUBJECT_COLUMN, *attributes]
    left = per_image_a[[PATH_COLUMN, *keys, *metrics]].reset_index(drop=True)
    right = per_image_b[[PATH_COLUMN, *keys, *metrics]].set_index(PATH_COLUMN).loc[left[PATH_COLUMN]]
    right = right.reset_index(drop=True)
    for column in keys:
        differs = left[column].astype(str).to_numpy() != right[column].astype(str).to_numpy()
        if differs.any():
            at = int(differs.argmax())
            raise ValueError(
                f"{COLUMN_DIFFERS_MSG} {column!r} for path {left.at[at, PATH_COLUMN]!r}: "
                f"{left.at[at, column]!r} in A, {right.at[at, column]!r} in B; audit both models on one manifest"
            )
    out = left[[PATH_COLUMN, *keys]].copy()
    for metric in metrics:
        a = left[metric].astype("float64")
        b = right[metric].astype("float64")
        out[f"{metric}_a"] = a.to_numpy()
        out[f"{metric}_b"] = b.to_numpy()
        out[f"{metric}_diff"] = (b - a).to_numpy()
    return pd.DataFrame(out).reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class Comparison:
    """Model B against model A on the same images.

    Attributes:
        per_group: one row per (grouping, group, metric), columns
            :data:`COMPARISON_GROUP_COLUMNS`: ``difference = mean_b - mean_a`` with its
            paired cluster-bootstrap interval, and the Wilcoxon signed-rank
            ``statistic`` and two-sided ``p_value``; ``p_min`` is the smallest p the test can
            give with this many people (``2 / 2**n``: 0.0625 for 5), so a table can say when
            significance was out of reach.
        disparities: one row per (grouping, metric), columns
            :data:`COMPARISON_DISPARITY_COLUMNS`: ``difference = disparity_b -
            disparity_a`` (negative: B is fairer) with its interval, and the one-sided
            ``p_value`` for "B is fairer than A"; ``p_min`` its smallest attainable value
            (``max(1 / (1 + n_permutations), 1 / 2**people)``).
    """

    per_group: pd.DataFrame
    disparities: pd.DataFrame


def _wilcoxon(differences: np.ndarray) -> tuple[float, float, float]:
    """Two-sided Wilcoxon signed-rank test, deterministic and fast: ``(statistic, p, smallest p)``.

    Zero differences are dropped (Wilcoxon's convention); (0, 1, 1) when none is left. The
    exact null distribution is used for up to 50 differences without ties, the normal
    approximation (with tie correction) otherwise: scipy's default would switch to a
    randomised permutation test on ties, which is slow and not reproducible. The smallest p
    the test can give with ``n`` nonzero differences is ``2 / 2**n`` (every sign alike): over
    5 people 0.0625, so no group of 5 can reach 0.05.
    """
    import numpy as np
    from scipy import stats

    if differences.size == 0 or not np.all(np.isfinite(differences)):
        return np.nan, np.nan, np.nan
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return 0.0, 1.0, 1.0
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    method = "exact" if nonzero.size <= 50 and not ties else "asymptotic"
    result = stats.wilcoxon(nonzero, method=method)
    return float(result.statistic), float(result.pvalue), min(1.0, 2.0 * 0.5 ** nonzero.size)


def _sign_flip_pvalue(
    clusters: Any,
    column_a: int,
    column_b: int,
    eligible: np.ndarray,
    higher: bool,
    observed: float,
    n_permutations: int,
    rng: np.random.Generator,
) -> float:
    """One-sided p-value for "disparity(B) < disparity(A)": swap A/B per subject at random."""
    import numpy as np

    if n_permutations == 0:
        return np.nan
    keep = eligible[clusters.group]
    remap = np.cumsum(eligible) - 1
    labels = remap[clusters.group[keep]]
    g = int(eligible.sum())
    sums_a, sums_b = clusters.sums[keep, column_a], clusters.sums[keep, column_b]
    counts = np.bincount(labels, clusters.counts[keep], g)
    base_a, base_b = np.bincount(labels, sums_a, g), np.bincount(labels, sums_b, g)
    onehot = np.zeros((labels.size, g))
    onehot[np.arange(labels.size), labels] = 1.0
    swing = (sums_b - sums_a)[:, None] * onehot  # (K, G): what a flip moves from B to A
    k = labels.size
    at_most = 0
    scale = max(float(np.max(np.abs(base_a / counts))), float(np.max(np.abs(base_b / counts))), 1e-300)
    step = max(1, (1 << 22) // max(k, 1))
    for start in range(0, n_permutations, step):
        rows = min(step, n_permutations - start)
        flips = rng.integers(0, 2, size=(rows, k)).astype(np.float64)
        moved = flips @ swing
        mean_a = (base_a[None] + moved) / counts[None]
        mean_b = (base_b[None] - moved) / counts[None]
        worst_a, best_a = _extremes(mean_a, higher)
        worst_b, best_b = _extremes(mean_b, higher)
        delta = np.abs(worst_b - best_b) - np.abs(worst_a - best_a)
        at_most += int((delta <= observed + 1e-9 * scale).sum())
    return (1.0 + at_most) / (1.0 + n_permutations)


def compare_models(
    per_image_a: pd.DataFrame,
    per_image_b: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metrics: Sequence[str],
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
    unit: Literal["subject", "image"] = "subject",
) -> Comparison:
    """Is model B better than model A for each group, and is it fairer? Paired, subject-clustered.

    Per (grouping, group, metric): ``mean_a``, ``mean_b``, ``difference = mean_b -
    mean_a`` (for ``*_error`` metrics negative means B is better), a paired cluster-
    bootstrap interval (subjects resampled within the group, the same draw for both
    models, with the small-sample expansion of :mod:`genfair.audit.stats` unless
    ``interval="percentile"``), and a two-sided Wilcoxon signed-rank test over the paired
    differences: one per subject (the subject's mean B - A; images of one person are not
    independent) with ``unit="subject"``, one per image with ``unit="image"``; zero
    differences are dropped, the exact distribution is used for up to 50 differences
    without ties and the normal approximation otherwise.

    Per (grouping, metric): ``disparity_a`` and ``disparity_b`` (``|worst - best|`` over
    the groups with sufficient evidence), ``difference = disparity_b - disparity_a``
    (negative: B is fairer) with the percentile interval of the disparities recomputed on
    each paired resample, and ``p_value``: one-sided "B is fairer than A" from
    ``n_permutations`` paired sign flips (each subject's A and B values swapped with
    probability 1/2), ``(1 + #{flipped <= observed}) / (1 + n_permutations)``.

    Groups with fewer than ``min_subjects`` subjects are ``"insufficient"``: means shown,
    intervals and p-values NaN, left out of the disparities.

    Args:
        per_image_a: model A's per-image frame.
        per_image_b: model B's per-image frame over the same images (joined on ``path``).
        attributes: sensitive-attribute columns.
        metrics: per-image metric columns.
        n_resamples, n_permutations, level, seed, min_subjects, interval: as in
            :func:`genfair.audit.group_intervals`.
        unit: the Wilcoxon test's unit, ``"subject"`` (default) or ``"image"``.

    Returns:
        A :class:`Comparison`.

    Raises:
        TypeError, ValueError: as :func:`paired_differences` and
            :func:`genfair.audit.group_intervals`, or for an unknown ``unit``.

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({
        ...     "path": [f"{i}.png" for i in range(12)], "subject": [f"s{i}" for i in range(12)],
        ...     "gender": ["female"] * 6 + ["male"] * 6,
        ...     "mse_error": [0.4, 0.5, 0.45, 0.4, 0.5, 0.45, 0.1, 0.2, 0.15, 0.1, 0.2, 0.15],
        ... })
        >>> b = a.assign(mse_error=[0.2, 0.25, 0.2, 0.25, 0.2, 0.25, 0.1, 0.2, 0.15, 0.1, 0.2, 0.15])
        >>> result = compare_models(a, b, attributes=["gender"], metrics=["mse_error"], n_resamples=200)
        >>> row = result.disparities.iloc[0]
        >>> round(float(row["difference"]), 4), bool(row["ci_high"] < 0), bool(row["p_value"] < 0.05)
        (-0.225, True, True)
    """
    import numpy as np
    import pandas as pd

    if unit not in ("subject", "image"):
        raise ValueError(f"{BAD_UNIT_MSG}, got {unit!r}")
    config = StatsConfig(
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        level=level,
        seed=seed,
        min_subjects=min_subjects,
        interval=interval,
    )
    attrs = list(attributes)
    _validate(per_image_a, attrs, metrics)
    _validate(per_image_b, attrs, metrics)
    paired = paired_differences(per_image_a, per_image_b, metrics=metrics, attributes=attrs)
    mets = list(metrics)
    m = len(mets)
    directions = [_higher_is_better(metric) for metric in mets]
    values = np.column_stack(
        [paired[f"{metric}_a"].to_numpy() for metric in mets] + [paired[f"{metric}_b"].to_numpy() for metric in mets]
    )
    subjects = pd.factorize(paired[SUBJECT_COLUMN].astype(str).to_numpy(dtype=object))[0].astype(np.int64)

    group_rows: list[dict[str, Any]] = []
    disparity_rows: list[dict[str, Any]] = []
    for index, (grouping, labels, codes) in enumerate(_groupings(paired, attrs)):
        n_groups = len(labels)
        clusters = _clusters(codes, subjects, values, n_groups)
        n_subjects = clusters.n_subjects()
        n_images = np.bincount(codes, minlength=n_groups)
        sufficient = n_subjects >= config.min_subjects
        estimates = _exact_means(values, codes, n_groups)
        boot = _bootstrap_means(clusters, sufficient, config.n_resamples, _rng(config.seed, index, 2))
        boot = _expand(boot, estimates, _expansion(n_subjects, config.level, config.interval))
        boot_diff = boot[:, :, m:] - boot[:, :, :m]
        low, high = _quantiles(boot_diff, config.level)
        for j, metric in enumerate(mets):
            higher = directions[j]
            eligible = sufficient & np.isfinite(estimates[:, j]) & np.isfinite(estimates[:, m + j])
            for g, label in enumerate(labels):
                in_group = codes == g
                if unit == "image":
                    diffs = values[in_group, m + j] - values[in_group, j]
                else:
                    member = clusters.group == g
                    diffs = (clusters.sums[member, m + j] - clusters.sums[member, j]) / clusters.counts[member]
                statistic, p_value, p_min = _wilcoxon(diffs) if eligible[g] else (np.nan, np.nan, np.nan)
                group_rows.append(
                    {
                        "grouping": grouping,
                        "group": label,
                        "metric": metric,
                        "higher_is_better": higher,
                        "n_images": int(n_images[g]),
                        "n_subjects": int(n_subjects[g]),
                        "evidence": EVIDENCE_SUFFICIENT if sufficient[g] else EVIDENCE_INSUFFICIENT,
                        "mean_a": estimates[g, j],
                        "mean_b": estimates[g, m + j],
                        "difference": estimates[g, m + j] - estimates[g, j],
                        "ci_low": low[g, j] if eligible[g] else np.nan,
                        "ci_high": high[g, j] if eligible[g] else np.nan,
                        "statistic": statistic,
                        "p_value": p_value,
                        "p_min": p_min,
                    }
                )
            if grouping == OVERALL_GROUPING:
                continue
            row: dict[str, Any] = {
                "grouping": grouping,
                "metric": metric,
                "higher_is_better": higher,
                "n_groups": int(eligible.sum()),
                "evidence": EVIDENCE_SUFFICIENT if eligible.sum() >= 2 else EVIDENCE_INSUFFICIENT,
                **dict.fromkeys(COMPARISON_DISPARITY_COLUMNS[5:], np.nan),
                "worst_group_a": None,
                "worst_group_b": None,
            }
            if eligible.sum() >= 2:
                columns = np.flatnonzero(eligible)
                point_a, point_b = estimates[columns, j], estimates[columns, m + j]
                worst_a, best_a = _extremes(point_a, higher)
                worst_b, best_b = _extremes(point_b, higher)
                disparity_a, disparity_b = abs(worst_a - best_a), abs(worst_b - best_b)
                pick = np.argmin if higher else np.argmax
                resampled_a = np.abs(np.subtract(*_extremes(boot[:, columns, j], higher)))
                resampled_b = np.abs(np.subtract(*_extremes(boot[:, columns, m + j], higher)))
                ci_low, ci_high = _quantiles(resampled_b - resampled_a, config.level)
                p_value = _sign_flip_pvalue(
                    clusters, j, m + j, eligible, higher, disparity_b - disparity_a,
                    config.n_permutations, _rng(config.seed, index, 3, j),
                )
                people = int(np.isin(clusters.group, columns).sum())
                # the sign flips of `people` subjects: 2**people arrangements, or the Monte Carlo floor
                p_min = max(1.0 / (1 + config.n_permutations), 0.5 ** people) if config.n_permutations else np.nan
                row.update(
                    worst_group_a=labels[columns[pick(point_a)]],
                    disparity_a=disparity_a,
                    worst_group_b=labels[columns[pick(point_b)]],
                    disparity_b=disparity_b,
                    difference=disparity_b - disparity_a,
                    ci_low=ci_low,
                    ci_high=ci_high,
                    p_value=p_value,
                    p_min=p_min,
                )
            disparity_rows.append(row)

    per_group = _frame(
        group_rows,
        COMPARISON_GROUP_COLUMNS,
        {
            "grouping": "str",
            "group": "str",
            "metric": "str",
            "higher_is_better": "bool",
            "n_images": "int64",
            "n_subjects": "int64",
            "evidence": "str",
        },
    )
    disparities = _frame(
        disparity_rows,
        COMPARISON_DISPARITY_COLUMNS,
        {
            "grouping": "str",
            "metric": "str",
            "higher_is_better": "bool",
            "n_groups": "int64",
            "evidence": "str",
            "worst_group_a": "str",
            "worst_group_b": "str",
        },
    )
    return Comparison(per_group=per_group, disparities=disparities)


# --- representation metrics ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RepresentationResult:
    """One representation metric: per-group table, test and effect sizes.

    Attributes:
        metric: ``"rdp"``, ``"pr"`` or ``"ucpr"``.
        by_group: one row per group (see each function for its columns).
        statistic: the test's chi-square statistic, on the scale of a chi-square with
            ``dof`` degrees of freedom under the null: for RDP and PR the image-level
            chi-square divided by ``design_effect``, for UCPR Pearson's.
        dof: its degrees of freedom.
        p_value: the test's p-value (small: the fairness criterion is violated).
        divergence: Pearson chi-square divergence between the observed and the target
            distribution (0 when perfectly fair).
        difference, difference_ci_low, difference_ci_high: RDP only: the gap ``max - min``
            between the groups' own-group rates, with its cluster-bootstrap interval (NaN
            for PR and UCPR).
        ratio, ratio_ci_low, ratio_ci_high: RDP only: ``min / max`` of those rates.
        test: which test gave ``p_value`` (:data:`REPRESENTATION_TESTS`): RDP
            ``"subject-permutation"``, PR ``"rao-scott-bootstrap"``, UCPR ``"chi-square-exact"``.
        design_effect: how many times larger the image-level chi-square is than it would
            be with independent images (RDP: the permutation null's mean over ``dof``; PR:
            the Rao-Scott mean generalised design effect); 1 means the photos of a person
            are as good as different people. NaN where it is not estimated (UCPR, a
            degenerate table, no permutations).
        n_units: the independent units the test counts: subjects (RDP: those of the
            tested groups), outputs for UCPR.
        p_min: the smallest p the test can give here: RDP ``max(1 / (1 + permutations),
            1 / ways to deal the people to the groups)``; PR ``1 / (1 + resamples)``; UCPR
            ``1 / (1 + simulations)``; NaN where no test ran or the p is exact (0 or 1).
    """

    metric: str
    by_group: pd.DataFrame
    statistic: float
    dof: int
    p_value: float
    divergence: float
    difference: float = float("nan")
    difference_ci_low: float = float("nan")
    difference_ci_high: float = float("nan")
    ratio: float = float("nan")
    ratio_ci_low: float = float("nan")
    ratio_ci_high: float = float("nan")
    test: str = ""
    design_effect: float = float("nan")
    n_units: int = 0
    p_min: float = float("nan")


def _codes(values: Any, label: str) -> np.ndarray:
    """Return ``values`` (list, numpy array or torch tensor) as a 1-D int64 array, or raise."""
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor: no torch import needed
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim == 1 and array.size == 0:
        raise ValueError(f"{NO_CODES_MSG}: {label} is empty")
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or bool((array < 0).any()):
        raise ValueError(f"{label} {BAD_CODES_MSG}, got {array.dtype} array of shape {array.shape}")
    return array.astype(np.int64)


def _names(group_names: Sequence[str] | None, largest: int) -> list[str]:
    """Group names: the given ones (checked against the codes), else ``"0", "1", ...``."""
    if group_names is None:
        return [str(i) for i in range(largest + 1)]
    if isinstance(group_names, str) or len(set(group_names)) != len(group_names):
        raise ValueError(f"{BAD_NAMES_MSG}, got {group_names!r}")
    names = [str(name) for name in group_names]
    if largest >= len(names):
        raise ValueError(
            f"{CODE_OUT_OF_RANGE_MSG}: code {largest} but only {len(names)} group_names {names}; codes are "
            f"positions in group_names"
        )
    return names


def _divergence(observed: np.ndarray, target: np.ndarray) -> float:
    """Pearson chi-square divergence sum((p - q)^2 / q); inf if p > 0 where q = 0."""
    import numpy as np

    support = target > 0
    if np.any(observed[~support] > 0):
        return float("inf")
    return float(np.sum((observed[support] - target[support]) ** 2 / target[support]))


@dataclass(frozen=True, eq=False)
class _GroupRates:
    """Per-group rates of a 0/1 outcome with cluster-bootstrap intervals (see :func:`_group_rates`)."""

    config: StatsConfig
    by_group: pd.DataFrame
    boot: np.ndarray  # (n_resamples, n_groups, 1) resampled rates
    codes: np.ndarray  # (N,) position of each image's true group among the groups present
    n_images: np.ndarray
    sufficient: np.ndarray
    n_groups: int
    clusters: Any  # the (group, subject) clusters of ``hits``: sums (K, 1), counts (K,)


def _labelled(
    true_groups: Any, predicted_groups: Any, subjects: Any, group_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Validated ``(true codes, predicted codes, names, subject codes)``; images are subjects when None."""
    import numpy as np
    import pandas as pd

    true = _codes(true_groups, "true_groups")
    predicted = _codes(predicted_groups, "predicted_groups")
    if true.size != predicted.size:
        raise ValueError(f"{LENGTH_MISMATCH_MSG}, got {true.size} and {predicted.size}")
    names = _names(group_names, int(max(true.max(), predicted.max())))
    if subjects is None:
        return true, predicted, names, np.arange(true.size, dtype=np.int64)
    subject_array = np.asarray(subjects.detach().cpu().numpy() if hasattr(subjects, "detach") else subjects)
    if subject_array.shape != true.shape:
        raise ValueError(f"{LENGTH_MISMATCH_MSG}: subjects has shape {subject_array.shape}, codes {true.shape}")
    if not np.issubdtype(subject_array.dtype, np.integer):  # ids compare as text: 1 and "1" are one subject
        subject_array = subject_array.astype(str)
    return true, predicted, names, pd.factorize(subject_array)[0].astype(np.int64)


def _group_rates(
    true: np.ndarray, subject_codes: np.ndarray, hits: np.ndarray, names: list[str], *, stream: int, **options: Any
) -> _GroupRates:
    """Each true group's mean of ``hits`` (N,) with a subject-cluster bootstrap interval.

    The small-sample expansion can push a resampled rate past 0 or 1; resamples are clipped
    to [0, 1], so intervals (and the gaps computed from them) stay rates.

    ``by_group`` has columns ``group, n_images, n_subjects, evidence, rate, ci_low, ci_high``,
    one row per group with at least one image (insufficient groups: NaN interval).
    """
    import numpy as np
    import pandas as pd

    config = StatsConfig(**{"n_permutations": 0, **options})
    present = np.flatnonzero(np.bincount(true, minlength=len(names)) > 0)
    codes = np.searchsorted(present, true)
    values = hits.astype(np.float64)[:, None]
    n_groups = present.size
    clusters = _clusters(codes, subject_codes, values, n_groups)
    n_subjects = clusters.n_subjects()
    n_images = np.bincount(codes, minlength=n_groups)
    sufficient = n_subjects >= config.min_subjects
    rates = _exact_means(values, codes, n_groups)
    boot = _bootstrap_means(clusters, sufficient, config.n_resamples, _rng(config.seed, 0, stream))
    boot = _expand(boot, rates, _expansion(n_subjects, config.level, config.interval)).clip(0.0, 1.0)
    low, high = _quantiles(boot, config.level)
    by_group = pd.DataFrame(
        {
            "group": [names[i] for i in present],
            "n_images": n_images.astype(np.int64),
            "n_subjects": n_subjects,
            "evidence": np.where(sufficient, EVIDENCE_SUFFICIENT, EVIDENCE_INSUFFICIENT),
            "rate": rates[:, 0],
            "ci_low": np.where(sufficient, low[:, 0], np.nan),
            "ci_high": np.where(sufficient, high[:, 0], np.nan),
        }
    ).astype({"group": "str", "evidence": "str"})
    return _GroupRates(config, by_group, boot, codes, n_images, sufficient, n_groups, clusters)


def _homogeneity_chi2(kept: np.ndarray, images: np.ndarray, share: float) -> np.ndarray:
    """Pearson chi-square of (group x kept/changed) tables: kept, images (..., G); share kept overall in (0, 1)."""
    expected = images * share
    return ((kept - expected) ** 2 / (expected * (1.0 - share))).sum(axis=-1)


def _subject_permutation(
    labels: np.ndarray, kept: np.ndarray, images: np.ndarray, n_groups: int, n_permutations: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """RDP's test: ``(chi-square, p-value, mean chi-square under the null)`` from permuting subjects.

    ``labels`` (K,) are the subjects' groups (0..G-1), ``kept`` and ``images`` (K,) their
    kept-image and image counts. Each permutation shuffles the labels over the subjects, so
    a subject's images move together; the statistic is the image table's Pearson
    chi-square. ``p = (1 + #{T* >= T}) / (1 + n_permutations)`` (ties within a relative
    1e-9 count as reaching T). Vectorised over blocks of permutations.
    """
    import numpy as np

    k = labels.size
    share = float(kept.sum() / images.sum())
    observed = float(_homogeneity_chi2(np.bincount(labels, kept, n_groups), np.bincount(labels, images, n_groups),
                                       share))
    # Dealing the subjects at random into the groups' fixed numbers of places is permuting their labels.
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_groups))[:-1]])
    reached, total = 0, 0.0
    tolerance = 1e-9 * max(observed, 1.0)
    per_block = max(1, _BLOCK // max(k, 1))
    for done in range(0, n_permutations, per_block):
        dealt = rng.permuted(np.broadcast_to(np.arange(k), (min(per_block, n_permutations - done), k)), axis=1)
        null = _homogeneity_chi2(np.add.reduceat(kept[dealt], starts, axis=1),
                                 np.add.reduceat(images[dealt], starts, axis=1), share)
        reached += int((null >= observed - tolerance).sum())
        total += float(null.sum())
    return observed, (1.0 + reached) / (1.0 + n_permutations), total / n_permutations


#: Eigenvalues below this share of the largest are rounding: Rao-Scott's ranks and pseudo-inverses.
_RANK_TOLERANCE = 1e-9
#: Resamples of people behind PR's p-value; its floor is ``1 / (1 + _PR_RESAMPLES)``.
_PR_RESAMPLES = 1999


def _stratified_covariance(values: np.ndarray, strata: np.ndarray, n_strata: int) -> np.ndarray:
    """(K, K) covariance of the total of ``values`` (U, K) over units drawn within ``strata`` (U,).

    ``sum_h n_h / (n_h - 1) * sum_{u in h} (x_u - mean_h)(x_u - mean_h)^T``: the usual
    with-replacement estimate for a stratified sample; a stratum with one unit adds nothing.
    """
    import numpy as np

    counts = np.bincount(strata, minlength=n_strata).astype(np.float64)
    sums = np.zeros((n_strata, values.shape[1]))
    np.add.at(sums, strata, values)
    centred = values - (sums / np.maximum(counts, 1.0)[:, None])[strata]
    scale = np.where(counts > 1, counts / np.maximum(counts - 1.0, 1.0), 0.0)[strata]
    return (centred * scale[:, None]).T @ centred


def _rao_scott(
    difference: np.ndarray, image_covariance: np.ndarray, cluster_covariance: np.ndarray
) -> tuple[float, int, float, np.ndarray | None]:
    """First-order Rao-Scott statistic that ``difference`` is 0: ``(statistic / deff, dof, deff, S^+)``.

    The image-level statistic is ``d^T S^+ d`` with ``S`` the covariance if images were
    independent, ``dof`` its rank; ``deff = trace(S^+ M) / dof`` is the mean generalised
    design effect, ``M`` the covariance from the clusters' totals (Rao & Scott 1981, 1984).
    ``S^+`` is None where no sampling noise is left to test against: a difference outside
    the range of ``S`` (no variation where the difference lies), or no variation between
    clusters, gives an infinite statistic; no difference and no variation, statistic 0.
    """
    import numpy as np

    def rank(matrix: np.ndarray) -> int:  # relative to the largest eigenvalue: the rows sum to 0 up to rounding
        values = np.linalg.eigvalsh(matrix)
        return int((values > _RANK_TOLERANCE * max(float(values.max()), 1.0)).sum())

    dof = rank(image_covariance)
    scale = max(float(np.abs(difference).max()), 1.0)
    if dof == 0:
        dof = rank(image_covariance + np.outer(difference, difference))
        return (0.0, dof, float("nan"), None) if dof == 0 else (float("inf"), dof, float("nan"), None)
    inverse = np.linalg.pinv(image_covariance, rcond=_RANK_TOLERANCE, hermitian=True)
    if np.abs(difference - image_covariance @ (inverse @ difference)).max() > 1e-9 * scale:
        return float("inf"), dof, float("nan"), None
    statistic = float(difference @ inverse @ difference)
    deff = float(np.trace(inverse @ cluster_covariance)) / dof
    if deff <= 1e-12:
        return (0.0, dof, deff, None) if statistic <= 1e-12 * scale**2 else (float("inf"), dof, deff, None)
    return statistic / deff, dof, deff, inverse


def _null_bootstrap(
    values: np.ndarray, strata: np.ndarray, weight: np.ndarray, dof: int, observed: float, n_resamples: int,
    rng: np.random.Generator,
) -> float:
    """p-value of the Rao-Scott statistic ``observed`` from resampling units within strata, null imposed.

    ``values`` (U, K) are the units' (people's) summed difference vectors, ``strata`` (U,)
    their strata (true groups), ``weight`` (K, K) the fixed ``S^+``. Each unit's deviation
    from its stratum's mean is scaled by ``sqrt(n_h / (n_h - 1))`` (so the resampled
    total's covariance is ``M`` itself; Rao & Wu 1988) and ``n_h`` deviations are drawn
    with replacement within each stratum: totals with mean 0, the null, and each group's
    own spread and skew. Every resample recomputes ``M*`` from its draws, so the
    statistic ``d*^T S^+ d* * dof / trace(S^+ M*)`` is studentised as the observed one is
    (a bootstrap-t). ``p = (1 + #{T* >= T}) / (1 + n_resamples)`` (ties within a relative
    1e-9 count as reaching T; a resample with no spread at all counts as reaching it).
    Vectorised over blocks of resamples.
    """
    import numpy as np

    order = np.argsort(strata, kind="stable")
    _, starts, sizes = np.unique(strata[order], return_index=True, return_counts=True)
    position = np.repeat(np.arange(sizes.size), sizes)
    factor = np.where(sizes > 1, sizes / np.maximum(sizes - 1.0, 1.0), 0.0)
    sorted_values = values[order]
    means = np.add.reduceat(sorted_values, starts, axis=0) / sizes[:, None]
    residuals = (sorted_values - means[position]) * np.sqrt(factor)[position][:, None]
    first, size, unit_factor = starts[position], sizes[position], factor[position]
    floor = 1e-12 * float(np.trace(weight @ (residuals.T @ residuals)))  # trace(S^+ M) of the observed people
    tolerance = 1e-9 * max(observed, 1.0)
    units = residuals.shape[0]
    per_block = max(1, _BLOCK // max(residuals.size, 1))
    reached = 0
    for done in range(0, n_resamples, per_block):
        draws = first + rng.integers(0, size, size=(min(per_block, n_resamples - done), units))
        drawn = residuals[draws]  # (B, U, K)
        total = drawn.sum(axis=1)
        centred = drawn - (np.add.reduceat(drawn, starts, axis=1) / sizes[:, None])[:, position]
        spread = (((centred @ weight) * centred).sum(axis=2) * unit_factor).sum(axis=1)  # trace(S^+ M*)
        quadratic = ((total @ weight) * total).sum(axis=1)
        null = np.where(spread > floor, quadratic * dof / np.maximum(spread, floor), np.inf)
        reached += int((null >= observed - tolerance).sum())
    return (1.0 + reached) / (1.0 + n_resamples)


def majority_rate(
    true_groups: Any,
    predicted_groups: Any,
    *,
    majority: int,
    subjects: Any = None,
    group_names: Sequence[str] | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
) -> pd.DataFrame:
    """How often each group's outputs are classified as the majority group: drift toward the majority.

    ``P(class(output) = majority | group = a)`` per group ``a``, with the cluster-bootstrap
    interval of :func:`representation_demographic_parity`. For the majority group itself this
    is its own-group rate; for every other group, the share of its outputs that now look like
    the majority (PULSE's failure mode).

    Args:
        true_groups, predicted_groups, subjects, group_names, n_resamples, level, seed,
            min_subjects, interval: as in :func:`representation_demographic_parity`.
        majority: the majority group's code (the group with most training people).

    Returns:
        DataFrame with columns ``group, n_images, n_subjects, evidence, rate, ci_low, ci_high``,
        one row per group with at least one image.

    Raises:
        ValueError: as :func:`representation_demographic_parity`, or ``majority`` is not a
            code with a name.

    Example:
        >>> true = [0] * 4 + [1] * 4
        >>> predicted = [0, 0, 0, 0, 0, 0, 1, 1]
        >>> majority_rate(true, predicted, majority=0, group_names=["a", "b"], min_subjects=2)["rate"].tolist()
        [1.0, 0.5]
    """
    true, predicted, names, subject_codes = _labelled(true_groups, predicted_groups, subjects, group_names)
    if isinstance(majority, bool) or not isinstance(majority, int) or not 0 <= majority < len(names):
        raise ValueError(f"{CODE_OUT_OF_RANGE_MSG}: majority must be a code in 0..{len(names) - 1}, got {majority!r}")
    rates = _group_rates(true, subject_codes, predicted == majority, names, stream=5, n_resamples=n_resamples,
                         level=level, seed=seed, min_subjects=min_subjects, interval=interval)
    return rates.by_group


def representation_demographic_parity(
    true_groups: Any,
    predicted_groups: Any,
    *,
    subjects: Any = None,
    group_names: Sequence[str] | None = None,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
) -> RepresentationResult:
    """Representation demographic parity (RDP): outputs keep their person's group equally often.

    ``rate_a = P(class(output) = a | group = a)``, the share of group ``a``'s outputs that
    the attribute classifier puts in group ``a``. RDP holds when the rates are equal.
    Reported: each group's rate with a cluster-bootstrap interval (subjects resampled
    within the group; each image its own subject when ``subjects`` is None), the gap
    ``max - min`` and ratio ``min / max`` over the groups with sufficient evidence with
    intervals from the same resamples, a test of equal rates, and the divergence of the
    normalised rates from uniform (Laszkiewicz et al.'s ``P_RDP``).

    The test is a permutation test over subjects: the subjects of the groups with
    sufficient evidence are dealt to those groups at random (group sizes in subjects
    kept), each subject's images moving together, ``n_permutations`` times; ``p_value =
    (1 + #{T* >= T}) / (1 + n_permutations)``. It is exact (up to Monte Carlo error) when
    subjects' kept/changed profiles do not depend on their group, however strongly a
    person's photos agree with each other; the image-level chi-square test is not. The
    statistic ``T`` is Pearson's chi-square of the (group x kept/changed) image table,
    rather than the gap ``max - min``: it weighs each group's deviation by its number of
    images, so one small, noisy group does not decide the test, and it pools the evidence
    from every group when there are more than two. ``design_effect`` is the permutation
    null's mean over ``dof`` and ``statistic`` is ``T / design_effect`` (dividing by a
    constant changes no comparison, so the p-value is the permutation's).

    Args:
        true_groups: (N,) int codes of each image's true group (0..K-1).
        predicted_groups: (N,) int codes the classifier gives each output.
        subjects: optional (N,) subject ids (any hashable values).
        group_names: optional names of codes 0..K-1.
        n_resamples, level, seed, min_subjects, interval: as in
            :func:`genfair.audit.group_intervals`.
        n_permutations: permutations of the subjects' groups; 0 skips the test
            (``statistic``, ``p_value`` and ``design_effect`` NaN).

    Returns:
        A :class:`RepresentationResult` with ``metric="rdp"``, ``test="subject-permutation"``
        and ``by_group`` columns ``group, n_images, n_subjects, evidence, rate, ci_low,
        ci_high`` (groups with no image left out). A table in which every output kept its
        group (or none did) gives statistic 0 and p-value 1.

    Raises:
        ValueError: if the codes are not 1-D non-negative ints of one length, a code has
            no name, or an option is out of range.

    Example:
        >>> true = [0] * 10 + [1] * 10
        >>> predicted = [0] * 10 + [1] * 5 + [0] * 5
        >>> result = representation_demographic_parity(true, predicted, group_names=["a", "b"])
        >>> result.by_group["rate"].tolist(), result.difference, result.test, result.n_units
        ([1.0, 0.5], 0.5, 'subject-permutation', 20)
        >>> 0.01 < result.p_value < 0.06  # exact: 2 * C(15, 10) / C(20, 10) = 0.0325
        True
    """
    import numpy as np

    true, predicted, names, subject_codes = _labelled(true_groups, predicted_groups, subjects, group_names)
    kept = predicted == true
    rates = _group_rates(true, subject_codes, kept, names, stream=4, n_resamples=n_resamples,
                         n_permutations=n_permutations, level=level, seed=seed, min_subjects=min_subjects,
                         interval=interval)
    config, by_group, boot = rates.config, rates.by_group, rates.boot
    sufficient, clusters = rates.sufficient, rates.clusters
    result: dict[str, Any] = {"statistic": np.nan, "dof": 0, "p_value": np.nan, "divergence": np.nan}
    if sufficient.sum() >= 2:
        columns = np.flatnonzero(sufficient)
        point = by_group["rate"].to_numpy()[columns]
        worst, best = point.min(), point.max()
        resampled_worst, resampled_best = _extremes(boot[:, columns, 0], True)
        ratio = float(_ratio(np.float64(worst), np.float64(best)))
        # the disparity intervals' construction (basic below, percentile above), which holds at ties too
        diff_low, diff_high = _disparity_quantiles(resampled_best - resampled_worst, best - worst, config.level,
                                                   floor=0.0, ceiling=1.0)
        ratio_low, ratio_high = _disparity_quantiles(_ratio(resampled_worst, resampled_best), ratio, config.level,
                                                     ceiling=1.0)
        tested = sufficient[clusters.group]
        labels = (np.cumsum(sufficient) - 1)[clusters.group[tested]]
        kept_counts, image_counts = clusters.sums[tested, 0], clusters.counts[tested]
        dof = int(columns.size - 1)
        statistic = p_value = design_effect = np.nan
        if 0 < kept_counts.sum() < image_counts.sum() and config.n_permutations > 0:
            observed, p_value, null_mean = _subject_permutation(labels, kept_counts, image_counts, int(columns.size),
                                                                config.n_permutations, _rng(config.seed, 6))
            design_effect = null_mean / dof if null_mean > 0 else np.nan
            statistic = observed / design_effect if null_mean > 0 else observed
        elif not 0 < kept_counts.sum() < image_counts.sum():  # every output kept its group (or none did)
            statistic, p_value = 0.0, 1.0
        normalised = point / point.sum() if point.sum() > 0 else np.full(point.size, 1.0 / point.size)
        result = {
            "statistic": float(statistic),
            "dof": dof,
            "p_value": float(p_value),
            "divergence": _divergence(normalised, np.full(point.size, 1.0 / point.size)),
            "difference": float(best - worst),
            "difference_ci_low": float(diff_low),
            "difference_ci_high": float(diff_high),
            "ratio": ratio,
            "ratio_ci_low": float(ratio_low),
            "ratio_ci_high": float(ratio_high),
            "design_effect": float(design_effect),
            "n_units": int(labels.size),
            "p_min": _smallest_permutation_p(clusters.n_subjects()[columns], config.n_permutations),
        }
    return RepresentationResult(metric="rdp", by_group=by_group, test=REPRESENTATION_TESTS["rdp"], **result)


def proportional_representation(
    true_groups: Any,
    predicted_groups: Any,
    *,
    subjects: Any = None,
    group_names: Sequence[str] | None = None,
    seed: int = 0,
) -> RepresentationResult:
    """Proportional representation (PR): the outputs' classes are distributed like the people's groups.

    PR holds when ``P(class(output) = a) = P(group = a)`` for every ``a``. The test is one of
    marginal homogeneity on the (true group x output class) table, as Stuart-Maxwell's: the
    two labels of one image are paired, so a goodness-of-fit test that treats the true
    shares as fixed would be far too lenient. Its degrees of freedom are the rank of the
    covariance of the differences (``K - 1`` unless some classes never change); a table
    with no change at all gives statistic 0 and p-value 1.

    Stuart-Maxwell's covariance treats every photo as an independent pair, and a person's
    photos are not independent. The people's groups are fixed by the design (there is
    nothing to permute), so the statistic is Rao and Scott's first-order design correction
    (Rao & Scott 1981, 1984) for a stratified cluster sample, the strata being the true
    groups and the clusters the subjects: the covariance of the margins' difference
    ``d = n_true - n_predicted`` is estimated within each group, once from the images as
    if independent (``S``) and once from each subject's summed differences (``M``).
    ``design_effect = trace(S^+ M) / dof`` is the mean generalised design effect (about
    ``1 + (photos - 1) * intra-person correlation``) and ``statistic = d^T S^+ d /
    design_effect``. With one image per subject the design effect is exactly 1. Centring
    within groups (rather than Stuart-Maxwell's covariance about 0, right for randomly drawn
    pairs) keeps the test from being conservative when groups lose many outputs each but
    balance out.

    The p-value comes from a bootstrap of people within their groups with the null imposed
    (a stratified bootstrap-t): each person's summed difference vector minus their group's
    mean, scaled by ``sqrt(n_h / (n_h - 1))`` for a group of ``n_h`` people, is drawn with
    replacement ``n_h`` times within the group, 1,999 times; each resample's totals have
    mean 0 (the null) and recompute ``M``, so the resampled statistic is studentised as
    the observed one is; ``p = (1 + #{T* >= T}) / 2000`` (``p_min`` is that floor), from
    ``seed``. An F reference cannot hold the level when one group has few people: that
    group's variance rests on its few, skewed per-person counts while ``nu = people -
    groups`` counts everyone. The earlier reference, ``(nu - dof + 1) / (nu * dof) *
    statistic`` against F(dof, nu - dof + 1) as for Hotelling's T^2 (Thomas & Rao 1987),
    rejected 6.5% (± 0.3) of true nulls at the 5% level by simulation with groups of 15
    and 5 people (20 photos each, keep rates 0.8 and 0.4 so the flows balance), 7.0% with
    12 and 3, 6.4% with 30 and 5; the bootstrap rejects 5.1%, 4.4% and 4.3%, and 3.9-5.5%
    (± 0.3) in every null scenario of ``benchmarks/simulation_representation.py``
    (5,000 audits each; 5.5% is three groups of 10, where the F gave 5.1%). Its power
    is the F's within three points: a planted shift of one group's mean keep rate from
    0.5 to 0.8 with 2 x 10 people is found in 84% of audits (F 87%), 0.5 to 0.67 in 31%
    (33%), and in 22% (19%) with 5 x 10 people. A Satterthwaite degrees of freedom over
    the groups rejected 6.0% with 15 + 5; the Wald statistic with ``M^+`` and the
    second-order correction are this same statistic when there are two groups, where the
    excess was; a wild (sign-flip) bootstrap of the people rejected 5.7%. A no-variation
    case, every output of a group changed alike, gives an infinite statistic and p-value
    0; fewer people beyond one a group than ``dof``, p NaN. The bootstrap costs about
    ``2000 * people * K^2`` operations (0.6 s for 1,000 people in 10 groups, 5 photos each,
    on a shared 2-core machine).

    Args:
        true_groups: (N,) int codes of each image's true group (0..K-1).
        predicted_groups: (N,) int codes the classifier gives each output.
        subjects: optional (N,) subject ids (any hashable values); None: each image its own
            subject.
        group_names: optional names of codes 0..K-1 (also fixes K).
        seed: seed of the bootstrap (non-negative int); equal seeds give equal p-values.

    Returns:
        A :class:`RepresentationResult` with ``metric="pr"``, ``test="rao-scott-bootstrap"``,
        ``p_min = 1 / 2000`` where the bootstrap ran, and ``by_group`` columns ``group,
        n_true, true_share, n_predicted, predicted_share, difference`` (``predicted_share -
        true_share``), one row per code 0..K-1.

    Raises:
        ValueError: if the codes are not 1-D non-negative ints of one length, a code
            has no name, ``subjects`` has another length, or ``seed`` is not a
            non-negative int.

    Example:
        >>> true = [0] * 50 + [1] * 50
        >>> predicted = [0] * 50 + [0] * 20 + [1] * 30
        >>> result = proportional_representation(true, predicted, group_names=["a", "b"])
        >>> result.by_group["predicted_share"].tolist(), result.dof, result.p_value, result.p_min
        ([0.7, 0.3], 1, 0.0005, 0.0005)
        >>> round(result.design_effect, 6)  # one image per subject
        1.0
        >>> people = [i // 10 for i in range(100)]  # ten photos a person: two people changed all of theirs
        >>> clustered = proportional_representation(true, predicted, subjects=people, group_names=["a", "b"])
        >>> [round(v, 3) for v in (clustered.design_effect, clustered.statistic)], round(clustered.p_value, 2)
        ([12.25, 2.667], 0.16)

        The last p estimates the share of the 5^5 equally likely resamples of group b's five
        people that reach the statistic, 515 / 3125 = 0.165.
    """
    import numpy as np
    import pandas as pd

    config = StatsConfig(seed=seed)
    true, predicted, names, subject_codes = _labelled(true_groups, predicted_groups, subjects, group_names)
    k = len(names)
    table = np.zeros((k, k))
    np.add.at(table, (true, predicted), 1.0)
    n_true, n_predicted = table.sum(axis=1), table.sum(axis=0)
    n = float(true.size)
    by_group = pd.DataFrame(
        {
            "group": names,
            "n_true": n_true.astype(np.int64),
            "true_share": n_true / n,
            "n_predicted": n_predicted.astype(np.int64),
            "predicted_share": n_predicted / n,
            "difference": (n_predicted - n_true) / n,
        }
    ).astype({"group": "str"})
    # Each image's difference e(true) - e(predicted); people's groups are the strata, people the clusters.
    per_image = np.zeros((true.size, k))
    np.add.at(per_image, (np.arange(true.size), true), 1.0)
    np.add.at(per_image, (np.arange(true.size), predicted), -1.0)
    n_ids = int(subject_codes.max()) + 1
    clusters, cluster_of = np.unique(true * n_ids + subject_codes, return_inverse=True)
    per_cluster = np.zeros((clusters.size, k))
    np.add.at(per_cluster, cluster_of, per_image)
    strata = clusters // n_ids
    statistic, dof, design_effect, weight = _rao_scott(
        n_true - n_predicted, _stratified_covariance(per_image, true, k), _stratified_covariance(per_cluster, strata, k)
    )
    p_value, p_min = (1.0 if statistic == 0 else 0.0), float("nan")  # settled without sampling noise
    if weight is not None and clusters.size - np.unique(true).size < dof:
        p_value = float("nan")  # fewer people beyond one a group than free margins
    elif weight is not None:
        p_value = _null_bootstrap(per_cluster, strata, weight, dof, statistic, _PR_RESAMPLES, _rng(config.seed, 7))
        p_min = 1.0 / (1.0 + _PR_RESAMPLES)
    return RepresentationResult(
        metric="pr",
        by_group=by_group,
        statistic=statistic,
        dof=dof,
        p_value=p_value,
        divergence=_divergence(n_predicted / n, n_true / n),
        test=REPRESENTATION_TESTS["pr"],
        design_effect=design_effect,
        n_units=int(clusters.size),
        p_min=p_min,
    )


def uninformative_conditional_proportional_representation(
    predicted_groups: Any,
    *,
    group_names: Sequence[str],
    expected: Sequence[float] | None = None,
    n_simulations: int = 9999,
    seed: int = 0,
) -> RepresentationResult:
    """Uninformative conditional proportional representation (UCPR).

    Given inputs that carry no information about the group (e.g. upsampling a 4x4
    average face), a fair model's outputs should be classified like the population:
    ``P(class(output) = a) = expected_a`` (uniform by default). Pearson's chi-square
    statistic over the groups with a positive expected share (``K - 1`` degrees of freedom;
    an output in a group with expected share 0 gives an infinite statistic and p-value 0),
    with its p-value from the exact null: ``n_simulations`` multinomial draws of the outputs'
    counts under ``expected`` (``p = (1 + #{X²* >= X²}) / (1 + n_simulations)``), so the test
    holds its level at any number of outputs; ``n_simulations=0`` uses the χ² approximation.

    Each output counts as one independent unit: the audit's uninformative inputs are drawn
    independently (each the average of one randomly drawn photo from every group), so
    given the panel their outputs are independent, whoever is in the photos; there are no
    subjects to cluster by. Pass one output per input: several outputs of one input (a
    stochastic model's samples) would be clustered, and this test would be too lenient.

    Args:
        predicted_groups: (N,) int codes the classifier gives the outputs.
        group_names: names of codes 0..K-1 (fixes K).
        expected: K non-negative population shares (normalised to sum to 1); ``None``
            means uniform.
        n_simulations: multinomial draws of the null (0: the χ² approximation).
        seed: seeds the draws.

    Returns:
        A :class:`RepresentationResult` with ``metric="ucpr"``, ``test="chi-square-exact"``,
        ``n_units`` the number of outputs and ``by_group`` columns ``group, n_predicted,
        predicted_share, expected_share, difference``.

    Raises:
        ValueError: if the codes are invalid, a code has no name, or ``expected`` is not
            K non-negative numbers with a positive sum.

    Example:
        >>> result = uninformative_conditional_proportional_representation([0] * 30 + [1] * 10, group_names=["a", "b"])
        >>> result.by_group["predicted_share"].tolist(), round(result.statistic, 2), round(result.p_value, 4)
        ([0.75, 0.25], 10.0, 0.0026)
    """
    import numpy as np
    import pandas as pd
    from scipy import stats

    predicted = _codes(predicted_groups, "predicted_groups")
    if group_names is None:
        raise ValueError(f"{BAD_NAMES_MSG}, got None; UCPR needs every group, also those no output falls in")
    names = _names(group_names, int(predicted.max()))
    k = len(names)
    if expected is None:
        shares = np.full(k, 1.0 / k)
    else:
        shares = np.asarray(expected, dtype=np.float64)
        if shares.shape != (k,) or not np.all(np.isfinite(shares)) or np.any(shares < 0) or shares.sum() <= 0:
            raise ValueError(f"{BAD_EXPECTED_MSG} ({k} groups), got {expected!r}")
        shares = shares / shares.sum()
    counts = np.bincount(predicted, minlength=k).astype(np.float64)
    n = counts.sum()
    by_group = pd.DataFrame(
        {
            "group": names,
            "n_predicted": counts.astype(np.int64),
            "predicted_share": counts / n,
            "expected_share": shares,
            "difference": counts / n - shares,
        }
    ).astype({"group": "str"})
    support = shares > 0
    dof = int(support.sum()) - 1
    if np.any(counts[~support] > 0):
        statistic, p_value = float("inf"), 0.0
    elif dof <= 0:
        statistic, p_value = 0.0, 1.0
    else:
        test = stats.chisquare(counts[support], n * shares[support])
        statistic, p_value = float(test.statistic), float(test.pvalue)
        if n_simulations:
            expected_counts = n * shares[support]
            draws = np.random.default_rng(seed).multinomial(int(n), shares[support], size=n_simulations)
            null = ((draws - expected_counts) ** 2 / expected_counts).sum(axis=1)
            p_value = float((1 + np.count_nonzero(null >= statistic * (1 - 1e-12))) / (1 + n_simulations))
    return RepresentationResult(
        p_min=1.0 / (1 + n_simulations) if n_simulations and dof > 0 else float("nan"),
        metric="ucpr",
        by_group=by_group,
        statistic=statistic,
        dof=max(dof, 0),
        p_value=p_value,
        divergence=_divergence(counts / n, shares),
        test=REPRESENTATION_TESTS["ucpr"],
        n_units=int(n),
    )
