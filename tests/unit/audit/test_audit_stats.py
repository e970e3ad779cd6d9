"""Cluster-bootstrap intervals, permutation p-values, Holm, the evidence rule and references.

Hand-computed values on two-group toy sets, a naive loop as the bootstrap's reference,
group_table / disparity_table as the point estimates' reference, and a small simulation
with known truth that a broken implementation (images resampled instead of subjects,
labels permuted per image) fails.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from genfair.audit import disparity_table, group_table
from genfair.audit import grouping as g
from genfair.audit import stats as s
from scipy import stats as scipy_stats

FAST = {"n_resamples": 200, "n_permutations": 200}


def _toy(values_a, values_b, *, images=1, metric="mse_error"):
    """Two groups, one subject per value, ``images`` identical images per subject."""
    rows = []
    for label, values in (("a", values_a), ("b", values_b)):
        for i, value in enumerate(values):
            rows += [{"path": f"{label}{i}_{k}.png", "subject": f"{label}{i}", "group": label, metric: value}
                     for k in range(images)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def audit_frame() -> pd.DataFrame:
    """Two attributes, 60 subjects with 1-6 images, one tiny intersection cell."""
    rng = np.random.default_rng(7)
    rows = []
    for subject in range(60):
        gender = "female" if subject % 2 else "male"
        tone = "darker" if subject % 3 == 0 else "lighter"
        if subject == 0:
            gender, tone = "other", "darker"  # a one-subject group in every grouping it enters
        offset = rng.normal(0, 0.01) + (0.02 if gender == "female" else 0.0)
        for k in range(rng.integers(1, 7)):
            rows.append(
                {
                    "path": f"{subject}_{k}.png",
                    "subject": f"s{subject}",
                    "gender": gender,
                    "skin_tone": tone,
                    "mse_error": 0.05 + offset + rng.normal(0, 0.005),
                    "ssim_score": 0.8 - offset + rng.normal(0, 0.01),
                }
            )
    return pd.DataFrame(rows, index=pd.RangeIndex(1000, 1000 + len(rows)))


def _block(table, grouping, metric):
    return table[(table["grouping"] == grouping) & (table["metric"] == metric)].set_index("group")


# --- point estimates ------------------------------------------------------------------------------


def test_point_estimates_equal_group_table_exactly(audit_frame):
    metrics = ["mse_error", "ssim_score"]
    table = s.group_intervals(audit_frame, attributes=["gender", "skin_tone"], metrics=metrics, **FAST)
    reference = group_table(audit_frame, attributes=["gender", "skin_tone"], metrics=metrics)
    for metric in metrics:
        mine = table[table["metric"] == metric]
        assert mine[["grouping", "group"]].values.tolist() == reference[["grouping", "group"]].values.tolist()
        np.testing.assert_array_equal(mine["estimate"].to_numpy(), reference[metric].to_numpy())
        assert mine["n_images"].tolist() == reference["n_images"].tolist()
        assert mine["n_subjects"].tolist() == reference["n_subjects"].tolist()


def test_integer_attributes_sort_by_value_like_group_table(audit_frame):
    frame = audit_frame.assign(tone=[(10, 2, 1)[i % 3] for i in range(len(audit_frame))])
    table = s.group_intervals(frame, attributes=["tone"], metrics=["mse_error"], n_resamples=10, n_permutations=0)
    reference = group_table(frame, attributes=["tone"], metrics=["mse_error"])
    assert table["group"].tolist() == reference["group"].tolist() == ["all", "1", "2", "10"]
    np.testing.assert_array_equal(table["estimate"].to_numpy(), reference["mse_error"].to_numpy())


def test_disparity_points_equal_disparity_table_when_every_group_is_sufficient(audit_frame):
    frame = audit_frame[audit_frame["gender"] != "other"]
    metrics = ["mse_error", "ssim_score"]
    mine = s.disparity_intervals(frame, attributes=["gender", "skin_tone"], metrics=metrics, **FAST)
    per_group = group_table(frame, attributes=["gender", "skin_tone"], metrics=metrics)
    reference = disparity_table(per_group, metrics=metrics)
    columns = ["grouping", "metric", "higher_is_better", "worst_group", "best_group"]
    assert mine[columns].values.tolist() == reference[columns].values.tolist()
    for column in ["overall", "worst", "best", "ratio", "difference"]:
        np.testing.assert_allclose(mine[column], reference[column], rtol=1e-12)


def test_columns_and_dtypes(audit_frame):
    per_group, disparities = s.interval_tables(audit_frame, attributes=["gender"], metrics=["mse_error"], **FAST)
    assert tuple(per_group.columns) == s.GROUP_INTERVAL_COLUMNS
    assert tuple(disparities.columns) == s.DISPARITY_INTERVAL_COLUMNS
    assert per_group.index.equals(pd.RangeIndex(len(per_group)))
    assert per_group["n_subjects"].dtype == np.int64 and per_group["ci_low"].dtype == np.float64
    assert disparities["p_holm"].dtype == np.float64 and disparities["n_groups"].dtype == np.int64


def test_group_and_disparity_functions_match_interval_tables(audit_frame):
    kwargs = {"attributes": ["gender", "skin_tone"], "metrics": ["mse_error"], "seed": 3, **FAST}
    per_group, disparities = s.interval_tables(audit_frame, **kwargs)
    pd.testing.assert_frame_equal(s.group_intervals(audit_frame, **kwargs), per_group)
    pd.testing.assert_frame_equal(s.disparity_intervals(audit_frame, **kwargs), disparities)


# --- the bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_resamples_subjects_like_a_naive_loop():
    # Group 0: three subjects with 1, 2, 3 images; group 1: two subjects. Same draws, naive sums.
    sums = np.array([[1.0], [4.0], [9.0], [2.0], [6.0]])
    counts = np.array([1.0, 2.0, 3.0, 1.0, 2.0])
    clusters = s._Clusters(group=np.array([0, 0, 0, 1, 1]), sums=sums, counts=counts, n_groups=2)
    boot = s._bootstrap_means(clusters, np.array([True, True]), 50, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    for group, members in ((0, [0, 1, 2]), (1, [3, 4])):
        draws = rng.integers(0, len(members), size=(50, len(members)))
        picked = np.array(members)[draws]
        expected = sums[picked, 0].sum(axis=1) / counts[picked].sum(axis=1)
        np.testing.assert_allclose(boot[:, group, 0], expected, rtol=1e-12)


def test_group_mean_weights_images_and_interval_spans_the_two_subjects():
    # One subject with three images of 0, one with one image of 1: mean 0.25 (not 0.5);
    # resamples give 0, 0.25 or 1, so the 95% percentile interval is [0, 1].
    frame = _toy([0.0, 1.0], [0.5, 0.5])
    frame = pd.concat([frame, frame.iloc[[0, 0]].assign(path=["x1.png", "x2.png"])], ignore_index=True)
    table = s.group_intervals(frame, attributes=["group"], metrics=["mse_error"], min_subjects=2,
                              interval="percentile", n_resamples=2000, n_permutations=0)
    row = _block(table, "group", "mse_error").loc["a"]
    assert row["estimate"] == pytest.approx(0.25)
    assert (row["ci_low"], row["ci_high"]) == (0.0, 1.0)


def test_identical_subjects_give_a_zero_width_interval_when_there_are_enough():
    # Five subjects that all look alike: no between-subject variation was observed, so the
    # bootstrap honestly has nothing to resample. That is only shown with >= min_subjects.
    frame = _toy([0.2] * 5, [0.1] * 5, images=2)
    per_group, disparities = s.interval_tables(frame, attributes=["group"], metrics=["mse_error"], **FAST)
    groups = _block(per_group, "group", "mse_error")
    assert groups.loc["a", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.2, 0.2])
    assert groups.loc["a", ["ratio_ci_low", "ratio_ci_high"]].tolist() == pytest.approx([2.0, 2.0])
    row = disparities.iloc[0]
    assert row[["ratio", "ratio_ci_low", "ratio_ci_high"]].tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert row[["difference", "difference_ci_low", "difference_ci_high"]].tolist() == pytest.approx([0.1] * 3)


def test_expanded_interval_is_the_percentile_interval_spread_by_the_t_factor(audit_frame):
    kwargs = {"attributes": ["gender"], "metrics": ["mse_error"], "seed": 5, "n_permutations": 0, "n_resamples": 300}
    plain = s.group_intervals(audit_frame, interval="percentile", **kwargs)
    expanded = s.group_intervals(audit_frame, interval="expanded", **kwargs)
    for (_, a), (_, b) in zip(plain.iterrows(), expanded.iterrows(), strict=True):
        if a["evidence"] != "sufficient":
            continue
        n = a["n_subjects"]
        factor = math.sqrt(n / (n - 1)) * scipy_stats.t.ppf(0.975, n - 1) / scipy_stats.norm.ppf(0.975)
        for bound in ("ci_low", "ci_high"):
            assert b[bound] - b["estimate"] == pytest.approx(factor * (a[bound] - a["estimate"]), rel=1e-9)


def test_intervals_contain_their_estimates(audit_frame):
    per_group, disparities = s.interval_tables(audit_frame, attributes=["gender", "skin_tone"],
                                               metrics=["mse_error", "ssim_score"], **FAST)
    sufficient = per_group[per_group["evidence"] == "sufficient"]
    assert ((sufficient["ci_low"] <= sufficient["estimate"]) & (sufficient["estimate"] <= sufficient["ci_high"])).all()
    assert (sufficient["ci_low"] < sufficient["ci_high"]).all()
    for name in ("ratio", "difference"):
        assert (disparities[f"{name}_ci_low"] <= disparities[f"{name}_ci_high"]).all()
    assert (disparities["worst_ci_low"] <= disparities["worst"]).all()


def test_disparity_intervals_of_tied_groups_keep_their_estimate_range_and_truth():
    # Four groups with one true mean: max - min over resampled means sits above the estimate, so a
    # plain percentile interval of it excludes the estimate and the truth 0 (the demo once printed
    # 1.049 [1.097, 2.245]). Taking the basic interval's lower bound keeps both, never goes below
    # 0 or 1, and the debiased value sits below the plain one. The panel's shape: 4 groups x 5
    # people x 20 photos.
    rng = np.random.default_rng(11)
    reaches_truth = 0
    for _ in range(40):
        rows = [(f"g{group}s{person}", f"g{group}", 0.02 + effect + noise)
                for group in range(4) for person in range(5)
                for effect in [rng.normal(0, 0.004)] for noise in rng.normal(0, 0.003, 20)]
        frame = pd.DataFrame(rows, columns=["subject", "group", "null_error"])
        row = s.disparity_intervals(frame, attributes=["group"], metrics=["null_error"], n_resamples=200,
                                    n_permutations=0).iloc[0]
        for name, bound in (("difference", 0.0), ("ratio", 1.0)):
            assert row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"]
            assert bound <= row[f"{name}_debiased"] < row[name]
            assert row[f"{name}_ci_low"] >= bound
        reaches_truth += row["difference_ci_low"] == 0.0 and row["ratio_ci_low"] == 1.0
    assert reaches_truth >= 34  # ~95% of 40; a percentile interval reaches 0 in none


def test_disparity_quantiles_take_the_basic_low_and_the_percentile_high_bound():
    samples = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    low, high = s._disparity_quantiles(samples, 2.0, 0.5)  # quartiles 2 and 4
    assert (low, high) == (pytest.approx(0.0), pytest.approx(4.0))  # basic (0, 2), percentile (2, 4)
    low, high = s._disparity_quantiles(samples, 2.0, 0.5, floor=1.0)
    assert (low, high) == (pytest.approx(1.0), pytest.approx(4.0))
    assert s._debiased(samples, 2.0) == pytest.approx(1.0)  # 2 * 2 - 3
    assert s._debiased(samples, 2.0, floor=1.5) == pytest.approx(1.5)
    assert s._debiased(samples, 0.5, ceiling=1.0) == pytest.approx(-2.0)


def test_same_seed_same_tables_other_seed_other_intervals(audit_frame):
    kwargs = {"attributes": ["gender", "skin_tone"], "metrics": ["mse_error"], **FAST}
    first = s.interval_tables(audit_frame, seed=11, **kwargs)
    again = s.interval_tables(audit_frame, seed=11, **kwargs)
    other = s.interval_tables(audit_frame, seed=12, **kwargs)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(first[0]["ci_low"].dropna(), other[0]["ci_low"].dropna())
    np.testing.assert_array_equal(first[0]["estimate"], other[0]["estimate"])


def test_score_metrics_take_the_lowest_group_as_worst():
    frame = _toy([0.5, 0.6, 0.55, 0.5, 0.6], [0.9, 0.8, 0.85, 0.9, 0.8], metric="ssim_score")
    row = s.disparity_intervals(frame, attributes=["group"], metrics=["ssim_score"], **FAST).iloc[0]
    assert (row["worst_group"], row["best_group"], bool(row["higher_is_better"])) == ("a", "b", True)
    assert row["ratio"] == pytest.approx(0.55 / 0.85) and row["ratio_ci_high"] <= 1.0
    assert row["difference"] == pytest.approx(0.3)
    assert row["p_value"] < 0.05


# --- the evidence rule ---------------------------------------------------------------------------------


def test_a_one_subject_group_is_insufficient_evidence_and_left_out(audit_frame):
    per_group, disparities = s.interval_tables(audit_frame, attributes=["gender"], metrics=["mse_error"], **FAST)
    other = _block(per_group, "gender", "mse_error").loc["other"]
    assert other["n_subjects"] == 1 and other["evidence"] == s.EVIDENCE_INSUFFICIENT
    assert math.isfinite(other["estimate"])
    for column in ("ci_low", "ci_high", "ratio_ci_low", "difference_ci_high", "p_value", "p_holm"):
        assert math.isnan(other[column]), column
    row = disparities.iloc[0]
    assert (row["n_groups"], row["n_insufficient"], row["evidence"]) == (2, 1, "sufficient")
    assert "other" not in (row["worst_group"], row["best_group"])


def test_the_worst_small_group_is_never_called_worst_or_averaged_in():
    frame = pd.concat([_toy([0.2, 0.21, 0.19, 0.2, 0.2], [0.1, 0.11, 0.09, 0.1, 0.1]),
                       _toy([0.9], [])], ignore_index=True)
    frame.loc[frame["subject"] == "a0", "group"] = frame.loc[frame["subject"] == "a0", "group"]
    frame.loc[frame.index[-1], ["group", "subject"]] = ["tiny", "t0"]
    row = s.disparity_intervals(frame, attributes=["group"], metrics=["mse_error"], **FAST).iloc[0]
    assert row["worst_group"] == "a" and row["worst"] == pytest.approx(0.2)
    assert row["worst_ci_high"] < 0.9


def test_a_grouping_with_one_sufficient_group_has_no_disparity():
    frame = _toy([0.2, 0.3, 0.25, 0.2, 0.3], [0.1, 0.2])
    per_group, disparities = s.interval_tables(frame, attributes=["group"], metrics=["mse_error"], **FAST)
    row = disparities.iloc[0]
    assert row["evidence"] == s.EVIDENCE_INSUFFICIENT and row["n_groups"] == 1
    for column in ("worst", "ratio", "ratio_ci_low", "difference", "difference_ci_high", "p_value"):
        assert math.isnan(row[column]), column
    assert _block(per_group, "group", "mse_error")["p_value"].isna().all()


def test_a_group_with_a_nan_image_gets_no_interval_and_is_left_out():
    frame = _toy([0.2, 0.3, 0.25, 0.2, 0.3], [0.1, 0.2, 0.15, 0.1, 0.2])
    frame = pd.concat([frame, _toy([], [0.1, 0.2, 0.3, 0.1, 0.2]).assign(group="c")], ignore_index=True)
    frame.loc[0, "mse_error"] = np.nan
    per_group, disparities = s.interval_tables(frame, attributes=["group"], metrics=["mse_error"], **FAST)
    a = _block(per_group, "group", "mse_error").loc["a"]
    assert math.isnan(a["estimate"]) and math.isnan(a["ci_low"]) and math.isnan(a["p_value"])
    assert disparities.iloc[0]["n_groups"] == 2 and disparities.iloc[0]["worst_group"] != "a"


def test_an_infinite_psnr_group_gets_no_interval_and_is_left_out():
    frame = _toy([20.0, 21.0, 22.0, 20.0, 21.0], [30.0, 31.0, 32.0, 30.0, 31.0], metric="psnr_score")
    frame.loc[frame["subject"] == "b0", "psnr_score"] = np.inf  # a perfect reconstruction
    frame = pd.concat([frame, _toy([], [25.0, 26.0, 27.0, 25.0, 26.0], metric="psnr_score").assign(group="c")])
    with np.errstate(all="raise"):
        per_group, disparities = s.interval_tables(frame.reset_index(drop=True), attributes=["group"],
                                                   metrics=["psnr_score"], **FAST)
    b = _block(per_group, "group", "psnr_score").loc["b"]
    assert b["estimate"] == np.inf and math.isnan(b["ci_low"]) and math.isnan(b["p_value"])
    row = disparities.iloc[0]
    assert (row["worst_group"], row["best_group"], row["n_groups"]) == ("a", "c", 2)


# --- permutation test and Holm --------------------------------------------------------------------------


def test_holm_against_a_hand_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max.
    np.testing.assert_allclose(s.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(s.holm([0.5, 0.6]), [1.0, 1.0])
    adjusted = s.holm([0.02, np.nan, 0.01])
    np.testing.assert_allclose(adjusted, [0.02, np.nan, 0.02])
    assert s.holm([]).shape == (0,)


@pytest.mark.parametrize("bad", [np.array([[0.1, 0.2]]), [1.5], [-0.1], ["x"]])
def test_holm_rejects_bad_p_values(bad):
    with pytest.raises(ValueError, match=re.escape(s.BAD_P_VALUES_MSG)):
        s.holm(bad)


def test_permutation_p_value_matches_the_exact_subject_level_probability():
    # Four one-image subjects: a = {1, 1}, b = {0, 0}. Of the 6 ways to give two subjects the
    # label a, only one is as extreme as observed: p = 1/6 (images would give a smaller p).
    frame = _toy([1.0, 1.0], [0.0, 0.0], images=3)
    table = s.group_intervals(frame, attributes=["group"], metrics=["mse_error"], min_subjects=2,
                              n_resamples=10, n_permutations=6000)
    groups = _block(table, "group", "mse_error")
    assert groups.loc["a", "p_value"] == pytest.approx(1 / 6, abs=0.02)
    assert groups.loc["b", "p_value"] == pytest.approx(1.0, abs=0.001)
    assert groups.loc["a", "p_holm"] == pytest.approx(2 * groups.loc["a", "p_value"])


def test_a_planted_disparity_is_significant_and_the_per_group_test_stays_in_its_table(audit_frame):
    per_group, disparities = s.interval_tables(audit_frame, attributes=["gender"], metrics=["mse_error"],
                                               n_resamples=100, n_permutations=999)
    row = disparities.iloc[0]
    assert row["worst_group"] == "female"
    # One grouping of this metric: the disparity test's Holm family has one member.
    assert row["p_value"] == pytest.approx(1 / 1000) and row["p_holm"] == pytest.approx(1 / 1000)
    female = _block(per_group, "gender", "mse_error").loc["female"]
    # The per-group "worse than the rest" test: raw, and Holm across the two eligible groups.
    assert female["p_value"] == pytest.approx(1 / 1000) and female["p_holm"] == pytest.approx(2 / 1000)


def test_disparity_p_values_are_holm_adjusted_across_the_groupings_of_a_metric(audit_frame):
    kwargs = {"attributes": ["gender", "skin_tone"], "n_resamples": 20, "n_permutations": 199, "seed": 4}
    both = s.disparity_intervals(audit_frame, metrics=["mse_error", "ssim_score"], **kwargs)
    for metric in ("mse_error", "ssim_score"):
        rows = both[both["metric"] == metric]
        np.testing.assert_allclose(rows["p_holm"], s.holm(rows["p_value"].to_numpy()))
    # the family is one metric's groupings: the same table for one metric alone gives the same p_holm
    alone = s.disparity_intervals(audit_frame, metrics=["mse_error"], **kwargs)
    np.testing.assert_allclose(alone["p_holm"], both[both["metric"] == "mse_error"]["p_holm"])


def test_the_disparity_test_is_the_relabelling_distribution_of_max_minus_min():
    # Three one-image subjects in each of a, b, c: a = {3, 3, 3}, b = {0, 0, 0}, c = {1, 1, 1}.
    # Of the 9! / (3! 3! 3!) = 1680 labellings, max - min = 3 only when the three 3s share a
    # group and the three 0s share another: 3 * 2 = 6 labellings, p = 6 / 1680.
    frame = pd.concat([_toy([3.0] * 3, [0.0] * 3), _toy([1.0] * 3, []).assign(group="c")], ignore_index=True)
    frame["subject"] = [f"p{i}" for i in range(len(frame))]
    row = s.disparity_intervals(frame, attributes=["group"], metrics=["mse_error"], min_subjects=2, n_resamples=10,
                                n_permutations=20000, studentized=False).iloc[0]
    assert row["p_value"] == pytest.approx(6 / 1680, abs=4 * math.sqrt(6 / 1680 / 20000))


def test_zero_permutations_skip_the_test(audit_frame):
    table = s.disparity_intervals(audit_frame, attributes=["gender"], metrics=["mse_error"], n_resamples=50,
                                  n_permutations=0)
    assert table["p_value"].isna().all() and table["p_holm"].isna().all()


# --- references -------------------------------------------------------------------------------------


def test_best_reference_compares_every_group_with_the_best(audit_frame):
    table = s.group_intervals(audit_frame, attributes=["gender"], metrics=["mse_error"], **FAST)
    groups = _block(table, "gender", "mse_error")
    assert set(groups["reference_group"]) == {"male"}
    male, female = groups.loc["male"], groups.loc["female"]
    assert (male["ratio_to_reference"], male["difference_to_reference"]) == (1.0, 0.0)
    assert math.isnan(male["ratio_ci_low"]) and math.isnan(male["difference_ci_high"])
    assert female["ratio_to_reference"] == pytest.approx(female["estimate"] / male["estimate"])
    assert female["difference_to_reference"] == pytest.approx(female["estimate"] - male["estimate"])
    assert female["ratio_ci_low"] <= female["ratio_to_reference"] <= female["ratio_ci_high"]
    assert pd.isna(_block(table, "overall", "mse_error").loc["all", "reference_group"])


def test_largest_reference_takes_the_group_with_most_subjects(audit_frame):
    table = s.group_intervals(audit_frame, attributes=["skin_tone"], metrics=["mse_error"], reference="largest",
                              **FAST)
    groups = _block(table, "skin_tone", "mse_error")
    largest = groups[groups["evidence"] == "sufficient"]["n_subjects"].idxmax()
    assert set(groups["reference_group"]) == {largest}


def test_named_reference_applies_where_the_group_exists(audit_frame):
    table = s.group_intervals(audit_frame, attributes=["gender", "skin_tone"], metrics=["mse_error"],
                              reference="female", **FAST)
    assert set(_block(table, "gender", "mse_error")["reference_group"]) == {"female"}
    assert _block(table, "skin_tone", "mse_error")["reference_group"].isna().all()
    assert _block(table, "skin_tone", "mse_error")["ratio_to_reference"].isna().all()
    mapped = s.group_intervals(audit_frame, attributes=["gender", "skin_tone"], metrics=["mse_error"],
                               reference={"gender x skin_tone": "male / lighter"}, **FAST)
    assert set(_block(mapped, "gender x skin_tone", "mse_error")["reference_group"]) == {"male / lighter"}


def test_unknown_reference_raises(audit_frame):
    with pytest.raises(ValueError, match=re.escape(s.UNKNOWN_REFERENCE_MSG) + r".*'nobody'.*'female'"):
        s.group_intervals(audit_frame, attributes=["gender"], metrics=["mse_error"], reference="nobody", **FAST)
    with pytest.raises(ValueError, match=re.escape(s.UNKNOWN_REFERENCE_MSG) + r".*'age'"):
        s.group_intervals(audit_frame, attributes=["gender"], metrics=["mse_error"], reference={"age": "old"}, **FAST)


def test_an_insufficient_named_reference_raises(audit_frame):
    with pytest.raises(ValueError, match=re.escape(s.INSUFFICIENT_REFERENCE_MSG) + r".*'other'.*1 subject"):
        s.group_intervals(audit_frame, attributes=["gender"], metrics=["mse_error"], reference="other", **FAST)


# --- clusters ---------------------------------------------------------------------------------------------


def test_a_subject_in_two_groups_counts_once_in_each():
    frame = _toy([0.2, 0.3, 0.25, 0.2, 0.3], [0.1, 0.2, 0.15, 0.1, 0.2])
    frame.loc[len(frame)] = {"path": "moved.png", "subject": "a0", "group": "b", "mse_error": 0.5}
    table = s.group_intervals(frame, attributes=["group"], metrics=["mse_error"], **FAST)
    groups = _block(table, "group", "mse_error")
    assert groups["n_subjects"].tolist() == [5, 6]
    assert _block(table, "overall", "mse_error").loc["all", "n_subjects"] == 10


# --- options and inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_resamples": 0}, "n_resamples " + s.BAD_COUNT_MSG),
        ({"n_resamples": True}, "n_resamples " + s.BAD_COUNT_MSG),
        ({"n_permutations": -1}, "n_permutations " + s.BAD_COUNT_MSG),
        ({"min_subjects": 1}, "min_subjects " + s.BAD_COUNT_MSG),
        ({"level": 1.0}, s.BAD_LEVEL_MSG),
        ({"level": "0.9"}, s.BAD_LEVEL_MSG),
        ({"seed": -1}, s.BAD_SEED_MSG),
        ({"seed": 1.5}, s.BAD_SEED_MSG),
        ({"interval": "bca"}, s.BAD_INTERVAL_MSG),
        ({"studentized": 1}, s.BAD_STUDENTIZED_MSG),
        ({"reference": ""}, s.BAD_REFERENCE_MSG),
        ({"reference": 3}, s.BAD_REFERENCE_MSG),
        ({"reference": {"gender": 1}}, s.BAD_REFERENCE_MSG),
    ],
)
def test_config_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        s.StatsConfig(**options)


def test_config_round_trips_through_asdict():
    from dataclasses import asdict

    config = s.StatsConfig(n_resamples=10, reference="female")
    assert s.StatsConfig(**asdict(config)) == config


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda f: {"gender": ["f"]}, TypeError, g.NOT_FRAME_MSG),
        (lambda f: f.drop(columns="subject"), ValueError, g.MISSING_COLUMN_MSG),
        (lambda f: f.iloc[:0], ValueError, g.EMPTY_FRAME_MSG),
        (lambda f: f.assign(gender=[None] + f["gender"].tolist()[1:]), ValueError, g.MISSING_VALUE_MSG),
        (lambda f: f.assign(mse_error="x"), ValueError, g.NOT_NUMERIC_MSG),
    ],
)
def test_rejects_bad_frames(audit_frame, change, error, message):
    with pytest.raises(error, match=re.escape(message)):
        s.group_intervals(change(audit_frame), attributes=["gender"], metrics=["mse_error"], **FAST)


def test_rejects_bad_names(audit_frame):
    with pytest.raises(ValueError, match=re.escape(g.NO_ATTRIBUTES_MSG)):
        s.group_intervals(audit_frame, attributes=[], metrics=["mse_error"], **FAST)
    with pytest.raises(ValueError, match=re.escape(g.ATTRIBUTE_IS_METRIC_MSG)):
        s.group_intervals(audit_frame, attributes=["gender", "mse_error"], metrics=["mse_error"], **FAST)
    with pytest.raises(ValueError, match=re.escape(g.NAMES_NOT_SEQUENCE_MSG)):
        s.group_intervals(audit_frame, attributes="gender", metrics=["mse_error"], **FAST)


# --- a small simulation with known truth -----------------------------------------------------------------


def _simulated_audit(rng, means, *, tau=0.004, sigma=0.003):
    """Groups of 5-20 subjects with 1-8 images; subject random effects sd tau, image noise sd sigma.

    ``planted_error`` has the group means ``means``; ``null_error`` has no disparity.
    """
    rows = []
    for group, mean in enumerate(means):
        for subject in range(rng.integers(5, 21)):
            effects = rng.normal(0.0, tau, 2)
            n = rng.integers(1, 9)
            planted = mean + effects[0] + rng.normal(0.0, sigma, n)
            null = means[0] + effects[1] + rng.normal(0.0, sigma, n)
            rows += [(f"g{group}s{subject}", f"g{group}", a, b) for a, b in zip(planted, null, strict=True)]
    return pd.DataFrame(rows, columns=["subject", "group", "planted_error", "null_error"])


def test_simulation_coverage_and_type_one_error_are_near_nominal():
    # 60 audits, loose bounds: resampling images instead of subjects covers ~60% and
    # permuting image labels rejects ~40% under the null; both fail here.
    rng = np.random.default_rng(2024)
    covered = rejected = 0
    for _ in range(60):
        frame = _simulated_audit(rng, [0.020, 0.026])
        table = s.disparity_intervals(frame, attributes=["group"], metrics=["planted_error", "null_error"],
                                      n_resamples=200, n_permutations=199, seed=int(rng.integers(1 << 30)))
        planted, null = table.iloc[0], table.iloc[1]
        covered += planted["difference_ci_low"] <= 0.006 <= planted["difference_ci_high"]
        rejected += null["p_holm"] < 0.05
    assert covered / 60 >= 0.85
    assert rejected / 60 <= 0.15


def test_importing_the_statistics_skips_numpy_pandas_and_scipy():
    import subprocess
    import sys

    heavy = ["numpy", "pandas", "scipy", "torch", "fairlearn"]
    modules = "genfair.audit.stats, genfair.audit.compare, genfair.audit.skin"
    code = f"import sys, {modules}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the engine against scipy ------------------------------------------------------------------------------

ORACLE_RESAMPLES = 20000


def _one_image_frame(samples):
    """One image per subject; ``samples`` maps group -> values."""
    rows = [(f"{group}{i}", group, value) for group, values in samples.items() for i, value in enumerate(values)]
    return pd.DataFrame(rows, columns=["subject", "group", "mse_error"])


def _largest_mean(*samples, axis=-1):
    return np.stack([np.mean(sample, axis=axis) for sample in samples]).max(axis=0)


def _smallest_mean(*samples, axis=-1):
    return np.stack([np.mean(sample, axis=axis) for sample in samples]).min(axis=0)


def _spread(*samples, axis=-1):
    return _largest_mean(*samples, axis=axis) - _smallest_mean(*samples, axis=axis)


def _max_over_min(*samples, axis=-1):
    return _largest_mean(*samples, axis=axis) / _smallest_mean(*samples, axis=axis)


@pytest.mark.parametrize(("name", "statistic", "floor"), [("difference", _spread, 0.0), ("ratio", _max_over_min, 1.0)])
def test_disparity_intervals_and_debiased_estimates_match_scipy_bootstrap(name, statistic, floor):
    # Three groups, two of which tie for best: the resampled max - min sits well above the
    # estimate, so the basic and percentile bounds differ and the interval takes the basic lower
    # bound (clipped to the statistic's range) and the percentile upper one. One image per
    # subject: the subject bootstrap is scipy's stratified (per-sample) bootstrap;
    # interval="percentile" turns off the t expansion.
    rng = np.random.default_rng(3)
    samples = {group: 0.02 + shift + rng.normal(0.0, 0.004, n)
               for group, n, shift in (("a", 6, 0.0), ("b", 9, 0.0), ("c", 12, 0.003))}
    row = s.disparity_intervals(_one_image_frame(samples), attributes=["group"], metrics=["mse_error"],
                                interval="percentile", n_resamples=ORACLE_RESAMPLES, n_permutations=0, seed=1).iloc[0]
    data = tuple(samples.values())
    kwargs = {"n_resamples": ORACLE_RESAMPLES, "vectorized": True, "confidence_level": 0.95, "rng": 2}
    basic = scipy_stats.bootstrap(data, statistic, method="basic", **kwargs)
    percentile = scipy_stats.bootstrap(data, statistic, method="percentile", **kwargs)
    distribution = basic.bootstrap_distribution
    width = percentile.confidence_interval.high - basic.confidence_interval.low
    tolerance = 0.03 * width  # a bound's Monte Carlo sd is ~0.5% of the width at 20,000 resamples
    estimate = float(statistic(*data))
    assert row[name] == pytest.approx(estimate, rel=1e-12)
    assert basic.confidence_interval.low < percentile.confidence_interval.low - 5 * tolerance  # they differ here
    assert row[f"{name}_ci_low"] == pytest.approx(max(basic.confidence_interval.low, floor), abs=tolerance)
    assert row[f"{name}_ci_high"] == pytest.approx(percentile.confidence_interval.high, abs=tolerance)
    if name == "difference":  # 2 * estimate - mean over resamples
        expected = 2 * estimate - distribution.mean()
    else:  # the ratio of the debiased worst and best means, on the same resamples as above
        worst, best = (scipy_stats.bootstrap(data, extreme, method="percentile", **kwargs).bootstrap_distribution
                       for extreme in (_largest_mean, _smallest_mean))
        expected = (2 * _largest_mean(*data) - worst.mean()) / (2 * _smallest_mean(*data) - best.mean())
    assert row[f"{name}_debiased"] == pytest.approx(max(expected, floor), rel=0.03)
    assert floor < row[f"{name}_debiased"] < row[name]


def test_basic_quantiles_match_scipy_basic_on_a_mean():
    rng = np.random.default_rng(8)
    sample = rng.exponential(1.0, 15)  # skewed: the basic interval is not the percentile one
    means = sample[rng.integers(0, sample.size, (ORACLE_RESAMPLES, sample.size))].mean(axis=1)
    low, high = s._basic_quantiles(means, sample.mean(), 0.9)
    reference = scipy_stats.bootstrap((sample,), np.mean, method="basic", confidence_level=0.9,
                                      n_resamples=ORACLE_RESAMPLES, rng=9).confidence_interval
    tolerance = 0.03 * (reference.high - reference.low)
    assert (low, high) == (pytest.approx(reference.low, abs=tolerance), pytest.approx(reference.high, abs=tolerance))


def _welch_log_p(x, y, axis=-1):
    return -np.log(scipy_stats.ttest_ind(x, y, equal_var=False, axis=axis).pvalue)


@pytest.mark.parametrize(
    ("studentized", "statistic"),
    [(False, _spread), (True, _welch_log_p)],
    ids=["difference of means", "studentized"],
)
def test_disparity_test_matches_scipy_permutation_test_on_two_groups(studentized, statistic):
    # Unequal sizes and spreads; one image per subject, so relabelling subjects is scipy's
    # "independent" permutation. The studentized statistic is Welch's two-sided t-test p.
    rng = np.random.default_rng(5)
    samples = {"a": 0.021 + rng.normal(0.0, 0.006, 6), "b": 0.019 + rng.normal(0.0, 0.002, 14)}
    row = s.disparity_intervals(_one_image_frame(samples), attributes=["group"], metrics=["mse_error"],
                                n_resamples=10, n_permutations=ORACLE_RESAMPLES, studentized=studentized,
                                seed=6).iloc[0]
    reference = scipy_stats.permutation_test(tuple(samples.values()), statistic, permutation_type="independent",
                                             alternative="greater", n_resamples=ORACLE_RESAMPLES, vectorized=True,
                                             rng=7).pvalue
    assert 0.02 < reference < 0.98
    tolerance = 4 * math.sqrt(2 * reference * (1 - reference) / ORACLE_RESAMPLES)
    assert row["p_value"] == pytest.approx(reference, abs=tolerance)


def test_the_smallest_attainable_p_is_reached_by_the_most_extreme_labelling():
    # 3 + 3 people, one photo each, the two groups as far apart as they can be: of the C(6, 3) = 20
    # ways to deal the people, this one and its mirror give the largest gap: exact p = 2 / 20
    frame = pd.DataFrame({"path": [f"{k}.png" for k in range(6)], "subject": [f"s{k}" for k in range(6)],
                          "group": ["a"] * 3 + ["b"] * 3, "mse_error": [0.10, 0.11, 0.12, 0.50, 0.51, 0.52]})
    table = s.disparity_intervals(frame, attributes=["group"], metrics=["mse_error"], n_resamples=200,
                                  n_permutations=4999, min_subjects=3, studentized=False)
    row = table.iloc[0]
    assert row["p_min"] == pytest.approx(0.1)
    assert row["p_value"] == pytest.approx(0.1, abs=3 * np.sqrt(0.1 * 0.9 / 4999))
    assert s._smallest_permutation_p(np.array([5, 5]), 999) == pytest.approx(1 / 126)
    assert s._smallest_permutation_p(np.array([20, 20, 20]), 999) == pytest.approx(1 / 1000)
