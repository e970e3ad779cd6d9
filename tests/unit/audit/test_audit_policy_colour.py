"""The policy's skin-colour rules beyond ΔITA: ``[lightness]`` (ΔL*) and ``[hue]`` (Δh*).

Synthetic per-image frames over gender x skin tone with a planted shift of the darker-skinned
people's skin lightness or hue, against their unshifted twins (the same draws).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genfair.audit import AuditResult
from genfair.audit import policy as p

ATTRS = ["gender", "skin_tone"]
FAST = {"n_resamples": 200, "n_permutations": 500}


def make_frame(*, lighten: float = 0.0, hue: float = 0.0, per_cell: int = 6, images: int = 3,
               seed: int = 0) -> pd.DataFrame:
    """Darker-skinned people's outputs get ``lighten`` L* units of ΔL* and ``hue`` degrees of Δh*."""
    rng = np.random.default_rng(seed)
    rows = []
    for gender in ("female", "male"):
        for tone in ("darker", "lighter"):
            for person in range(per_cell):
                subject = f"{gender}-{tone}-{person}"
                for k in range(images):
                    light, turn, ita = rng.normal(0.0, 0.5), rng.normal(0.0, 1.0), rng.normal(0.0, 1.0)
                    harmed = tone == "darker"
                    rows.append({"path": f"{subject}/{k}.png", "subject": subject, "gender": gender,
                                 "skin_tone": tone, "mse_error": 0.02 + rng.normal(0.0, 0.001), "ita_shift": ita,
                                 "lightness_shift": light + (lighten if harmed else 0.0),
                                 "hue_shift": turn + (hue if harmed else 0.0)})
    return pd.DataFrame(rows)


def as_result(frame: pd.DataFrame) -> AuditResult:
    return AuditResult(per_image=frame, per_group=pd.DataFrame(), disparities=pd.DataFrame(),
                       metadata={"attributes": list(ATTRS)})


def make_policy(**sections) -> p.Policy:
    return p.parse_policy({"min_subjects": 5, "statistics": dict(FAST), **sections}, source="test.toml")


def rows_of(report: p.CheckReport, rule: str) -> pd.DataFrame:
    return report.rules[report.rules["rule"] == rule].set_index(["grouping", "group"])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fairness.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- parsing ------------------------------------------------------------------------------------------


def test_lightness_and_hue_sections_parse_and_are_regression_quantities(tmp_path):
    policy = p.load_policy(write(tmp_path, (
        "[lightness]\nmax_abs_shift = 4\nmax_difference = 3.5\n[hue]\nmax_abs_shift = 6\n"
        "[regression.tolerance]\nlightness = 1.0\nhue = 2\n")))
    assert isinstance(policy.lightness, p.LightnessLimits) and isinstance(policy.hue, p.HueLimits)
    assert (policy.lightness.max_abs_shift, policy.lightness.max_difference) == (4.0, 3.5)
    assert (policy.hue.max_abs_shift, policy.hue.max_difference) == (6.0, None)
    assert policy.skin_tone is None and policy.quantities() == ["lightness", "hue"]
    assert policy.regression.tolerance == {"lightness": 1.0, "hue": 2.0}


@pytest.mark.parametrize(("text", "key", "expected"), [
    ("[lightness]\nmax_abs_shift = -1\n", "lightness.max_abs_shift", "expected a number of L* units >= 0, got -1"),
    ('[lightness]\nmax_difference = "3"\n', "lightness.max_difference", "a number of L* units >= 0, got '3' (str)"),
    ("[hue]\nmax_difference = -0.5\n", "hue.max_difference", "expected a number of degrees >= 0"),
    ("[hue]\nmax_abs_shift = nan\n", "hue.max_abs_shift", "expected a number of degrees >= 0"),
    ("hue = 3\n", "hue", "expected a table"),
    ("[metrics.mse_error]\n[regression.tolerance]\nhue = -1\n", "regression.tolerance.hue", ">= 0"),
])
def test_invalid_values_name_the_key_and_what_was_expected(tmp_path, text, key, expected):
    with pytest.raises(p.PolicyError, match=re.escape(f"{key!r} {p.BAD_VALUE_MSG}")) as info:
        p.load_policy(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'fairness.toml'}: ") and expected in message


@pytest.mark.parametrize(("text", "fragments"), [
    ("[hue]\nmax_shift = 3\n", ["unknown key 'hue.max_shift'", "did you mean 'max_abs_shift'?"]),
    ("[lightnes]\nmax_abs_shift = 3\n", ["unknown key 'lightnes'", "did you mean 'lightness'?"]),
    ("[metrics.hue_shift]\nmax_difference = 3\n", ["unknown key 'metrics.hue_shift': ", "under [hue]"]),
    ("[metrics.lightness_shift]\nmax_difference = 3\n", ["'metrics.lightness_shift'", "under [lightness]"]),
    ("[metrics.mse_error]\n[regression.tolerance]\nhue = 0.1\n",
     ["unknown key 'regression.tolerance.hue' (not a quantity this policy checks)"]),
])
def test_unknown_keys_name_the_dotted_key_and_the_fix(tmp_path, text, fragments):
    with pytest.raises(p.PolicyError, match=re.escape(p.UNKNOWN_KEY_MSG)) as info:
        p.load_policy(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_a_policy_of_hue_alone_checks_something():
    assert make_policy(hue={"max_difference": 5.0}).quantities() == ["hue"]
    with pytest.raises(p.PolicyError, match=re.escape(p.NOTHING_TO_CHECK_MSG) + r".*\[lightness\], \[hue\]"):
        make_policy()


# --- judging ------------------------------------------------------------------------------------------


def test_a_lightened_group_fails_the_lightness_limit_and_the_rest_pass():
    frame = make_frame(lighten=8.0)
    report = p.check(as_result(frame), make_policy(lightness={"max_abs_shift": 5.0}, groupings=["skin_tone"]))
    rows = rows_of(report, "lightness.max_abs_shift")
    assert rows.loc[("skin_tone", "darker"), "verdict"] == "fail"
    assert rows.loc[("skin_tone", "lighter"), "verdict"] == "pass"
    expected = frame.groupby("skin_tone")["lightness_shift"].mean()
    assert rows.loc[("skin_tone", "darker"), "value"] == pytest.approx(expected["darker"])
    assert rows.loc[("overall", "all"), "value"] == pytest.approx(frame["lightness_shift"].mean())
    reason = rows.loc[("skin_tone", "darker"), "reason"]
    assert "mean ΔL*" in reason and " L* [" in reason and "outputs lighter" in reason
    assert set(rows["metric"]) == {"lightness_shift"}


@pytest.mark.parametrize(("hue", "word"), [(12.0, "yellower"), (-12.0, "redder")])
def test_a_hue_shift_fails_whichever_way_it_turns(hue, word):
    frame = make_frame(hue=hue)
    policy = make_policy(hue={"max_abs_shift": 5.0, "max_difference": 5.0}, groupings=["skin_tone"])
    report = p.check(as_result(frame), policy)
    shifts = rows_of(report, "hue.max_abs_shift")
    assert shifts.loc[("skin_tone", "darker"), "verdict"] == "fail"
    assert shifts.loc[("skin_tone", "lighter"), "verdict"] == "pass"
    assert f"outputs {word}" in shifts.loc[("skin_tone", "darker"), "reason"]
    gap = report.rules[report.rules["rule"] == "hue.max_difference"].iloc[0]
    means = frame.groupby("skin_tone")["hue_shift"].mean()
    assert gap["verdict"] == "fail" and gap["grouping"] == "skin_tone"
    assert gap["value"] == pytest.approx(abs(means["darker"] - means["lighter"]))


def test_unshifted_twins_pass_every_colour_rule():
    policy = make_policy(skin_tone={"max_abs_shift": 5.0}, lightness={"max_abs_shift": 3.0, "max_difference": 3.0},
                         hue={"max_abs_shift": 5.0, "max_difference": 5.0})
    report = p.check(as_result(make_frame()), policy)
    assert set(report.rules["verdict"]) == {"pass"}
    assert {"skin_tone.max_abs_shift", "lightness.max_abs_shift", "lightness.max_difference", "hue.max_abs_shift",
            "hue.max_difference"} == set(report.rules["rule"])


def test_per_group_colour_rules_name_their_group_in_junit():
    policy = make_policy(hue={"max_abs_shift": 5.0}, lightness={"max_difference": 3.0}, groupings=["skin_tone"])
    suite = ET.fromstring(p.junit_xml(p.check(as_result(make_frame(hue=12.0)), policy))).find("testsuite")
    names = {case.get("name") for case in suite.iter("testcase")}
    assert {"hue.max_abs_shift [skin_tone: darker]", "hue.max_abs_shift [overall: all]",
            "lightness.max_difference [skin_tone]"} <= names


# --- regression ---------------------------------------------------------------------------------------


def test_a_grown_hue_gap_fails_the_regression_check_and_itself_passes():
    policy = make_policy(lightness={}, hue={}, regression={"tolerance": {"hue": 1.0}}, groupings=["skin_tone"])
    fair, turned = as_result(make_frame()), as_result(make_frame(hue=-10.0))
    rows = p.check(turned, policy, baseline=fair).rules.set_index("rule")
    assert rows.loc["regression.tolerance.hue", "verdict"] == "fail"
    assert rows.loc["regression.tolerance.hue", "limit"] == 1.0
    assert rows.loc["regression.tolerance.lightness", "verdict"] == "pass"
    assert set(p.check(turned, policy, baseline=turned).rules["verdict"]) == {"pass"}


# --- missing columns ----------------------------------------------------------------------------------


def test_a_run_without_the_column_is_an_error_naming_the_section():
    run = as_result(make_frame().drop(columns=["hue_shift"]))
    with pytest.raises(p.PolicyError, match=re.escape(f"{p.MISSING_QUANTITY_MSG} 'hue': the run's") +
                       r".*'hue_shift'.*remove \[hue\] from the policy"):
        p.check(run, make_policy(hue={"max_abs_shift": 5.0}))


def test_a_baseline_from_before_the_new_measures_says_to_re_record_it():
    frame = make_frame()
    old = as_result(frame.drop(columns=["lightness_shift", "hue_shift"]))
    policy = make_policy(lightness={"max_abs_shift": 5.0})
    with pytest.raises(p.PolicyError, match=re.escape(f"{p.MISSING_QUANTITY_MSG} 'lightness': the baseline's") +
                       r".*re-record the baseline audit \(it predates ΔL\*\)"):
        p.check(as_result(frame), policy, baseline=old)
