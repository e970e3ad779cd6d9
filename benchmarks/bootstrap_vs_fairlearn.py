"""genfair's vectorised cluster bootstrap against fairlearn's MetricFrame bootstrap.

On the same synthetic per-image errors (8 groups, 10 images per subject, subject random
effects) it checks that both give the same group means, and times the bootstrap of the
group means and their disparities (difference and ratio):

- 10,000 rows: genfair with 1,000 resamples; fairlearn with as many resamples as fit in
  about ``--budget`` seconds (default 60), from the time of a short pilot run; the speed
  ratio compares the time *per resample*.
- 100,000 rows: genfair and fairlearn with 100 resamples each.
- 1,000,000 rows: genfair alone, 1,000 resamples (and its permutation test, 1,000 permutations).

The two bootstraps do not resample the same thing: fairlearn draws images (rows),
genfair draws subjects within each group (the images of one person are not independent),
so their intervals differ; the table shows the mean interval width of each. genfair's
time is the whole ``interval_tables`` call (validation, grouping, bootstrap, tables)
with the permutation test off unless stated.

    .venv/bin/python benchmarks/bootstrap_vs_fairlearn.py [--budget SECONDS]

Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date

import numpy as np
import pandas as pd

from genfair.audit import interval_tables

N_GROUPS = 8
IMAGES_PER_SUBJECT = 10
LEVEL = 0.95


def synthetic_errors(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Per-image errors: 8 groups with means 0.020..0.027, subject sd 0.004, image sd 0.003."""
    rng = np.random.default_rng(seed)
    n_subjects = n_rows // IMAGES_PER_SUBJECT
    subject_group = rng.integers(0, N_GROUPS, n_subjects)
    subject_effect = rng.normal(0.0, 0.004, n_subjects)
    subject = np.repeat(np.arange(n_subjects), IMAGES_PER_SUBJECT)
    means = 0.020 + 0.001 * np.arange(N_GROUPS)
    error = means[subject_group[subject]] + subject_effect[subject] + rng.normal(0.0, 0.003, subject.size)
    return pd.DataFrame(
        {
            "path": [f"{i}.png" for i in range(subject.size)],
            "subject": subject.astype(str),
            "group": np.char.add("g", subject_group[subject].astype(str)),
            "mse_error": error,
        }
    )


def mean_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """fairlearn metric: the mean per-image error (y_true carries the errors)."""
    return float(np.mean(y_true))


def run_fairlearn(frame: pd.DataFrame, n_boot: int) -> tuple[float, object]:
    """Seconds for a MetricFrame with n_boot resamples, plus difference/ratio intervals."""
    from fairlearn.metrics import MetricFrame

    errors = frame["mse_error"].to_numpy()
    start = time.perf_counter()
    metric_frame = MetricFrame(
        metrics=mean_error,
        y_true=errors,
        y_pred=np.zeros_like(errors),
        sensitive_features=frame["group"].to_numpy(),
        n_boot=n_boot,
        ci_quantiles=[(1 - LEVEL) / 2, (1 + LEVEL) / 2],
        random_state=0,
    )
    metric_frame.difference_ci()
    metric_frame.ratio_ci()
    return time.perf_counter() - start, metric_frame


def run_genfair(frame: pd.DataFrame, n_resamples: int, n_permutations: int = 0) -> tuple[float, pd.DataFrame]:
    """Seconds for interval_tables with n_resamples (and n_permutations), plus its group table."""
    start = time.perf_counter()
    per_group, _ = interval_tables(
        frame,
        attributes=["group"],
        metrics=["mse_error"],
        n_resamples=n_resamples,
        n_permutations=n_permutations,
        level=LEVEL,
        seed=0,
        interval="percentile",
    )
    return time.perf_counter() - start, per_group


def compare(frame: pd.DataFrame, n_genfair: int, n_fairlearn: int) -> dict[str, float]:
    """Time both and check the point estimates; return the row of the results table."""
    genfair_seconds, per_group = run_genfair(frame, n_genfair)
    fairlearn_seconds, metric_frame = run_fairlearn(frame, n_fairlearn)
    mine = per_group[per_group["grouping"] == "group"].set_index("group")
    theirs = metric_frame.by_group
    theirs.index = theirs.index.astype(str)
    max_diff = float(np.max(np.abs(mine["estimate"].to_numpy() - theirs.loc[mine.index].to_numpy())))
    low, high = metric_frame.by_group_ci
    return {
        "rows": len(frame),
        "n_genfair": n_genfair,
        "genfair_s": genfair_seconds,
        "n_fairlearn": n_fairlearn,
        "fairlearn_s": fairlearn_seconds,
        "ratio": (fairlearn_seconds / n_fairlearn) / (genfair_seconds / n_genfair),
        "max_diff": max_diff,
        "identical": bool(np.array_equal(mine["estimate"].to_numpy(), theirs.loc[mine.index].to_numpy())),
        "width_genfair": float((mine["ci_high"] - mine["ci_low"]).mean()),
        "width_fairlearn": float((high - low).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of fairlearn resampling at 10k rows")
    args = parser.parse_args()

    rows = []
    small = synthetic_errors(10_000)
    run_genfair(small, 10)  # warm-up: imports scipy, pandas paths
    pilot_seconds, _ = run_fairlearn(small, 10)
    per_resample = pilot_seconds / 10
    n_fit = max(10, int(args.budget / per_resample))
    rows.append(compare(small, 1000, n_fit))
    rows.append(compare(synthetic_errors(100_000), 100, 100))
    large = synthetic_errors(1_000_000)
    boot_seconds, _ = run_genfair(large, 1000)
    both_seconds, _ = run_genfair(large, 1000, n_permutations=1000)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, pandas {pd.__version__}; {date.today()}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"data: {N_GROUPS} groups, {IMAGES_PER_SUBJECT} images per subject; level {LEVEL}; "
          f"fairlearn resamples images, genfair resamples subjects within groups (plain percentile intervals)")
    print(f"fairlearn pilot at 10,000 rows: {per_resample * 1000:.1f} ms per resample -> {n_fit} resamples "
          f"fit in ~{args.budget:.0f} s")
    print()
    print("| rows | genfair resamples | genfair (s) | fairlearn resamples | fairlearn (s) "
          "| speed-up per resample | same group means | max abs diff | mean CI width genfair (subjects) "
          "| mean CI width fairlearn (images) |")
    print("|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['rows']:,} | {row['n_genfair']:,} | {row['genfair_s']:.2f} | {row['n_fairlearn']:,} "
            f"| {row['fairlearn_s']:.1f} | {row['ratio']:,.0f}x | {'yes' if row['identical'] else 'no'} "
            f"| {row['max_diff']:.1e} | {row['width_genfair']:.5f} | {row['width_fairlearn']:.5f} |"
        )
    print(f"| 1,000,000 | 1,000 | {boot_seconds:.2f} | - | - | - | - | - | - | - |")
    print()
    print(f"genfair at 1,000,000 rows (100,000 subjects): 1,000 resamples {boot_seconds:.1f} s; with the "
          f"permutation test (1,000 permutations) as well {both_seconds:.1f} s.")


if __name__ == "__main__":
    main()
