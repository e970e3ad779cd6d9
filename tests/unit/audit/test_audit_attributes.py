"""Representation tables: own-group rate, drift toward the majority, PR and UCPR per grouping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.attributes import (
    CLASSIFIER_UNRELIABLE,
    REPRESENTATION_COLUMNS,
    REPRESENTATION_TEST_COLUMNS,
    VALIDITY_COLUMNS,
    classified_column,
    classifier_accuracy,
    classifier_tables,
    classifier_validity,
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
    pr = tests[(tests["grouping"] == "skin_tone") & (tests["metric"] == "pr")].iloc[0]
    assert pr["p_value"] <= max(1e-4, pr["p_min"])  # as small as PR's test can go (a resampled p has a floor)
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


# --- the classifier's validity, and the claims withheld where it fails ---------------------------------------


def _read_by_classifier(wrong_gender: float, *, seed: int = 0, shift_people: int = 0) -> pd.DataFrame:
    """The 2 x 2 panel of :func:`_panel` (no drift) with labels of the originals too.

    The classifier reads female / darker people's gender wrong with probability ``wrong_gender``
    (originals and outputs alike), everyone else's right; skin tone always right.
    """
    rng = np.random.default_rng(seed)
    frame = _panel(0.0, seed=seed)
    frame["subject"] = frame["subject"] + f"+{shift_people}"
    misread = ((frame["gender"] == "female") & (frame["skin_tone"] == "darker")).to_numpy() & (
        rng.random(len(frame)) < wrong_gender)
    frame[classified_column("gender")] = np.where(misread, "male", frame["gender"])
    frame[classified_column("gender", output=True)] = frame[classified_column("gender")]
    frame[classified_column("skin_tone")] = frame["skin_tone"]
    return frame


def test_validity_is_each_groups_accuracy_with_an_interval_and_a_status():
    frame = _read_by_classifier(0.75)
    validity = classifier_validity(frame, attributes=["gender", "skin_tone"], **FAST)
    assert list(validity.columns) == list(VALIDITY_COLUMNS)
    cell = validity.set_index(["grouping", "group", "attribute"])
    hits = frame[classified_column("gender")] == frame["gender"]
    expected = hits[(frame["gender"] == "female") & (frame["skin_tone"] == "darker")].mean()  # numpy, by hand
    row = cell.loc[("gender x skin_tone", "female / darker", "gender")]
    assert row["accuracy"] == pytest.approx(expected) and expected < 0.5
    assert 0.0 <= row["ci_low"] < row["accuracy"] < row["ci_high"] <= 1.0
    assert row["status"] == CLASSIFIER_UNRELIABLE and row["n_subjects"] == 6
    perfect = cell.loc[("gender x skin_tone", "male / darker", "gender")]
    assert (perfect["accuracy"], perfect["ci_low"], perfect["ci_high"], perfect["status"]) == (1.0, 1.0, 1.0, "valid")
    female = cell.loc[("gender", "female", "gender")]  # half its people are misread 3 times in 4
    assert female["accuracy"] == pytest.approx(hits[frame["gender"] == "female"].mean())
    assert female["status"] == CLASSIFIER_UNRELIABLE
    assert (cell.xs("skin_tone", level="attribute")["status"] == "valid").all()
    lenient = classifier_validity(frame, attributes=["gender", "skin_tone"], min_accuracy=0.0, **FAST)
    assert (lenient["status"] == "valid").all()


def test_a_group_the_classifier_misreads_has_its_representation_claims_withheld_and_no_other():
    frame = _read_by_classifier(0.75)
    tables = classifier_tables(frame, attributes=["gender", "skin_tone"], majority=MAJORITY, seed=0)
    by_group = tables["representation"].set_index(["grouping", "group"])
    withheld = [("gender", "female"), ("gender x skin_tone", "female / darker")]
    for key in withheld:
        assert by_group.loc[key, "evidence"] == CLASSIFIER_UNRELIABLE
        assert by_group.loc[key, ["own_rate", "own_ci_low", "majority_rate", "output_share"]].isna().all()
        assert by_group.loc[key, "true_share"] > 0  # the people's own share is not the classifier's claim
    kept = by_group.drop(index=withheld)
    assert (kept["evidence"] == "sufficient").all() and kept["own_rate"].notna().all()
    # the kept rows are what the classifier says: recomputed here from the frame
    lighter = frame[(frame["gender"] == "female") & (frame["skin_tone"] == "lighter")]
    assert by_group.loc[("gender x skin_tone", "female / lighter"), "own_rate"] == pytest.approx(
        (lighter[classified_column("gender", output=True)] == "female").mean())
    tests = tables["representation_tests"].set_index(["grouping", "metric"])
    for grouping in ("gender", "gender x skin_tone"):  # a gap over groups is as good as its worst-read group
        assert (tests.loc[grouping, "evidence"] == CLASSIFIER_UNRELIABLE).all()
        assert tests.loc[grouping, ["p_value", "difference", "statistic"]].isna().all().all()
    assert (tests.loc["skin_tone", "evidence"] == "sufficient").all() and tests.loc["skin_tone", "p_value"].notna().all()
    flips = tables["attribute_preservation"].set_index(["grouping", "group"])
    assert np.isnan(flips.loc[("gender x skin_tone", "female / darker"), "gender_flip_rate"])
    assert flips.loc[("gender x skin_tone", "female / darker"), "skin_tone_flip_rate"] == 0.0  # skin read right
    assert flips.loc[("gender x skin_tone", "male / darker"), "gender_flip_rate"] == 0.0
    assert set(tables) == {"classifier_accuracy", "classifier_validity", "attribute_preservation", "representation",
                           "representation_tests"}


def test_validity_measured_on_held_out_people_decides_not_the_audited_originals():
    audited = _read_by_classifier(0.0)  # the audited originals are all read right
    held_out = _read_by_classifier(0.9, seed=1, shift_people=1)  # other people: female / darker misread
    validity = classifier_validity(held_out, attributes=["gender", "skin_tone"], **FAST)
    by_group, _ = representation_tables(audited, attributes=["gender", "skin_tone"], majority=MAJORITY,
                                        validity=validity, **FAST)
    assert by_group.set_index(["grouping", "group"]).loc[("gender x skin_tone", "female / darker"), "evidence"] == (
        CLASSIFIER_UNRELIABLE)
    trusted = classifier_validity(audited, attributes=["gender", "skin_tone"], **FAST)
    by_group, _ = representation_tables(_read_by_classifier(0.9), attributes=["gender", "skin_tone"],
                                        majority=MAJORITY, validity=trusted, **FAST)
    assert (by_group["evidence"] == "sufficient").all()
    absent = trusted[trusted["group"] != "female / darker"]  # never checked on that group: not validated
    by_group, _ = representation_tables(audited, attributes=["gender", "skin_tone"], majority=MAJORITY,
                                        validity=absent, **FAST)
    assert by_group.set_index(["grouping", "group"]).loc[("gender x skin_tone", "female / darker"), "evidence"] == (
        CLASSIFIER_UNRELIABLE)


def test_validity_options_are_checked():
    frame = _read_by_classifier(0.0)
    with pytest.raises(ValueError, match=r"min_accuracy must be a number in \[0, 1\].*got 1.5"):
        classifier_validity(frame, attributes=["gender"], min_accuracy=1.5)
    with pytest.raises(ValueError, match=r"min_accuracy must be a number in \[0, 1\].*got True"):
        representation_tables(frame, attributes=["gender"], majority=MAJORITY, min_accuracy=True, **FAST)
    with pytest.raises(ValueError, match="per-image frame has no 'classified_gender' column; classify the originals"):
        classifier_validity(frame.drop(columns=[classified_column("gender")]), attributes=["gender"])
    with pytest.raises(ValueError, match=r"validity must be a classifier_validity table.*without \['status'\]"):
        representation_tables(frame, attributes=["gender"], majority=MAJORITY,
                              validity=pd.DataFrame({"grouping": [], "group": [], "attribute": []}), **FAST)


def test_a_group_read_well_elsewhere_but_misread_among_the_audited_people_is_withheld_too():
    audited = _read_by_classifier(0.75)  # the audited female / darker people: misread 3 times in 4
    held_out = _read_by_classifier(0.0, seed=1, shift_people=1)  # people it never saw: all read right
    tables = classifier_tables(audited, attributes=["gender", "skin_tone"], majority=MAJORITY, held_out=held_out)
    validity = tables["classifier_validity"].set_index(["grouping", "group", "attribute"])
    cell = validity.loc[("gender x skin_tone", "female / darker", "gender")]
    mine = audited[(audited["gender"] == "female") & (audited["skin_tone"] == "darker")]
    assert cell["accuracy"] == 1.0 and cell["n_subjects"] == 6  # held out: every original read right
    assert cell["audited_accuracy"] == pytest.approx((mine[classified_column("gender")] == "female").mean())
    assert cell["status"] == CLASSIFIER_UNRELIABLE
    by_group = tables["representation"].set_index(["grouping", "group"])
    assert by_group.loc[("gender x skin_tone", "female / darker"), "evidence"] == CLASSIFIER_UNRELIABLE
    assert by_group.loc[("gender x skin_tone", "male / darker"), "evidence"] == "sufficient"
    assert validity.loc[("gender x skin_tone", "male / darker", "gender"), "status"] == "valid"
