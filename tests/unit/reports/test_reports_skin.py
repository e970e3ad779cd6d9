"""ΔL* and Δh* beside ΔITA in the reports: the terminal tables, the MLflow metrics, the comparison report.

The audit is a real one (``audit_outputs``) of solid red faces that the model turns magenta for
half the people: ΔL* = 60.3242 - 53.2408 and Δh* = (328.2350 - 360) - 39.9990 degrees for them
(published CIELAB of sRGB magenta and red), 0 for the others.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from rich.console import Console

from genfair.audit import audit_outputs
from genfair.audit.ranking import comparison_table
from genfair.reports.comparison import FIGURE_TITLES, comparison_figures, display_table
from genfair.reports.terminal import print_audit
from genfair.reports.tracking import audit_metrics

LIGHTNESS = 60.3242 - 53.2408
HUE = (328.2350 - 360.0) - 39.9990


@pytest.fixture(scope="module")
def result():
    n = 24
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "subject": [f"s{i // 2}" for i in range(n)],
                          "gender": [("f", "m")[(i // 2) % 2] for i in range(n)]})
    originals = torch.tensor((1.0, 0.0, 0.0)).view(1, 3, 1, 1).expand(n, 3, 8, 8).clone()
    outputs = originals.clone()
    outputs[torch.tensor((frame["gender"] == "f").to_numpy())] = torch.tensor((1.0, 0.0, 1.0)).view(3, 1, 1)
    outputs[:, :, 0, 0] = 0.5  # outside the face mask: a finite PSNR
    return audit_outputs(originals, outputs, frame, attributes=["gender"],
                         metadata={"attributes": ["gender"], "model": "m", "dataset": "d"})


def test_the_terminal_prints_a_table_per_skin_measure(result):
    console = Console(width=200, record=True)
    print_audit(console, result)
    text = console.export_text()
    for title in ("Skin-tone shift ΔITA° per group", "Skin lightness shift ΔL* per group",
                  "Skin hue shift Δh° per group"):
        assert title in text
    lightness = text[text.index("Skin lightness shift"):text.index("Skin hue shift")]
    hue = text[text.index("Skin hue shift"):]
    (f_row,) = [line for line in lightness.splitlines() if line.strip().startswith("f ")]
    assert f"{LIGHTNESS:+.2f}" in f_row and len(f_row.split()) == 6, "group, people, ΔL*, [low, high], p"
    (f_hue,) = [line for line in hue.splitlines() if line.strip().startswith("f ")]
    assert f"{HUE:+.2f}" in f_hue and len(f_hue.split()) == 5, "no one-sided p for a hue shift"
    gap = [line for line in hue.splitlines() if line.strip().startswith("gap, gender")]
    assert gap and f"{abs(HUE):.2f}" in gap[0]
    assert "positive: yellower, negative: redder" in text and "neither sign is the harm" in text


def test_mlflow_gets_each_groups_mean_and_each_gap(result):
    metrics = audit_metrics(result.per_group, result.disparities, tables=result.tables)
    assert metrics["skin_tone_shift/gender/f/lightness_shift"] == pytest.approx(LIGHTNESS, abs=2e-3)
    assert metrics["skin_tone_shift/gender/f/hue_shift"] == pytest.approx(HUE, abs=2e-3)
    assert metrics["skin_tone_shift/lightness_shift"] == pytest.approx(LIGHTNESS / 2, abs=2e-3)
    for measure, gap in (("lightness_shift", LIGHTNESS), ("hue_shift", abs(HUE)), ("ita_shift", None)):
        key = f"skin_tone_disparities/gender/{measure}"
        assert {f"{key}/difference", f"{key}/difference_ci_low", f"{key}/difference_ci_high"} <= set(metrics)
        if gap is not None:
            assert metrics[f"{key}/difference"] == pytest.approx(gap, abs=2e-3)


def test_the_comparison_report_shows_the_new_measures(result):
    table = comparison_table({"a": result})
    row = table.iloc[0]
    assert row["lightness_worst_group"] == "f" and row["lightness_worst"] == pytest.approx(LIGHTNESS, abs=2e-3)
    assert row["hue_gap"] == pytest.approx(abs(HUE), abs=2e-3)
    assert row["ita_worst_group"] == result.tables["skin_tone_disparities"].set_index("metric").loc[
        "ita_shift", "worst_group"]
    shown = display_table(table).iloc[0]
    assert shown["ΔL* most lightened"].startswith(f"f: {LIGHTNESS:+.2f}")
    assert shown["Δh° gap"].startswith(f"{abs(HUE):.2f}")
    figures = comparison_figures({"a": result})
    assert {"skin_tone_shift", "lightness_shift", "hue_shift"} <= set(figures) <= set(FIGURE_TITLES)
    assert figures["hue_shift"].axes[0].get_xlabel() == "Δh* (degrees)"
