"""An audit in the terminal: the tables ``audit run``, ``check``, ``compare``, ``attribute`` and ``compare-runs`` print (rich).

Each function takes plain frames (an ``AuditResult`` or its tables) and returns rich
renderables or prints them to a given console; nothing here computes a statistic. Intervals
are printed as ``[low, high]``; a group with too few people is marked instead of given an
interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .cosmology import print_cosmology

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from genfair.audit.policy import CheckReport
    from genfair.audit.result import AuditResult

__all__ = ["METRIC_HEADERS", "SKIN_HEADERS", "print_audit", "print_check", "print_comparison", "print_effects",
           "print_ranking"]

FEW_SUBJECTS = 5  # below this many subjects a group's mean is an anecdote, not evidence
METRIC_HEADERS = {"mse_error": "MSE ↓", "mae_error": "MAE ↓", "psnr_score": "PSNR dB ↑", "ssim_score": "SSIM ↑"}
INSUFFICIENT = "too few people"
UNRELIABLE = "classifier unreliable"  # genfair.audit.attributes.CLASSIFIER_UNRELIABLE
WITHHELD = "withheld"
SIGNIFICANCE = 0.05  # a p that can never go below this is marked with its floor
FLOOR_NOTE = f"(≥ x): the smallest p this many people allow; above {SIGNIFICANCE} no result could be significant"
IDENTITY_CAPTION = ("drift: distance between the face embeddings of output and original (0: the same face); lost: "
                    "the share of outputs the recogniser no longer matches to their original (drift ≥ 0.6, dlib's "
                    "same-person threshold); p: is this group lost more often than the rest, or on a gap's row, "
                    "is the gap real (Holm). face found: the share of originals where the detector found a face (elsewhere "
                    "the whole image was read).")
#: The skin-colour measures of the ``skin_tone_*`` tables, one terminal table each:
#: ``{column: (title, header, caption, per-group p shown)}``. Hue has no harmful sign, so its
#: groups' one-sided p (oriented toward yellow) is not shown; its gap's p is symmetric.
SKIN_HEADERS: dict[str, tuple[str, str, str, bool]] = {
    "ita_shift": ("Skin-tone shift ΔITA° per group (95% CI)", "ΔITA°",
                  ("ΔITA°: skin-tone shift, output minus original (positive: the output's skin is lighter); "
                   "p: is this group lightened more than the rest (Holm)."), True),
    "lightness_shift": ("Skin lightness shift ΔL* per group (95% CI)", "ΔL*",
                        ("ΔL*: the skin's perceptual lightness (CIELAB L*, 0 black to 100 white), output minus "
                         "original (positive: lighter); p: is this group lightened more than the rest (Holm)."), True),
    "hue_shift": ("Skin hue shift Δh° per group (95% CI)", "Δh°",
                  ("Δh°: the skin's hue angle h* = atan2(b*, a*), output minus original (positive: yellower, "
                   "negative: redder); neither sign is the harm, so p is the gap's alone (Holm)."), False),
}


def _table(title: str, *headers: str, left: int = 1) -> Table:
    """A rich table: the first ``left`` columns left-aligned, the rest right-aligned."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for position, header in enumerate(headers):
        table.add_column(header, justify="left" if position < left else "right")
    return table


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _interval(low: Any, high: Any, fmt: str = ".3f") -> str:
    return f"[{low:{fmt}}, {high:{fmt}}]" if _finite(low) and _finite(high) else ""


def _label(grouping: str, group: Any) -> str:
    return "all images" if grouping == "overall" else str(group)


def _sections(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(grouping, rows)`` in the frame's order."""
    yield from frame.groupby("grouping", sort=False)


def print_audit(console: Console, result: AuditResult) -> None:
    """Every table of an audit: per-group error, disparities, skin colour, classifier, representation, baseline,
    and the cosmic-web environments (``--dataset cosmo``)."""
    console.print(_group_table(result))
    if any(result.per_group["n_subjects"] < FEW_SUBJECTS):
        console.print(f"* fewer than {FEW_SUBJECTS} people: an anecdote, not evidence.")
    console.print(_disparity_table(result))
    tables = result.tables
    if "disparity_intervals" in tables:
        console.print("Intervals resample people (basic bootstrap below, percentile above); a ratio interval "
                      "starting at 1.000 admits no disparity. "
                      "Whether there is one is p's question.")
    if "skin_tone_intervals" in tables:
        intervals, gaps = tables["skin_tone_intervals"], tables.get("skin_tone_disparities")
        for measure, (title, header, caption, group_p) in SKIN_HEADERS.items():
            rows = intervals[intervals["metric"] == measure]
            if len(rows):
                console.print(_skin_tone_table(rows, None if gaps is None else gaps[gaps["metric"] == measure],
                                               title=title, header=header, group_p=group_p))
                console.print(caption)
    if "identity_intervals" in tables:
        console.print(_identity_table(tables["identity_intervals"], tables.get("identity_disparities"),
                                      tables.get("identity")))
        console.print(IDENTITY_CAPTION)
    if "classifier_accuracy" in tables:
        console.print(_classifier_table(tables["classifier_accuracy"], tables.get("attribute_preservation")))
    if "classifier_validity" in tables:
        console.print(_validity_table(tables["classifier_validity"], result.metadata))
    if "representation" in tables:
        console.print(_representation_table(tables["representation"]))
        console.print(_representation_tests_table(tables["representation_tests"]))
    if "sample_composition" in tables:
        from .generative import SAMPLES_CAPTION, sample_amplification_table, sample_composition_table

        console.print(sample_composition_table(tables["sample_composition"]))
        console.print(sample_amplification_table(tables["sample_amplification"]))
        console.print(SAMPLES_CAPTION)
    if "likelihood" in tables:
        from .generative import likelihood_table

        console.print(likelihood_table(tables["likelihood"], tables.get("likelihood_disparities")))
    if "vs_bicubic_groups" in tables:
        model = result.metadata.get("model", "model")
        print_comparison(console, tables["vs_bicubic_groups"], tables["vs_bicubic_disparities"],
                         a="bicubic", b=str(model))
    print_cosmology(console, tables)


def _group_table(result: AuditResult) -> Table:
    metrics = [name for name in METRIC_HEADERS if name in result.per_group]
    title = f"{result.metadata.get('model', '?')} on {result.metadata.get('dataset', '?')}: per-image error by group (test split)"
    table = _table(title, "group", "images", "people", *(METRIC_HEADERS[name] for name in metrics))
    for grouping, rows in _sections(result.per_group):
        table.add_section()
        for row in rows.itertuples(index=False):
            flag = "*" if row.n_subjects < FEW_SUBJECTS else ""
            values = [f"{getattr(row, name):.4g}" for name in metrics]
            table.add_row(_label(grouping, row.group), str(row.n_images), f"{row.n_subjects}{flag}", *values)
    return table


def _disparity_table(result: AuditResult) -> Table:
    from genfair.audit.multiplicity import EXPLORATORY

    intervals = result.tables.get("disparity_intervals")
    if intervals is not None:
        intervals = intervals.set_index(["grouping", "metric"])
    table = _table("Disparities: worst group against best group (95% CI resamples people; p: permutation)",
                   "grouping", "metric", "worst group", "best group", "ratio", "95% CI", "difference", "p", left=4)
    for row in result.disparities.itertuples(index=False):
        worst, best, ratio, difference = row.worst_group, row.best_group, row.ratio, row.difference
        ci, p_value = "", ""
        if intervals is not None and (row.grouping, row.metric) in intervals.index:
            # every number of the row from the engine that gives its interval: the same groups
            found = intervals.loc[(row.grouping, row.metric)]
            worst, best, ratio, difference = (found["worst_group"], found["best_group"], found["ratio"],
                                              found["difference"])
            ci = _interval(found["ratio_ci_low"], found["ratio_ci_high"])
            p_value = _p_with_floor(found["p_holm"], found.get("p_min", float("nan")), ".3f") or "n/a"
            if found.get("family") == EXPLORATORY and _finite(found["p_value"]):
                p_value = f"{found['p_value']:.3f}†"
            if found["evidence"] != "sufficient":
                ci, p_value = INSUFFICIENT, ""
        if not _finite(ratio):
            worst = best = ratio_text = difference_text = ""
            ci = ci or INSUFFICIENT
        else:
            ratio_text, difference_text = f"{ratio:.3f}", f"{difference:.3g}"
        table.add_row(row.grouping, METRIC_HEADERS.get(row.metric, row.metric), str(worst), str(best), ratio_text,
                      ci, difference_text, p_value)
    left_out = {row.grouping: row.left_out for row in result.disparities.itertuples(index=False)
                if isinstance(getattr(row, "left_out", ""), str) and row.left_out}
    captions = []
    if intervals is not None and "family" in intervals.columns:
        families = [family for family in intervals["family"].unique() if family != EXPLORATORY]
        if families:
            captions.append(f"p: Holm over {families[0]}"
                            + ("; † exploratory, unadjusted" if (intervals["family"] == EXPLORATORY).any() else ""))
    if intervals is not None and "p_min" in intervals.columns and (intervals["p_min"] > SIGNIFICANCE).any():
        captions.append(FLOOR_NOTE)
    if left_out:
        captions.append(f"Left out of worst and best (fewer than {FEW_SUBJECTS} people): "
                        + "; ".join(f"{grouping}: {groups}" for grouping, groups in left_out.items()))
    if captions:
        table.caption = ". ".join(captions)
    return table


def _skin_tone_table(intervals: pd.DataFrame, disparities: pd.DataFrame | None, *, title: str, header: str,
                     group_p: bool) -> Table:
    """One skin-colour measure's rows of ``skin_tone_intervals`` (and its gaps): ``group_p`` shows each group's p."""
    table = _table(title, "group", "people", header, "95% CI", "p")
    for grouping, rows in _sections(intervals):
        table.add_section()
        for row in rows.itertuples(index=False):
            ci = _interval(row.ci_low, row.ci_high, "+.2f") if row.evidence == "sufficient" else INSUFFICIENT
            p_value = f"{row.p_holm:.3f}" if group_p and _finite(row.p_holm) else ""
            table.add_row(_label(grouping, row.group), str(row.n_subjects), f"{row.estimate:+.2f}", ci, p_value)
    if disparities is not None:
        table.add_section()
        for row in disparities.itertuples(index=False):
            if row.evidence == "sufficient":
                exploratory = getattr(row, "family", None) == "exploratory" and _finite(row.p_value)
                p_value = f"{row.p_value:.3f}†" if exploratory else f"{row.p_holm:.3f}" if _finite(row.p_holm) else ""
                table.add_row(f"gap, {row.grouping}: {row.worst_group} − {row.best_group}", "",
                              f"{row.difference:.2f}", _interval(row.difference_ci_low, row.difference_ci_high, ".2f"),
                              p_value)
    return table


def _identity_table(intervals: pd.DataFrame, disparities: pd.DataFrame | None, means: pd.DataFrame | None) -> Table:
    """Identity drift and the share no longer recognised per group (``identity_*`` tables), with their gaps."""
    table = _table("Identity drift per group (dlib face recogniser, 95% CI)", "group", "people", "drift ↓",
                   "95% CI", "lost ↓", "95% CI", "p", "face found")
    found = {} if means is None else {(r.grouping, r.group): r.face_found for r in means.itertuples(index=False)}
    rows = intervals.set_index(["grouping", "group", "metric"])
    previous = None
    for (grouping, group), _ in intervals.groupby(["grouping", "group"], sort=False):
        if grouping != previous:
            table.add_section()
            previous = grouping
        drift, lost = rows.loc[(grouping, group, "identity_drift")], rows.loc[(grouping, group, "identity_lost")]
        enough = drift["evidence"] == "sufficient"
        share = found.get((grouping, group), float("nan"))
        table.add_row(_label(grouping, group), str(drift["n_subjects"]), f"{drift['estimate']:.3f}",
                      _interval(drift["ci_low"], drift["ci_high"]) if enough else INSUFFICIENT,
                      f"{lost['estimate']:.0%}",
                      _interval(lost["ci_low"], lost["ci_high"], ".0%") if enough else INSUFFICIENT,
                      f"{lost['p_holm']:.3f}" if _finite(lost["p_holm"]) else "",
                      f"{share:.0%}" if _finite(share) else "")
    if disparities is not None:
        table.add_section()
        gaps = disparities[disparities["evidence"] == "sufficient"]
        for row in gaps.itertuples(index=False):
            measure = "drift" if row.metric == "identity_drift" else "lost"
            fmt = ".3f" if measure == "drift" else ".0%"
            exploratory = getattr(row, "family", None) == "exploratory" and _finite(row.p_value)
            p_value = f"{row.p_value:.3f}†" if exploratory else f"{row.p_holm:.3f}" if _finite(row.p_holm) else ""
            cells = [f"{row.difference:{fmt}}", _interval(row.difference_ci_low, row.difference_ci_high, fmt)]
            table.add_row(f"{measure} gap, {row.grouping}: {row.worst_group} − {row.best_group}", "",
                          *(cells if measure == "drift" else ["", ""]), *(cells if measure == "lost" else ["", ""]),
                          p_value, "")
    return table


def _classifier_table(originals: pd.DataFrame, flips: pd.DataFrame | None) -> Table:
    """The classifier's accuracy on originals; with ``flips``, how often an output's label differs from its original's."""
    columns = [column for column in originals.columns if column.endswith("_accuracy")]
    attributes = [column.removesuffix("_accuracy") for column in columns]
    flipped = flips is not None and all(f"{a}_flip_rate" in flips.columns for a in attributes)
    title = "Attribute classifier: accuracy on originals" + (" | outputs whose label flips from the original's"
                                                             if flipped else "")
    table = _table(title, "group", *attributes)
    for grouping, rows in _sections(originals):
        table.add_section()
        for position, row in rows.iterrows():
            cells = [f"{row[column]:.2f}" + (f" | {_rate_or_withheld(flips.loc[position, f'{a}_flip_rate'])}"
                                             if flipped else "")
                     for column, a in zip(columns, attributes)]
            table.add_row(_label(grouping, row["group"]), *cells)
    if flipped:
        table.caption = ("A flip is the output labelled otherwise than its own original (a model that changes "
                         f"nothing flips none; {WITHHELD}: {UNRELIABLE}, see its validity); accuracy is the "
                         "classifier's own, on the audited people, whom it never trained on")
    return table


def _rate_or_withheld(value: Any) -> str:
    return f"{value:.2f}" if _finite(value) else WITHHELD


def _validity_table(validity: pd.DataFrame, metadata: dict[str, Any]) -> Table:
    """The classifier's accuracy on held-out originals per group and attribute, each with its interval and verdict."""
    from genfair.audit.label_noise import MIN_ACCURACY

    attributes = list(dict.fromkeys(validity["attribute"]))
    threshold = metadata.get("run", {}).get("classifier_min_accuracy", MIN_ACCURACY)
    audited = "audited_accuracy" in validity.columns and validity["audited_accuracy"].notna().any()
    table = _table("Attribute classifier validity: accuracy on held-out originals (95% CI)"
                   + (" | on the audited originals" if audited else ""), "group", "people", *attributes)
    for grouping, rows in _sections(validity):
        table.add_section()
        for group, cells in rows.groupby("group", sort=False):
            by_attribute = cells.set_index("attribute")
            first = by_attribute.iloc[0]
            texts = []
            for attribute in attributes:
                cell = by_attribute.loc[attribute]
                text = _with_interval(cell["accuracy"], cell["ci_low"], cell["ci_high"], cell["evidence"] == "sufficient")
                if audited and _finite(cell["audited_accuracy"]):
                    text += f" | {cell['audited_accuracy']:.2f}"
                texts.append(text + (" (unreliable)" if cell["status"] != "valid" else ""))
            table.add_row(_label(grouping, group), str(first["n_subjects"]), *texts)
    table.caption = (f"People the classifier never trained on. Below {threshold:.2f} (--classifier-min-accuracy) "
                     f"{'on either, ' if audited else ''}a group's representation rows, its grouping's representation tests and its flip "
                     f"rates are withheld ({UNRELIABLE}): the classifier's own errors would be read as the model's")
    return table


def _with_interval(value: Any, low: Any, high: Any, enough: bool) -> str:
    """``"0.86 [0.60, 1.00]"``; the bare value when the group has too few people."""
    if not _finite(value):
        return ""
    return f"{value:.2f} {_interval(low, high, '.2f')}" if enough else f"{value:.2f} ({INSUFFICIENT})"


def _representation_table(representation: pd.DataFrame) -> Table:
    uninformative = representation["uninformative_share"].notna().any()
    corrected = "own_corrected" in representation.columns and representation["own_corrected"].notna().any()
    table = _table("Representation: outputs classified as the person's own group, and as the majority group¹ (95% CI)",
                   "group", "people", "own group", *(["own, corrected³"] if corrected else []), "as majority",
                   "share: people → outputs" + (" (corrected³)" if corrected else ""),
                   *(["uninformative²"] if uninformative else []))
    majorities = []
    for grouping, rows in _sections(representation):
        table.add_section()
        majorities.append(f"{grouping}: {rows['majority_group'].iloc[0] or 'none (balanced or tied; see the notes)'}")
        for row in rows.itertuples(index=False):
            enough = row.evidence == "sufficient"
            if row.evidence == UNRELIABLE:
                table.add_row(str(row.group), str(row.n_subjects), f"{WITHHELD}⁴")
                continue
            cells = [str(row.group), str(row.n_subjects),
                     _with_interval(row.own_rate, row.own_ci_low, row.own_ci_high, enough)]
            if corrected:
                cells.append(_with_interval(row.own_corrected, row.own_corrected_ci_low, row.own_corrected_ci_high,
                                            enough))
            share = f"{row.true_share:.2f} → {row.output_share:.2f}"
            if corrected and _finite(row.output_share_corrected):
                share += f" ({row.output_share_corrected:.2f})"
            cells += [_with_interval(row.majority_rate, row.majority_ci_low, row.majority_ci_high, enough), share]
            if uninformative:
                cells.append(f"{row.uninformative_share:.2f}")
            table.add_row(*cells)
    table.caption = "¹ most training people: " + "; ".join(majorities)
    if uninformative:
        table.caption += ". ² share of outputs for uninformative 4x4 averaged faces (fair: uniform)"
    if corrected:
        table.caption += (". ³ with the classifier's own errors on the originals taken out (CLEAM, Teo et al. "
                          "2023); blank where it reads some group's originals right less often than the validity "
                          "threshold")
    if (representation["evidence"] == UNRELIABLE).any():
        table.caption += (f". ⁴ {UNRELIABLE}: it reads these people's originals right too rarely (its validity "
                          f"table), so its labels of their outputs say nothing about the model")
    return table


def _representation_tests_table(tests: pd.DataFrame) -> Table:
    names = {"rdp": "RDP (own-group rates equal)", "pr": "PR (output shares = people's)",
             "ucpr": "UCPR (uninformative → uniform)"}
    table = _table("Representation tests (Jalal et al. 2021; Laszkiewicz et al. 2024)", "grouping", "criterion",
                   "gap", "95% CI", "χ²", "dof", "p", "divergence", left=2)
    for row in tests.itertuples(index=False):
        if getattr(row, "evidence", "") == UNRELIABLE:
            table.add_row(row.grouping, names.get(row.metric, row.metric), WITHHELD, UNRELIABLE)
            continue
        gap = f"{row.difference:.2f}" if _finite(row.difference) else ""
        table.add_row(row.grouping, names.get(row.metric, row.metric), gap,
                      _interval(row.difference_ci_low, row.difference_ci_high, ".2f"),
                      f"{row.statistic:.2f}" if _finite(row.statistic) else "", str(row.dof),
                      _p_with_floor(row.p_value, getattr(row, "p_min", float("nan"))), f"{row.divergence:.3f}"
                      if _finite(row.divergence) else "")
    if "test" in tests.columns:
        tested = dict(zip(tests["metric"], tests["test"]))
        how = {"subject-permutation": "whole people relabelled between groups", "rao-scott-bootstrap":
               "Rao-Scott, people resampled within groups", "chi-square-exact": "exact multinomial", "chi-square": "χ² (independent outputs)"}
        table.caption = ("χ² adjusted for each person's several photos; p: " + ", ".join(
            f"{metric.upper()} {how.get(test, test)}" for metric, test in tested.items() if isinstance(test, str)))
    return table


def print_comparison(
    console: Console, per_group: pd.DataFrame, disparities: pd.DataFrame, *, a: str, b: str,
    metric: str = "mse_error",
) -> None:
    """Model ``b`` against model ``a`` on the same images (:func:`genfair.audit.compare_models`' tables).

    One table of each group's change in ``metric`` (``b - a``, with interval and Wilcoxon p),
    then one line per grouping on the change in disparity (negative: ``b`` is fairer).
    """
    header = METRIC_HEADERS.get(metric, metric)
    rows = per_group[per_group["metric"] == metric]
    table = _table(f"{b} against {a} on the same images: change in {header} per group ({b} − {a}; paired, 95% CI)",
                   "group", "people", a, b, "change", "95% CI", "Wilcoxon p")
    for grouping, section in _sections(rows):
        table.add_section()
        for row in section.itertuples(index=False):
            enough = row.evidence == "sufficient"
            table.add_row(_label(grouping, row.group), str(row.n_subjects), f"{row.mean_a:.4g}", f"{row.mean_b:.4g}",
                          f"{row.difference:+.3g}",
                          _interval(row.ci_low, row.ci_high, "+.2g") if enough else INSUFFICIENT,
                          _p_with_floor(row.p_value, getattr(row, "p_min", float("nan"))))
    if "p_min" in rows.columns and (rows["p_min"] > SIGNIFICANCE).any():
        table.caption = FLOOR_NOTE
    console.print(table)
    fairer = _table(f"Disparity |worst − best| in {header}: {a} → {b} (negative change: {b} is fairer)",
                    "grouping", a, b, "change", "95% CI", f"p ({b} fairer)")
    for row in disparities[disparities["metric"] == metric].itertuples(index=False):
        if row.evidence != "sufficient":
            fairer.add_row(row.grouping, "", "", "", INSUFFICIENT, "")
            continue
        fairer.add_row(row.grouping, f"{row.disparity_a:.4g}", f"{row.disparity_b:.4g}", f"{row.difference:+.3g}",
                       _interval(row.ci_low, row.ci_high, "+.2g"),
                       _p_with_floor(row.p_value, getattr(row, "p_min", float("nan"))))
    console.print(fairer)


def _p_with_floor(p_value: Any, p_min: Any, fmt: str = ".3g") -> str:
    """``"0.0625 (≥ 0.0625)"`` when the test cannot go below ``SIGNIFICANCE``; the bare p otherwise."""
    if not _finite(p_value):
        return ""
    if _finite(p_min) and p_min > SIGNIFICANCE:
        return f"{p_value:{fmt}} (≥ {p_min:.3g})"
    return f"{p_value:{fmt}}"


VERDICT_STYLES = {"pass": "green", "warn": "yellow", "fail": "bold red"}


def print_check(console: Console, report: CheckReport, *, title: str = "Fairness check") -> None:
    """Every rule with its value, interval, limit and verdict; then why each failed or warned; then the verdict."""
    from rich.markup import escape

    def number(value: Any) -> str:
        return f"{value:.3g}" if _finite(value) else ""

    table = _table(title, "verdict", "rule", "grouping: group", "value", "95% CI", "limit", "p", left=3)
    for column in (1, 4):  # the rule is the policy key to look up, the interval one value: never cut them
        table.columns[column].no_wrap = True
    for row in report.rules.itertuples(index=False):
        where = ": ".join(str(part) for part in (row.grouping, row.group) if part)
        table.add_row(f"[{VERDICT_STYLES.get(row.verdict, '')}]{row.verdict}[/]", row.rule, where, number(row.value),
                      _interval(row.ci_low, row.ci_high, ".3g"), number(row.limit), number(row.p_value))
    console.print(table)
    for row in report.rules.itertuples(index=False):
        if row.verdict != "pass":
            where = ": ".join(str(part) for part in (row.grouping, row.group) if part)
            console.print(f"[{VERDICT_STYLES[row.verdict]}]{row.verdict}[/] {row.rule} {escape(f'[{where}]')}: "
                          f"{escape(str(row.reason))}", highlight=False, soft_wrap=True)
    counts = report.counts
    console.print(f"[{VERDICT_STYLES[report.verdict]}]{report.verdict.upper()}[/]: {counts['fail']} failed, "
                  f"{counts['warn']} warned, {counts['pass']} passed")


def print_ranking(console: Console, ranked: pd.DataFrame, recommendation: str) -> None:
    """``audit compare``'s ranked models (the main columns of the report's table) and its recommendation."""
    from rich.markdown import Markdown

    from genfair.reports.comparison import display_table

    full = display_table(ranked)
    error_column = next(column for column in full.columns if column.endswith("(95% CI)"))
    shown = full[["rank", "model", "task", error_column, "worst group", "ratio worst/best", "p (Holm)", "images/s"]]
    table = _table("Which model suits the task?", *shown.columns, left=0)
    for column in table.columns:
        if column.header in ("model", "task", "worst group"):
            column.justify = "left"
    for row in shown.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)
    console.print(Markdown(recommendation))


def print_effects(console: Console, effects: pd.DataFrame, summary: str) -> None:
    """``audit attribute``'s effects in the finest grouping, then its summary."""
    from rich.markdown import Markdown

    finest = effects[effects["grouping"] == effects["grouping"].iloc[-1]]
    table = _table("Effects per group (error; 95% CI over people and retraining)",
                   "model", "effect", "group", "estimate", "95% CI", "seed noise", left=6)
    for row in finest.itertuples(index=False):
        noise = "within" if row.within_seed_noise else f"{row.seed_se:.2g}"
        table.add_row(row.model, row.effect, row.group, f"{row.estimate:+.3g}",
                      f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}]", noise)
    console.print(table)
    console.print(Markdown(summary))
