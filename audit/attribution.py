"""Where does a group's excess error come from? Effects of data, objective and model, with uncertainty.

An attribution study trains the same model in several *cells* — training composition
(``as-given`` or ``balanced``) x objective (``erm`` or a mitigation such as ``group-dro``) x
training seed (x model) — and audits every cell on the same test images. This module turns
those audits (one long per-image frame, :data:`CELL_COLUMNS` plus the usual ``path, subject,
<attributes>, <metric>``) into per-group effects:

- **representation**: ``error(as-given, erm) - error(balanced, erm)``: how much worse the group
  is served because of the training composition (positive: rarity hurts it);
- **objective**: ``error(as-given, erm) - error(as-given, mitigation)``: how much the
  mitigation helps (positive: it lowers the group's error; negative for the reference group
  is the mitigation's quality cost for the majority);
- **model**: ``error(other model) - error(first model)`` under ``as-given, erm``, with two or
  more models.

``error`` is a group's mean error averaged over the training seeds. Each effect gets a
**paired** interval with two sources of noise: the test panel's people (resampled within each
group, the same people for every cell, since every cell scored the same images, with the
small-sample expansion of :mod:`genfair.audit.stats`) and retraining. Retraining alone moves a
group's error; the **seed noise** of an effect is the standard error of its per-seed values
(``sd / sqrt(seeds)``, the seeds paired by value across cells), added to every resample as a
Student t draw with ``seeds - 1`` degrees of freedom (with 3 seeds its tails are heavy: three
retrainings say little about the next). An effect within twice its seed noise is reported
``within_seed_noise``: not told apart from retraining.

**Excess error** of a group is its error minus the reference group's (by default the group
with the most training people, the majority) in the same cell; :func:`excess_cuts` reports how
much of the as-given, ERM excess each alternative cell removes (``1 - excess(cell) /
excess(as-given, erm)``), with a paired interval.

Pure functions: numpy and pandas are imported inside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from .grouping import SUBJECT_COLUMN
from .stats import (
    EVIDENCE_INSUFFICIENT,
    EVIDENCE_SUFFICIENT,
    StatsConfig,
    _bootstrap_means,
    _clusters,
    _expand,
    _expansion,
    _groupings,
    _quantiles,
    _rng,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "AS_GIVEN", "BALANCED", "CELL_COLUMNS", "EFFECT_COLUMNS", "ERM", "attribution_effects", "attribution_summary",
    "excess_cuts",
]

AS_GIVEN, BALANCED, ERM = "as-given", "balanced", "erm"
#: The columns that name a cell in the long per-image frame.
CELL_COLUMNS = ("model", "composition", "objective", "seed")
#: The columns of :func:`attribution_effects`, in order.
EFFECT_COLUMNS = (
    "model", "effect", "contrast", "grouping", "group", "n_subjects", "evidence", "estimate", "ci_low", "ci_high",
    "seed_se", "n_seeds", "within_seed_noise",
)
MISSING_CELL_MSG = "the attribution needs the cell"
UNPAIRED_MSG = "every cell must score the same images"


def _layout(frame: pd.DataFrame, attributes: Sequence[str], metric: str) -> tuple[pd.DataFrame, Any, list[tuple]]:
    """Images x cells: ``(one row per image with subject and attributes, values (N, C), cells)``."""
    import pandas as pd

    missing = [c for c in (*CELL_COLUMNS, "path", SUBJECT_COLUMN, *attributes, metric) if c not in frame]
    if missing:
        raise ValueError(f"the cells' per-image frame lacks columns {missing}")
    wide = frame.pivot_table(index="path", columns=list(CELL_COLUMNS), values=metric, aggfunc="first")
    if wide.isna().any().any():
        raise ValueError(f"{UNPAIRED_MSG}: some cells lack some images; audit every cell on one test split")
    images = frame.drop_duplicates("path").set_index("path").loc[wide.index, [SUBJECT_COLUMN, *attributes]]
    cells = [tuple(c) for c in wide.columns]
    return images.reset_index(), pd.DataFrame(wide).to_numpy(dtype=float), cells


def _seed_means(means: np.ndarray, cells: list[tuple], model: str, composition: str, objective: str) -> dict[Any, Any]:
    """``{seed: means[..., column]}`` of one (model, composition, objective) condition."""
    return {cell[3]: means[..., i] for i, cell in enumerate(cells) if cell[:3] == (model, composition, objective)}


def _contrast(means: np.ndarray, cells: list[tuple], minuend: tuple, subtrahend: tuple) -> tuple[Any, Any] | None:
    """Seed-averaged difference ``minuend - subtrahend`` and the per-seed differences (seeds paired)."""
    import numpy as np

    left, right = _seed_means(means, cells, *minuend), _seed_means(means, cells, *subtrahend)
    if not left or not right:
        return None
    average = np.mean(list(left.values()), axis=0) - np.mean(list(right.values()), axis=0)
    paired = [left[s] - right[s] for s in sorted(set(left) & set(right), key=str)]
    return average, np.stack(paired) if paired else None


def _conditions(frame: pd.DataFrame, mitigation: str | None) -> tuple[list[str], str | None]:
    models = list(dict.fromkeys(frame["model"].astype(str)))
    objectives = [o for o in dict.fromkeys(frame["objective"].astype(str)) if o != ERM]
    chosen = mitigation if mitigation is not None else (objectives[0] if objectives else None)
    return models, chosen


def attribution_effects(
    frame: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metric: str = "mse_error",
    mitigation: str | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
) -> pd.DataFrame:
    """Per-group representation, objective and model effects with paired intervals and seed noise.

    Args:
        frame: the long per-image frame of every cell: :data:`CELL_COLUMNS`, ``path``,
            ``subject``, the ``attributes`` and ``metric``; every cell scores the same images.
        attributes: sensitive attribute columns (each alone, then their intersection).
        metric: the per-image error to attribute.
        mitigation: the objective compared with ``erm`` (default: the first non-ERM one found).
        n_resamples, level, seed, min_subjects, interval: as in :func:`genfair.audit.group_intervals`.

    Returns:
        DataFrame with columns :data:`EFFECT_COLUMNS`: one row per model, effect
        (``representation``, ``objective``, ``model``), grouping and group; ``contrast`` says
        what was subtracted from what. Groups with too few people have NaN intervals.
        Effects whose cells are missing are left out.

    Raises:
        ValueError: a column is missing, or the cells do not share their images.
    """
    import numpy as np
    import pandas as pd

    config = StatsConfig(n_resamples=n_resamples, n_permutations=0, level=level, seed=seed,
                         min_subjects=min_subjects, interval=interval)
    images, values, cells = _layout(frame, attributes, metric)
    models, chosen = _conditions(frame, mitigation)
    subjects = pd.factorize(images[SUBJECT_COLUMN].astype(str))[0].astype(np.int64)
    contrasts: list[tuple[str, str, str, tuple, tuple]] = []
    for model in models:
        contrasts.append((model, "representation", f"{AS_GIVEN} - {BALANCED} (erm)",
                          (model, AS_GIVEN, ERM), (model, BALANCED, ERM)))
        if chosen is not None:
            contrasts.append((model, "objective", f"{ERM} - {chosen} ({AS_GIVEN})",
                              (model, AS_GIVEN, ERM), (model, AS_GIVEN, chosen)))
        if model != models[0]:
            contrasts.append((model, "model", f"{model} - {models[0]} ({AS_GIVEN}, erm)",
                              (model, AS_GIVEN, ERM), (models[0], AS_GIVEN, ERM)))
    rows: list[dict[str, Any]] = []
    for index, (grouping, labels, codes) in enumerate(_groupings(images, list(attributes))[1:], start=1):
        n_groups = len(labels)
        clusters = _clusters(codes, subjects, values, n_groups)
        n_subjects = clusters.n_subjects()
        sufficient = n_subjects >= config.min_subjects
        counts = np.bincount(codes, minlength=n_groups)
        point = np.stack([np.bincount(codes, weights=values[:, j], minlength=n_groups) / counts
                          for j in range(values.shape[1])], axis=1)
        boot = _bootstrap_means(clusters, sufficient, config.n_resamples, _rng(config.seed, index, 7))
        boot = _expand(boot, point, _expansion(n_subjects, config.level, config.interval))
        for model, effect, contrast, minuend, subtrahend in contrasts:
            exact = _contrast(point, cells, minuend, subtrahend)
            resampled = _contrast(boot, cells, minuend, subtrahend)
            if exact is None or resampled is None:
                continue
            estimate, per_seed = exact
            n_seeds = 0 if per_seed is None else per_seed.shape[0]
            seed_se = per_seed.std(axis=0, ddof=1) / np.sqrt(n_seeds) if n_seeds > 1 else np.full(n_groups, np.nan)
            spread = resampled[0]
            if n_seeds > 1:  # retraining noise on top of the people's: Student t with seeds - 1 df
                draws = _rng(config.seed, index, 9).standard_t(n_seeds - 1, size=(spread.shape[0], 1))
                spread = spread + draws * seed_se[None, :]
            low, high = _quantiles(spread, config.level)
            for g, label in enumerate(labels):
                rows.append({
                    "model": model, "effect": effect, "contrast": contrast, "grouping": grouping, "group": label,
                    "n_subjects": int(n_subjects[g]),
                    "evidence": EVIDENCE_SUFFICIENT if sufficient[g] else EVIDENCE_INSUFFICIENT,
                    "estimate": float(estimate[g]),
                    "ci_low": float(low[g]) if sufficient[g] else np.nan,
                    "ci_high": float(high[g]) if sufficient[g] else np.nan,
                    "seed_se": float(seed_se[g]), "n_seeds": n_seeds,
                    "within_seed_noise": bool(np.isfinite(seed_se[g]) and abs(estimate[g]) <= 2 * seed_se[g]),
                })
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS)).astype({"within_seed_noise": "bool"})


def excess_cuts(
    frame: pd.DataFrame,
    *,
    attributes: Sequence[str],
    reference: str,
    metric: str = "mse_error",
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
) -> pd.DataFrame:
    """How much of each group's excess error each alternative cell removes, in the intersection grouping.

    ``excess(cell) = error(group) - error(reference)`` in the same cell (seed-averaged), and
    ``cut = 1 - excess(cell) / excess(as-given, erm)`` (1: the excess is gone, 0: unchanged,
    negative: worse), with a paired interval over people. Also the reference group's own
    ``quality_cost`` in that cell: ``error(cell) - error(as-given, erm)`` (positive: the
    majority pays).

    Args:
        frame, attributes, metric, n_resamples, level, seed, min_subjects, interval: as in
            :func:`attribution_effects`.
        reference: the reference group's label in the intersection grouping (e.g.
            ``"male / lighter"``, the majority).

    Returns:
        DataFrame with columns ``model, composition, objective, group, excess_before,
        excess_before_ci_low, excess_before_ci_high, excess, cut, cut_ci_low, cut_ci_high,
        quality_cost, quality_cost_ci_low, quality_cost_ci_high`` (the as-given, ERM excess with
        its interval over people; a cut of an excess whose interval holds 0 means little),
        one row per model, alternative cell and group other than the reference.

    Raises:
        ValueError: as :func:`attribution_effects`, or ``reference`` is not a group.
    """
    import numpy as np
    import pandas as pd

    config = StatsConfig(n_resamples=n_resamples, n_permutations=0, level=level, seed=seed,
                         min_subjects=min_subjects, interval=interval)
    images, values, cells = _layout(frame, attributes, metric)
    grouping, labels, codes = _groupings(images, list(attributes))[-1]
    if reference not in labels:
        raise ValueError(f"reference group {reference!r} is not a group of {grouping!r}: {labels}")
    ref = labels.index(reference)
    subjects = pd.factorize(images[SUBJECT_COLUMN].astype(str))[0].astype(np.int64)
    clusters = _clusters(codes, subjects, values, len(labels))
    n_subjects = clusters.n_subjects()
    sufficient = n_subjects >= config.min_subjects
    counts = np.bincount(codes, minlength=len(labels))
    point = np.stack([np.bincount(codes, weights=values[:, j], minlength=len(labels)) / counts
                      for j in range(values.shape[1])], axis=1)
    boot = _expand(_bootstrap_means(clusters, np.ones(len(labels), bool), config.n_resamples, _rng(config.seed, 0, 8)),
                   point, _expansion(n_subjects, config.level, config.interval))

    def seed_average(means: np.ndarray, condition: tuple) -> np.ndarray | None:
        found = _seed_means(means, cells, *condition)
        return np.mean(list(found.values()), axis=0) if found else None

    rows = []
    for model in dict.fromkeys(cell[0] for cell in cells):
        base_point, base_boot = seed_average(point, (model, AS_GIVEN, ERM)), seed_average(boot, (model, AS_GIVEN, ERM))
        if base_point is None:
            raise ValueError(f"{MISSING_CELL_MSG} ({model}, {AS_GIVEN}, {ERM}): the as-given, ERM baseline")
        excess_low, excess_high = _quantiles(base_boot - base_boot[..., [ref]], config.level)
        for composition, objective in dict.fromkeys((cell[1], cell[2]) for cell in cells if cell[0] == model):
            if (composition, objective) == (AS_GIVEN, ERM):
                continue
            cell_point = seed_average(point, (model, composition, objective))
            cell_boot = seed_average(boot, (model, composition, objective))
            cost_low, cost_high = _quantiles(cell_boot[..., ref] - base_boot[..., ref], config.level)
            for g, label in enumerate(labels):
                if g == ref:
                    continue
                before = base_point[g] - base_point[ref]
                after = cell_point[g] - cell_point[ref]
                with np.errstate(divide="ignore", invalid="ignore"):
                    resampled = 1 - (cell_boot[..., g] - cell_boot[..., ref]) / (base_boot[..., g] - base_boot[..., ref])
                low, high = _quantiles(resampled, config.level) if sufficient[g] and sufficient[ref] else (np.nan,) * 2
                rows.append({
                    "model": model, "composition": composition, "objective": objective, "group": label,
                    "excess_before": before, "excess_before_ci_low": excess_low[g],
                    "excess_before_ci_high": excess_high[g], "excess": after, "cut": 1 - after / before if before else np.nan,
                    "cut_ci_low": low, "cut_ci_high": high,
                    "quality_cost": cell_point[ref] - base_point[ref],
                    "quality_cost_ci_low": cost_low, "quality_cost_ci_high": cost_high,
                })
    return pd.DataFrame(rows)


def _percent(value: float) -> str:
    import math

    return f"{100 * value:.0f}%" if math.isfinite(value) else "n/a"


def attribution_summary(effects: pd.DataFrame, cuts: pd.DataFrame, *, reference: str) -> str:
    """The plain-language summary of an attribution: which lever moves the worst-served group's excess.

    Args:
        effects: :func:`attribution_effects`' table.
        cuts: :func:`excess_cuts`' table (same cells, ``reference`` as its reference group).
        reference: the reference (majority) group of ``cuts``.

    Returns:
        One paragraph per model (Markdown, group names in bold): the group with the largest
        as-given excess, how much of it balanced data and the mitigation remove (with
        intervals), the mitigation's cost for the reference group, and whether representation
        explains the gap; effects within retraining noise are said to be so.

    Example:
        >>> import pandas as pd
        >>> cuts = pd.DataFrame({"model": ["cnn"], "composition": ["balanced"], "objective": ["erm"],
        ...     "group": ["female / darker"], "excess_before": [0.004], "excess_before_ci_low": [0.002],
        ...     "excess_before_ci_high": [0.006], "excess": [0.001], "cut": [0.75],
        ...     "cut_ci_low": [0.5], "cut_ci_high": [0.9], "quality_cost": [0.0002],
        ...     "quality_cost_ci_low": [-0.0001], "quality_cost_ci_high": [0.0005]})
        >>> effects = pd.DataFrame({"model": ["cnn"], "effect": ["representation"], "group": ["female / darker"],
        ...     "grouping": ["gender x skin_tone"], "within_seed_noise": [False]})
        >>> print(attribution_summary(effects, cuts, reference="male / lighter"))
        cnn: **female / darker** has the largest excess error over male / lighter (0.004 [0.002, 0.006]). Retraining on balanced data cuts it by 75% [50%, 90%]; male / lighter's error changes by +0.0002 [-0.0001, +0.0005]. The remaining gap is not explained by representation: part of it is intrinsic difficulty or the model.
    """
    import math

    paragraphs = []
    for model, rows in cuts.groupby("model", sort=False):
        worst = rows.sort_values("excess_before", ascending=False).iloc[0]
        group, before = worst["group"], worst["excess_before"]
        if not before > 0:
            paragraphs.append(f"{model}: no group has a larger error than {reference} when trained as given; there "
                              f"is no excess to attribute.")
            continue
        low, high = worst.get("excess_before_ci_low", math.nan), worst.get("excess_before_ci_high", math.nan)
        text = [f"{model}: **{group}** has the largest excess error over {reference} ({before:.3g} "
                f"[{low:.3g}, {high:.3g}])."]
        no_excess = math.isfinite(low) and low <= 0
        if no_excess:
            text.append(f"That excess is not told apart from no excess at this sample size, so no lever can be "
                        f"judged by how much of it it removes (the cuts below are noise).")
        for row in rows[rows["group"] == group].itertuples(index=False):
            lever = ("retraining on balanced data" if (row.composition, row.objective) == (BALANCED, ERM)
                     else f"{row.objective} on {row.composition} data")
            verb = "cuts" if row.cut > 0 else "raises" if row.cut < 0 else "leaves"
            cost = (f"; {reference}'s error changes by {row.quality_cost:+.3g} [{row.quality_cost_ci_low:+.3g}, "
                    f"{row.quality_cost_ci_high:+.3g}]" if math.isfinite(row.quality_cost) else "")
            amount = "unchanged" if verb == "leaves" else f"by {_percent(abs(row.cut))}"
            text.append(f"{lever.capitalize()} {verb} it {amount} "
                        f"[{_percent(row.cut_ci_low)}, {_percent(row.cut_ci_high)}]{cost}.")
        representation = effects[(effects["model"] == model) & (effects["effect"] == "representation")
                                 & (effects["group"] == group)]
        balanced = rows[(rows["group"] == group) & (rows["composition"] == BALANCED) & (rows["objective"] == ERM)]
        if no_excess:
            pass  # nothing to explain
        elif len(representation) and bool(representation["within_seed_noise"].iloc[0]):
            text.append("The representation effect is within retraining noise at this number of seeds.")
        elif len(balanced):  # balanced data removes all of the excess, within its interval?
            high = balanced["cut_ci_high"].iloc[0]
            text.append("Balanced data may remove all of it: representation can explain the whole gap."
                        if math.isfinite(high) and high >= 1 else
                        "The remaining gap is not explained by representation: part of it is intrinsic difficulty "
                        "or the model.")
        paragraphs.append(" ".join(text))
    return "\n\n".join(paragraphs)
