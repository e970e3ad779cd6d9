"""The classifier's own errors taken out: label flips (attribute preservation) and CLEAM-corrected representation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.attributes import classified_column, representation_tables
from genfair.audit.label_noise import MIN_ACCURACY, corrected_representation, label_flips


def biased_classifier(true: np.ndarray, rng: np.random.Generator, confusion: np.ndarray) -> np.ndarray:
    """Labels drawn from ``confusion[true]`` (rows: true group, columns: label)."""
    cumulative = confusion.cumsum(axis=1)[true]
    return (rng.random(true.size)[:, None] > cumulative).sum(axis=1)


CONFUSION = np.array([[0.6, 0.4], [0.1, 0.9]])  # group 0 read as 1 four times in ten


def test_an_identity_model_flips_nothing_however_wrong_the_classifier_is():
    rng = np.random.default_rng(0)
    true = np.repeat([0, 1], 50)
    seen = biased_classifier(true, rng, CONFUSION)
    frame = pd.DataFrame({"subject": np.arange(100).astype(str), "gender": np.where(true == 0, "f", "m"),
                          "classified_gender": np.where(seen == 0, "f", "m")})
    frame["classified_gender_output"] = frame["classified_gender"]  # the output is the original
    flips = label_flips(frame, attributes=["gender"], original=["classified_gender"],
                        output=["classified_gender_output"])
    assert (flips["gender_flip_rate"] == 0).all()
    # against the true labels the same model looks like it erases women: the classifier's error, not the model's
    wrong = (frame["classified_gender_output"] != frame["gender"])[true == 0].mean()
    assert wrong > 0.25


def test_corrected_shares_recover_the_outputs_true_groups():
    rng = np.random.default_rng(1)
    people = 4000
    true = np.repeat([0, 1], people // 2)
    seen = biased_classifier(true, rng, CONFUSION)
    # a model that turns a quarter of group 0's outputs into group-1 faces
    output_truth = np.where((true == 0) & (rng.random(true.size) < 0.25), 1, true)
    output_labels = biased_classifier(output_truth, rng, CONFUSION)
    found = corrected_representation(true, seen, output_labels, np.arange(true.size), 2, n_resamples=0,
                                     min_accuracy=0.5)  # the algebra holds from 0.5; the audit asks for more
    expected_share = np.bincount(output_truth, minlength=2) / true.size
    np.testing.assert_allclose(found["share"], expected_share, atol=0.03)
    assert found["own"][0] == pytest.approx(0.75, abs=0.05) and found["own"][1] == pytest.approx(1.0, abs=0.05)
    naive_own = (output_labels[true == 0] == 0).mean()
    assert abs(naive_own - 0.75) > 0.25  # without the correction the own-group rate is off by the classifier's error


def test_corrected_intervals_resample_people_and_cover_the_truth():
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(60), 5)  # 60 people, 5 photos each
    true = (subjects >= 30).astype(int)
    seen = biased_classifier(true, rng, CONFUSION)
    output_labels = biased_classifier(true, rng, CONFUSION)  # outputs keep everyone's look
    found = corrected_representation(true, seen, output_labels, subjects, 2, n_resamples=300, seed=0, min_accuracy=0.5)
    for group in (0, 1):
        assert found["own_low"][group] <= 1.0 <= found["own_high"][group] + 1e-9
        assert found["own_low"][group] < found["own"][group] <= found["own_high"][group] + 1e-9
    assert found["share_low"][0] <= 0.5 <= found["share_high"][0]


def test_the_representation_table_carries_the_corrected_columns():
    rng = np.random.default_rng(3)
    subjects = np.repeat(np.arange(40), 3)
    true = (subjects >= 20).astype(int)
    seen, output_labels = biased_classifier(true, rng, CONFUSION), biased_classifier(true, rng, CONFUSION)
    names = np.array(["f", "m"])
    frame = pd.DataFrame({"subject": subjects.astype(str), "gender": names[true],
                          classified_column("gender"): names[seen],
                          classified_column("gender", output=True): names[output_labels]})
    by_group, _ = representation_tables(frame, attributes=["gender"], majority={"gender": "m"}, n_resamples=100,
                                        min_accuracy=0.5,
                                        min_subjects=5)
    row = by_group.set_index("group").loc["f"]
    assert row["own_rate"] < 0.8 and row["own_corrected"] == pytest.approx(1.0, abs=0.2)
    assert row["own_corrected_ci_low"] <= row["own_corrected"] <= row["own_corrected_ci_high"]
    without = frame.drop(columns=[classified_column("gender")])
    by_group, _ = representation_tables(without, attributes=["gender"], majority={"gender": "m"}, n_resamples=50)
    assert by_group["own_corrected"].isna().all()  # no labels of the originals: no correction


def test_a_classifier_that_misreads_a_group_more_often_than_not_gives_no_correction():
    true = np.repeat([0, 1], 10)
    seen = np.where(true == 0, np.tile([0, 1, 1, 1, 1], 4), 1)  # group 0 read right 1 time in 5
    found = corrected_representation(true, seen, seen, np.arange(20), 2, n_resamples=20)
    assert all(np.isnan(found[key]).all() for key in ("share", "own", "own_low", "share_high"))


def test_one_threshold_withholds_both_the_raw_rates_and_the_correction_by_default():
    assert MIN_ACCURACY == 0.8
    rng = np.random.default_rng(3)
    subjects = np.repeat(np.arange(40), 3)
    true = (subjects >= 20).astype(int)
    seen = biased_classifier(true, rng, CONFUSION)  # group 0 read right about 6 times in 10
    found = corrected_representation(true, seen, seen, subjects, 2, n_resamples=0)
    assert np.isnan(found["own"]).all() and np.isnan(found["share"]).all()
    names = np.array(["f", "m"])
    frame = pd.DataFrame({"subject": subjects.astype(str), "gender": names[true],
                          classified_column("gender"): names[seen], classified_column("gender", output=True): names[seen]})
    by_group, _ = representation_tables(frame, attributes=["gender"], majority={"gender": "m"}, n_resamples=50)
    row = by_group.set_index("group").loc["f"]
    assert row["evidence"] == "classifier unreliable" and np.isnan(row["own_rate"]) and np.isnan(row["own_corrected"])
