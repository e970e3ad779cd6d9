"""genfair's vectorised cluster bootstrap against fairlearn's MetricFrame bootstrap.

On the same synthetic per-image errors (8 groups, 10 images per subject, subject random
effects) it checks that both give the same group means, and times the bootstrap of the
group means and their disparities (difference and ratio):

- 10,000 rows: genfair with 1,000 resamples; fairlearn with as many resamples as fit in
  about ``--budget`` seconds (default 60), from the time of a short pilot run; the speed
  ratio compares the time *per resample*.
- 100,000 rows: genfair and fairlearn with 100 resamples each.
- 1,000,000 rows: genfair alone, 1,000 resamples (and its permutation tests, 1,000
  permutations), best of ``--repeats`` calls, wall and CPU seconds (the CPU time of this
  process is what other jobs on a shared machine disturb least), and the time split into
  the engine's stages, each timed alone on the same data: factorizing subjects and groups
  and summing the clusters, the bootstrap draws and sums (both groupings: overall and
  ``group``), the per-group and disparity permutation tests, and the rest of the call
  (means, quantiles, intervals, tables).

The two bootstraps do not resample the same thing: fairlearn draws images (rows),
genfair draws subjects within each group (the images of one person are not independent),
so their intervals differ; the table shows the mean interval width of each. genfair's
time is the whole ``interval_tables`` call (validation, grouping, bootstrap, tables)
with the permutation test off unless stated.

    .venv/bin/python benchmarks/bootstrap_vs_fairlearn.py [--budget SECONDS] [--repeats 3]

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
from genfair.audit import interval_tables, resampling, stats

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


def best_of(repeats: int, function: object) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``repeats`` calls of ``function()``, each its own best."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def stage_split(frame: pd.DataFrame, n_resamples: int, n_permutations: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each stage of interval_tables on ``frame``, each timed alone, best of ``repeats``."""
    values = frame[["mse_error"]].to_numpy(dtype=np.float64)

    def prepare() -> list:
        subjects = frame["subject"].astype(str).factorize()[0].astype(np.int64)
        return [(index, resampling._clusters(codes, subjects, values, len(labels)))
                for index, (_, labels, codes) in enumerate(stats._groupings(frame, ["group"]))]

    clusters = prepare()

    def bootstrap() -> None:
        for index, cluster in clusters:
            resampling._bootstrap_means(cluster, cluster.n_subjects() >= 5, n_resamples, resampling._rng(0, index, 0))

    def permutation() -> None:
        index, cluster = clusters[1]
        resampling._permutation_tests(cluster, 0, cluster.n_subjects() >= 5, False, n_permutations,
                                      resampling._rng(0, index, 1, 0), studentized=True)

    return {"prepare": best_of(repeats, prepare), "bootstrap": best_of(repeats, bootstrap),
            "permutation": best_of(repeats, permutation)}


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
    parser.add_argument("--repeats", type=int, default=3, help="calls at 1,000,000 rows; the best is shown")
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
    boot_wall, boot_cpu = best_of(args.repeats, lambda: run_genfair(large, 1000))
    both_wall, both_cpu = best_of(args.repeats, lambda: run_genfair(large, 1000, n_permutations=1000))
    split = stage_split(large, 1000, 1000, args.repeats)

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
    print(f"| 1,000,000 | 1,000 | {boot_wall:.2f} | - | - | - | - | - | - | - |")
    print()
    print(f"genfair at 1,000,000 rows (100,000 subjects, 8 groups), best of {args.repeats} calls:")
    print()
    print("| interval_tables at 1,000,000 rows | wall (s) | CPU (s) |")
    print("|---|---:|---:|")
    print(f"| 1,000 resamples, no permutation test | {boot_wall:.2f} | {boot_cpu:.2f} |")
    print(f"| 1,000 resamples and 1,000 permutations | {both_wall:.2f} | {both_cpu:.2f} |")
    rest = (boot_wall - split["prepare"][0] - split["bootstrap"][0], boot_cpu - split["prepare"][1] - split["bootstrap"][1])
    stages = [
        ("factorize subjects and groups, sum clusters (2 groupings)", split["prepare"]),
        ("bootstrap draws and sums: 2 x 100,000 subjects x 1,000 resamples", split["bootstrap"]),
        ("the rest without permutations: means, quantiles, intervals, tables", rest),
        ("permutation tests, per-group and disparity (100,000 labels x 1,000)", split["permutation"]),
    ]
    for name, (wall, cpu) in stages:
        print(f"| stage: {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
