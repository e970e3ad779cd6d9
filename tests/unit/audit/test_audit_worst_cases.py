"""Worst cases per group and measure, checked against picks worked out by hand and a plain loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit import worst_cases as wc
from genfair.audit.worst_cases import WORST_CASE_COLUMNS, measure_statistics, worst_cases


def _frame() -> pd.DataFrame:
    """Two genders x two tones; values chosen so the picks can be read off by eye."""
    return pd.DataFrame({
        "path": ["f1.png", "f2.png", "f3.png", "f4.png", "m1.png", "m2.png", "m3.png", "m4.png"],
        "subject": ["fa", "fa", "fb", "fc", "ma", "mb", "mb", "mc"],
        "gender": ["f", "f", "f", "f", "m", "m", "m", "m"],
        "tone": ["dark", "dark", "dark", "light", "dark", "light", "light", "light"],
        "mse_error": [0.10, 0.30, 0.20, 0.05, 0.40, 0.01, 0.03, 0.02],
        "ita_shift": [2.0, -5.0, np.nan, 1.0, -0.5, 3.0, -3.0, 0.1],
        "psnr_score": [10.0] * 8,
    }, index=[10, 11, 12, 13, 14, 15, 16, 17])


def test_picks_the_largest_magnitudes_per_group_worked_by_hand() -> None:
    picked = worst_cases(_frame(), attributes=["gender", "tone"], k=2)

    assert list(picked.columns) == [*WORST_CASE_COLUMNS, "path", "subject", "gender", "tone"]
    assert set(picked["grouping"]) == {"gender x tone"}
    got = [tuple(row) for row in picked[["group", "measure", "rank", "path"]].itertuples(index=False)]
    assert got == [
        ("f / dark", "mse_error", 1, "f2.png"), ("f / dark", "mse_error", 2, "f3.png"),
        ("f / dark", "ita_shift", 1, "f2.png"), ("f / dark", "ita_shift", 2, "f1.png"),  # f3's NaN is never picked
        ("f / light", "mse_error", 1, "f4.png"), ("f / light", "ita_shift", 1, "f4.png"),
        ("m / dark", "mse_error", 1, "m1.png"), ("m / dark", "ita_shift", 1, "m1.png"),
        # |3.0| and |-3.0| tie: path breaks it (m2 before m3)
        ("m / light", "mse_error", 1, "m3.png"), ("m / light", "mse_error", 2, "m4.png"),
        ("m / light", "ita_shift", 1, "m2.png"), ("m / light", "ita_shift", 2, "m3.png"),
    ]
    assert picked.loc[picked["path"] == "f2.png", "value"].tolist() == [0.30, -5.0]  # the signed value
    assert list(picked.index[:2]) == [11, 12]  # the input's index labels


def test_ties_do_not_depend_on_row_order_and_match_a_plain_loop() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "path": [f"{i:02d}.png" for i in range(40)],
        "subject": [f"s{i // 2}" for i in range(40)],
        "group": rng.choice(["a", "b", "c"], size=40),
        "lightness_shift": rng.choice([-2.0, -1.0, 1.0, 2.0, np.nan], size=40),  # many ties
    })
    picked = worst_cases(frame, attributes=["group"], k=3)
    shuffled = worst_cases(frame.sample(frac=1.0, random_state=1), attributes=["group"], k=3)
    pd.testing.assert_frame_equal(picked, shuffled)

    expected = []
    for group in sorted(frame["group"].unique()):
        rows = [(abs(v), p) for v, p, g in zip(frame["lightness_shift"], frame["path"], frame["group"], strict=True)
                if g == group and not np.isnan(v)]
        expected += [(group, p) for _, p in sorted(rows, key=lambda r: (-r[0], r[1]))[:3]]
    assert list(zip(picked["group"], picked["path"], strict=True)) == expected


def test_default_measures_and_groupings() -> None:
    frame = _frame()
    default = worst_cases(frame, attributes=["gender", "tone"])
    assert list(dict.fromkeys(default["measure"])) == ["mse_error", "ita_shift"]  # no identity_drift, no scores
    by_gender = worst_cases(frame, attributes=["gender", "tone"], measures=["mse_error"], k=1,
                            groupings=[["gender"], ["gender", "tone"]])
    assert by_gender[by_gender["grouping"] == "gender"]["path"].tolist() == ["f2.png", "m1.png"]
    assert by_gender["grouping"].tolist()[:2] == ["gender", "gender"]
    empty = worst_cases(frame.drop(columns=["mse_error", "ita_shift"]), attributes=["gender"])
    assert empty.empty and list(empty.columns[:5]) == list(WORST_CASE_COLUMNS)


@pytest.mark.parametrize(("change", "kwargs", "error", "match"), [
    (lambda f: f.to_dict(), {}, TypeError, "per_image must be a pandas DataFrame, got dict"),
    (lambda f: f, {"k": 0}, ValueError, "k must be a positive whole number of images, got 0"),
    (lambda f: f, {"k": True}, ValueError, "k must be a positive whole number"),
    (lambda f: f, {"attributes": []}, ValueError, "attributes must name at least one column"),
    (lambda f: f, {"measures": []}, ValueError, "measures must name at least one per-image column"),
    (lambda f: f, {"measures": ["identity_drift"]}, ValueError, r"per_image lacks column\(s\) \['identity_drift'\]"),
    (lambda f: f.assign(mse_error="bad"), {}, ValueError, "'mse_error' must be numeric to rank its worst cases"),
    (lambda f: f.assign(tone=[None] + ["dark"] * 7), {}, ValueError,
     r"'tone' has missing values: every image needs a group \(row 10\)"),
])
def test_bad_input_is_refused(change, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        worst_cases(change(_frame()), **{"attributes": ["gender", "tone"], **kwargs})


def test_measure_statistics_finds_the_interval_table_of_each_measure() -> None:
    row = {"grouping": "tone", "group": "dark", "n_subjects": 3, "estimate": 1.0, "ci_low": 0.5, "ci_high": 1.5}
    tables = {
        "group_intervals": pd.DataFrame([{**row, "metric": "mse_error"}]),
        "skin_tone_intervals": pd.DataFrame([{**row, "metric": "ita_shift", "estimate": 4.0}]),
        "disparity_intervals": pd.DataFrame([{"grouping": "tone", "metric": "mse_error", "ratio": 2.0}]),
    }
    ita = measure_statistics(tables, "ita_shift")
    assert ita[["estimate", "table"]].values.tolist() == [[4.0, "skin_tone_intervals"]]
    assert measure_statistics(tables, "mse_error")["table"].tolist() == ["group_intervals"]
    assert measure_statistics(tables, "identity_drift").empty


def test_a_stream_that_skips_batches_no_row_may_enter_picks_what_the_whole_frame_does() -> None:
    rng = np.random.default_rng(7)
    n = 3200
    frame = pd.DataFrame({
        "path": [f"img/{i:04d}.png" for i in rng.permutation(n)],
        "subject": [f"s{i // 5}" for i in range(n)],
        "gender": rng.choice(["female", "male"], n), "tone": rng.choice(["dark", "light", "mid"], n),
        # rounded to a few values: ties the path must break; a few NaN, never picked
        "mse_error": np.round(rng.gamma(2.0, 0.01, n), 3), "ita_shift": np.round(rng.normal(0, 3, n), 0),
    })
    frame.loc[rng.choice(n, 30, replace=False), "ita_shift"] = np.nan
    measures, attributes = ["mse_error", "ita_shift"], ["gender"]
    kept, skipped = None, 0
    for start in range(0, n, 32):
        batch = frame.iloc[start:start + 32]
        if kept is not None and not wc.may_enter_worst_cases(kept, batch, attributes=attributes, measures=measures,
                                                             k=3):
            skipped += 1
            continue
        union = batch if kept is None else pd.concat([kept, batch]).sort_index()  # as the run does
        kept = union.loc[sorted(set(wc.worst_cases(union, attributes=attributes, measures=measures, k=3).index))]
    whole = wc.worst_cases(frame, attributes=attributes, measures=measures, k=3)
    pd.testing.assert_frame_equal(wc.worst_cases(kept, attributes=attributes, measures=measures, k=3), whole)
    assert skipped > 50, f"later batches rarely hold a new worst case: {skipped} of 100 skipped"
    # a tie with the k-th kept magnitude may enter (the path decides), a group never seen always may
    tied = kept[kept["gender"] == "female"].nlargest(3, "mse_error").iloc[[-1]]
    assert wc.may_enter_worst_cases(kept, tied.assign(path="img/0000-first.png"), attributes=attributes,
                                    measures=["mse_error"], k=3)
    other = batch.iloc[:1].assign(gender="new")
    assert wc.may_enter_worst_cases(kept, other, attributes=attributes, measures=measures, k=3)
