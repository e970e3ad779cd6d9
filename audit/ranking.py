"""Which model suits the task? One row per audited model, a stated priority, and a recommendation.

Pure functions over finished audits (:class:`~genfair.audit.result.AuditResult`): every number
in :func:`comparison_table` is read from one model's own tables (``group_intervals``,
``disparity_intervals``, ``skin_tone_disparities``, ``representation_tests``, ``model_facts``),
so it can be traced to that model's run. :func:`rank_models` orders the rows by a priority;
:func:`recommendation` writes the plain-language paragraph, with the uncertainty of the
choice taken from a paired comparison of the first two models on the same images
(:func:`genfair.audit.compare_models`).

Priorities: ``fidelity`` (overall error, lower first), ``fairness`` (the disparity ratio in the
finest grouping, lower first), ``speed`` (images per second at inference, higher first), or
weights over them (``"fairness=2,fidelity=1"``): each model's score is the weighted sum of its
ranks (1 = best) over the criteria.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .grouping import GROUPING_SEPARATOR, OVERALL_GROUPING
from .skin import HUE_SHIFT, ITA_SHIFT, LIGHTNESS_SHIFT

if TYPE_CHECKING:
    import pandas as pd

    from .result import AuditResult

__all__ = ["COMPARISON_COLUMNS", "CRITERIA", "comparison_table", "parse_priority", "rank_models", "recommendation"]

#: Ranking criteria: (comparison-table column, lower is better).
CRITERIA = {"fidelity": ("error", True), "fairness": ("ratio", True), "speed": ("images_per_second", False)}
#: The columns of :func:`comparison_table`, in order.
COMPARISON_COLUMNS = (
    "model", "task", "run_id", "metric", "error", "error_ci_low", "error_ci_high", "psnr", "psnr_ci_low",
    "psnr_ci_high", "ssim", "ssim_ci_low", "ssim_ci_high", "grouping", "worst_group", "worst_error", "ratio",
    "ratio_ci_low", "ratio_ci_high", "difference", "difference_ci_low", "difference_ci_high", "p_holm",
    "evidence", "ita_worst_group", "ita_worst", "ita_worst_ci_low", "ita_worst_ci_high", "lightness_worst_group",
    "lightness_worst", "lightness_worst_ci_low", "lightness_worst_ci_high", "hue_gap", "hue_gap_ci_low",
    "hue_gap_ci_high", "preservation_gap",
    "preservation_gap_ci_low", "preservation_gap_ci_high", "parameters", "seconds_to_predictions",
    "images_per_second",
)
BAD_PRIORITY_MSG = "--priority must be fidelity, fairness, speed, or weights like fairness=2,fidelity=1"
NO_RESULTS_MSG = "nothing to compare"


def parse_priority(text: str) -> dict[str, float]:
    """``"fairness"`` -> ``{"fairness": 1.0}``; ``"fairness=2,fidelity=1"`` -> both weights.

    Raises:
        ValueError: an unknown criterion, a weight that is not a positive number, or nothing.

    Example:
        >>> parse_priority("fairness=2, speed=0.5")
        {'fairness': 2.0, 'speed': 0.5}
    """
    weights: dict[str, float] = {}
    for part in (piece.strip() for piece in str(text).split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        name = name.strip()
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = math.nan
        if name not in CRITERIA or not value > 0:
            raise ValueError(f"{BAD_PRIORITY_MSG}; got {text!r}")
        weights[name] = value
    if not weights:
        raise ValueError(f"{BAD_PRIORITY_MSG}; got {text!r}")
    return weights


def _row(frame: pd.DataFrame | None, **keys: Any) -> dict[str, Any]:
    """The one row of ``frame`` matching ``keys``, as a dict; empty when there is none."""
    if frame is None:
        return {}
    mask = None
    for column, value in keys.items():
        if column not in frame:
            return {}
        hit = frame[column] == value
        mask = hit if mask is None else mask & hit
    rows = frame[mask] if mask is not None else frame
    return rows.iloc[0].to_dict() if len(rows) else {}


def _task(result: AuditResult) -> str:
    """What the model did, as models are ranked within it: ``"reconstruction"``, ``"upsampling xS"``
    (each scale its own task) or ``"generation"``."""
    scale = result.metadata.get("model_config", {}).get("scale")
    if scale:
        return f"upsampling x{scale}"
    return str(result.metadata.get("task") or "reconstruction")


def comparison_table(
    results: Mapping[str, AuditResult], *, metric: str = "mse_error", run_ids: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per model: overall error, worst group, disparity, ΔITA, preservation gap, size and speed.

    Args:
        results: ``{model name: its audit}``; the audits should cover the same test images.
        metric: the error metric of ``error``, ``worst_error`` and the disparity (an ``*_error``).
        run_ids: ``{model name: MLflow run id}`` for the ``run_id`` column (traceability).

    Returns:
        DataFrame with columns :data:`COMPARISON_COLUMNS`, in the order of ``results``. The
        disparity is read in the finest grouping (the intersection of all attributes);
        ``ita_worst*`` is the most-lightened group's mean ΔITA (degrees) and its interval,
        ``lightness_worst*`` the same for ΔL* (L* units); ``hue_gap*`` is the gap between the
        groups' mean hue shifts Δh* (degrees; a hue shift has no harmful sign, so its gap, not
        a worst group);
        ``preservation_gap*`` is representation demographic parity's gap (rates) in that
        grouping. Values a run did not measure are NaN (or None for labels).

    Raises:
        ValueError: ``results`` is empty.
    """
    import pandas as pd

    if not results:
        raise ValueError(f"{NO_RESULTS_MSG}: give at least one audit")
    rows = []
    for name, result in results.items():
        attributes = list(result.metadata.get("attributes", []))
        grouping = GROUPING_SEPARATOR.join(attributes)
        tables = result.tables
        overall = {m: _row(tables.get("group_intervals"), grouping=OVERALL_GROUPING, metric=m)
                   for m in (metric, "psnr_score", "ssim_score")}
        disparity = _row(tables.get("disparity_intervals"), grouping=grouping, metric=metric)
        shifts = {measure: _row(tables.get("skin_tone_disparities"), grouping=grouping, metric=measure)
                  for measure in (ITA_SHIFT, LIGHTNESS_SHIFT, HUE_SHIFT)}
        gap = _row(tables.get("representation_tests"), grouping=grouping, metric="rdp")
        facts = _row(tables.get("model_facts"))
        row: dict[str, Any] = {"model": name, "task": _task(result), "run_id": (run_ids or {}).get(name),
                               "metric": metric, "grouping": grouping}
        for prefix, m in (("error", metric), ("psnr", "psnr_score"), ("ssim", "ssim_score")):
            found = overall[m]
            row[prefix] = found.get("estimate", math.nan)
            row[f"{prefix}_ci_low"] = found.get("ci_low", math.nan)
            row[f"{prefix}_ci_high"] = found.get("ci_high", math.nan)
        row.update(worst_group=disparity.get("worst_group"), worst_error=disparity.get("worst", math.nan),
                   evidence=disparity.get("evidence"),
                   **{key: disparity.get(key, math.nan) for key in (
                       "ratio", "ratio_ci_low", "ratio_ci_high", "difference", "difference_ci_low",
                       "difference_ci_high", "p_holm")})
        for prefix, measure in (("ita", ITA_SHIFT), ("lightness", LIGHTNESS_SHIFT)):
            shift = shifts[measure]
            row[f"{prefix}_worst_group"] = shift.get("worst_group")
            row.update({f"{prefix}_worst{suffix}": shift.get(f"worst{suffix}", math.nan)
                        for suffix in ("", "_ci_low", "_ci_high")})
        row.update({f"hue_gap{suffix}": shifts[HUE_SHIFT].get(f"difference{suffix}", math.nan)
                    for suffix in ("", "_ci_low", "_ci_high")})
        row.update(preservation_gap=gap.get("difference", math.nan),
                   preservation_gap_ci_low=gap.get("difference_ci_low", math.nan),
                   preservation_gap_ci_high=gap.get("difference_ci_high", math.nan))
        row.update({key: facts.get(key, math.nan) for key in ("parameters", "seconds_to_predictions",
                                                               "images_per_second")})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def rank_models(table: pd.DataFrame, priority: Mapping[str, float]) -> pd.DataFrame:
    """``table`` ranked within each task by the weighted sum of each criterion's rank; adds ``score`` and ``rank``.

    Models are ranked only against models of their own ``task`` (when the table has one):
    reconstruction, upsampling at one scale, generation; a bicubic upsampler is never ranked
    against an autoencoder. Within a task, ties in a criterion share the average rank; a model
    missing a criterion's value ranks last in it; equal scores keep the lower overall error
    first. ``rank`` is 1 for the first model of each task. Tasks keep their order of first
    appearance in ``table``.

    Example:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"model": ["a", "b"], "error": [0.01, 0.02], "ratio": [1.5, 1.1],
        ...                       "images_per_second": [100.0, 50.0]})
        >>> rank_models(table, {"fairness": 1.0})["model"].tolist(), rank_models(table, {"fidelity": 1.0})["model"].tolist()
        (['b', 'a'], ['a', 'b'])
    """
    tasks = table["task"] if "task" in table else _constant_series(table, "")
    order = {task: position for position, task in enumerate(dict.fromkeys(tasks))}
    score = 0.0
    for name, weight in priority.items():
        column, lower = CRITERIA[name]
        ranks = table[column].groupby(tasks.to_numpy()).rank(ascending=lower, method="average", na_option="bottom")
        score = score + weight * ranks
    ranked = table.assign(score=score, _task_order=tasks.map(order).to_numpy())
    ranked = ranked.sort_values(["_task_order", "score", "error"], kind="stable").reset_index(drop=True)
    ranked["rank"] = ranked.groupby("_task_order").cumcount() + 1
    return ranked.drop(columns="_task_order")


def _constant_series(table: pd.DataFrame, value: Any) -> pd.Series:
    """A series of ``value`` on ``table``'s index (the one task of a table without a ``task`` column)."""
    import pandas as pd

    return pd.Series([value] * len(table), index=table.index, dtype=object)


def _interval(low: float, high: float, fmt: str = ".3g") -> str:
    return f"[{low:{fmt}}, {high:{fmt}}]" if math.isfinite(low) and math.isfinite(high) else "[no interval]"


def recommendation(
    ranked: pd.DataFrame,
    results: Mapping[str, AuditResult],
    priority: Mapping[str, float],
    *,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    seed: int = 0,
) -> str:
    """One plain-language paragraph: which model comes first, why, and how sure that is.

    One paragraph per task of ``ranked`` (models are ranked within their task only). In each,
    the first two models of the task are compared on the same images
    (:func:`genfair.audit.compare_models`, people resampled): the difference in overall error
    and the change in disparity, each with a 95% interval; an interval that includes 0 is
    reported as "indistinguishable at this sample size".

    Args:
        ranked: :func:`rank_models`' output.
        results: the audits by model name (for the paired comparison).
        priority: the weights used to rank.
        n_resamples, n_permutations, seed: of the paired comparison.

    Returns:
        The paragraph (Markdown: model names in bold).
    """
    wanted = " and ".join(f"{name}" + (f" (weight {weight:g})" if len(priority) > 1 else "")
                          for name, weight in priority.items())
    tasks = ranked["task"] if "task" in ranked else _constant_series(ranked, "")
    paragraphs = [_task_paragraph(ranked[(tasks == task).to_numpy()].reset_index(drop=True), results, wanted,
                                  n_resamples=n_resamples, n_permutations=n_permutations, seed=seed)
                  for task in dict.fromkeys(tasks)]
    people = ""
    per_image = results[ranked.iloc[0]["model"]].per_image
    if "subject" in per_image:
        attributes = list(results[ranked.iloc[0]["model"]].metadata.get("attributes", []))
        smallest = per_image.groupby(attributes)["subject"].nunique().min() if attributes else None
        people = f" with {smallest} people in the smallest group" if smallest is not None else ""
    closing = (f"These are estimates from the test panel{people}: differences inside the intervals cannot be "
               f"told apart, and a bigger panel, not a lower threshold, is the way to tell them apart.")
    if len(paragraphs) == 1:
        return f"{paragraphs[0]} {closing}"
    return "\n\n".join([*paragraphs, "Models are ranked within their task only: each paragraph is one task. " + closing])


def _task_paragraph(ranked: pd.DataFrame, results: Mapping[str, AuditResult], wanted: str, *,
                    n_resamples: int, n_permutations: int, seed: int) -> str:
    """The recommendation's sentences for the models of one task (``ranked``: that task's rows, best first)."""
    from .compare import compare_models

    first = ranked.iloc[0]
    text = [
        f"Ranked by {wanted}, **{first['model']}** ({first['task']}) comes first: overall {first['metric']} "
        f"{first['error']:.4g} {_interval(first['error_ci_low'], first['error_ci_high'])}; its worst-served group, "
        f"{first['worst_group']}, has {first['ratio']:.3g}x the best group's error "
        f"{_interval(first['ratio_ci_low'], first['ratio_ci_high'])}, p = {first['p_holm']:.3g}."
    ]
    if len(ranked) > 1:
        second = ranked.iloc[1]
        a, b = results[second["model"]], results[first["model"]]
        attributes = list(b.metadata.get("attributes", []))
        same_images = set(a.per_image["path"]) == set(b.per_image["path"])
        if same_images and attributes:
            comparison = compare_models(a.per_image, b.per_image, attributes=attributes, metrics=[first["metric"]],
                                        n_resamples=n_resamples, n_permutations=n_permutations, seed=seed)
            overall = comparison.per_group[comparison.per_group["grouping"] == OVERALL_GROUPING].iloc[0]
            fair = comparison.disparities[comparison.disparities["grouping"] == first["grouping"]]
            text.append(_versus(first["model"], second["model"], overall, fair.iloc[0] if len(fair) else None))
        else:
            text.append(f"The runner-up, **{second['model']}**, was audited on other images, so the two cannot be "
                        f"compared image by image; compare their intervals in the table.")
    return " ".join(text)


def _versus(first: str, second: str, overall: Any, fair: Any) -> str:
    """A sentence on the paired comparison of the first model (B) against the runner-up (A)."""
    low, high = overall["ci_low"], overall["ci_high"]
    if math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0):
        fidelity = (f"its overall error is {'lower' if high < 0 else 'higher'} than **{second}**'s by "
                    f"{abs(overall['difference']):.3g} {_interval(low, high)}")
    else:
        fidelity = f"its overall error is indistinguishable from **{second}**'s ({overall['difference']:+.3g} {_interval(low, high)})"
    if fair is None or fair["evidence"] != "sufficient":
        fairness = "their fairness cannot be compared (too few people in a group)"
    elif fair["ci_low"] > 0 or fair["ci_high"] < 0:
        fairness = (f"it is {'fairer' if fair['ci_high'] < 0 else 'less fair'} (worst - best changes by "
                    f"{fair['difference']:+.3g} {_interval(fair['ci_low'], fair['ci_high'])}, p = {fair['p_value']:.3g})")
    else:
        fairness = (f"the two are indistinguishable on fairness at this sample size (worst - best changes by "
                    f"{fair['difference']:+.3g} {_interval(fair['ci_low'], fair['ci_high'])})")
    return f"Against the runner-up on the same people, {fidelity}, and {fairness}."
