"""Representation tables: own-group rate, drift toward the majority, PR and UCPR per grouping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.attributes import (
    REPRESENTATION_COLUMNS,
    REPRESENTATION_TEST_COLUMNS,
    classified_column,
    classifier_accuracy,
    representation_tables,
)

FAST = {"n_resamples": 200}
MAJORITY = {"gender": "male", "skin_tone": "lighter", "gender x skin_tone": "male / lighter"}


def _panel(drift: float, *, seed: int = 0) -> pd.DataFrame:
    """2 x 2 panel, 6 people a group, 4 photos each; darker people's outputs read as lighter with prob ``drift``."""
    rng = np.random.default_rng(seed)
    rows = []
    for gender in ("female", "male"):
        for tone in ("darker", "lighter"):
            for person in range(6):
                for photo in range(4):
                    drifted = tone == "darker" and rng.random() < drift
                    rows.append({"path": f"{gender}-{tone}-{person}-{photo}.png", "subject": f"{gender}-{tone}-{person}",
                                 "gender": gender, "skin_tone": tone,
                                 classified_column("gender", output=True): gender,
                                 classified_column("skin_tone", output=True): "lighter" if drifted else tone})
    return pd.DataFrame(rows)


def _row(table: pd.DataFrame, grouping: str, group: str) -> pd.Series:
    return table[(table["grouping"] == grouping) & (table["group"] == group)].iloc[0]


def test_planted_drift_toward_the_majority_shows_in_own_and_majority_rates():
    by_group, tests = representation_tables(_panel(0.5), attributes=["gender", "skin_tone"], majority=MAJORITY, **FAST)
    assert list(by_group.columns) == list(REPRESENTATION_COLUMNS)
    assert list(tests.columns) == list(REPRESENTATION_TEST_COLUMNS)
    darker = _row(by_group, "skin_tone", "darker")
    assert darker["majority_group"] == "lighter"
    assert 0.3 < darker["majority_rate"] < 0.7 and darker["majority_ci_low"] > 0.1
    assert darker["own_rate"] == pytest.approx(1 - darker["majority_rate"])
    assert _row(by_group, "skin_tone", "lighter")["own_rate"] == 1.0
    assert darker["output_share"] < darker["true_share"] == 0.5
    rdp = tests[(tests["grouping"] == "skin_tone") & (tests["metric"] == "rdp")].iloc[0]
    assert rdp["difference_ci_low"] > 0.1 and rdp["p_value"] < 0.002  # 1,000 permutations: at least 1/1001
    assert rdp["difference_ci_low"] <= rdp["difference"] <= rdp["difference_ci_high"]
    assert tests[(tests["grouping"] == "skin_tone") & (tests["metric"] == "pr")].iloc[0]["p_value"] < 1e-4
    # gender is untouched: every output keeps its group, no test rejects
    assert (by_group[by_group["grouping"] == "gender"]["own_rate"] == 1.0).all()
    assert tests[(tests["grouping"] == "gender") & (tests["metric"] == "pr")].iloc[0]["p_value"] == 1.0


def test_the_intersection_joins_the_predicted_labels():
    by_group, _ = representation_tables(_panel(1.0), attributes=["gender", "skin_tone"], majority=MAJORITY, **FAST)
    cell = _row(by_group, "gender x skin_tone", "female / darker")
    assert cell["own_rate"] == 0.0 and cell["output_share"] == 0.0
    assert _row(by_group, "gender x skin_tone", "male / darker")["majority_rate"] == 1.0
    assert _row(by_group, "gender x skin_tone", "female / lighter")["output_share"] == 0.5


def test_no_drift_keeps_every_rate_at_one_and_no_gap():
    by_group, tests = representation_tables(_panel(0.0), attributes=["skin_tone"], majority=MAJORITY, **FAST)
    assert (by_group["own_rate"] == 1.0).all()
    rdp = tests[tests["metric"] == "rdp"].iloc[0]
    assert rdp["difference"] == 0.0 and rdp["p_value"] == 1.0


def test_uninformative_outputs_are_tested_against_uniform_over_the_panels_groups():
    uninformative = pd.DataFrame({"skin_tone": ["lighter"] * 30 + ["darker"] * 10})
    by_group, tests = representation_tables(_panel(0.0), attributes=["skin_tone"], majority=MAJORITY,
                                            uninformative=uninformative, **FAST)
    assert _row(by_group, "skin_tone", "lighter")["uninformative_share"] == 0.75
    ucpr = tests[tests["metric"] == "ucpr"].iloc[0]
    assert ucpr["statistic"] == pytest.approx(10.0) and ucpr["p_value"] < 0.01


def test_a_small_group_is_insufficient_evidence_not_a_rate_interval():
    frame = _panel(0.5)
    frame = frame[~((frame["skin_tone"] == "darker") & (frame["subject"].str[-1].astype(int) > 1))]
    by_group, _ = representation_tables(frame, attributes=["skin_tone"], majority=MAJORITY, **FAST)
    darker = _row(by_group, "skin_tone", "darker")
    assert darker["evidence"] == "insufficient" and np.isnan(darker["own_ci_low"]) and np.isnan(darker["majority_ci_low"])


def test_a_grouping_without_a_majority_has_no_drift_toward_one():
    frame = _panel(0.0)
    by_group, tests = representation_tables(frame, attributes=["gender"], majority={}, **FAST)
    assert (by_group["majority_group"] == "").all() and by_group["majority_rate"].isna().all()
    assert by_group["own_rate"].notna().all() and set(tests["metric"]) == {"rdp", "pr"}


def test_missing_columns_raise_naming_them():
    frame = _panel(0.0)
    with pytest.raises(ValueError, match="classified_gender_output"):
        representation_tables(frame.drop(columns=[classified_column("gender", output=True)]), attributes=["gender"],
                              majority=MAJORITY, **FAST)


def test_attribute_preservation_equals_the_own_group_rate():
    frame = _panel(0.5)
    preserved = classifier_accuracy(frame, attributes=["skin_tone"], output=True)
    by_group, _ = representation_tables(frame, attributes=["skin_tone"], majority=MAJORITY, **FAST)
    for group in ("darker", "lighter"):
        expected = preserved[(preserved["grouping"] == "skin_tone") & (preserved["group"] == group)]["skin_tone_accuracy"]
        assert _row(by_group, "skin_tone", group)["own_rate"] == pytest.approx(float(expected.iloc[0]))
