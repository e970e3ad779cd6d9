"""RDP's and PR's tests by simulation with known truth: people with many photos each.

Two groups of 10 people, 20 photos each. Every person keeps their group's label with their
own probability ``q`` (drawn from a Beta per group); a photo that loses it is classified as
the other group. With the same Beta in both groups neither RDP nor PR is violated, yet a
person's photos agree with each other: the type I error must stay within 0.05 plus three
Monte Carlo standard errors. Group b with ``q ~ Beta(8, 2)`` violates both (rates 0.5 vs 0.8;
group a then loses more photos to b than it gets back); the tests must find it in most
audits (``benchmarks/simulation_representation.py`` measures about 85%; the bound is 60%).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from genfair.audit import proportional_representation, representation_demographic_parity

REPLICATES = 200
ALPHA = 0.05
LEVEL_BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPLICATES)  # 0.096
POWER_BOUND = 0.6


def _p_values(rng: np.random.Generator, beta_b: tuple[float, float]) -> np.ndarray:
    """(REPLICATES, 3): RDP's, PR's and the image-level Pearson chi-square's p-value per audit."""
    from scipy import stats

    subject = np.repeat(np.arange(20), 20)
    true = (subject >= 10).astype(np.int64)
    rows = []
    for index in range(REPLICATES):
        q = np.concatenate([rng.beta(2.0, 2.0, 10), rng.beta(*beta_b, 10)])
        kept = rng.random(subject.size) < q[subject]
        predicted = np.where(kept, true, 1 - true)
        rdp = representation_demographic_parity(true, predicted, subjects=subject, n_resamples=1, n_permutations=499,
                                                seed=index)
        pr = proportional_representation(true, predicted, subjects=subject)
        table = [[kept[true == g].sum(), (~kept[true == g]).sum()] for g in (0, 1)]
        rows.append((rdp.p_value, pr.p_value, stats.chi2_contingency(table, correction=False).pvalue))
    return np.array(rows)


@pytest.fixture(scope="module")
def null() -> np.ndarray:
    return _p_values(np.random.default_rng(2024), (2.0, 2.0))


@pytest.fixture(scope="module")
def planted() -> np.ndarray:
    return _p_values(np.random.default_rng(2025), (8.0, 2.0))


def test_rdp_keeps_its_level_when_photos_of_a_person_agree(null):
    assert np.mean(null[:, 0] < ALPHA) <= LEVEL_BOUND


def test_pr_keeps_its_level_when_photos_of_a_person_agree(null):
    assert np.mean(null[:, 1] < ALPHA) <= LEVEL_BOUND


def test_the_simulation_is_clustered_enough_to_break_the_image_level_test(null):
    # What the subject-level tests replace: counting 400 photos as 400 people (issue: 37%).
    assert np.mean(null[:, 2] < ALPHA) > 0.2


def test_rdp_finds_a_planted_difference(planted):
    assert np.mean(planted[:, 0] < ALPHA) > POWER_BOUND


def test_pr_finds_a_planted_difference(planted):
    assert np.mean(planted[:, 1] < ALPHA) > POWER_BOUND
