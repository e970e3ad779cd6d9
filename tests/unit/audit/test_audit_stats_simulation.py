"""The disparity intervals and the disparity test against known truth, by simulation.

200 seeded audits of a design with no disparity and 200 of one with a planted disparity,
person-level random effects (intra-class correlation 0.5) and 1-8 images a person. Bounds
come from the Monte Carlo standard error of a proportion over 200 audits: 3 standard
errors either side of the target. The full-size version, with more designs, is
``benchmarks/simulation_coverage.py``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from genfair.audit import interval_tables

AUDITS = 200
LEVEL = 0.95
#: 3 Monte Carlo standard errors of a coverage of 95% (or a rejection rate of 5%) over 200 audits.
MARGIN = 3 * math.sqrt(LEVEL * (1 - LEVEL) / AUDITS)


def _load_benchmark():
    """The benchmark's data generator, so that this test and the full simulation draw alike."""
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "simulation_coverage.py"
    spec = importlib.util.spec_from_file_location("simulation_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_audit = _load_benchmark().simulate


def _simulate(seed: int, means: list[float], sizes: list[int], spread: list[float]) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    truth = {"difference": max(means) - min(means), "ratio": max(means) / min(means)}
    covered = {"group": 0, "difference": 0, "ratio": 0, "debiased_in_interval": 0}
    rejected = 0
    for audit in range(AUDITS):
        frame = _audit(rng, means, sizes, spread)
        per_group, disparities = interval_tables(frame, attributes=["group"], metrics=["mse_error"],
                                                 n_resamples=299, n_permutations=199, seed=audit)
        rows = per_group[per_group["grouping"] == "group"]
        true_means = np.array([means[int(label[1:])] for label in rows["group"]])
        covered["group"] += int(((rows["ci_low"] <= true_means) & (true_means <= rows["ci_high"])).sum())
        row = disparities.iloc[0]
        for key, value in truth.items():
            covered[key] += bool(row[f"{key}_ci_low"] <= value <= row[f"{key}_ci_high"])
        covered["debiased_in_interval"] += bool(
            row["difference_ci_low"] <= row["difference_debiased"] <= row["difference_ci_high"]
        )
        rejected += bool(row["p_value"] < 0.05)
    result = {key: count / AUDITS for key, count in covered.items()}
    result["group"] = covered["group"] / (AUDITS * len(means))
    result["rejected"] = rejected / AUDITS
    return result


@pytest.fixture(scope="module")
def no_disparity() -> dict[str, float]:
    # Two tied groups of 5 and 30 people; the 5 are three times as variable (unequal variances:
    # the case where an unstudentized permutation test rejects far too often).
    return _simulate(2025, [0.02, 0.02], [5, 30], [3.0, 1.0])


@pytest.fixture(scope="module")
def planted() -> dict[str, float]:
    # Two groups of 10 and 20 people; the 10 are 30% worse.
    return _simulate(2026, [0.026, 0.02], [10, 20], [1.0, 1.0])


def test_with_no_disparity_the_studentized_test_holds_its_level(no_disparity):
    assert no_disparity["rejected"] <= 0.05 + MARGIN


def test_with_no_disparity_group_means_are_covered_and_the_difference_interval_reaches_zero(no_disparity):
    assert no_disparity["group"] >= LEVEL - MARGIN
    assert no_disparity["ratio"] >= LEVEL - MARGIN
    # max - min at a tie sits on the boundary of its range, where no bootstrap interval is
    # exact: the full simulation measures 89-94% coverage of 0 there (not 95%), so the bound
    # is 3 standard errors below 90%. A percentile interval, or one shifted by the bias
    # estimate, covers 0% and 57-87% here.
    tie_level = 0.90
    assert no_disparity["difference"] >= tie_level - 3 * math.sqrt(tie_level * (1 - tie_level) / AUDITS)


def test_a_planted_disparity_is_covered_and_detected(planted):
    for key in ("group", "difference", "ratio"):
        assert LEVEL - MARGIN <= planted[key] <= 1.0, key
    assert planted["difference"] <= LEVEL + MARGIN
    assert planted["rejected"] >= 0.5
    assert planted["debiased_in_interval"] >= 0.99
