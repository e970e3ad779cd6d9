"""Numeric attributes: bins by edges or quantiles of the people, the refusal of unbinned numbers,
and the blank-value rules (--missing), through load_manifest as a user calls it."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from genfair.datasets import ManifestError, load_manifest, parse_bins
from genfair.datasets.binning import Bins, bin_column, suggest_bins


def people_rows(ages, *, images=2, blank=()):
    """Rows of one person per age (``images`` photos each); ages in ``blank`` positions are written blank."""
    return [
        {"path": f"img/p{i}_{n}.png", "subject": f"p{i}", "gender": "female" if i % 2 else "male",
         "age": "" if i in blank else str(age)}
        for i, age in enumerate(ages) for n in range(images)
    ]


AGES = [18, 19, 21, 24, 25, 29, 30, 33, 41, 44, 45, 52, 60, 64, 65]


# -- parsing and labels ---------------------------------------------------------------------
def test_parse_bins_reads_edges_and_quantiles():
    assert parse_bins("age", "18,30,45,65") == Bins("age", edges=(18.0, 30.0, 45.0, 65.0))
    assert parse_bins("age", "quantiles:4") == Bins("age", quantiles=4)
    assert parse_bins("age", [0, 10.5]).spec == "age=0,10.5"


@pytest.mark.parametrize("spec, problem", [
    ("18,x", "expected edges or quantiles:K"),
    ("30,18", "strictly increasing"),
    ("18", "at least two"),
    ("quantiles:1", "makes one group"),
    ("18,18,30", "strictly increasing"),
])
def test_bad_bins_are_one_line_with_an_example(spec, problem):
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        parse_bins("age", spec)
    message = str(caught.value)
    assert "\n" not in message and ("fix: e.g." in message or "fix: use" in message)


def test_whole_number_bins_are_closed_on_the_left_and_the_last_holds_its_edge():
    numbers = np.array([18, 29, 30, 44, 45, 65], dtype=float)
    labels, edges = bin_column(numbers, np.arange(6), Bins("age", edges=(18, 30, 45, 65)))
    assert labels.tolist() == ["age 18-29", "age 18-29", "age 30-44", "age 30-44", "age 45-65", "age 45-65"]
    assert edges == (18.0, 30.0, 45.0, 65.0)


def test_fractional_values_get_interval_labels():
    labels, _ = bin_column(np.array([18.5, 24.9, 25.0, 30.0]), np.arange(4), Bins("bmi", edges=(18.5, 25, 30)))
    assert labels.tolist() == ["bmi [18.5, 25)", "bmi [18.5, 25)", "bmi [25, 30]", "bmi [25, 30]"]


def test_a_value_outside_the_edges_is_an_error():
    with pytest.raises(ValueError, match=r"value 70 is above the last edge of age=18,30 \(1 value\(s\) outside 18..30\)"):
        bin_column(np.array([20.0, 70.0]), np.arange(2), Bins("age", edges=(18, 30)))


def test_quantiles_count_each_person_once():
    # one person of 80 with 50 photos must not pull the edges: quantiles are over people
    ages = np.array([20.0] * 2 + [30.0] * 2 + [40.0] * 2 + [80.0] * 50)
    subjects = np.array(["a"] * 2 + ["b"] * 2 + ["c"] * 2 + ["d"] * 50)
    labels, edges = bin_column(ages, subjects, Bins("age", quantiles=2))
    person_ages = np.array([20.0, 30.0, 40.0, 80.0])
    expected = np.quantile(person_ages, [0.0, 0.5, 1.0], method="inverted_cdf")
    assert edges == tuple(expected)  # 20, 30, 80: the middle edge is the median person's age
    people = pd.Series(labels).groupby(subjects).first()
    assert people.value_counts().to_dict() == {"age 30-80": 3, "age 20-29": 1}


def test_quantile_edges_that_coincide_merge():
    labels, edges = bin_column(np.array([30.0] * 9 + [40.0]), np.arange(10), Bins("age", quantiles=4))
    assert edges == (30.0, 40.0)
    assert set(labels) == {"age 30-40"}


def test_suggested_bins_are_the_quartiles_of_the_people():
    numbers = np.repeat(np.array(AGES, dtype=float), 3)
    subjects = np.repeat(np.arange(len(AGES)), 3)
    q = np.quantile(AGES, [0.25, 0.5, 0.75])
    assert suggest_bins("age", numbers, subjects) == f"age=18,{round(q[0])},{round(q[1])},{round(q[2])},65"


# -- through load_manifest ------------------------------------------------------------------
def test_unbinned_numeric_attribute_with_many_values_is_refused_with_a_bins_line(make_manifest):
    path = make_manifest(people_rows(AGES))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, attributes=["gender", "age"], images="skip")
    message = str(caught.value)
    assert message.startswith(f"{path}: column 'age': numeric attribute with many values (15 distinct numbers from "
                              f"18 to 65")
    suggestion = suggest_bins("age", np.array(AGES, dtype=float), np.arange(len(AGES)))
    assert f"fix: bin it, e.g. --bins {suggestion} (its quartiles over subjects)" in message
    assert "\n" not in message
    # the suggested line works as given
    manifest = load_manifest(path, attributes=["gender", "age"], images="skip",
                             bins={"age": suggestion.split("=", 1)[1]})
    assert manifest.frame["age"].str.startswith("age ").all()


def test_few_numbers_and_words_stay_categories(make_manifest):
    path = make_manifest(people_rows([1, 2, 3, 1, 2, 3]))
    manifest = load_manifest(path, attributes=["gender", "age"], images="skip")
    assert manifest.attribute_classes["age"] == ("1", "2", "3")
    assert manifest.bins == {} and manifest.notes == ()


def test_binned_manifest_has_interval_groups_edges_and_a_note(make_manifest):
    path = make_manifest(people_rows(AGES))
    manifest = load_manifest(path, attributes=["gender", "age"], images="skip", bins={"age": "18,30,45,65"})
    assert manifest.attribute_classes["age"] == ("age 18-29", "age 30-44", "age 45-65")
    per_person = manifest.frame.drop_duplicates("subject").set_index("subject")["age"]
    assert per_person["p5"] == "age 18-29" and per_person["p6"] == "age 30-44" and per_person["p14"] == "age 45-65"
    assert manifest.bins == {"age": (18.0, 30.0, 45.0, 65.0)}
    assert manifest.notes == ("age binned by --bins age=18,30,45,65 into age 18-29, age 30-44, age 45-65",)


def test_a_value_outside_the_bins_names_the_row_and_wider_edges(make_manifest):
    path = make_manifest(people_rows(AGES))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, attributes=["gender", "age"], images="skip", bins={"age": "20,30,60"})
    assert str(caught.value) == (
        f"{path}: data row 1 (line 2), column 'age': value outside the bins: '18' (--bins age=20,30,60 covers 20 "
        f"to 60); 7 more rows like this; fix: add edges that cover every value, e.g. --bins age=18,20,30,60,65"
    )


def test_a_word_in_a_binned_column_names_the_row(make_manifest):
    rows = people_rows(AGES)
    rows[6]["age"] = "thirty"
    path = make_manifest(rows)
    with pytest.raises(ManifestError, match=r"data row 7 \(line 8\), column 'age': value to bin is not a number "
                                            r"'thirty' \(--bins age=quantiles:3\)"):
        load_manifest(path, attributes=["gender", "age"], images="skip", bins={"age": "quantiles:3"})


def test_bins_for_a_column_that_is_not_an_attribute_say_how_to_add_it(make_manifest):
    path = make_manifest(people_rows(AGES))
    with pytest.raises(ManifestError, match=r"bins for a column that is not an attribute: age=18,65 .*fix: add 'age' "
                                            r"to the attributes \(audit run --attributes gender,age\)"):
        load_manifest(path, attributes=["gender"], images="skip", bins={"age": "18,65"})


# -- blank values -----------------------------------------------------------------------------
def test_missing_error_is_the_default_and_names_the_ways_out(make_manifest):
    path = make_manifest(people_rows(AGES, blank=(3,)))
    with pytest.raises(ManifestError, match=r"data row 7 \(line 8\), column 'age': blank value ''; 1 more row like "
                                            r"this; fix: .*--missing drop.*--missing group"):
        load_manifest(path, attributes=["gender", "age"], images="skip", bins={"age": "quantiles:2"})


def test_missing_drop_leaves_the_rows_out_and_says_how_many(make_manifest):
    path = make_manifest(people_rows(AGES, blank=(3, 7)))
    manifest = load_manifest(path, attributes=["gender", "age"], images="skip", missing="drop",
                             bins={"age": "18,30,45,65"})
    assert len(manifest.frame) == 2 * (len(AGES) - 2)
    assert not manifest.frame["subject"].isin(["p3", "p7"]).any()
    assert manifest.frame.index.equals(pd.RangeIndex(len(manifest.frame)))
    assert manifest.notes[0] == "left out 4 image(s) of 2 subject(s) with a blank age (--missing drop)"


def test_rows_are_named_as_in_the_file_after_a_drop(make_manifest):
    rows = people_rows(AGES, blank=(0,))
    rows[9]["age"] = "99"  # data row 10 of the file, row 8 of what is kept
    path = make_manifest(rows)
    with pytest.raises(ManifestError, match=r"data row 10 \(line 11\), column 'age': value outside the bins: '99'"):
        load_manifest(path, attributes=["gender", "age"], images="skip", missing="drop", bins={"age": "18,65"})
    rows[9]["age"] = str(AGES[4])
    rows[11]["gender"] = "male"  # p5's second photo: a conflict, named at its file row
    path = make_manifest(rows)
    with pytest.raises(ManifestError, match=r"data row 12 \(line 13\), column 'gender': subject has two values.* "
                                            r"at data row 11"):
        load_manifest(path, attributes=["gender", "age"], images="skip", missing="drop", bins={"age": "18,65"})
    manifest = load_manifest(make_manifest(people_rows(AGES, blank=(0,))), attributes=["gender", "age"],
                             images="skip", missing="drop", bins={"age": "18,65"})
    assert manifest.data_row(0) == 3  # the first kept row is the file's third data row


def test_missing_drop_of_every_row_is_an_error(make_manifest):
    path = make_manifest(people_rows([20, 30], blank=(0, 1)))
    with pytest.raises(ManifestError, match=r"every row has a blank sensitive value \(age\), so --missing drop "
                                            r"leaves nothing; fix:"):
        load_manifest(path, attributes=["gender", "age"], images="skip", missing="drop")


def test_missing_group_makes_an_explicit_unknown_group(make_manifest):
    path = make_manifest(people_rows(AGES, blank=(3,)))
    manifest = load_manifest(path, attributes=["gender", "age"], images="skip", missing="group",
                             bins={"age": "18,30,45,65"})
    assert manifest.attribute_classes["age"] == ("age 18-29", "age 30-44", "age 45-65", "unknown")
    assert (manifest.frame.loc[manifest.frame["subject"] == "p3", "age"] == "unknown").all()
    assert "2 image(s) of 1 subject(s) with a blank age form the group age='unknown' (--missing group)" in manifest.notes


def test_missing_group_on_a_skin_tone_scale_keeps_the_scale_check(make_manifest):
    rows = [{**row, "fitzpatrick": "" if row["subject"] == "p1" else "03"} for row in people_rows([1, 2, 3])]
    manifest = load_manifest(make_manifest(rows), attributes=["fitzpatrick"], images="skip", missing="group")
    assert manifest.attribute_classes["fitzpatrick"] == ("3", "unknown")
    rows[0]["fitzpatrick"] = "III"
    with pytest.raises(ManifestError, match="value is not on the skin-tone scale 'III'"):
        load_manifest(make_manifest(rows), attributes=["fitzpatrick"], images="skip", missing="group")


def test_bad_missing_rule_names_the_choices(make_manifest):
    with pytest.raises(ValueError, match=r"missing must be one of error, drop, group \(--missing\), got 'skip'"):
        load_manifest(make_manifest(), missing="skip")
