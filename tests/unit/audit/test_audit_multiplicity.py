"""The run's family of disparity tests: every row together by default, or one primary metric's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.multiplicity import EXPLORATORY, adjust_disparity_family


def holm_by_hand(p):
    """Holm's step-down adjustment written out: sort, multiply by m - i, running maximum, cap at 1."""
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, at in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[at]))
        adjusted[at] = running
    return adjusted


def tables():
    disparities = pd.DataFrame({"grouping": ["gender", "gender", "skin", "skin"],
                                "metric": ["mse_error", "ssim_score", "mse_error", "ssim_score"],
                                "p_value": [0.004, 0.03, 0.01, np.nan], "p_holm": [0.004, 0.03, 0.01, np.nan]})
    skin = pd.DataFrame({"grouping": ["gender", "skin"], "metric": ["ita_shift", "ita_shift"],
                         "p_value": [0.02, 0.2], "p_holm": [0.02, 0.2]})
    return {"disparity_intervals": disparities, "skin_tone_disparities": skin, "other": pd.DataFrame({"x": [1]})}


def test_every_disparity_row_of_the_run_is_one_family():
    adjusted = adjust_disparity_family(tables())
    raw = np.array([0.004, 0.03, 0.01, 0.02, 0.2])  # the five tests; the NaN row is no test
    expected = holm_by_hand(raw)
    got = np.concatenate([adjusted["disparity_intervals"]["p_holm"].to_numpy()[[0, 1, 2]],
                          adjusted["skin_tone_disparities"]["p_holm"].to_numpy()])
    np.testing.assert_allclose(got, expected)
    assert np.isnan(adjusted["disparity_intervals"]["p_holm"].iat[3])
    assert set(adjusted["disparity_intervals"]["family"]) == {"every disparity of the run (5 tests)"}
    assert adjusted["other"].equals(tables()["other"])
    assert "family" not in tables()["disparity_intervals"]  # the input is not changed


def test_a_primary_metric_is_its_own_family_and_the_rest_exploratory():
    adjusted = adjust_disparity_family(tables(), primary_metric="mse_error")["disparity_intervals"]
    np.testing.assert_allclose(adjusted["p_holm"].to_numpy()[[0, 2]], holm_by_hand(np.array([0.004, 0.01])))
    assert adjusted["family"].tolist() == ["the primary metric mse_error (2 tests)", EXPLORATORY,
                                           "the primary metric mse_error (2 tests)", EXPLORATORY]
    assert adjusted["p_holm"].iloc[[1, 3]].isna().all() and adjusted["p_value"].iat[1] == 0.03


def test_an_unknown_primary_metric_names_the_choices():
    with pytest.raises(ValueError, match=r"--primary-metric 'lpips' is not a metric .* ita_shift, mse_error, ssim_score"):
        adjust_disparity_family(tables(), primary_metric="lpips")
