"""Do genfair's intervals and disparity tests keep their promises? Simulated audits with known truth.

Each simulated audit is one grouping of 2-8 groups of unequal size (5-40 people). Person
``i`` of group ``g`` has 1-8 images (uniform); an image's error is
``mu_g + u_i + e``, with a person effect ``u_i ~ N(0, tau_g^2)`` and image noise
``e ~ N(0, sigma_g^2)``; ``tau = sigma = 0.004`` (intra-class correlation 0.5) unless a design
scales a group's spread up (unequal variances). The truth is known: each group's mean
``mu_g``, the worst group's mean ``max mu``, the disparity ``max mu - min mu`` and the ratio
``max mu / min mu``. Each audit runs :func:`genfair.audit.interval_tables` (999 subject
resamples, 999 permutations, defaults otherwise) and the script counts:

- coverage of the 95% intervals: every group mean, the worst group's mean, the difference
  and the ratio (target 93-97% where the statistic is regular; at an exact tie
  ``max - min`` sits on the boundary of its range and the bootstrap is not consistent);
- rejections of the disparity test, ``p_value < 0.05``: studentized (the default) and
  unstudentized. Type I error where every group ties, power where one is planted worse;
- bias of the plain and the debiased ``difference`` and ``ratio`` (mean estimate - truth);
- for comparison, the coverage of the difference by other intervals on the same resamples
  (rebuilt from the same seed through the module's private helpers): the basic interval
  alone, the percentile interval, the percentile interval shifted by the bootstrap's bias
  estimate (genfair's earlier choice) and BCa (bias-corrected and accelerated, with a
  subject jackknife per group as ``scipy.stats.bootstrap`` does).

    .venv/bin/python benchmarks/simulation_coverage.py [--audits 500] [--seed 0] [--quick]

``--quick`` runs 60 audits a design. Prints Markdown for docs/benchmarks.md; the Monte Carlo
standard error of a proportion near 95% over 500 audits is about 1 percentage point
(near 5%: 1 point; near 50%: 2.2 points).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date

import numpy as np
import pandas as pd
from genfair.audit import disparity_intervals, interval_tables
from genfair.audit import stats as _stats
from scipy.special import ndtr, ndtri

TAU = 0.004  # sd of the person effect
SIGMA = 0.004  # sd of the image noise
BASE = 0.020
#: name -> (group means, group sizes in people, spread factor of each group or None)
DESIGNS: dict[str, tuple[list[float], list[int], list[float] | None]] = {
    "2 groups tie (5, 30)": ([BASE] * 2, [5, 30], None),
    "4 groups tie (5-40)": ([BASE] * 4, [5, 10, 20, 40], None),
    "8 groups tie (5-40)": ([BASE] * 8, [5, 5, 10, 10, 20, 20, 40, 40], None),
    "2 groups tie, unequal variances (sd x2 in the 5)": ([BASE] * 2, [5, 40], [2.0, 1.0]),
    "4 groups tie, unequal variances (sd x2, x1.5, x1, x1)": ([BASE] * 4, [5, 10, 20, 40], [2.0, 1.5, 1.0, 1.0]),
    "2 groups, +30% planted (10, 20)": ([BASE + 0.006, BASE], [10, 20], None),
    "4 groups, one +30% (the 5)": ([BASE + 0.006] + [BASE] * 3, [5, 10, 20, 40], None),
    "4 groups, distinct means": ([0.020, 0.023, 0.026, 0.030], [5, 10, 20, 40], None),
    "8 groups, one +30% (a 5)": ([BASE + 0.006] + [BASE] * 7, [5, 5, 10, 10, 20, 20, 40, 40], None),
}


def simulate(
    rng: np.random.Generator, means: list[float], sizes: list[int], spread: list[float] | None
) -> pd.DataFrame:
    """One audit's per-image frame (columns subject, group, mse_error)."""
    spread = spread or [1.0] * len(means)
    subjects, groups, errors = [], [], []
    for g, (mean, size, factor) in enumerate(zip(means, sizes, spread, strict=True)):
        images = rng.integers(1, 9, size)
        effect = np.repeat(rng.normal(0.0, TAU * factor, size), images)
        errors.append(mean + effect + rng.normal(0.0, SIGMA * factor, images.sum()))
        subjects += [f"g{g}s{i}" for i in range(size) for _ in range(images[i])]
        groups += [f"g{g}"] * int(images.sum())
    return pd.DataFrame({"subject": subjects, "group": groups, "mse_error": np.concatenate(errors)})


def _bca(samples: np.ndarray, estimate: float, jackknife: list[np.ndarray], level: float) -> tuple[float, float]:
    """BCa interval from resamples and per-group jackknife values (scipy.stats.bootstrap's formulas)."""
    z0 = ndtri(((samples < estimate).sum() + (samples <= estimate).sum()) / (2 * samples.size))
    num = den = 0.0
    for values in jackknife:
        n = values.size
        u = (n - 1) * (values.mean() - values)
        num, den = num + (u**3).sum() / n**3, den + (u**2).sum() / n**2
    a = num / 6 / den**1.5 if den > 0 else 0.0
    alpha = (1 - level) / 2
    z = np.array([ndtri(alpha), ndtri(1 - alpha)])
    with np.errstate(invalid="ignore", divide="ignore"):  # z0 = -inf at a tie: no interval
        probabilities = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
    if not np.isfinite(probabilities).all():
        return float("nan"), float("nan")
    low, high = np.quantile(samples, probabilities)
    return float(low), float(high)


def alternatives(frame: pd.DataFrame, seed: int, resamples: int, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Other intervals of ``max - min`` on the resamples that interval_tables drew for ``frame``."""
    codes, labels = pd.factorize(frame["group"], sort=True)
    subjects = pd.factorize(frame["subject"])[0].astype(np.int64)
    values = frame[["mse_error"]].to_numpy(dtype=np.float64)
    n_groups = len(labels)
    clusters = _stats._clusters(codes.astype(np.int64), subjects, values, n_groups)
    estimates = _stats._exact_means(values, codes.astype(np.int64), n_groups)
    include = np.ones(n_groups, dtype=bool)
    boot = _stats._bootstrap_means(clusters, include, resamples, _stats._rng(seed, 1, 0))  # grouping 1: "group"
    boot = _stats._expand(boot, estimates, _stats._expansion(clusters.n_subjects(), level, "expanded"))[:, :, 0]
    point = estimates[:, 0]
    estimate = float(point.max() - point.min())
    samples = boot.max(axis=1) - boot.min(axis=1)
    jackknife = []
    for g in range(n_groups):
        members = np.flatnonzero(clusters.group == g)
        sums, counts = clusters.sums[members, 0], clusters.counts[members]
        left_out = np.tile(point, (members.size, 1))
        left_out[:, g] = (sums.sum() - sums) / (counts.sum() - counts)
        jackknife.append(left_out.max(axis=1) - left_out.min(axis=1))
    return {
        "basic": _stats._basic_quantiles(samples, estimate, level, floor=0.0),
        "percentile": _stats._quantiles(samples, level),
        "shifted": _stats._bias_corrected_quantiles(samples, estimate, level, floor=0.0),
        "bca": _bca(samples, estimate, jackknife, level),
    }


def run(name: str, design: tuple, audits: int, rng: np.random.Generator, resamples: int) -> dict[str, object]:
    means, sizes, spread = design
    truth = {"worst": max(means), "difference": max(means) - min(means), "ratio": max(means) / min(means)}
    covered = dict.fromkeys(("group", "worst", "difference", "ratio"), 0)
    rejected = {"studentized": 0, "unstudentized": 0}
    other = dict.fromkeys(("basic", "percentile", "shifted", "bca"), 0)
    plain, debiased, plain_ratio, debiased_ratio, width = [], [], [], [], []
    kwargs = {"attributes": ["group"], "metrics": ["mse_error"]}
    for _ in range(audits):
        frame = simulate(rng, means, sizes, spread)
        seed = int(rng.integers(1 << 31))
        per_group, disparities = interval_tables(frame, n_resamples=resamples, n_permutations=resamples, seed=seed,
                                                 **kwargs)
        rows = per_group[per_group["grouping"] == "group"]
        truth_by_group = np.array([means[int(label[1:])] for label in rows["group"]])
        covered["group"] += int(((rows["ci_low"] <= truth_by_group) & (truth_by_group <= rows["ci_high"])).sum())
        row = disparities.iloc[0]
        for key in ("worst", "difference", "ratio"):
            covered[key] += bool(row[f"{key}_ci_low"] <= truth[key] <= row[f"{key}_ci_high"])
        rejected["studentized"] += bool(row["p_value"] < 0.05)
        plain_test = disparity_intervals(frame, n_resamples=1, n_permutations=resamples, seed=seed,
                                         studentized=False, **kwargs).iloc[0]
        rejected["unstudentized"] += bool(plain_test["p_value"] < 0.05)
        for key, (low, high) in alternatives(frame, seed, resamples).items():
            other[key] += bool(low <= truth["difference"] <= high)
        plain.append(row["difference"])
        debiased.append(row["difference_debiased"])
        plain_ratio.append(row["ratio"])
        debiased_ratio.append(row["ratio_debiased"])
        width.append(row["difference_ci_high"] - row["difference_ci_low"])
    return {
        "name": name,
        "truth": truth["difference"],
        "group": covered["group"] / (audits * len(means)),
        **{key: covered[key] / audits for key in ("worst", "difference", "ratio")},
        **{key: value / audits for key, value in rejected.items()},
        "bias_plain": float(np.mean(plain)) - truth["difference"],
        "bias_debiased": float(np.mean(debiased)) - truth["difference"],
        "bias_ratio_plain": float(np.mean(plain_ratio)) - truth["ratio"],
        "bias_ratio_debiased": float(np.mean(debiased_ratio)) - truth["ratio"],
        "width": float(np.mean(width)),
        **{f"other_{key}": count / audits for key, count in other.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audits", type=int, default=500, help="simulated audits per design")
    parser.add_argument("--resamples", type=int, default=999, help="bootstrap resamples and permutations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="60 audits a design")
    args = parser.parse_args()
    audits = 60 if args.quick else args.audits
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    results = [run(name, design, audits, rng, args.resamples) for name, design in DESIGNS.items()]
    seconds = time.perf_counter() - start

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{date.today()}; {seconds:.0f} s; load average {os.getloadavg()[0]:.1f}")
    print(f"{audits} audits a design; tau {TAU}, sigma {SIGMA}, 1-8 images a person; {args.resamples} subject "
          f"resamples and permutations; seed {args.seed}")
    print()
    print("| design | true difference | cover: group means | cover: worst | cover: difference | cover: ratio "
          "| reject: studentized (default) | reject: unstudentized | bias: difference, plain / debiased "
          "| bias: ratio, plain / debiased | mean width (difference) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['name']} | {r['truth']:.3f} | {r['group']:.1%} | {r['worst']:.1%} | {r['difference']:.1%} "
            f"| {r['ratio']:.1%} | {r['studentized']:.1%} | {r['unstudentized']:.1%} "
            f"| {r['bias_plain']:+.5f} / {r['bias_debiased']:+.5f} "
            f"| {r['bias_ratio_plain']:+.4f} / {r['bias_ratio_debiased']:+.4f} | {r['width']:.4f} |"
        )
    print()
    print("coverage of the difference by other intervals on the same resamples:")
    print()
    print("| design | genfair (basic low, percentile high) | basic | percentile | percentile shifted by the bias "
          "| BCa |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['name']} | {r['difference']:.1%} | {r['other_basic']:.1%} | {r['other_percentile']:.1%} "
              f"| {r['other_shifted']:.1%} | {r['other_bca']:.1%} |")


if __name__ == "__main__":
    main()
