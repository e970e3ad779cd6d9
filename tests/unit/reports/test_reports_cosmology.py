"""The cosmology tables in the terminal and in the comparison report."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from rich.console import Console

from genfair.audit.result import AuditResult
from genfair.reports.cosmology import cosmology_section, power_spectrum_figure, print_cosmology

ERRORS = pd.DataFrame({"grouping": ["pixel_environment"] * 2, "group": ["void", "knot"], "pixels": [900, 100],
                       "pixel_share": [0.9, 0.1], "boxes": [6, 3], "evidence": ["sufficient", "insufficient"],
                       "mse_error": [0.002, 0.03], "ci_low": [0.0018, np.nan], "ci_high": [0.0023, np.nan],
                       "mae_error": [0.03, 0.13], "mae_ci_low": [0.029, np.nan], "mae_ci_high": [0.031, np.nan],
                       "relative_error": [0.14, 0.05], "relative_ci_low": [0.13, np.nan],
                       "relative_ci_high": [0.15, np.nan]})
SPECTRUM = pd.DataFrame({"grouping": ["overall", "overall"], "group": ["all", "all"], "metric": ["k_1_2", "k_2_4"],
                         "k_low": [1.0, 2.0], "k_high": [2.0, 4.0], "beyond_input": [False, True], "patches": [10, 10],
                         "boxes": [6, 6], "evidence": ["sufficient"] * 2, "power_ratio": [0.84, 0.21],
                         "ci_low": [0.80, 0.15], "ci_high": [0.87, 0.27]})


def test_terminal_shows_both_tables_with_intervals_and_flags() -> None:
    console = Console(file=io.StringIO(), width=200)
    print_cosmology(console, {"environment_errors": ERRORS, "power_spectrum": SPECTRUM})
    text = console.file.getvalue()
    assert "0.002 [0.0018, 0.0023]" in text and " 3* " in text  # knot: 3 boxes, insufficient
    assert "0.14 [0.13, 0.15]" in text and "0.03 " in text
    assert "0.840 [0.800, 0.870]" in text and "2–4*" in text and "1–2 " in text


def test_report_section_only_for_audits_with_the_tables() -> None:
    empty = pd.DataFrame()
    plain = AuditResult(per_image=empty, per_group=empty, disparities=empty, metadata={}, tables={})
    assert cosmology_section({"vae": plain}) is None
    cosmo = AuditResult(per_image=empty, per_group=empty, disparities=empty, metadata={},
                        tables={"environment_errors": ERRORS, "power_spectrum": SPECTRUM})
    page, markdown = cosmology_section({"vae": plain, "sr": cosmo})
    assert "<h2>Super-resolution by cosmic-web environment</h2>" in page
    assert "| sr | void | 90.0% | 6 | 0.002 [0.0018, 0.0023] | 0.03 [0.029, 0.031] | 0.14 [0.13, 0.15] |" in markdown
    assert "| sr | 2–4* | 0.210 [0.150, 0.270] |" in markdown


def test_power_spectrum_figure_draws_a_line_per_group_at_octave_centres() -> None:
    frame = pd.concat([SPECTRUM, SPECTRUM.assign(grouping="environment", group="void")], ignore_index=True)
    axes = power_spectrum_figure(frame).axes[0]
    lines = [line for line in axes.get_lines() if line.get_marker() == "o"]
    assert len(lines) == 2
    assert np.allclose(lines[0].get_xdata(), [np.sqrt(2), np.sqrt(8)])
    assert np.allclose(lines[1].get_ydata(), [0.84, 0.21])
