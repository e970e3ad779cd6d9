"""The resampling engine (genfair.audit.resampling) against naive loops and scipy.

The engine sums resamples in cache-sized blocks, takes a shortcut when every subject has
as many images, and serves the per-group and the disparity test from one set of shuffles.
Each of those is checked here against a loop that draws the same random numbers one resample
(or permutation) at a time and computes the statistic from its definition, with the blocks
made tiny so that block boundaries and a short last block are exercised; and the group
interval against scipy.stats.bootstrap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from genfair.audit import resampling as r
from genfair.audit import stats as s
from scipy import stats as scipy_stats


def _toy_clusters(counts_per_group, *, metrics=1, seed=0, fixed=None):
    """Clusters of groups with the given numbers of subjects; image counts 1-4 or all ``fixed``."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(len(counts_per_group)), counts_per_group)
    counts = np.full(group.size, float(fixed)) if fixed else rng.integers(1, 5, group.size).astype(float)
    sums = counts[:, None] * (0.02 + 0.003 * group[:, None] + rng.normal(0, 0.004, (group.size, metrics)))
    return r._Clusters(group=group, sums=sums, counts=counts, n_groups=len(counts_per_group))


def _naive_bootstrap(clusters, include, n_resamples, rng):
    """One resample at a time: draw n subjects with replacement, sum their totals and images."""
    out = np.full((n_resamples, clusters.n_groups, clusters.sums.shape[1]), np.nan)
    for g in range(clusters.n_groups):
        if not include[g]:
            continue
        members = np.flatnonzero(clusters.group == g)
        for b in range(n_resamples):
            picked = members[rng.integers(0, members.size, size=(1, members.size))[0]]
            out[b, g] = clusters.sums[picked].sum(axis=0) / clusters.counts[picked].sum()
    return out


@pytest.mark.parametrize(
    ("metrics", "fixed"),
    [(1, 3), (1, None), (2, 3), (2, None)],
    ids=["one metric, equal image counts (direct sums)", "one metric, unequal counts",
         "two metrics, equal counts", "two metrics, unequal counts"],
)
def test_bootstrap_equals_a_resample_at_a_time_loop_on_the_same_draws(monkeypatch, metrics, fixed):
    monkeypatch.setattr(r, "_RESAMPLE_BLOCK", 20)  # 2-3 resamples a block, a short last block
    clusters = _toy_clusters([7, 9, 4], metrics=metrics, fixed=fixed)
    include = np.array([True, False, True])
    boot = r._bootstrap_means(clusters, include, 23, np.random.default_rng(5))
    expected = _naive_bootstrap(clusters, include, 23, np.random.default_rng(5))
    np.testing.assert_allclose(boot, expected, rtol=1e-12)
    assert np.isnan(boot[:, 1]).all()


def test_block_size_does_not_change_the_draws(monkeypatch):
    clusters = _toy_clusters([6, 11], fixed=2)
    default = r._bootstrap_means(clusters, np.array([True, True]), 50, np.random.default_rng(1))
    monkeypatch.setattr(r, "_RESAMPLE_BLOCK", 13)
    np.testing.assert_array_equal(r._bootstrap_means(clusters, np.array([True, True]), 50, np.random.default_rng(1)),
                                  default)


def test_group_interval_with_equal_image_counts_matches_scipy_bootstrap():
    # 3 images per subject: the group mean is the mean of the subjects' means, so resampling
    # subjects is scipy's one-sample bootstrap of those means (the direct-sum path).
    rng = np.random.default_rng(4)
    subject_means = 0.02 + rng.normal(0.0, 0.004, 15)
    rows = [(f"s{i}", "a", mean + noise) for i, mean in enumerate(subject_means) for noise in (-0.001, 0.0, 0.001)]
    rows += [(f"t{i}", "b", 0.03) for i in range(5)]
    frame = pd.DataFrame(rows, columns=["subject", "group", "mse_error"])
    table = s.group_intervals(frame, attributes=["group"], metrics=["mse_error"], interval="percentile",
                              n_resamples=20000, n_permutations=0, seed=3)
    row = table[(table["grouping"] == "group") & (table["group"] == "a")].iloc[0]
    reference = scipy_stats.bootstrap((subject_means,), np.mean, method="percentile", n_resamples=20000,
                                      vectorized=True, rng=8).confidence_interval
    tolerance = 0.03 * (reference.high - reference.low)  # a bound's Monte Carlo sd is ~0.5% of the width
    assert row["ci_low"] == pytest.approx(reference.low, abs=tolerance)
    assert row["ci_high"] == pytest.approx(reference.high, abs=tolerance)


def _welch_log_p(s_, c, group, g, h):
    """-log p of Welch's test between groups g and h, from cluster totals (ratio-estimator variance)."""
    means, variances, sizes = [], [], []
    for label in (g, h):
        totals, images = s_[group == label], c[group == label]
        mean = totals.sum() / images.sum()
        n = totals.size
        variances.append(n / (n - 1) * np.sum((totals - mean * images) ** 2) / images.sum() ** 2)
        means.append(mean)
        sizes.append(n)
    gap, v_g, v_h = abs(means[0] - means[1]), variances[0], variances[1]
    t = gap / math.sqrt(v_g + v_h)
    df = (v_g + v_h) ** 2 / (v_g**2 / (sizes[0] - 1) + v_h**2 / (sizes[1] - 1))
    return -math.log(2 * scipy_stats.t.sf(t, df))


def _naive_tests(clusters, higher, n_permutations, rng, studentized):
    """Per-group and disparity p-values, one permutation at a time, every group eligible."""
    labels, totals, images = clusters.group, clusters.sums[:, 0], clusters.counts
    groups = range(clusters.n_groups)
    sign = -1.0 if higher else 1.0

    def statistics(lab):
        means = [totals[lab == g].sum() / images[lab == g].sum() for g in groups]
        served = [sign * (means[g] - totals[lab != g].sum() / images[lab != g].sum()) for g in groups]
        if studentized:
            spread = max(_welch_log_p(totals, images, lab, g, h) for g in groups for h in groups if g < h)
        else:
            spread = max(means) - min(means)
        return np.array(served), spread

    observed_served, observed_spread = statistics(labels)
    reached_served, reached_spread = np.zeros(clusters.n_groups), 0
    for _ in range(n_permutations):
        served, spread = statistics(rng.permuted(labels))
        reached_served += served >= observed_served - 1e-9 * np.abs(observed_served).max()
        reached_spread += spread >= observed_spread - 1e-9
    return (1 + reached_served) / (1 + n_permutations), (1 + reached_spread) / (1 + n_permutations)


@pytest.mark.parametrize("studentized", [True, False], ids=["studentized", "max - min"])
@pytest.mark.parametrize("fixed", [2, None], ids=["equal image counts", "unequal image counts"])
def test_permutation_tests_equal_a_permutation_at_a_time_loop_on_the_same_shuffles(monkeypatch, studentized, fixed):
    monkeypatch.setattr(r, "_PERMUTATION_BLOCK", 70)  # a few permutations a block, a short last block
    clusters = _toy_clusters([6, 8, 5], fixed=fixed, seed=2)
    n = 61
    p_groups, p_range = r._permutation_tests(clusters, 0, np.ones(3, bool), False, n, np.random.default_rng(9),
                                             studentized=studentized)
    expected_groups, expected_range = _naive_tests(clusters, False, n, np.random.default_rng(9), studentized)
    np.testing.assert_array_equal(p_groups, expected_groups)
    assert p_range == expected_range
    assert 0 < p_range < 1 and p_groups.min() < 0.2  # the planted ordering shows: not a degenerate case


def test_permutation_tests_leave_out_ineligible_groups_and_flip_the_sign_for_scores():
    clusters = _toy_clusters([6, 3, 7], fixed=2, seed=4)
    eligible = np.array([True, False, True])
    p_groups, p_range = r._permutation_tests(clusters, 0, eligible, True, 99, np.random.default_rng(0),
                                             studentized=False)
    assert np.isnan(p_groups[1]) and not np.isnan(p_groups[[0, 2]]).any()
    kept = r._Clusters(group=np.repeat([0, 1], [6, 7]), sums=clusters.sums[clusters.group != 1],
                       counts=clusters.counts[clusters.group != 1], n_groups=2)
    expected_groups, expected_range = _naive_tests(kept, True, 99, np.random.default_rng(0), False)
    np.testing.assert_array_equal(p_groups[[0, 2]], expected_groups)
    assert p_range == expected_range
    nothing = r._permutation_tests(clusters, 0, eligible, True, 0, np.random.default_rng(0), studentized=True)
    assert np.isnan(nothing[0]).all() and math.isnan(nothing[1])


def test_clusters_sum_each_subject_within_each_group_like_a_dictionary():
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 3, 200)
    subjects = rng.integers(0, 40, 200)  # some subjects in several groups
    values = rng.normal(size=(200, 2))
    clusters = r._clusters(codes, subjects, values, 3)
    expected: dict[tuple[int, int], list] = {}
    for code, subject, value in zip(codes, subjects, values, strict=True):
        expected.setdefault((int(code), int(subject)), []).append(value)
    keys = sorted(expected)
    assert clusters.group.tolist() == [group for group, _ in keys]
    np.testing.assert_allclose(clusters.sums, [np.sum(expected[key], axis=0) for key in keys], rtol=1e-12)
    assert clusters.counts.tolist() == [len(expected[key]) for key in keys]


def test_string_and_object_attribute_columns_group_alike():
    labels = ["b", "a", "Z", "é", "e", "ß", "日本", "a b"] * 3
    as_str = pd.DataFrame({"attribute": pd.Series(labels, dtype="str")})
    as_object = pd.DataFrame({"attribute": pd.Series(labels, dtype=object)})
    (_, str_labels, str_codes), = s._groupings(as_str, ["attribute"])[1:]
    (_, object_labels, object_codes), = s._groupings(as_object, ["attribute"])[1:]
    assert str_labels == object_labels == sorted(set(labels))
    np.testing.assert_array_equal(str_codes, object_codes)
