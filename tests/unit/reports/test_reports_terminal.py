"""The terminal's disparity table: each row's groups, estimate, interval and p are about the same groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console

from genfair.audit import interval_tables
from genfair.audit.result import summarize
from genfair.reports.terminal import print_audit


def test_a_small_worst_group_is_left_out_of_the_row_and_named_under_it():
    rng = np.random.default_rng(0)
    people = {"a": 6, "b": 6, "c": 2}  # c: two people with the highest error
    per_image = pd.DataFrame([
        {"path": f"{g}{i}_{k}.png", "subject": f"{g}{i}", "group": g,
         "mse_error": (0.9 if g == "c" else 0.1 + 0.05 * (g == "b")) + rng.normal(0, 0.01)}
        for g, n in people.items() for i in range(n) for k in range(3)
    ])
    _, intervals = interval_tables(per_image, attributes=["group"], metrics=["mse_error"], n_resamples=200,
                                   n_permutations=99)
    result = summarize(per_image, attributes=["group"], metrics=["mse_error"])
    result = type(result)(per_image=result.per_image, per_group=result.per_group, disparities=result.disparities,
                          metadata={}, tables={"disparity_intervals": intervals})
    console = Console(width=200, record=True)
    print_audit(console, result)
    text = console.export_text()
    (line,) = [line for line in text.splitlines() if line.strip().startswith("group ") and "MSE" in line and "[" in line]
    found = intervals.iloc[0]
    assert line.split()[3:6] == ["b", "a", f"{found['ratio']:.3f}"]
    assert f"[{found['ratio_ci_low']:.3f}, {found['ratio_ci_high']:.3f}]" in line
    assert f"{found['p_holm']:.3f}" in line
    assert "Left out of worst and best (fewer than 5 people): group: c (2)" in text
