"""Paired model comparison and the representation metrics (RDP, PR, UCPR) against hand-computed values.

The representation tests count people, not photos: RDP's permutation test is checked against an
enumeration of every way to deal the people to the groups and against scipy's permutation test,
PR's Rao-Scott correction against hand-worked tables and a loop over people, and its bootstrap
p-value against an enumeration of every resample of the people within their groups.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from genfair.audit import compare as c
from genfair.audit import grouping as g
from genfair.audit import stats as s

FAST = {"n_resamples": 200, "n_permutations": 200}


@pytest.fixture(scope="module")
def model_a() -> pd.DataFrame:
    """Twelve subjects in two groups, two images each; women are served worse."""
    rows = []
    for subject in range(12):
        gender = "female" if subject < 6 else "male"
        for k in range(2):
            base = 0.40 if gender == "female" else 0.15
            rows.append(
                {
                    "path": f"{subject}_{k}.png",
                    "subject": f"s{subject}",
                    "gender": gender,
                    "mse_error": base + 0.01 * (subject % 3) + 0.005 * k,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def model_b(model_a) -> pd.DataFrame:
    """Model B halves the women's extra error (distinct changes); men unchanged. Rows in another order."""
    extra = np.where(model_a["gender"] == "female", -0.12 - 0.001 * np.arange(len(model_a)), 0.0)
    return model_a.assign(mse_error=model_a["mse_error"] + extra).iloc[::-1].reset_index(drop=True)


# --- paired_differences --------------------------------------------------------------------------------------


def test_paired_differences_join_on_path(model_a, model_b):
    paired = c.paired_differences(model_a, model_b, metrics=["mse_error"], attributes=["gender"])
    assert list(paired.columns) == ["path", "subject", "gender", "mse_error_a", "mse_error_b", "mse_error_diff"]
    assert paired["path"].tolist() == model_a["path"].tolist()
    expected_b = model_b.set_index("path").loc[model_a["path"], "mse_error"].to_numpy()
    np.testing.assert_array_equal(paired["mse_error_b"], expected_b)
    np.testing.assert_allclose(paired["mse_error_diff"], expected_b - model_a["mse_error"].to_numpy())


def test_paired_differences_reject_repeated_paths(model_a):
    doubled = pd.concat([model_a, model_a.iloc[:1]])
    with pytest.raises(ValueError, match=re.escape(c.DUPLICATE_PATH_MSG) + ".*per_image_b.*'0_0.png'"):
        c.paired_differences(model_a, doubled, metrics=["mse_error"])


def test_paired_differences_reject_different_images(model_a):
    with pytest.raises(ValueError, match=re.escape(c.PATHS_DIFFER_MSG) + r".*1 only in A.*'11_1.png'"):
        c.paired_differences(model_a, model_a.iloc[:-1], metrics=["mse_error"])


def test_paired_differences_reject_disagreeing_subjects(model_a):
    other = model_a.assign(gender=model_a["gender"].replace({"male": "man"}))
    with pytest.raises(ValueError, match=re.escape(c.COLUMN_DIFFERS_MSG) + r" 'gender' for path '6_0.png'"):
        c.paired_differences(model_a, other, metrics=["mse_error"], attributes=["gender"])


def test_paired_differences_reject_missing_columns_and_non_frames(model_a):
    with pytest.raises(ValueError, match=re.escape(g.MISSING_COLUMN_MSG) + " 'path'"):
        c.paired_differences(model_a.drop(columns="path"), model_a, metrics=["mse_error"])
    with pytest.raises(TypeError, match=re.escape(g.NOT_FRAME_MSG)):
        c.paired_differences(model_a, model_a.to_dict(), metrics=["mse_error"])


# --- compare_models ------------------------------------------------------------------------------------------


def test_a_model_against_itself_shows_no_difference(model_a):
    result = c.compare_models(model_a, model_a, attributes=["gender"], metrics=["mse_error"], **FAST)
    groups = result.per_group
    assert tuple(groups.columns) == c.COMPARISON_GROUP_COLUMNS
    assert (groups["difference"] == 0).all() and (groups["ci_low"] == 0).all() and (groups["ci_high"] == 0).all()
    assert (groups["p_value"] == 1.0).all()
    row = result.disparities.iloc[0]
    assert tuple(result.disparities.columns) == c.COMPARISON_DISPARITY_COLUMNS
    assert (row["difference"], row["ci_low"], row["ci_high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_group_differences_and_wilcoxon_by_hand(model_a, model_b):
    result = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"], **FAST)
    groups = result.per_group.set_index(["grouping", "group"])
    paired = c.paired_differences(model_a, model_b, metrics=["mse_error"], attributes=["gender"])
    female = paired[paired["gender"] == "female"]
    row = groups.loc[("gender", "female")]
    assert row["mean_a"] == pytest.approx(female["mse_error_a"].mean())
    assert row["mean_b"] == pytest.approx(female["mse_error_b"].mean())
    assert row["difference"] == pytest.approx(row["mean_b"] - row["mean_a"])
    assert row["ci_low"] <= row["difference"] <= row["ci_high"] < 0
    # Six subjects, all better under B, no ties: exact two-sided p = 2 / 2^6.
    assert (row["statistic"], row["p_value"]) == (0.0, pytest.approx(2 / 64))
    male = groups.loc[("gender", "male")]
    assert (male["difference"], male["statistic"], male["p_value"]) == (0.0, 0.0, 1.0)
    # Overall: the six men's zero differences are dropped, leaving the same six.
    assert groups.loc[("overall", "all"), "p_value"] == pytest.approx(2 / 64)


def test_image_unit_runs_wilcoxon_over_images(model_a, model_b):
    result = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"], unit="image", **FAST)
    row = result.per_group.set_index(["grouping", "group"]).loc[("gender", "female")]
    assert row["p_value"] == pytest.approx(2 / 2**12)  # twelve distinct negative differences


def test_wilcoxon_with_ties_uses_the_normal_approximation():
    differences = np.array([-0.1, -0.1, -0.2, 0.3, -0.2, -0.1, 0.0])
    expected = scipy_stats.wilcoxon(differences[differences != 0], method="asymptotic")
    assert c._wilcoxon(differences) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue), 2 / 2**6)
    assert c._wilcoxon(np.array([0.0, 0.0])) == (0.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in c._wilcoxon(np.array([0.1, np.nan])))


def test_model_b_is_fairer_with_an_interval_and_a_p_value(model_a, model_b):
    result = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"],
                              n_resamples=300, n_permutations=999)
    row = result.disparities.iloc[0]
    assert (row["worst_group_a"], row["worst_group_b"]) == ("female", "female")
    assert row["difference"] == pytest.approx(row["disparity_b"] - row["disparity_a"])
    assert row["difference"] < 0 and row["ci_low"] <= row["difference"] <= row["ci_high"] < 0
    # Only the six women change; of the 2^6 equally likely swaps only "no swap" is as extreme.
    assert row["p_value"] == pytest.approx(1 / 64, abs=0.012)
    reverse = c.compare_models(model_b, model_a, attributes=["gender"], metrics=["mse_error"], **FAST)
    assert reverse.disparities.iloc[0]["p_value"] == pytest.approx(1.0)


def test_insufficient_groups_have_no_interval_and_no_p_value(model_a, model_b):
    result = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"], min_subjects=7,
                              **FAST)
    female = result.per_group.set_index(["grouping", "group"]).loc[("gender", "female")]
    assert female["evidence"] == s.EVIDENCE_INSUFFICIENT
    assert math.isnan(female["ci_low"]) and math.isnan(female["p_value"])
    row = result.disparities.iloc[0]
    assert row["evidence"] == s.EVIDENCE_INSUFFICIENT and math.isnan(row["difference"])


def test_comparison_is_deterministic_for_a_seed(model_a, model_b):
    first = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"], seed=4, **FAST)
    again = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"], seed=4, **FAST)
    pd.testing.assert_frame_equal(first.per_group, again.per_group)
    pd.testing.assert_frame_equal(first.disparities, again.disparities)


def test_compare_models_rejects_a_bad_unit(model_a):
    with pytest.raises(ValueError, match=re.escape(c.BAD_UNIT_MSG) + ".*'pixel'"):
        c.compare_models(model_a, model_a, attributes=["gender"], metrics=["mse_error"], unit="pixel")


# --- representation demographic parity -------------------------------------------------------------------------


def test_rdp_by_hand():
    # Group a keeps its class in 10/10 outputs, b in 5/10. Chi-square of [[10, 0], [5, 5]]:
    # expected [[7.5, 2.5], [7.5, 2.5]] -> 2 * 2.5^2/7.5 + 2 * 2.5^2/2.5 = 6.667 (1 dof).
    true = [0] * 10 + [1] * 10
    predicted = [0] * 10 + [1] * 5 + [0] * 5
    result = c.representation_demographic_parity(true, predicted, group_names=["a", "b"], n_resamples=300,
                                                 n_permutations=4000)
    assert (result.metric, result.test, result.n_units) == ("rdp", "subject-permutation", 20)
    assert result.by_group["group"].tolist() == ["a", "b"]
    assert result.by_group["rate"].tolist() == [1.0, 0.5]
    assert result.dof == 1 and result.statistic * result.design_effect == pytest.approx(20 / 3)
    # 15 kept outputs dealt to two groups of 10: the chi-square reaches 6.667 when a gets 10 or 5 of them.
    exact = 2 * math.comb(15, 10) * math.comb(5, 0) / math.comb(20, 10)
    assert result.p_value == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 4000))
    # A 2x2 table's chi-square is N r^2, and E[r^2] = 1 / (N - 1) over permutations: its mean is N / (N - 1).
    assert result.design_effect == pytest.approx(20 / 19, abs=0.1)
    assert (result.difference, result.ratio) == (0.5, 0.5)
    assert result.difference_ci_low <= 0.5 <= result.difference_ci_high
    assert result.ratio_ci_low <= 0.5 <= result.ratio_ci_high
    # P_RDP = (1, 0.5) / 1.5 = (2/3, 1/3); divergence to uniform = 2 * ((1/6)^2 / (1/2)) = 1/9.
    assert result.divergence == pytest.approx(1 / 9)
    b = result.by_group.set_index("group").loc["b"]
    assert b["ci_low"] <= 0.5 <= b["ci_high"]


def _image_chi2(kept: np.ndarray, group: np.ndarray) -> float:
    """scipy's Pearson chi-square of the (group x kept/changed) image table."""
    table = [[int(kept[group == g].sum()), int((~kept[group == g]).sum())] for g in np.unique(group)]
    return float(scipy_stats.chi2_contingency(table, correction=False).statistic)


def test_rdp_deals_whole_subjects_to_the_groups_like_an_enumeration():
    # Ten people, 20 photos each; a person's outputs all keep their group or all change it.
    # Group a: 4 of 5 people keep theirs, group b: 2 of 5.
    keeps_person = np.array([True, True, True, True, False, True, True, False, False, False])
    subjects = np.repeat(np.arange(10), 20)
    true = np.repeat([0] * 5 + [1] * 5, 20)
    kept = keeps_person[subjects]
    result = c.representation_demographic_parity(true, np.where(kept, true, 1 - true), subjects=subjects,
                                                 n_resamples=50, n_permutations=5000)
    observed = _image_chi2(kept, true)
    null = []
    for chosen in itertools.combinations(range(10), 5):  # every way to deal the people, 5 to group a
        group = np.where(np.isin(np.arange(10), chosen), 0, 1)
        null.append(_image_chi2(kept, group[subjects]))
    exact = float(np.mean(np.array(null) >= observed - 1e-9))
    assert result.n_units == 10
    assert result.p_value == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 5000) + 1 / 5001)
    assert result.design_effect == pytest.approx(float(np.mean(null)), rel=0.1)  # 20 copies of a person: ~22
    assert result.statistic == pytest.approx(observed / result.design_effect)
    # The image-level test it replaces counts 200 photos as 200 people.
    assert scipy_stats.chi2.sf(observed, 1) < 1e-4 and exact > 0.1


def test_rdp_with_one_image_a_subject_matches_scipys_permutation_test():
    rng = np.random.default_rng(3)
    true = np.repeat([0, 1, 2], [8, 7, 9])
    kept = rng.random(true.size) < np.array([0.8, 0.4, 0.6])[true]
    result = c.representation_demographic_parity(true, np.where(kept, true, (true + 1) % 3), n_resamples=50,
                                                 n_permutations=5000, min_subjects=2)
    samples = [kept[true == g].astype(float) for g in range(3)]

    def chi2(*groups: np.ndarray, axis: int) -> np.ndarray:  # Pearson's, from the groups' kept counts
        kept = np.stack([group.sum(axis=axis) for group in groups], axis=-1)
        sizes = np.array([group.shape[axis] for group in groups])
        expected = sizes * kept.sum(axis=-1, keepdims=True) / sizes.sum()
        return ((kept - expected) ** 2 / (expected * (1 - expected / sizes))).sum(axis=-1)

    reference = scipy_stats.permutation_test(samples, chi2, permutation_type="independent", alternative="greater",
                                             vectorized=True, n_resamples=4999, rng=np.random.default_rng(0))
    table = [[int(group.sum()), int(group.size - group.sum())] for group in samples]
    assert reference.statistic == pytest.approx(scipy_stats.chi2_contingency(table, correction=False).statistic)
    assert result.statistic * result.design_effect == pytest.approx(reference.statistic)
    spread = math.sqrt(reference.pvalue * (1 - reference.pvalue) * (1 / 5000 + 1 / 4999))
    assert result.p_value == pytest.approx(reference.pvalue, abs=4 * spread + 1e-3)


def test_rdp_with_many_independent_images_approaches_the_chi_square_test():
    rng = np.random.default_rng(5)
    true = np.repeat([0, 1], 400)
    kept = rng.random(true.size) < np.where(true == 0, 0.5, 0.57)
    result = c.representation_demographic_parity(true, np.where(kept, true, 1 - true), n_resamples=20,
                                                 n_permutations=2000)
    table = [[kept[true == g].sum(), (~kept[true == g]).sum()] for g in (0, 1)]
    asymptotic = scipy_stats.chi2_contingency(table, correction=False).pvalue
    assert 0.005 < asymptotic < 0.2  # a p-value in the middle of the range, where the two can disagree
    assert result.p_value == pytest.approx(asymptotic, abs=0.025)  # Monte Carlo sd at most 0.006
    assert result.design_effect == pytest.approx(1.0, abs=0.1)


def test_rdp_permutations_are_seeded_and_can_be_skipped():
    true = np.repeat([0, 1], 12)
    predicted = np.where(np.arange(24) % 3 == 0, 1 - true, true)
    subjects = np.arange(24) // 2
    first = c.representation_demographic_parity(true, predicted, subjects=subjects, seed=7, n_permutations=300)
    again = c.representation_demographic_parity(true, predicted, subjects=subjects, seed=7, n_permutations=300)
    assert (first.p_value, first.design_effect) == (again.p_value, again.design_effect)
    assert (first.p_value * 301) == pytest.approx(round(first.p_value * 301))  # (1 + count) / (1 + B)
    skipped = c.representation_demographic_parity(true, predicted, subjects=subjects, n_permutations=0)
    assert all(math.isnan(v) for v in (skipped.statistic, skipped.p_value, skipped.design_effect))
    assert skipped.difference == first.difference and skipped.dof == 1


@pytest.mark.parametrize("n_permutations", [-1, 2.5, True])
def test_rdp_rejects_a_bad_number_of_permutations(n_permutations):
    with pytest.raises(ValueError, match="n_permutations " + re.escape(s.BAD_COUNT_MSG)):
        c.representation_demographic_parity([0, 1], [0, 1], n_permutations=n_permutations)


def test_rdp_clusters_by_subject_and_applies_the_evidence_rule():
    true = torch.tensor([0] * 12 + [1] * 12 + [2] * 2)
    predicted = true.clone()
    predicted[12:18] = 0
    subjects = [f"s{i // 2}" for i in range(26)]  # two images per subject; group 2 has one subject
    result = c.representation_demographic_parity(true, predicted, subjects=subjects, n_resamples=100)
    table = result.by_group.set_index("group")
    assert table["n_subjects"].tolist() == [6, 6, 1]
    assert table.loc["2", "evidence"] == s.EVIDENCE_INSUFFICIENT and math.isnan(table.loc["2", "ci_low"])
    assert result.difference == pytest.approx(0.5) and result.dof == 1
    assert result.n_units == 12  # the insufficient group's subject is not permuted


def test_rdp_with_every_output_kept_is_perfectly_fair():
    true = np.repeat([0, 1, 2], 6)
    result = c.representation_demographic_parity(true, true, n_resamples=50)
    assert (result.statistic, result.p_value, result.dof) == (0.0, 1.0, 2)
    assert (result.difference, result.ratio, result.divergence) == (0.0, 1.0, 0.0)
    assert math.isnan(result.design_effect)


@pytest.mark.parametrize(
    ("true", "predicted", "message"),
    [
        ([0.0, 1.0], [0, 1], c.BAD_CODES_MSG),
        ([0, -1], [0, 1], c.BAD_CODES_MSG),
        ([[0, 1]], [[0, 1]], c.BAD_CODES_MSG),
        ([], [], c.NO_CODES_MSG),
        ([0, 1, 1], [0, 1], c.LENGTH_MISMATCH_MSG),
    ],
)
def test_representation_functions_reject_bad_codes(true, predicted, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        c.representation_demographic_parity(true, predicted)
    with pytest.raises(ValueError, match=re.escape(message)):
        c.proportional_representation(true, predicted)


def test_rdp_rejects_subjects_of_another_length():
    with pytest.raises(ValueError, match=re.escape(c.LENGTH_MISMATCH_MSG) + ".*subjects"):
        c.representation_demographic_parity([0, 1], [0, 1], subjects=["a"])


def test_group_names_must_cover_the_codes_and_be_distinct():
    with pytest.raises(ValueError, match=re.escape(c.CODE_OUT_OF_RANGE_MSG) + ".*code 2"):
        c.proportional_representation([0, 1, 2], [0, 1, 2], group_names=["a", "b"])
    with pytest.raises(ValueError, match=re.escape(c.BAD_NAMES_MSG)):
        c.proportional_representation([0, 1], [0, 1], group_names=["a", "a"])
    with pytest.raises(ValueError, match=re.escape(c.BAD_NAMES_MSG)):
        c.proportional_representation([0, 1], [0, 1], group_names="ab")


# --- proportional representation -----------------------------------------------------------------------------


def test_pr_with_two_groups_by_hand():
    # 20 of group b's 50 outputs are classified a, none the other way. Per image, a's count minus
    # a's predicted count is -1 for those 20 and 0 otherwise; within group b its variance is
    # 50/49 * (20 * 0.6^2 + 30 * 0.4^2) = 600/49, so the statistic is (-20)^2 / (600/49).
    true = [0] * 50 + [1] * 50
    predicted = [0] * 50 + [0] * 20 + [1] * 30
    result = c.proportional_representation(true, predicted, group_names=["a", "b"])
    assert (result.metric, result.test, result.dof, result.n_units) == ("pr", "rao-scott-bootstrap", 1, 100)
    assert result.statistic == pytest.approx(400 * 49 / 600)
    assert result.design_effect == pytest.approx(1.0)  # one image a subject
    # t = 5.7 on 50 draws: no resample of group b's images reaches it, so p is the floor 1 / 2000.
    assert result.p_value == result.p_min == pytest.approx(1 / 2000)
    table = result.by_group.set_index("group")
    assert table["predicted_share"].tolist() == [0.7, 0.3] and table["true_share"].tolist() == [0.5, 0.5]
    assert table["difference"].tolist() == pytest.approx([0.2, -0.2])
    assert result.divergence == pytest.approx(2 * 0.2**2 / 0.5)


def test_pr_counts_people_not_photos():
    # Ten people, ten photos each; two of group b's five people have all their outputs classified a.
    true = [0] * 50 + [1] * 50
    predicted = [0] * 50 + [0] * 20 + [1] * 30
    people = [i // 10 for i in range(100)]
    result = c.proportional_representation(true, predicted, subjects=people, group_names=["a", "b"])
    # Group b's people change 10, 10, 0, 0, 0 photos: variance of the total 5/4 * (2 * 6^2 + 3 * 4^2) = 150.
    assert result.n_units == 10
    assert result.statistic == pytest.approx(400 / 150)
    assert result.design_effect == pytest.approx(150 / (600 / 49))
    # The bootstrap's limit: of the 5^5 equally likely draws of b's five people (deviations from
    # their mean 4, scaled by sqrt(5/4)), the share whose t^2 reaches 8/3; no spread counts as reaching.
    deviations = (np.array([10.0, 10, 0, 0, 0]) - 4.0) * math.sqrt(5 / 4)
    reached = 0
    for draw in itertools.product(deviations, repeat=5):
        spread = 5 / 4 * np.sum((np.array(draw) - np.mean(draw)) ** 2)
        reached += spread < 1e-9 or sum(draw) ** 2 / spread >= 8 / 3 - 1e-9
    exact = reached / 5**5
    assert exact == pytest.approx(515 / 3125)
    assert abs(result.p_value - exact) < 4 * math.sqrt(exact * (1 - exact) / c._PR_RESAMPLES)
    assert result.p_value > 0.1 and c.proportional_representation(true, predicted).p_value < 1e-3


def test_pr_matches_a_loop_over_people_with_three_groups():
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(24), rng.integers(1, 7, 24))
    group_of = np.arange(24) % 3
    true = group_of[people]
    keep = rng.beta(2, 2, 24)[people]
    predicted = np.where(rng.random(people.size) < keep, true, rng.integers(0, 3, people.size))
    result = c.proportional_representation(true, predicted, subjects=people.astype(str))

    def covariance(rows: list[np.ndarray], strata: list[int]) -> np.ndarray:
        total = np.zeros((3, 3))
        for h in set(strata):
            inside = np.array([row for row, at in zip(rows, strata, strict=True) if at == h])
            centred = inside - inside.mean(axis=0)
            total += len(inside) / (len(inside) - 1) * centred.T @ centred
        return total

    eye = np.eye(3)
    images = [eye[t] - eye[p] for t, p in zip(true, predicted, strict=True)]
    totals = [sum(images[i] for i in np.flatnonzero(people == person)) for person in range(24)]
    srs, design = covariance(images, list(true)), covariance(totals, list(group_of))
    d = np.bincount(true, minlength=3) - np.bincount(predicted, minlength=3)
    inverse = np.linalg.pinv(srs)
    deff = np.trace(inverse @ design) / 2
    assert (result.dof, result.n_units) == (2, 24)
    assert result.design_effect == pytest.approx(deff)
    assert result.statistic == pytest.approx(d @ inverse @ d / deff)
    assert result.p_min == pytest.approx(1 / (1 + c._PR_RESAMPLES)) and result.p_min <= result.p_value <= 1


def test_pr_bootstrap_matches_an_enumeration_of_every_resample_with_three_groups():
    # Groups of two, three and four people, four photos each: all 2^2 * 3^3 * 4^4 draws of the people
    # within their groups (unequal groups, so the sqrt(n / (n - 1)) scaling matters: without it the
    # enumeration gives 0.353, without recomputing M on each draw 0.176, instead of 0.435).
    rng = np.random.default_rng(6)
    sizes = (2, 3, 4)
    people = np.repeat(np.arange(9), 4)
    group_of = np.repeat(np.arange(3), sizes)
    true = group_of[people]
    keep = np.array([0.9, 0.3, 0.6, 0.2, 0.8, 0.5, 0.7, 0.4, 0.1])[people]
    predicted = np.where(rng.random(people.size) < keep, true, (true + rng.integers(1, 3, people.size)) % 3)
    result = c.proportional_representation(true, predicted, subjects=people, seed=5)

    eye = np.eye(3)
    images = np.array([eye[t] - eye[p] for t, p in zip(true, predicted, strict=True)])
    srs = sum(len(rows) * np.cov(rows, rowvar=False, ddof=1) for rows in (images[true == h] for h in range(3)))
    weight = np.linalg.pinv(srs)
    totals = np.array([images[people == person].sum(axis=0) for person in range(9)])
    d = totals.sum(axis=0)
    design = sum(n * np.cov(totals[group_of == h], rowvar=False, ddof=1) for h, n in enumerate(sizes))
    observed = 2 * (d @ weight @ d) / np.trace(weight @ design)
    assert result.statistic == pytest.approx(observed)
    # Per group: each draw's summed deviations and trace(S^+ M_h); a draw of all three adds them up.
    sums, traces = [], []
    for h, n in enumerate(sizes):
        deviations = (totals[group_of == h] - totals[group_of == h].mean(axis=0)) * math.sqrt(n / (n - 1))
        draws = [deviations[list(index)] for index in itertools.product(range(n), repeat=n)]
        sums.append(np.array([draw.sum(axis=0) for draw in draws]))
        traces.append(np.array([np.trace(weight @ (n * np.cov(draw, rowvar=False, ddof=1))) for draw in draws]))
    total = sums[0][:, None, None] + sums[1][None, :, None] + sums[2][None, None, :]
    spread = traces[0][:, None, None] + traces[1][None, :, None] + traces[2][None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        null = np.where(spread > 1e-9, 2 * np.einsum("abci,ij,abcj->abc", total, weight, total) / spread, np.inf)
    exact = float(np.mean(null >= observed * (1 - 1e-9)))
    assert exact == pytest.approx(0.435, abs=5e-4)
    assert abs(result.p_value - exact) < 4 * math.sqrt(exact * (1 - exact) / c._PR_RESAMPLES)


def test_pr_bootstrap_is_reproducible_from_its_seed():
    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(12), 5)
    true = (np.arange(12) % 2)[people]
    predicted = np.where(rng.random(people.size) < rng.beta(2, 2, 12)[people], true, 1 - true)
    runs = [c.proportional_representation(true, predicted, subjects=people, seed=seed).p_value for seed in (4, 4, 5)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_pr_rejects_a_bad_seed(seed):
    with pytest.raises(ValueError, match=re.escape(s.BAD_SEED_MSG)):
        c.proportional_representation([0, 1], [1, 0], seed=seed)


def test_pr_with_fewer_people_than_free_margins_has_no_p():
    # Three groups, four people: one group of two varies, the others have one person each (nu = 1 < dof = 2).
    true = [0, 0, 0, 0, 1, 1, 2, 2]
    predicted = [1, 1, 0, 0, 2, 1, 0, 2]
    result = c.proportional_representation(true, predicted, subjects=[0, 0, 1, 1, 2, 2, 3, 3])
    assert result.dof == 2 and math.isfinite(result.statistic) and result.design_effect > 0
    assert math.isnan(result.p_value) and math.isnan(result.p_min)


def test_pr_with_no_change_is_fair():
    result = c.proportional_representation([0, 1, 2, 2], [0, 1, 2, 2])
    assert (result.statistic, result.dof, result.p_value, result.divergence) == (0.0, 0, 1.0, 0.0)


def test_pr_with_every_output_of_a_group_changed_alike_is_certain():
    # No variation within the groups: the shift is not sampling noise.
    result = c.proportional_representation([0] * 6 + [1] * 6, [0] * 12, subjects=np.arange(12) // 2)
    assert (result.statistic, result.p_value, result.dof) == (math.inf, 0.0, 1)


def test_pr_rejects_subjects_of_another_length():
    with pytest.raises(ValueError, match=re.escape(c.LENGTH_MISMATCH_MSG) + ".*subjects"):
        c.proportional_representation([0, 1], [0, 1], subjects=["a"])


# --- uninformative conditional proportional representation ---------------------------------------------------


def test_ucpr_by_hand_against_uniform():
    result = c.uninformative_conditional_proportional_representation([0] * 30 + [1] * 10, group_names=["a", "b"])
    assert (result.metric, result.dof, result.test, result.n_units) == ("ucpr", 1, "chi-square-exact", 40)
    assert result.statistic == pytest.approx(10.0)  # (30 - 20)^2 / 20 + (10 - 20)^2 / 20
    # the exact null: X² >= 10 exactly when the count of a is at most 10 or at least 30 of Binomial(40, 1/2)
    exact = 2 * scipy_stats.binom.cdf(10, 40, 0.5)
    assert result.p_value == pytest.approx(exact, abs=3 * np.sqrt(exact * (1 - exact) / 9999) + 1 / 10000)
    asymptotic = c.uninformative_conditional_proportional_representation([0] * 30 + [1] * 10, group_names=["a", "b"],
                                                                         n_simulations=0)
    assert asymptotic.p_value == pytest.approx(scipy_stats.chi2.sf(10.0, 1))
    assert result.divergence == pytest.approx(2 * 0.25**2 / 0.5)
    assert result.by_group["expected_share"].tolist() == [0.5, 0.5]


def test_ucpr_against_population_shares_and_empty_groups():
    result = c.uninformative_conditional_proportional_representation(
        [0] * 30 + [1] * 10, group_names=["a", "b", "c"], expected=[3, 1, 0]
    )
    assert (result.statistic, result.p_value, result.dof) == (0.0, 1.0, 1)
    assert result.by_group["n_predicted"].tolist() == [30, 10, 0]
    impossible = c.uninformative_conditional_proportional_representation([2], group_names=["a", "b", "c"],
                                                                         expected=[1, 1, 0])
    assert (impossible.statistic, impossible.p_value, impossible.divergence) == (math.inf, 0.0, math.inf)


@pytest.mark.parametrize("expected", [[1.0], [1, -1], [0, 0], [1, float("nan")]])
def test_ucpr_rejects_bad_expected_shares(expected):
    with pytest.raises(ValueError, match=re.escape(c.BAD_EXPECTED_MSG)):
        c.uninformative_conditional_proportional_representation([0, 1], group_names=["a", "b"], expected=expected)


def test_ucpr_needs_the_group_names():
    with pytest.raises(ValueError, match=re.escape(c.BAD_NAMES_MSG) + ".*None"):
        c.uninformative_conditional_proportional_representation([0, 1], group_names=None)


@pytest.mark.parametrize("people", [3, 5, 6, 8])
def test_the_smallest_attainable_wilcoxon_p_is_what_scipy_gives_when_every_sign_agrees(people):
    every_sign_alike = np.arange(1.0, people + 1)  # distinct, all positive: the most extreme arrangement
    _, p_value, p_min = c._wilcoxon(every_sign_alike)
    assert p_min == pytest.approx(scipy_stats.wilcoxon(every_sign_alike, method="exact").pvalue)
    assert p_value == pytest.approx(p_min)
    assert (p_min > 0.05) == (people <= 5)  # 5 people: 0.0625, never significant


def test_comparison_tables_carry_the_smallest_attainable_p(model_a, model_b):
    result = c.compare_models(model_a, model_b, attributes=["gender"], metrics=["mse_error"],
                              n_resamples=100, n_permutations=99)
    sufficient = result.per_group[result.per_group["evidence"] == "sufficient"]
    assert (sufficient["p_value"] >= sufficient["p_min"] - 1e-12).all()
    row = result.disparities.iloc[0]
    assert row["p_min"] == pytest.approx(max(1 / 100, 0.5 ** row_people(model_a)))
    assert row["p_value"] >= row["p_min"] - 1e-12


def row_people(frame):
    return frame["subject"].nunique()


def test_rdp_says_how_small_its_p_can_get_with_these_people():
    subjects = np.repeat(np.arange(10), 4)  # two groups of 5 people, 4 photos each
    true = (subjects >= 5).astype(int)
    predicted = np.where(true == 1, 1, np.where(subjects % 2 == 0, 0, 1))  # group 0 loses some outputs
    result = c.representation_demographic_parity(true, predicted, subjects=subjects, group_names=["a", "b"],
                                                 n_resamples=50, n_permutations=999, min_subjects=5)
    assert result.p_min == pytest.approx(1 / 126)  # C(10, 5) / 2 ways to deal 10 people into two groups of 5
    assert result.p_value >= result.p_min - 1e-12
