"""Tables of the cosmology audit (``--dataset cosmo``) for the terminal and the comparison report.

Reads the ``environment_errors`` and ``power_spectrum`` tables of
:mod:`genfair.audit.cosmology`; see there for what each number means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from matplotlib.figure import Figure

    from genfair.audit.result import AuditResult

__all__ = ["cosmology_section", "power_spectrum_figure", "print_cosmology"]

ENVIRONMENT_CAPTION = ("Per-pixel error by 2-D T-web environment of the target (void / filament / knot; 2-D has no "
                       "sheet); relative: squared error over the target's squared values (dense knots have larger "
                       "absolute errors by construction); intervals resample simulated boxes.")
SPECTRUM_CAPTION = ("Output P(k) / target P(k), pooled over the patches of each dominant environment (1: faithful; "
                    "below 1: too smooth); k in units of the patch's fundamental; * beyond the input's Nyquist, "
                    "scales the low-resolution input does not resolve. Intervals resample boxes.")


def print_cosmology(console: Console, tables: Mapping[str, pd.DataFrame]) -> None:
    """The environment-error and power-spectrum tables, each with its caption, when the audit has them."""
    if "environment_errors" in tables:
        console.print(_environment_table(tables["environment_errors"]))
        console.print(ENVIRONMENT_CAPTION)
    if "power_spectrum" in tables:
        console.print(_spectrum_table(tables["power_spectrum"]))
        console.print(SPECTRUM_CAPTION)


def _environment_table(frame: pd.DataFrame) -> Table:
    from .terminal import _table

    table = _table("Per-pixel error by cosmic-web environment (95% CI over boxes)", "environment", "pixels", "share",
                   "boxes", "MSE ↓ (95% CI)", "MAE ↓ (95% CI)", "relative ↓ (95% CI)")
    for row in frame.itertuples(index=False):
        flag = "" if row.evidence == "sufficient" else "*"
        table.add_row(str(row.group), str(row.pixels), f"{row.pixel_share:.1%}", f"{row.boxes}{flag}",
                      *_cells(row))
    return table


def _cells(row: object) -> tuple[str, str, str]:
    """MSE, MAE and relative error of one ``environment_errors`` row, each with its interval (3 digits)."""
    from .terminal import _interval

    return tuple(f"{getattr(row, name):.3g} {_interval(getattr(row, low), getattr(row, high), '.3g')}".strip()
                 for name, low, high in (("mse_error", "ci_low", "ci_high"), ("mae_error", "mae_ci_low", "mae_ci_high"),
                                         ("relative_error", "relative_ci_low", "relative_ci_high")))


def _spectrum_table(frame: pd.DataFrame) -> Table:
    from .terminal import _interval, _table

    groups = list(dict.fromkeys(frame["group"]))
    table = _table("Power-spectrum fidelity P_out(k) / P_target(k) by dominant environment (95% CI over boxes)",
                   "k", *(f"{group} ({int(frame.loc[frame['group'] == group, 'patches'].iloc[0])} patches)"
                          for group in groups))
    for (low, high, beyond), rows in frame.groupby(["k_low", "k_high", "beyond_input"], sort=False):
        cells = []
        for group in groups:
            row = rows[rows["group"] == group].iloc[0]
            interval = _interval(row["ci_low"], row["ci_high"])
            cells.append(f"{row['power_ratio']:.3f} {interval}" if interval else f"{row['power_ratio']:.3f} ({row['boxes']} boxes)")
        table.add_row(f"{low:g}–{high:g}{'*' if beyond else ''}", *cells)
    return table


def cosmology_section(audits: Mapping[str, AuditResult]) -> tuple[str, str] | None:
    """The report's cosmic-web section: ``(html, markdown)``, or None when no audit has the tables.

    Two tables over the models: each environment's per-pixel MSE and MAE with their intervals,
    and each k-bin's output/target power per dominant environment.
    """
    import html

    import pandas as pd

    from .comparison import _markdown_table
    from .terminal import _interval

    errors, spectra = [], []
    for model, audit in audits.items():
        if "environment_errors" not in audit.tables:
            continue
        for row in audit.tables["environment_errors"].itertuples(index=False):
            errors.append({"model": model, "environment": row.group, "pixel share": f"{row.pixel_share:.1%}",
                           "boxes": row.boxes, **dict(zip(("MSE", "MAE", "relative"), _cells(row)))})
        frame = audit.tables["power_spectrum"]
        for (low, high, beyond), rows in frame.groupby(["k_low", "k_high", "beyond_input"], sort=False):
            cells = {f"{row.group} ({row.patches} patches)": f"{row.power_ratio:.3f} {_interval(row.ci_low, row.ci_high)}"
                     for row in rows.itertuples(index=False)}
            spectra.append({"model": model, "k": f"{low:g}–{high:g}{'*' if beyond else ''}", **cells})
    if not errors:
        return None
    tables = [pd.DataFrame(errors), pd.DataFrame(spectra).fillna("")]
    heading = "Super-resolution by cosmic-web environment"
    captions = [ENVIRONMENT_CAPTION, SPECTRUM_CAPTION]
    page = [f"<h2>{html.escape(heading)}</h2>"]
    markdown = [f"## {heading}", ""]
    for table, caption in zip(tables, captions):
        page += ['<div class="table">' + table.to_html(index=False, escape=True, border=0) + "</div>",
                 f'<p class="notes">{html.escape(caption)}</p>']
        markdown += [_markdown_table(table), "", caption, ""]
    return "\n".join(page), "\n".join(markdown)


def power_spectrum_figure(frame: pd.DataFrame) -> Figure:
    """P_out / P_target against k, one line per group with its 95% band, the input's Nyquist shaded beyond.

    Args:
        frame: :func:`genfair.audit.cosmology.power_spectrum_table`'s rows.

    Returns:
        A figure with one axes (log k, ratio; a dotted line at 1, a faithful spectrum).
    """
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.6))
    axes = figure.add_subplot()
    for group, rows in frame.groupby("group", sort=False):
        k = np.sqrt(rows["k_low"].to_numpy() * rows["k_high"].to_numpy())  # each octave's geometric centre
        line, = axes.plot(k, rows["power_ratio"], marker="o", label=f"{group} ({int(rows['patches'].iloc[0])} patches)")
        axes.fill_between(k, rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2, linewidth=0)
    beyond = frame.loc[frame["beyond_input"], "k_low"]
    if len(beyond):
        axes.axvspan(float(beyond.min()), float(frame["k_high"].max()), color="0.9", zorder=0,
                     label="beyond the input's Nyquist")
    axes.axhline(1.0, color="0.4", linestyle=":", linewidth=1)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("k (fundamentals of the patch)")
    axes.set_ylabel("P_out(k) / P_target(k)")
    axes.set_title("Power-spectrum fidelity by dominant environment (95% CI over boxes)", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure
