"""A whole audit (``audit_outputs``) carries ΔITA, ΔL* and Δh* from the per-image frame to the group tables.

Originals are solid red faces; the model turns half the people's faces magenta and leaves the
others alone, so every expected number follows from the published CIELAB values of sRGB red
(L* 53.2408, a* 80.0925, b* 67.2032; h* 39.9990) and magenta (L* 60.3242, a* 98.2343,
b* -60.8249; h* 328.2350).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from genfair.audit import SKIN_MEASURES, audit_outputs

RED, MAGENTA = (1.0, 0.0, 0.0), (1.0, 0.0, 1.0)
LIGHTNESS = 60.3242 - 53.2408  # magenta's L* minus red's
HUE = (328.2350 - 360.0) - 39.9990  # -71.764, wrapped into (-180, 180]
ITA = math.degrees(math.atan2(60.3242 - 50, -60.8249)) - math.degrees(math.atan2(53.2408 - 50, 67.2032))


@pytest.fixture(scope="module")
def result():
    n = 24  # 12 people, 2 images each; 6 women ("f", turned magenta) and 6 men ("m", unchanged)
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "subject": [f"s{i // 2}" for i in range(n)],
                          "gender": [("f", "m")[(i // 2) % 2] for i in range(n)]})
    originals = torch.tensor(RED).view(1, 3, 1, 1).expand(n, 3, 8, 8).clone()
    outputs = originals.clone()
    turned = torch.tensor((frame["gender"] == "f").to_numpy())
    outputs[turned] = torch.tensor(MAGENTA).view(3, 1, 1)
    outputs[:, :, 0, 0] = 0.5  # a corner outside the central face mask: errors > 0 (a finite PSNR), skin untouched
    return audit_outputs(originals, outputs, frame, attributes=["gender"])


def test_the_per_image_frame_has_the_three_shifts(result):
    per_image = result.per_image.set_index("gender")
    assert SKIN_MEASURES == ("ita_shift", "lightness_shift", "hue_shift")
    assert set(SKIN_MEASURES) <= set(result.per_image.columns)
    np.testing.assert_allclose(per_image.loc["f", "lightness_shift"], LIGHTNESS, atol=2e-3)
    np.testing.assert_allclose(per_image.loc["f", "hue_shift"], HUE, atol=2e-3)
    np.testing.assert_allclose(per_image.loc["f", "ita_shift"], ITA, atol=2e-3)
    np.testing.assert_allclose(per_image.loc["m", list(SKIN_MEASURES)].to_numpy(), 0.0, atol=1e-4)


def test_the_group_tables_carry_every_measure(result):
    shift = result.tables["skin_tone_shift"].set_index(["grouping", "group"])
    assert {"ita_shift", "lightness_shift", "hue_shift"} <= set(shift.columns)
    assert shift.loc[("gender", "f"), "lightness_shift"] == pytest.approx(LIGHTNESS, abs=2e-3)
    assert shift.loc[("overall", "all"), "hue_shift"] == pytest.approx(HUE / 2, abs=2e-3)

    intervals = result.tables["skin_tone_intervals"]
    assert list(dict.fromkeys(intervals["metric"])) == list(SKIN_MEASURES)
    assert intervals.filter(like="ratio").isna().all().all(), "a ratio of signed shifts means nothing"
    row = intervals.set_index(["metric", "grouping", "group"]).loc[("hue_shift", "gender", "f")]
    assert row["estimate"] == pytest.approx(HUE, abs=2e-3) and row["evidence"] == "sufficient"

    gaps = result.tables["skin_tone_disparities"].set_index(["metric", "grouping"])
    assert set(gaps.index) == {(measure, "gender") for measure in SKIN_MEASURES}
    assert gaps.loc[("lightness_shift", "gender"), "worst_group"] == "f"  # the lightened group is the worst
    assert gaps.loc[("lightness_shift", "gender"), "difference"] == pytest.approx(LIGHTNESS, abs=2e-3)
    assert gaps.loc[("hue_shift", "gender"), "difference"] == pytest.approx(abs(HUE), abs=2e-3)
    assert gaps["family"].str.startswith("every disparity of the run").all()
