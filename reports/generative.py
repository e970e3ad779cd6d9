"""Terminal tables of the generative side of an audit: whom a model generates, and whom it finds unlikely.

Read by :func:`genfair.reports.terminal.print_audit` from the tables ``sample_composition`` and
``sample_amplification`` (:func:`genfair.audit.samples.sample_composition`) and ``likelihood``
and ``likelihood_disparities`` (per-group -ELBO in bits per dimension).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["SAMPLES_CAPTION", "likelihood_table", "sample_amplification_table", "sample_composition_table"]

SAMPLES_CAPTION = ("Samples from the model's prior, labelled by the attribute classifier; corrected: its errors on "
                   "held-out people taken out (CLEAM). Amplification: the majority's share of the samples minus its "
                   "share of the training images; directional: Wang & Russakovsky (2021), > 0 exaggerates the "
                   "training skew.")


def _table(title: str, *headers: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for position, header in enumerate(headers):
        table.add_column(header, justify="left" if position == 0 else "right")
    return table


def _share(value: Any, low: Any = math.nan, high: Any = math.nan, fmt: str = ".3f") -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    interval = f" [{low:{fmt}}, {high:{fmt}}]" if math.isfinite(low) and math.isfinite(high) else ""
    return f"{value:{fmt}}{interval}"


def sample_composition_table(composition: pd.DataFrame) -> Table:
    """Per group: share of the samples (raw and corrected, with 95% intervals), of the training set, of the panel."""
    n = int(composition.loc[composition["grouping"] == composition["grouping"].iloc[0], "n_samples"].sum())
    table = _table(f"Whom the model generates: {n} samples by group (95% CI)", "group", "samples",
                   "share of samples", "corrected", "training share", "panel share")
    for _, rows in composition.groupby("grouping", sort=False):
        table.add_section()
        for row in rows.itertuples(index=False):
            table.add_row(str(row.group), str(row.n_samples), _share(row.sample_share, row.sample_ci_low, row.sample_ci_high),
                          _share(row.corrected_share, row.corrected_ci_low, row.corrected_ci_high),
                          _share(row.training_share), _share(row.panel_share))
    return table


def sample_amplification_table(amplification: pd.DataFrame) -> Table:
    """Per grouping: the majority's amplification and the directional bias amplification, with 95% intervals."""
    table = _table("Bias amplification of the samples against the training data (95% CI)", "grouping",
                   "majority", "training → samples", "majority amplification", "directional", "from")
    for row in amplification.itertuples(index=False):
        table.add_row(str(row.grouping), str(row.majority_group),
                      f"{row.majority_training_share:.3f} → {_share(row.majority_sample_share)}",
                      _share(row.majority_amplification, row.majority_amplification_ci_low,
                             row.majority_amplification_ci_high, "+.3f"),
                      _share(row.directional_amplification, row.directional_amplification_ci_low,
                             row.directional_amplification_ci_high, "+.3f"), str(row.basis))
    return table


def likelihood_table(intervals: pd.DataFrame, disparities: pd.DataFrame | None) -> Table:
    """Per group: mean -ELBO in bits per dimension with its interval; then each grouping's worst-to-best gap."""
    table = _table("Whom the model finds least likely: -ELBO, bits per dimension (95% CI; higher: less likely)",
                   "group", "people", "bits/dim", "95% CI", "p")
    for grouping, rows in intervals.groupby("grouping", sort=False):
        table.add_section()
        for row in rows.itertuples(index=False):
            label = "all images" if grouping == "overall" else str(row.group)
            enough = row.evidence == "sufficient"
            table.add_row(label, str(row.n_subjects), f"{row.estimate:.4f}",
                          f"[{row.ci_low:.4f}, {row.ci_high:.4f}]" if enough else "insufficient",
                          f"{row.p_holm:.3f}" if isinstance(row.p_holm, float) and math.isfinite(row.p_holm) else "")
    if disparities is not None:
        table.add_section()
        for row in disparities.itertuples(index=False):
            if row.evidence == "sufficient":
                table.add_row(f"gap, {row.grouping}: {row.worst_group} − {row.best_group}", "", f"{row.difference:.4f}",
                              f"[{row.difference_ci_low:.4f}, {row.difference_ci_high:.4f}]",
                              f"{row.p_holm:.3f}" if math.isfinite(row.p_holm) else "")
    return table
