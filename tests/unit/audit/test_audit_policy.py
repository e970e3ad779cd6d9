"""Fairness policy files and the checks of ``audit check``, on synthetic per-image frames.

Planted effects: a frame whose darker-skinned people are served worse (larger error,
lightened skin, outputs labelled the other skin tone) against its unbiased twin (the same
draws without the effect, over the same image paths).
"""

from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genfair.audit import AuditResult, interval_tables, representation_demographic_parity, summarize
from genfair.audit import policy as p
from genfair.audit.attributes import CLASSIFIER_UNRELIABLE, CLASSIFIER_VALID, classifier_validity

ATTRS = ["gender", "skin_tone"]
METRICS = ["mse_error", "psnr_score", "ssim_score"]
EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "fairness-policy.example.toml"
FAST = {"n_resamples": 200, "n_permutations": 1000}


def make_frame(
    *,
    bias: float = 0.0,
    lighten: float = 0.0,
    relabel: float = 0.0,
    per_cell: int = 6,
    images: int = 3,
    seed: int = 0,
    extra_group: int = 0,
    prefix: str = "",
) -> pd.DataFrame:
    """Per-image frame over gender x skin tone, ``per_cell`` people per cell, ``images`` each.

    Darker-skinned people get ``bias`` more squared error, ``lighten`` degrees of ΔITA, and
    their outputs are labelled "lighter" with probability ``relabel``. ``extra_group`` people
    of gender "nonbinary" are added (too few for evidence when < min_subjects). The random
    draws do not depend on the effects, so frames that differ only in them are twins.
    """
    rng = np.random.default_rng(seed)
    cells = [(g, t, per_cell) for g in ("female", "male") for t in ("darker", "lighter")]
    cells += [("nonbinary", "darker" if i % 2 else "lighter", 1) for i in range(extra_group)]
    rows = []
    for number, (gender, tone, count) in enumerate(cells):
        for s in range(count):
            subject = f"{gender}-{tone}-{number}-{s}"
            offset = rng.normal(0.0, 0.002)
            for k in range(images):
                noise, shift, draw_g, draw_t = rng.normal(0.0, 0.001), rng.normal(0.0, 1.0), rng.random(), rng.random()
                harmed = tone == "darker"
                mse = 0.02 + offset + noise + (bias if harmed else 0.0)
                output_tone = tone if draw_t >= 0.03 + (relabel if harmed else 0.0) else {
                    "darker": "lighter", "lighter": "darker"}[tone]
                rows.append(
                    {
                        "path": f"{prefix}{subject}/{k}.png",
                        "subject": subject,
                        "gender": gender,
                        "skin_tone": tone,
                        "mse_error": mse,
                        "psnr_score": -10.0 * math.log10(mse),
                        "ssim_score": 0.8 - 5.0 * (mse - 0.02),
                        "ita_shift": shift + (lighten if harmed else 0.0),
                        "classified_gender": gender,  # the originals read right: kept == own group here
                        "classified_skin_tone": tone,
                        "classified_gender_output": gender if draw_g >= 0.03 else "other",
                        "classified_skin_tone_output": output_tone,
                    }
                )
    return pd.DataFrame(rows)


def as_result(frame: pd.DataFrame, *, attributes=ATTRS) -> AuditResult:
    """An AuditResult from a per-image frame (the checks read only per_image and metadata)."""
    return AuditResult(
        per_image=frame,
        per_group=pd.DataFrame(),
        disparities=pd.DataFrame(),
        metadata={"attributes": list(attributes), "run": {"seed": 0}},
    )


def make_policy(**overrides) -> p.Policy:
    """A policy over every kind of rule, fast statistics; ``overrides`` replace top-level keys."""
    data = {
        "min_subjects": 5,
        "insufficient_evidence": "warn",
        "statistics": dict(FAST),
        "metrics": {
            "mse_error": {"max_ratio": 1.3, "max_difference": 0.005, "max_worst": 0.03},
            "psnr_score": {"min_ratio": 0.9},
        },
        "skin_tone": {"max_abs_shift": 5.0, "max_difference": 5.0},
        "attribute_preservation": {"max_gap": 0.25},
        "regression": {"tolerance": {"mse_error": 0.001}},
    }
    data.update(overrides)
    return p.parse_policy(data, source="test.toml")


@pytest.fixture(scope="module")
def fair() -> AuditResult:
    return as_result(make_frame())


@pytest.fixture(scope="module")
def biased() -> AuditResult:
    return as_result(make_frame(bias=0.02, lighten=12.0, relabel=0.8))


@pytest.fixture(scope="module")
def policy() -> p.Policy:
    return make_policy()


def rows_of(report: p.CheckReport, **where) -> pd.DataFrame:
    rules = report.rules
    mask = np.ones(len(rules), dtype=bool)
    for column, value in where.items():
        mask &= (rules[column] == value).to_numpy()
    return rules[mask]


# --- the absolute check -------------------------------------------------------------------------------


def test_the_unbiased_twin_passes_every_rule(fair, policy):
    report = p.check(fair, policy)
    assert list(report.rules.columns) == list(p.RULE_COLUMNS)
    assert set(report.rules["verdict"]) == {"pass"}, report.rules[report.rules["verdict"] != "pass"]
    assert (report.verdict, report.exit_code) == ("pass", 0)
    assert set(report.rules["check"]) == {"absolute"}
    # every kind of rule is there, per grouping
    assert {
        "metrics.mse_error.max_ratio", "metrics.mse_error.max_difference", "metrics.mse_error.max_worst",
        "metrics.psnr_score.min_ratio", "skin_tone.max_abs_shift", "skin_tone.max_difference",
        "attribute_preservation.max_gap",
    } == set(report.rules["rule"])
    assert set(rows_of(report, rule="metrics.mse_error.max_ratio")["grouping"]) == {
        "gender", "skin_tone", "gender x skin_tone"}
    assert set(rows_of(report, rule="attribute_preservation.max_gap")["grouping"]) == {"gender", "skin_tone"}


def test_planted_bias_fails_the_absolute_check(biased, policy):
    report = p.check(biased, policy)
    assert (report.verdict, report.exit_code) == ("fail", 1)
    failed = rows_of(report, verdict="fail")
    for rule in ("metrics.mse_error.max_ratio", "metrics.mse_error.max_difference", "metrics.mse_error.max_worst",
                 "metrics.psnr_score.min_ratio", "skin_tone.max_difference", "attribute_preservation.max_gap"):
        row = rows_of(report, rule=rule, grouping="skin_tone").iloc[0]
        assert row["verdict"] == "fail", row.to_dict()
        assert row["group"] == ("darker" if rule != "skin_tone.max_difference" else "darker")
    shift = rows_of(report, rule="skin_tone.max_abs_shift", grouping="skin_tone").set_index("group")
    assert shift.loc["darker", "verdict"] == "fail"
    assert shift.loc["lighter", "verdict"] == "pass"
    # the gender grouping is not where the harm is: its disparity rules pass
    assert set(rows_of(report, rule="metrics.mse_error.max_ratio", grouping="gender")["verdict"]) == {"pass"}
    assert len(failed) >= 7


def test_rows_carry_the_statistics_of_interval_tables(biased, policy):
    report = p.check(biased, policy)
    _, disparities = interval_tables(
        biased.per_image, attributes=ATTRS, metrics=["mse_error"], n_resamples=200, n_permutations=1000,
        min_subjects=5, seed=0,
    )
    expected = disparities.set_index("grouping").loc["skin_tone"]
    row = rows_of(report, rule="metrics.mse_error.max_ratio", grouping="skin_tone").iloc[0]
    assert row["value"] == pytest.approx(expected["ratio"])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected["ratio_ci_low"], expected["ratio_ci_high"]))
    assert row["limit"] == 1.3 and row["metric"] == "mse_error" and row["method"] == "interval"
    assert row["p_value"] == pytest.approx(expected["p_holm"])
    assert "darker" in row["reason"] and "whole interval above the maximum 1.3" in row["reason"]


@pytest.mark.parametrize(("judge", "between", "verdict"), [
    ("interval", True, "warn"), ("estimate", True, "fail"), ("interval", False, "fail"), ("estimate", False, "fail"),
])
def test_judge_interval_warns_when_only_the_estimate_is_beyond_the_limit(judge, between, verdict):
    result = as_result(make_frame(bias=0.006, seed=3))
    _, disparities = interval_tables(result.per_image, attributes=ATTRS, metrics=["mse_error"], min_subjects=5,
                                     n_resamples=200, n_permutations=1000)
    row = disparities.set_index("grouping").loc["skin_tone"]
    assert 1.0 < row["ratio_ci_low"] < row["ratio"]
    # a limit between the interval's lower bound and the estimate, or below the whole interval
    limit = (row["ratio_ci_low"] + row["ratio"]) / 2 if between else (1.0 + row["ratio_ci_low"]) / 2
    policy = make_policy(judge=judge, groupings=["skin_tone"], metrics={"mse_error": {"max_ratio": limit}},
                         skin_tone=None, attribute_preservation=None, regression={})
    assert rows_of(p.check(result, policy), rule="metrics.mse_error.max_ratio")["verdict"].tolist() == [verdict]


def test_a_lower_limit_on_a_score_fails_below_it(biased):
    policy = make_policy(metrics={"ssim_score": {"min_worst": 0.79}}, skin_tone=None, attribute_preservation=None,
                         regression={}, groupings=["skin_tone"])
    row = p.check(biased, policy).rules.iloc[0]
    assert (row["rule"], row["group"], row["verdict"]) == ("metrics.ssim_score.min_worst", "darker", "fail")
    assert row["value"] == pytest.approx(0.7, abs=0.01)


@pytest.mark.parametrize("lighten", [12.0, -12.0])
def test_skin_tone_shift_is_limited_on_both_sides(lighten):
    result = as_result(make_frame(lighten=lighten))
    policy = make_policy(metrics={}, attribute_preservation=None, regression={},
                         skin_tone={"max_abs_shift": 5.0}, groupings=["skin_tone"])
    rows = p.check(result, policy).rules.set_index(["grouping", "group"])
    assert rows.loc[("skin_tone", "darker"), "verdict"] == "fail"
    assert rows.loc[("skin_tone", "lighter"), "verdict"] == "pass"
    assert rows.loc[("overall", "all"), "verdict"] == "warn"  # the overall mean (about ±6°) is beyond ±5°
    assert rows.loc[("skin_tone", "darker"), "value"] == pytest.approx(lighten, abs=1.0)
    assert ("lighter" if lighten > 0 else "darker") in rows.loc[("skin_tone", "darker"), "reason"]
    strict = p.check(result, dataclasses.replace(policy, judge="estimate")).rules.set_index(["grouping", "group"])
    assert strict["verdict"].to_dict() == {
        ("overall", "all"): "fail", ("skin_tone", "darker"): "fail", ("skin_tone", "lighter"): "pass"}


def test_the_preservation_gap_is_representation_demographic_parity(biased):
    policy = make_policy(metrics={}, skin_tone=None, regression={}, attribute_preservation={
        "max_gap": 0.25, "attributes": ["skin_tone"]})
    row = p.check(biased, policy).rules.iloc[0]
    frame = biased.per_image
    codes, names = pd.factorize(frame["skin_tone"], sort=True)
    predicted = pd.Categorical(frame["classified_skin_tone_output"], categories=names).codes
    rdp = representation_demographic_parity(codes, predicted, subjects=frame["subject"], group_names=list(names))
    assert row["value"] == pytest.approx(rdp.difference)
    assert (row["rule"], row["grouping"], row["metric"], row["group"], row["verdict"]) == (
        "attribute_preservation.max_gap", "skin_tone", "attribute_preservation", "darker", "fail")


def test_an_identity_model_keeps_every_label_even_when_the_classifier_misreads_a_group(fair):
    frame = fair.per_image.copy()
    rng = np.random.default_rng(0)
    misread = (frame["skin_tone"] == "darker") & (rng.random(len(frame)) < 0.4)
    frame["classified_skin_tone"] = np.where(misread, "lighter", frame["skin_tone"])
    frame["classified_skin_tone_output"] = frame["classified_skin_tone"]  # the model returns its input
    policy = make_policy(metrics={}, skin_tone=None, regression={}, attribute_preservation={
        "max_gap": 0.05, "attributes": ["skin_tone"]})
    row = p.check(as_result(frame), policy).rules.iloc[0]
    assert row["value"] == 0.0 and row["verdict"] == "pass"


def misread(result: AuditResult, share: float) -> AuditResult:
    """``result`` with the classifier misreading ``share`` of the darker originals, and its validity table."""
    frame = result.per_image.copy()
    wrong = (frame["skin_tone"] == "darker") & (np.random.default_rng(1).random(len(frame)) < share)
    frame["classified_skin_tone"] = np.where(wrong, "lighter", frame["skin_tone"])
    validity = classifier_validity(frame, attributes=["skin_tone"], n_resamples=50)
    return dataclasses.replace(result, per_image=frame, tables={"classifier_validity": validity})


def test_the_preservation_gap_is_not_judged_where_the_classifier_misreads_a_group(biased):
    policy = make_policy(metrics={}, skin_tone=None, regression={}, insufficient_evidence="warn",
                         attribute_preservation={"max_gap": 0.25, "attributes": ["skin_tone"]})
    readable = misread(biased, 0.05)  # above 0.8 for both groups: judged, and the planted relabelling fails
    assert (readable.tables["classifier_validity"]["status"] == CLASSIFIER_VALID).all()
    assert p.check(readable, policy).rules.iloc[0]["verdict"] == "fail"
    unreadable = misread(biased, 0.5)
    validity = unreadable.tables["classifier_validity"].set_index(["grouping", "group", "attribute"])
    assert validity.loc[("skin_tone", "darker", "skin_tone"), "status"] == CLASSIFIER_UNRELIABLE
    assert validity.loc[("skin_tone", "lighter", "skin_tone"), "status"] == CLASSIFIER_VALID
    row = p.check(unreadable, policy).rules.iloc[0]
    assert (row["rule"], row["grouping"], row["group"], row["verdict"]) == (
        "attribute_preservation.max_gap", "skin_tone", "darker", "warn")
    assert math.isnan(row["value"]) and "classifier unreliable: it reads skin_tone of darker" in row["reason"]
    # nor is its regression, against a baseline whose classifier misread, or the other way round
    regression = make_policy(metrics={}, skin_tone=None, insufficient_evidence="warn",
                             attribute_preservation={"attributes": ["skin_tone"]},
                             regression={"tolerance": {"attribute_preservation": 0.0}})
    for run, baseline, where in ((readable, unreadable, " in the baseline"), (unreadable, readable, "")):
        (row,) = rows_of(p.check(run, regression, baseline=baseline), check="regression").to_dict("records")
        assert row["verdict"] == "warn" and f"classifier unreliable{where}: it reads" in row["reason"]
    assert rows_of(p.check(readable, regression, baseline=readable), check="regression")["verdict"].tolist() == ["pass"]


# --- insufficient evidence ----------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["warn", "fail"])
def test_an_insufficient_group_follows_the_policy(setting):
    result = as_result(make_frame(extra_group=2))  # two nonbinary people: fewer than min_subjects
    report = p.check(result, make_policy(insufficient_evidence=setting))
    evidence = rows_of(report, rule="min_subjects")
    assert set(evidence["verdict"]) == {setting}
    assert sorted(zip(evidence["grouping"], evidence["group"], strict=True)) == [
        ("gender", "nonbinary"),
        ("gender x skin_tone", "nonbinary / darker"),
        ("gender x skin_tone", "nonbinary / lighter"),
    ]
    assert evidence["value"].tolist() == [2.0, 1.0, 1.0] and set(evidence["limit"]) == {5.0}
    shift = rows_of(report, rule="skin_tone.max_abs_shift", group="nonbinary")
    assert shift["verdict"].tolist() == [setting] and math.isnan(shift["ci_low"].iloc[0])
    # the other groups are judged as usual and pass
    judged = report.rules[~report.rules["group"].astype(str).str.startswith("nonbinary")
                          & (report.rules["rule"] != "min_subjects")]
    assert set(judged["verdict"]) == {"pass"}
    assert (report.verdict, report.exit_code) == ((setting, 1) if setting == "fail" else (setting, 0))


@pytest.mark.parametrize("setting", ["warn", "fail"])
def test_a_disparity_without_two_sufficient_groups_is_never_a_pass(fair, setting):
    policy = make_policy(min_subjects=20, insufficient_evidence=setting)  # every group has 6 or 12 people
    report = p.check(fair, policy, baseline=fair)
    overall = report.rules["grouping"] == "overall"  # all 72 people: the only group with enough
    assert set(report.rules[~overall]["verdict"]) == {setting}
    assert set(report.rules[overall]["verdict"]) == {"pass"}
    metric_rows = rows_of(report, rule="metrics.mse_error.max_ratio")
    assert metric_rows["value"].isna().all() and metric_rows["reason"].str.contains("insufficient evidence").all()
    assert rows_of(report, check="regression")["value"].isna().all()


# --- the regression check -----------------------------------------------------------------------------


def test_a_result_against_itself_never_fails(biased, policy):
    rows = rows_of(p.check(biased, policy, baseline=biased), check="regression")
    assert set(rows["verdict"]) == {"pass"}
    assert set(rows["method"]) == {"paired"}
    assert (rows["value"] == 0.0).all()
    assert {"regression.tolerance.mse_error", "regression.tolerance.psnr_score", "regression.tolerance.skin_tone",
            "regression.tolerance.attribute_preservation"} == set(rows["rule"])


def test_an_identical_rerun_in_another_row_order_passes(fair, policy):
    rerun = as_result(make_frame().sample(frac=1.0, random_state=1).reset_index(drop=True))
    report = p.check(rerun, policy, baseline=fair)
    assert set(report.rules["verdict"]) == {"pass"} and report.exit_code == 0


def test_planted_bias_fails_the_regression_check_against_its_twin(biased, fair, policy):
    rows = rows_of(p.check(biased, policy, baseline=fair), check="regression").set_index(["rule", "grouping"])
    row = rows.loc[("regression.tolerance.mse_error", "skin_tone")]
    assert row["verdict"] == "fail" and row["method"] == "paired"
    assert row["value"] == pytest.approx(0.02, abs=0.003) and row["ci_low"] > 0.001 and row["p_value"] < 0.05
    assert row["limit"] == 0.001 and "whole paired interval lies above it" in row["reason"]
    assert "sign-flip p, Holm" in row["reason"]
    assert rows.loc[("regression.tolerance.skin_tone", "skin_tone"), "verdict"] == "fail"
    assert rows.loc[("regression.tolerance.attribute_preservation", "skin_tone"), "verdict"] == "fail"
    # the other way round the run is fairer: nothing fails
    improved = rows_of(p.check(fair, policy, baseline=biased), check="regression")
    assert "fail" not in set(improved["verdict"])
    assert improved.set_index(["rule", "grouping"]).loc[("regression.tolerance.mse_error", "skin_tone"), "value"] < 0


def test_a_large_tolerance_absorbs_the_worsening(biased, fair):
    policy = make_policy(metrics={"mse_error": {}}, skin_tone=None, attribute_preservation=None,
                         regression={"tolerance": {"mse_error": 0.05}})
    report = p.check(biased, policy, baseline=fair)
    assert report.rules.empty is False and set(report.rules["verdict"]) == {"pass"}
    assert set(report.rules["check"]) == {"regression"}  # an empty metric table: regression only


def test_different_images_use_the_unpaired_criterion(fair, policy):
    run = as_result(make_frame(bias=0.02, prefix="other/"))
    rows = rows_of(p.check(run, policy, baseline=fair), check="regression")
    assert set(rows["method"]) == {"unpaired"} and rows["p_value"].isna().all()
    row = rows.set_index(["rule", "grouping"]).loc[("regression.tolerance.mse_error", "skin_tone")]
    assert row["verdict"] == "fail" and "interval lies above" in row["reason"]
    same = rows_of(p.check(as_result(make_frame(prefix="other/")), policy, baseline=fair), check="regression")
    assert set(same["method"]) == {"unpaired"} and set(same["verdict"]) == {"pass"}


def test_a_worsening_without_significance_warns(fair):
    # a re-draw of the noise over the same images: the disparity moves a little either way
    policy = make_policy(metrics={"mse_error": {}}, skin_tone=None, attribute_preservation=None, regression={},
                         groupings=["skin_tone"])
    rows = [p.check(as_result(make_frame(seed=seed)), policy, baseline=fair).rules.iloc[0] for seed in range(1, 6)]
    worse = [row for row in rows if row["value"] > 0]
    assert worse and all(row["verdict"] != "fail" for row in rows)
    assert all(row["verdict"] == "warn" and row["ci_low"] <= 0 and "interval reaches within it" in row["reason"]
               for row in worse)
    assert all(row["verdict"] == "pass" for row in rows if row["value"] <= 0)


def test_checks_load_saved_results(tmp_path, policy):
    frame = make_frame(bias=0.02)
    saved = summarize(frame, attributes=ATTRS, metrics=METRICS, metadata={"attributes": ATTRS}).save(tmp_path / "run")
    loaded = AuditResult.load(saved)
    pd.testing.assert_frame_equal(p.check(loaded, policy).rules, p.check(as_result(frame), policy).rules)


# --- policy files -------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fairness.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_policy_loads_and_checks_a_result(biased):
    policy = p.load_policy(EXAMPLE)
    assert [limits.metric for limits in policy.metrics] == ["mse_error", "psnr_score", "ssim_score", "mae_error"]
    assert policy.metrics[0].max_ratio == 1.25 and policy.skin_tone.max_abs_shift == 10.0
    assert policy.regression.tolerance["skin_tone"] == 2.0 and policy.min_subjects == 5
    assert (policy.lightness.max_abs_shift, policy.hue.max_difference) == (8.0, 8.0)
    assert policy.regression.tolerance["lightness"] == 1.5 and policy.regression.tolerance["hue"] == 3.0
    fast = dataclasses.replace(policy, stats=dataclasses.replace(policy.stats, n_resamples=200))
    shift = biased.per_image["ita_shift"]
    frame = biased.per_image.assign(mae_error=biased.per_image["mse_error"] ** 0.5, lightness_shift=shift / 2,
                                    hue_shift=-shift / 3)
    report = p.check(as_result(frame), fast, baseline=as_result(frame))
    assert report.exit_code == 1 and set(rows_of(report, check="regression")["verdict"]) == {"pass"}


def test_a_policy_round_trips_through_asdict(policy):
    as_dict = dataclasses.asdict(policy)
    assert as_dict["stats"]["n_permutations"] == 1000 and as_dict["metrics"][0]["metric"] == "mse_error"


@pytest.mark.parametrize(("text", "fragments"), [
    ("min_subject = 5\n[metrics.mse_error]\n",
     ["fairness.toml: unknown key 'min_subject'; expected one of [", "; did you mean 'min_subjects'?"]),
    ("[metrics.mse_error]\nmax_ratoi = 1.2\n",
     ["unknown key 'metrics.mse_error.max_ratoi'; expected one of ['max_difference', 'max_ratio', 'max_worst']; "
      "did you mean 'max_ratio'?"]),
    ("[metrics.mse_error]\nmin_ratio = 0.9\n",
     ["unknown key 'metrics.mse_error.min_ratio'", "lower is better", "did you mean 'max_ratio'?"]),
    ("[metrics.psnr_score]\nmax_ratio = 1.2\n", ["'metrics.psnr_score.max_ratio'", "did you mean 'min_ratio'?"]),
    ("[metrics.mse_eror]\nmax_ratio = 1.2\n", ["unknown key 'metrics.mse_eror'", "did you mean 'mse_error'?"]),
    ("[metrics.ita_shift]\nmax_difference = 3\n", ["unknown key 'metrics.ita_shift': ", "under [skin_tone]"]),
    ("[metrics.mse_error]\n[statistics]\nlevle = 0.9\n", ["unknown key 'statistics.levle'", "did you mean 'level'?"]),
    ("[metrics.mse_error]\n[regression.tolerance]\nmse_eror = 0.1\n",
     ["unknown key 'regression.tolerance.mse_eror'", "did you mean 'mse_error'?"]),
    ("[metrics.mse_error]\n[regression.tolerance]\nskin_tone = 0.1\n",
     ["unknown key 'regression.tolerance.skin_tone' (not a quantity this policy checks)"]),
    ("[skin_tone]\nmax_abs_shif = 3\n", ["unknown key 'skin_tone.max_abs_shif'", "did you mean 'max_abs_shift'?"]),
    ("[metrics.mse_error]\n[regression]\ntolerances = {}\n",
     ["unknown key 'regression.tolerances'", "did you mean 'tolerance'?"]),
])
def test_unknown_keys_name_the_dotted_key_and_the_closest_valid_one(tmp_path, text, fragments):
    with pytest.raises(p.PolicyError, match=re.escape(p.UNKNOWN_KEY_MSG)) as info:
        p.load_policy(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'fairness.toml'}: ")
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('min_subjects = "five"\n[metrics.mse_error]\n', "min_subjects", "must be an integer >= 2"),
    ("min_subjects = 1\n[metrics.mse_error]\n", "min_subjects", "must be an integer >= 2"),
    ('judge = "median"\n[metrics.mse_error]\n', "judge", "expected one of ['interval', 'estimate'], got 'median'"),
    ('insufficient_evidence = "ignore"\n[metrics.mse_error]\n', "insufficient_evidence", "['fail', 'warn']"),
    ('groupings = "gender"\n[metrics.mse_error]\n', "groupings", "a non-empty list of distinct names"),
    ('[metrics.mse_error]\nmax_ratio = "1.2"\n', "metrics.mse_error.max_ratio",
     "expected a number >= 1, got '1.2' (str)"),
    ("[metrics.mse_error]\nmax_ratio = 0.8\n", "metrics.mse_error.max_ratio", "expected a number >= 1"),
    ("[metrics.psnr_score]\nmin_ratio = 1.5\n", "metrics.psnr_score.min_ratio", "expected a number in (0, 1]"),
    ("[metrics.mse_error]\nmax_difference = -1\n", "metrics.mse_error.max_difference", "a number >= 0"),
    ("[metrics.mse_error]\nmax_worst = nan\n", "metrics.mse_error.max_worst", "a finite number"),
    ("[metrics]\nmse_error = 1.2\n", "metrics.mse_error", "expected a table"),
    ("metrics = 3\n", "metrics", "expected a table"),
    ("[skin_tone]\nmax_abs_shift = -1\n", "skin_tone.max_abs_shift", "a number of degrees >= 0"),
    ("[attribute_preservation]\nmax_gap = 1.5\n", "attribute_preservation.max_gap", "a rate in [0, 1]"),
    ("[attribute_preservation]\nattributes = [1]\n", "attribute_preservation.attributes", "a non-empty list"),
    ("[metrics.mse_error]\n[statistics]\nlevel = 2\n", "statistics.level", "strictly between 0 and 1"),
    ("[metrics.mse_error]\n[statistics]\nseed = true\n", "statistics.seed", "non-negative integer"),
    ('[metrics.mse_error]\n[statistics]\ninterval = "bca"\n', "statistics.interval", "interval must be one of"),
    ("[metrics.mse_error]\n[regression]\ntolerance = 0.1\n", "regression.tolerance", "expected a table"),
    ("[metrics.mse_error]\n[regression.tolerance]\nmse_error = -0.1\n", "regression.tolerance.mse_error", ">= 0"),
])
def test_invalid_values_name_the_key_and_what_was_expected(tmp_path, text, key, expected):
    with pytest.raises(p.PolicyError, match=re.escape(f"{key!r} {p.BAD_VALUE_MSG}")) as info:
        p.load_policy(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'fairness.toml'}: ")
    assert expected in message


def test_a_policy_that_checks_nothing_is_an_error(tmp_path):
    with pytest.raises(p.PolicyError, match=re.escape(f"fairness.toml: {p.NOTHING_TO_CHECK_MSG}")):
        p.load_policy(write(tmp_path, "min_subjects = 5\n"))


def test_invalid_toml_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, "[metrics.mse_error]\nmax_ratio = \n")
    with pytest.raises(p.PolicyError, match=re.escape(f"{path}: {p.INVALID_TOML_MSG}") + ".*line 2") as info:
        p.load_policy(path)
    assert "\n" not in str(info.value)


def test_a_policy_that_is_not_utf8_is_invalid_toml(tmp_path):
    path = tmp_path / "fairness.toml"
    path.write_bytes(b"# caf\xe9\n[metrics.mse_error]\n")
    with pytest.raises(p.PolicyError, match=re.escape(p.INVALID_TOML_MSG)):
        p.load_policy(path)


def test_a_missing_policy_file_is_named(tmp_path):
    with pytest.raises(p.PolicyError, match=re.escape(f"{tmp_path / 'nope.toml'}: {p.POLICY_NOT_FOUND_MSG}")):
        p.load_policy(tmp_path / "nope.toml")


def test_a_folder_is_not_a_policy_file(tmp_path):
    with pytest.raises(p.PolicyError, match=re.escape(f"{tmp_path}: {p.POLICY_UNREADABLE_MSG}")):
        p.load_policy(tmp_path)


def test_policy_errors_are_value_errors():
    assert issubclass(p.PolicyError, ValueError)


def test_the_dataclasses_validate_when_built_directly():
    with pytest.raises(p.PolicyError, match=re.escape("unknown key 'metrics.mse_error.min_worst'")):
        p.MetricLimits(metric="mse_error", min_worst=0.1)
    with pytest.raises(p.PolicyError, match=re.escape(p.NOTHING_TO_CHECK_MSG)):
        p.Policy()
    with pytest.raises(p.PolicyError, match=re.escape("'metrics' is invalid: expected each metric once")):
        p.Policy(metrics=(p.MetricLimits(metric="mse_error"), p.MetricLimits(metric="mse_error")))
    with pytest.raises(p.PolicyError, match=re.escape("'metrics' is invalid: expected metric names as keys")):
        p.MetricLimits(metric="")


# --- policy against the result ------------------------------------------------------------------------


def test_a_metric_the_result_lacks_is_an_error(fair):
    policy = make_policy(metrics={"mae_error": {"max_ratio": 2.0}}, regression={})
    with pytest.raises(p.PolicyError, match=re.escape(f"{p.MISSING_QUANTITY_MSG} 'metrics.mae_error'")):
        p.check(fair, policy)


def test_a_baseline_that_lacks_a_quantity_is_an_error(fair, policy):
    baseline = as_result(make_frame().drop(columns=["ita_shift"]))
    with pytest.raises(p.PolicyError, match=re.escape(f"{p.MISSING_QUANTITY_MSG} 'skin_tone': the baseline's")):
        p.check(fair, policy, baseline=baseline)


def test_an_unknown_grouping_is_an_error_with_a_suggestion(fair):
    with pytest.raises(p.PolicyError, match=re.escape("unknown key 'groupings.gendr'") + ".*did you mean 'gender'"):
        p.check(fair, make_policy(groupings=["gendr"]))


def test_preservation_needs_classified_outputs(fair):
    without = as_result(fair.per_image.drop(columns=["classified_gender_output", "classified_skin_tone_output"]))
    with pytest.raises(p.PolicyError, match=re.escape(f"{p.MISSING_QUANTITY_MSG} 'attribute_preservation'")):
        p.check(without, make_policy())
    only_tone = as_result(fair.per_image.drop(columns=["classified_gender_output"]))
    policy = make_policy(attribute_preservation={"max_gap": 0.5, "attributes": ["gender"]})
    with pytest.raises(p.PolicyError, match=re.escape("'classified_gender_output'")):
        p.check(only_tone, policy)
    with pytest.raises(p.PolicyError, match=re.escape("unknown key 'attribute_preservation.attributes.age'")):
        p.check(fair, make_policy(attribute_preservation={"max_gap": 0.5, "attributes": ["age"]}))


def test_the_attributes_come_from_the_metadata_or_the_caller(fair, policy):
    anonymous = dataclasses.replace(fair, metadata={})
    with pytest.raises(ValueError, match=re.escape(p.NO_ATTRIBUTES_MSG)):
        p.check(anonymous, policy)
    rules = p.check(anonymous, make_policy(), attributes=["skin_tone"]).rules
    assert set(rules["grouping"]) == {"skin_tone", "overall"}


# --- the report and its JUnit XML ---------------------------------------------------------------------


def test_the_report_is_frozen_and_validates_its_rows(fair, policy):
    report = p.check(fair, policy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.rules = report.rules  # type: ignore[misc]
    with pytest.raises(TypeError, match=re.escape(p.BAD_RULES_MSG)):
        p.CheckReport(rules=[])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(p.BAD_RULES_MSG) + ".*verdict"):
        p.CheckReport(rules=report.rules.drop(columns=["verdict"]))
    with pytest.raises(ValueError, match=re.escape(p.BAD_VERDICT_MSG)):
        p.CheckReport(rules=report.rules.assign(verdict="maybe"))


@pytest.mark.parametrize(("verdicts", "overall", "code"), [
    ([], "pass", 0), (["pass", "pass"], "pass", 0), (["pass", "warn"], "warn", 0), (["warn", "fail"], "fail", 1),
])
def test_verdict_and_exit_code(verdicts, overall, code):
    rows = [p._row("absolute", "metrics.mse_error.max_ratio", f"g{i}", "mse_error", "a", "interval",
                   1.0, 0.9, 1.1, 1.2, 0.5, verdict, "r") for i, verdict in enumerate(verdicts)]
    report = p.CheckReport(rules=p._rules_frame(rows))
    assert (report.verdict, report.exit_code) == (overall, code)
    assert report.counts == {v: verdicts.count(v) for v in p.VERDICTS}


def test_junit_xml_has_one_testcase_per_rule_and_the_right_counts(biased, fair):
    report = p.check(as_result(make_frame(bias=0.02, lighten=12.0, relabel=0.8, extra_group=2)), make_policy(),
                     baseline=as_result(make_frame(extra_group=2)))
    counts = report.counts
    assert counts["fail"] and counts["warn"] and counts["pass"]
    root = ET.fromstring(p.junit_xml(report, name="fairness"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "fairness"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == (
        str(len(report.rules)), str(counts["fail"]), str(counts["warn"]), "0")
    assert root.get("tests") == suite.get("tests") and root.get("failures") == suite.get("failures")
    cases = suite.findall("testcase")
    assert len(cases) == len(report.rules)
    assert len({(c.get("classname"), c.get("name")) for c in cases}) == len(cases)  # stable, unique names
    for case, row in zip(cases, report.rules.to_dict("records"), strict=True):
        assert case.get("classname") == f"genfair.fairness.{row['check']}"
        failure, skipped = case.find("failure"), case.find("skipped")
        assert (failure is not None, skipped is not None) == (row["verdict"] == "fail", row["verdict"] == "warn")
        if failure is not None:
            assert failure.get("message") == row["reason"] and f"limit: {row['limit']}" in failure.text
        if skipped is not None:
            assert skipped.get("message") == f"warn: {row['reason']}"
        assert f"verdict: {row['verdict']}" in case.find("system-out").text
    names = {c.get("name") for c in cases}
    assert "min_subjects [gender: nonbinary]" in names
    assert "metrics.mse_error.max_ratio [skin_tone]" in names
    assert "regression.tolerance.mse_error [gender x skin_tone]" in names


def test_junit_xml_escapes_labels():
    rows = [p._row("absolute", "min_subjects", "group & <kind>", None, 'a "quoted" & <b>', "interval",
                   2, np.nan, np.nan, 5, np.nan, "warn", "insufficient & <rare>")]
    text = p.junit_xml(p.CheckReport(rules=p._rules_frame(rows)))
    assert text.startswith("<?xml")
    case = ET.fromstring(text).find("testsuite/testcase")
    assert case.get("name") == 'min_subjects [group & <kind>: a "quoted" & <b>]'
    assert case.find("skipped").get("message") == "warn: insufficient & <rare>"
    assert "ci_low" not in case.find("system-out").text  # missing values are left out


def test_same_names_from_another_manifest_are_not_paired(fair, policy):
    import dataclasses

    recorded = dataclasses.replace(fair, metadata={**fair.metadata, "manifest_sha256": "a" * 64})
    other = dataclasses.replace(fair, metadata={**fair.metadata, "manifest_sha256": "b" * 64})
    rows = rows_of(p.check(other, policy, baseline=recorded), check="regression")
    assert set(rows["method"]) == {"unpaired"}
    same = rows_of(p.check(recorded, policy, baseline=recorded), check="regression")
    assert set(same["method"]) == {"paired"}


def test_the_policy_chooses_the_disparity_test(tmp_path, fair, monkeypatch):
    text = "[statistics]\nn_resamples = 100\nn_permutations = 99\nstudentized = false\n[metrics.mse_error]\nmax_ratio = 9.0\n"
    (tmp_path / "p.toml").write_text(text)
    policy = p.load_policy(tmp_path / "p.toml")
    assert policy.stats.studentized is False
    (tmp_path / "bad.toml").write_text(text.replace("studentized = false", "studentized = 'yes'"))
    with pytest.raises(p.PolicyError, match="statistics.studentized"):
        p.load_policy(tmp_path / "bad.toml")
    import genfair.audit.stats as stats_module

    seen, original = [], stats_module.interval_tables

    def spy(*args, **kwargs):
        seen.append(kwargs.get("studentized"))
        return original(*args, **kwargs)

    monkeypatch.setattr(stats_module, "interval_tables", spy)
    p.check(fair, policy)
    assert seen and set(seen) == {False}  # the option reaches the disparity test
