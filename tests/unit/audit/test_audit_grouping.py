"""group_table against a direct pandas groupby, disparity_table against hand-computed values."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from genfair.audit import grouping as g

METRICS = ["mse_error", "ssim_score"]


@pytest.fixture
def per_image() -> pd.DataFrame:
    """Ten images of six subjects; the (male, darker) intersection is empty."""
    return pd.DataFrame(
        {
            "path": [f"img{i}.png" for i in range(10)],
            "subject": ["s1", "s1", "s2", "s3", "s3", "s3", "s4", "s5", "s6", "s6"],
            "gender": ["female"] * 6 + ["male"] * 4,
            "skin_tone": ["darker", "darker", "lighter", "darker", "darker", "darker", "lighter"] + ["lighter"] * 3,
            "mse_error": [0.10, 0.30, 0.05, 0.20, 0.40, 0.60, 0.02, 0.04, 0.06, 0.08],
            "ssim_score": [0.70, 0.60, 0.90, 0.50, 0.40, 0.30, 0.95, 0.90, 0.85, 0.80],
        },
        index=pd.Index(range(100, 110)),  # a non-default index, as split_frame keeps
    )


def _rows(table: pd.DataFrame, grouping: str) -> pd.DataFrame:
    return table[table["grouping"] == grouping].set_index("group")


# --- group_table -------------------------------------------------------------------------------


def test_columns_dtypes_and_row_order(per_image):
    table = g.group_table(per_image, attributes=["gender", "skin_tone"], metrics=METRICS)
    assert list(table.columns) == ["grouping", "group", "n_images", "n_subjects", *METRICS]
    assert table[["grouping", "group"]].values.tolist() == [
        ["overall", "all"],
        ["gender", "female"],
        ["gender", "male"],
        ["skin_tone", "darker"],
        ["skin_tone", "lighter"],
        ["gender x skin_tone", "female / darker"],
        ["gender x skin_tone", "female / lighter"],
        ["gender x skin_tone", "male / lighter"],
    ]
    assert table.index.equals(pd.RangeIndex(len(table)))
    assert table["n_images"].dtype == np.int64 and table["n_subjects"].dtype == np.int64
    assert all(table[metric].dtype == np.float64 for metric in METRICS)


def test_overall_row_matches_the_whole_frame(per_image):
    table = g.group_table(per_image, attributes=["gender"], metrics=METRICS)
    overall = table.iloc[0]
    assert (overall["n_images"], overall["n_subjects"]) == (10, 6)
    for metric in METRICS:
        assert overall[metric] == pytest.approx(per_image[metric].mean())


@pytest.mark.parametrize("attribute", ["gender", "skin_tone"])
def test_single_attribute_matches_pandas_groupby(per_image, attribute):
    table = _rows(g.group_table(per_image, attributes=["gender", "skin_tone"], metrics=METRICS), attribute)
    grouped = per_image.groupby(attribute)
    pd.testing.assert_frame_equal(table[METRICS], grouped[METRICS].mean(), check_names=False)
    assert table["n_images"].tolist() == grouped.size().tolist()
    assert table["n_subjects"].tolist() == grouped["subject"].nunique().tolist()


def test_intersection_matches_pandas_groupby_and_skips_empty_cells(per_image):
    table = _rows(g.group_table(per_image, attributes=["gender", "skin_tone"], metrics=METRICS), "gender x skin_tone")
    grouped = per_image.groupby(["gender", "skin_tone"])
    expected = grouped[METRICS].mean()
    expected.index = [" / ".join(key) for key in expected.index]
    pd.testing.assert_frame_equal(table[METRICS], expected, check_names=False)
    assert table["n_images"].tolist() == grouped.size().tolist() == [5, 1, 4]
    assert table["n_subjects"].tolist() == grouped["subject"].nunique().tolist() == [2, 1, 3]
    assert "male / darker" not in table.index


def test_three_attributes_give_one_full_intersection(per_image):
    frame = per_image.assign(age=["young", "old"] * 5)
    table = g.group_table(frame, attributes=["gender", "skin_tone", "age"], metrics=["mse_error"])
    assert table["grouping"].unique().tolist() == ["overall", "gender", "skin_tone", "age", "gender x skin_tone x age"]
    cells = _rows(table, "gender x skin_tone x age")
    expected = frame.groupby(["gender", "skin_tone", "age"])["mse_error"].mean()
    assert cells["mse_error"].tolist() == pytest.approx(expected.tolist())
    assert cells.index[0] == "female / darker / old"


def test_one_attribute_has_no_intersection(per_image):
    table = g.group_table(per_image, attributes=["skin_tone"], metrics=METRICS)
    assert table["grouping"].tolist() == ["overall", "skin_tone", "skin_tone"]


def test_integer_attribute_sorts_by_value_and_labels_with_str(per_image):
    frame = per_image.assign(tone=[10, 2, 2, 10, 1, 1, 2, 10, 1, 2])
    table = _rows(g.group_table(frame, attributes=["tone"], metrics=["mse_error"]), "tone")
    assert table.index.tolist() == ["1", "2", "10"]
    expected = frame.groupby("tone")["mse_error"].mean()
    assert table["mse_error"].tolist() == pytest.approx(expected.tolist())


def test_attribute_names_that_clash_with_fairlearn_columns_work(per_image):
    frame = per_image.rename(columns={"gender": "y_true"})
    table = g.group_table(frame, attributes=["y_true"], metrics=["mse_error"])
    assert _rows(table, "y_true").index.tolist() == ["female", "male"]


def test_infinite_and_nan_values_propagate_into_group_means(per_image):
    frame = per_image.assign(psnr_score=[np.inf] + [20.0] * 9, mse_error=[np.nan] + [0.1] * 9)
    table = _rows(g.group_table(frame, attributes=["gender"], metrics=["psnr_score", "mse_error"]), "gender")
    assert table.loc["female", "psnr_score"] == np.inf and table.loc["male", "psnr_score"] == 20.0
    assert math.isnan(table.loc["female", "mse_error"]) and table.loc["male", "mse_error"] == pytest.approx(0.1)


def test_group_table_leaves_its_input_alone(per_image):
    before = per_image.copy()
    g.group_table(per_image, attributes=["gender", "skin_tone"], metrics=METRICS)
    pd.testing.assert_frame_equal(per_image, before)


def test_rejects_non_frames():
    with pytest.raises(TypeError, match=re.escape(g.NOT_FRAME_MSG)):
        g.group_table({"gender": ["f"]}, attributes=["gender"], metrics=[])


def test_rejects_a_bare_string_for_names(per_image):
    with pytest.raises(ValueError, match=re.escape(g.NAMES_NOT_SEQUENCE_MSG) + r".*\['gender'\]"):
        g.group_table(per_image, attributes="gender", metrics=METRICS)


def test_rejects_repeated_names(per_image):
    with pytest.raises(ValueError, match=re.escape(g.DUPLICATE_NAMES_MSG) + r".*'gender'"):
        g.group_table(per_image, attributes=["gender", "gender"], metrics=METRICS)


def test_rejects_no_attributes(per_image):
    with pytest.raises(ValueError, match=re.escape(g.NO_ATTRIBUTES_MSG)):
        g.group_table(per_image, attributes=[], metrics=METRICS)


def test_rejects_a_column_used_as_attribute_and_metric(per_image):
    with pytest.raises(ValueError, match=re.escape(g.ATTRIBUTE_IS_METRIC_MSG)):
        g.group_table(per_image, attributes=["gender", "mse_error"], metrics=METRICS)


def test_rejects_metric_names_that_are_table_columns(per_image):
    with pytest.raises(ValueError, match=re.escape(g.RESERVED_NAME_MSG)):
        g.group_table(per_image.assign(n_images=1.0), attributes=["gender"], metrics=["n_images"])


@pytest.mark.parametrize(
    ("drop", "attributes", "metrics"),
    [
        ("subject", ["gender"], ["mse_error"]),
        ("gender", ["gender"], ["mse_error"]),
        ("mse_error", ["gender"], ["mse_error"]),
    ],
)
def test_rejects_missing_columns_naming_them(per_image, drop, attributes, metrics):
    pattern = re.escape(f"{g.MISSING_COLUMN_MSG} {drop!r}") + r"; available columns: \['path'"
    with pytest.raises(ValueError, match=pattern):
        g.group_table(per_image.drop(columns=drop), attributes=attributes, metrics=metrics)


def test_rejects_an_empty_frame(per_image):
    with pytest.raises(ValueError, match=re.escape(g.EMPTY_FRAME_MSG)):
        g.group_table(per_image.iloc[:0], attributes=["gender"], metrics=METRICS)


@pytest.mark.parametrize("column", ["gender", "subject"])
def test_rejects_missing_attribute_or_subject_values_naming_the_row(per_image, column):
    frame = per_image.copy()
    frame.loc[103, column] = None
    with pytest.raises(ValueError, match=re.escape(f"{column!r} {g.MISSING_VALUE_MSG} at row 103")):
        g.group_table(frame, attributes=["gender"], metrics=METRICS)


@pytest.mark.parametrize("values", [["x"] * 10, [True, False] * 5])
def test_rejects_non_numeric_metrics(per_image, values):
    with pytest.raises(ValueError, match=re.escape(g.NOT_NUMERIC_MSG) + ".*'bad_error'"):
        g.group_table(per_image.assign(bad_error=values), attributes=["gender"], metrics=["bad_error"])


# --- disparity_table ----------------------------------------------------------------------------


@pytest.fixture
def two_groups() -> pd.DataFrame:
    """Two groups of two images: a (mse .1, .3; ssim .9, .7), b (mse .4, .6; ssim .5, .3)."""
    per_image = pd.DataFrame(
        {
            "subject": ["a1", "a2", "b1", "b2"],
            "group_attr": ["a", "a", "b", "b"],
            "mse_error": [0.1, 0.3, 0.4, 0.6],
            "ssim_score": [0.9, 0.7, 0.5, 0.3],
        }
    )
    return g.group_table(per_image, attributes=["group_attr"], metrics=METRICS)


def test_disparities_hand_computed_for_errors_and_scores(two_groups):
    table = g.disparity_table(two_groups, metrics=METRICS)
    assert list(table.columns) == list(g.DISPARITY_COLUMNS)
    error, score = table.iloc[0], table.iloc[1]
    # mse: a = .2, b = .5, overall .35; worst = b (max), ratio .5 / .2 = 2.5, difference .3
    assert (error["grouping"], error["metric"], error["higher_is_better"]) == ("group_attr", "mse_error", False)
    assert (error["worst_group"], error["best_group"]) == ("b", "a")
    assert [error[k] for k in ("overall", "worst", "best", "ratio", "difference")] == pytest.approx(
        [0.35, 0.5, 0.2, 2.5, 0.3]
    )
    # ssim: a = .8, b = .4, overall .6; worst = b (min), ratio .4 / .8 = .5, difference .4
    assert (score["metric"], score["higher_is_better"]) == ("ssim_score", True)
    assert (score["worst_group"], score["best_group"]) == ("b", "a")
    assert [score[k] for k in ("overall", "worst", "best", "ratio", "difference")] == pytest.approx(
        [0.6, 0.4, 0.8, 0.5, 0.4]
    )


def test_disparities_one_row_per_grouping_and_metric(per_image):
    per_group = g.group_table(per_image, attributes=["gender", "skin_tone"], metrics=METRICS)
    table = g.disparity_table(per_group, metrics=METRICS)
    assert table[["grouping", "metric"]].values.tolist() == [
        [grouping, metric] for grouping in ["gender", "skin_tone", "gender x skin_tone"] for metric in METRICS
    ]
    errors = table[table["metric"] == "mse_error"]
    scores = table[table["metric"] == "ssim_score"]
    assert (errors["ratio"] >= 1).all() and (scores["ratio"] <= 1).all()
    assert table["higher_is_better"].dtype == bool


def test_disparities_skip_nan_groups(two_groups):
    frame = two_groups.copy()
    frame.loc[frame["group"] == "b", "mse_error"] = np.nan
    frame.loc[frame["group"] == "b", "ssim_score"] = np.nan
    frame = pd.concat([frame, frame.iloc[[1]].assign(group="c", mse_error=0.4, ssim_score=0.4)], ignore_index=True)
    table = g.disparity_table(frame, metrics=METRICS).set_index("metric")
    assert table.loc["mse_error", ["worst_group", "best_group"]].tolist() == ["c", "a"]
    assert table.loc["mse_error", "ratio"] == pytest.approx(2.0)
    assert table.loc["ssim_score", ["worst_group", "best_group"]].tolist() == ["c", "a"]
    assert table.loc["ssim_score", "ratio"] == pytest.approx(0.5)


def test_disparities_of_an_all_nan_grouping_are_nan(two_groups):
    frame = two_groups.copy()
    frame.loc[frame["grouping"] != "overall", "mse_error"] = np.nan
    row = g.disparity_table(frame, metrics=["mse_error"]).iloc[0]
    assert pd.isna(row["worst_group"]) and pd.isna(row["best_group"])
    assert all(math.isnan(row[k]) for k in ("worst", "best", "ratio", "difference"))


def test_disparities_ties_equal_and_zero_best(two_groups):
    frame = two_groups.copy()
    frame["mse_error"] = [0.1, 0.0, 0.0]  # equal zeros: ratio 1, difference 0
    frame["mae_error"] = [0.1, 0.0, 0.2]  # best 0, worst > 0: ratio inf
    frame["odd_score"] = [0.1, -0.2, 0.0]  # best 0, worst < 0: ratio -inf
    table = g.disparity_table(frame, metrics=["mse_error", "mae_error", "odd_score"]).set_index("metric")
    assert table.loc["mse_error", ["worst_group", "best_group"]].tolist() == ["a", "a"]  # ties: first group
    assert (table.loc["mse_error", "ratio"], table.loc["mse_error", "difference"]) == (1.0, 0.0)
    assert table.loc["mae_error", "ratio"] == math.inf
    assert table.loc["mae_error", "difference"] == pytest.approx(0.2)
    assert table.loc["odd_score", ["worst_group", "best_group"]].tolist() == ["a", "b"]
    assert table.loc["odd_score", "ratio"] == -math.inf


def test_disparities_of_two_infinite_scores_are_equal(two_groups):
    frame = two_groups.assign(psnr_score=[np.inf, np.inf, np.inf])
    row = g.disparity_table(frame, metrics=["psnr_score"]).iloc[0]
    assert (row["ratio"], row["difference"]) == (1.0, 0.0)


def test_disparities_use_the_suffix_of_unregistered_metrics(two_groups):
    frame = two_groups.assign(custom_score=two_groups["mse_error"], custom_loss=two_groups["mse_error"])
    table = g.disparity_table(frame, metrics=["custom_score", "custom_loss"]).set_index("metric")
    assert table.loc["custom_score", ["higher_is_better", "worst_group"]].tolist() == [True, "a"]
    assert table.loc["custom_loss", ["higher_is_better", "worst_group"]].tolist() == [False, "b"]


def test_disparities_reject_metrics_of_unknown_direction(two_groups):
    with pytest.raises(ValueError, match=re.escape(f"{g.UNKNOWN_DIRECTION_MSG} 'quality'")):
        g.disparity_table(two_groups.assign(quality=1.0), metrics=["quality"])


def test_disparities_reject_a_table_without_overall(two_groups):
    with pytest.raises(ValueError, match=re.escape(g.NO_OVERALL_MSG)):
        g.disparity_table(two_groups.iloc[1:], metrics=METRICS)


@pytest.mark.parametrize("drop", ["grouping", "group", "ssim_score"])
def test_disparities_reject_missing_columns(two_groups, drop):
    with pytest.raises(ValueError, match=re.escape(f"{g.MISSING_COLUMN_MSG} {drop!r}")):
        g.disparity_table(two_groups.drop(columns=drop), metrics=METRICS)


def test_disparities_reject_non_frames_and_bare_strings(two_groups):
    with pytest.raises(TypeError, match=re.escape(g.NOT_FRAME_MSG)):
        g.disparity_table(two_groups.to_dict(), metrics=METRICS)
    with pytest.raises(ValueError, match=re.escape(g.NAMES_NOT_SEQUENCE_MSG)):
        g.disparity_table(two_groups, metrics="mse_error")


def test_groups_with_too_few_people_are_left_out_of_worst_and_best_and_named():
    import numpy as np

    from genfair.audit import interval_tables
    from genfair.audit.result import summarize

    rng = np.random.default_rng(0)
    people = {"a": 6, "b": 6, "c": 2}  # c: two people, with by far the highest error
    rows = [{"path": f"{g}{i}_{k}.png", "subject": f"{g}{i}", "group": g,
             "mse_error": (0.9 if g == "c" else 0.1 + 0.05 * (g == "b")) + rng.normal(0, 0.01)}
            for g, n in people.items() for i in range(n) for k in range(3)]
    per_image = pd.DataFrame(rows)
    summary = summarize(per_image, attributes=["group"], metrics=["mse_error"])
    row = summary.disparities.iloc[0]
    assert (row["worst_group"], row["best_group"]) == ("b", "a")
    assert row["left_out"] == "c (2)"
    means = per_image.groupby("group")["mse_error"].mean()
    assert row["ratio"] == pytest.approx(means["b"] / means["a"])
    # the intervals' engine compares the same two groups
    _, disparities = interval_tables(per_image, attributes=["group"], metrics=["mse_error"], n_resamples=200,
                                     n_permutations=99)
    assert (disparities.iloc[0]["worst_group"], disparities.iloc[0]["best_group"]) == ("b", "a")
    assert disparities.iloc[0]["ratio"] == pytest.approx(row["ratio"])
    # every group counted when asked: then c is the worst
    assert g.disparity_table(summary.per_group, metrics=["mse_error"]).iloc[0]["worst_group"] == "c"


def test_a_grouping_with_one_group_of_enough_people_has_no_worst_or_best():
    per_group = pd.DataFrame({"grouping": ["overall", "g", "g"], "group": ["all", "a", "b"], "n_subjects": [7, 6, 1],
                              "mse_error": [0.2, 0.1, 0.9]})
    row = g.disparity_table(per_group, metrics=["mse_error"], min_subjects=5).iloc[0]
    assert pd.isna(row["worst_group"]) and np.isnan(row["ratio"]) and row["left_out"] == "b (1)"


def test_group_labels_join_each_row_as_a_row_wise_join_would() -> None:
    from genfair.audit.grouping import group_labels

    frame = pd.DataFrame({"gender": ["female", "male", "male"], "skin": [1, 2, 2], "age": ["20s", "30s", "40s"]})
    expected = [" / ".join(str(value) for value in row) for row in frame.itertuples(index=False)]
    assert group_labels(frame, ["gender", "skin", "age"]).tolist() == expected
    assert group_labels(frame, ["skin"]).tolist() == ["1", "2", "2"]
    with pytest.raises(ValueError, match="attributes must name at least one column"):
        group_labels(frame, [])
