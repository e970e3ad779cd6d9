"""sRGB -> CIELAB against hand-computed references, ITA by hand, the default face mask, ITA shift."""

from __future__ import annotations

import math
import re

import pytest
import torch

from genfair.audit import metrics as m
from genfair.audit import skin


def _pixels(*rgb, dtype=torch.float64):
    """One 1x1 image per RGB triple: (N, 3, 1, 1)."""
    return torch.tensor(rgb, dtype=dtype).view(len(rgb), 3, 1, 1)


def _solid(rgb, size=8, n=1):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(n, 3, size, size).clone()


# --- srgb_to_lab ---------------------------------------------------------------------------------------


def test_white_and_black_are_the_ends_of_the_lightness_axis():
    lab = skin.srgb_to_lab(_pixels((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))).flatten(1)
    torch.testing.assert_close(lab[0], torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(lab[1], torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_mid_grey_matches_the_hand_computed_lightness():
    # sRGB 0.5 -> linear ((0.5 + 0.055) / 1.055) ** 2.4 = 0.21404 = Y; L* = 116 * Y ** (1/3) - 16.
    y = ((0.5 + 0.055) / 1.055) ** 2.4
    expected = 116.0 * y ** (1.0 / 3.0) - 16.0
    lab = skin.srgb_to_lab(_pixels((0.5, 0.5, 0.5))).flatten()
    assert expected == pytest.approx(53.389, abs=1e-3)
    torch.testing.assert_close(lab, torch.tensor([expected, 0.0, 0.0], dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    ("rgb", "expected"),
    [
        ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),  # pure red
        ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),  # pure green
        ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),  # pure blue
    ],
)
def test_primaries_match_published_cielab_values(rgb, expected):
    lab = skin.srgb_to_lab(_pixels(rgb)).flatten()
    torch.testing.assert_close(lab, torch.tensor(expected, dtype=torch.float64), atol=2e-3, rtol=0)


def test_dark_values_use_the_linear_segments():
    # 0.02 sRGB is on the linear part of the transfer function (<= 0.04045): Y = 0.02 / 12.92,
    # which is below (6/29)^3, so L* = 116 * (Y / (3 * (6/29)^2) + 4/29) - 16 = 903.3 * Y.
    y = 0.02 / 12.92
    lab = skin.srgb_to_lab(_pixels((0.02, 0.02, 0.02))).flatten()
    assert lab[0].item() == pytest.approx(y * 24389 / 27, rel=1e-9)


def test_lab_keeps_shape_dtype_device_and_leaves_the_input_alone():
    images = torch.rand(2, 3, 4, 5)
    before = images.clone()
    lab = skin.srgb_to_lab(images)
    assert lab.shape == (2, 3, 4, 5) and lab.dtype == torch.float32
    torch.testing.assert_close(images, before)


def test_values_outside_the_range_are_clamped_not_nan():
    lab = skin.srgb_to_lab(_pixels((-0.01, 0.5, 1.02)))
    assert torch.isfinite(lab).all()
    torch.testing.assert_close(lab, skin.srgb_to_lab(_pixels((0.0, 0.5, 1.0))))


def test_grayscale_raises_the_skip_message():
    with pytest.raises(ValueError, match=re.escape(skin.GRAYSCALE_MSG) + r".*\(2, 1, 4, 4\).*skip"):
        skin.srgb_to_lab(torch.rand(2, 1, 4, 4))


@pytest.mark.parametrize(
    "bad", [torch.rand(2, 4, 4, 4), torch.rand(3, 4, 4), torch.zeros(1, 3, 2, 2, dtype=torch.int64)]
)
def test_srgb_to_lab_rejects_non_rgb_tensors(bad):
    with pytest.raises(ValueError, match=re.escape(skin.NOT_IMAGES_MSG)):
        skin.srgb_to_lab(bad)


def test_srgb_to_lab_rejects_non_tensors():
    with pytest.raises(ValueError, match=re.escape(skin.NOT_IMAGES_MSG) + ".*list"):
        skin.srgb_to_lab([[0.5, 0.5, 0.5]])


# --- individual_typology_angle ---------------------------------------------------------------------------


def _lab(*pixels):
    """A (1, 3, 1, P) CIELAB image from (L, a, b) pixels."""
    return torch.tensor(pixels, dtype=torch.float64).T.reshape(1, 3, 1, len(pixels))


@pytest.mark.parametrize(("lightness", "yellow", "angle"), [(70.0, 20.0, 45.0), (50.0, 15.0, 0.0), (30.0, 20.0, -45.0)])
def test_ita_by_hand(lightness, yellow, angle):
    ita = skin.individual_typology_angle(_lab((lightness, 5.0, yellow)), torch.ones(1, 1, 1, dtype=torch.float64))
    assert ita.shape == (1,) and ita.item() == pytest.approx(angle)


def test_ita_takes_the_angle_of_the_mean_lightness_and_mean_b():
    # Pixels (L=60, b=20) and (L=80, b=20): means (70, 20) -> 45 degrees, whereas the mean of the
    # two pixels' angles would be (26.57 + 56.31) / 2 = 41.44.
    lab = _lab((60.0, 0.0, 20.0), (80.0, 0.0, 20.0))
    assert skin.individual_typology_angle(lab, torch.ones(1, 1, 2, dtype=torch.float64)).item() == pytest.approx(45.0)


def test_ita_uses_only_the_masked_pixels():
    lab = _lab((70.0, 0.0, 20.0), (10.0, 0.0, 90.0))
    mask = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    assert skin.individual_typology_angle(lab, mask).item() == pytest.approx(45.0)
    assert skin.individual_typology_angle(lab, mask.bool()).item() == pytest.approx(45.0)


def test_ita_of_an_empty_mask_is_nan():
    lab = torch.cat([_lab((70.0, 0.0, 20.0)), _lab((30.0, 0.0, 20.0))])
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64).view(2, 1, 1, 1)
    ita = skin.individual_typology_angle(lab, mask)
    assert ita[0].item() == pytest.approx(45.0) and math.isnan(ita[1].item())


def test_ita_rejects_bad_lab_and_masks():
    lab = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=re.escape(skin.NOT_LAB_MSG)):
        skin.individual_typology_angle(torch.rand(2, 3, 4), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match=re.escape(skin.BAD_MASK_MSG) + r".*\(2, 1, 4, 4\).*\(1, 4, 5\)"):
        skin.individual_typology_angle(lab, torch.ones(1, 4, 5))
    with pytest.raises(ValueError, match=re.escape(skin.BAD_MASK_MSG) + ".*torch.int64"):
        skin.individual_typology_angle(lab, torch.ones(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=re.escape(skin.BAD_MASK_MSG) + ".*ndarray"):
        import numpy as np

        skin.individual_typology_angle(lab, np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match=re.escape(skin.MASK_DEVICE_MSG)):
        skin.individual_typology_angle(lab, torch.ones(1, 4, 4, device="meta"))


# --- central_face_mask -------------------------------------------------------------------------------------


def test_face_mask_is_a_centred_symmetric_ellipse_of_the_documented_size():
    mask = skin.central_face_mask(200)
    assert mask.shape == (1, 200, 200) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(mask, mask.flip(-1))
    torch.testing.assert_close(mask, mask.flip(-2))
    assert mask.mean().item() == pytest.approx(math.pi * 0.2 * 0.25, abs=0.005)
    columns = mask[0].any(dim=0).nonzero().flatten()
    rows = mask[0].any(dim=1).nonzero().flatten()
    assert (columns.max() - columns.min() + 1).item() == pytest.approx(80, abs=2)  # 40% of the width
    assert (rows.max() - rows.min() + 1).item() == pytest.approx(100, abs=2)  # 50% of the height


def test_face_mask_accepts_rectangles_and_a_device():
    assert skin.central_face_mask((12, 8)).shape == (1, 12, 8)
    assert skin.central_face_mask(3).sum().item() == 1.0
    assert skin.central_face_mask(8, device="meta").device.type == "meta"


@pytest.mark.parametrize("bad", [0, -3, (4,), (4, 4, 4), "8", 8.0, True])
def test_face_mask_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match=re.escape(skin.BAD_SIZE_MSG)):
        skin.central_face_mask(bad)


def test_face_mask_too_small_for_the_ellipse_raises():
    with pytest.raises(ValueError, match=re.escape(skin.BAD_SIZE_MSG) + ".*2x2"):
        skin.central_face_mask(2)


# --- per_sample_ita_shift -----------------------------------------------------------------------------------


SKIN = (0.55, 0.40, 0.30)


def test_shift_is_zero_for_identical_images_and_positive_when_the_output_is_lighter():
    target = _solid(SKIN, n=2)
    preds = target.clone()
    preds[1] = _solid((0.75, 0.60, 0.50))[0]
    shift = skin.per_sample_ita_shift(preds, target)
    assert shift.shape == (2,)
    assert shift[0].item() == pytest.approx(0.0, abs=1e-4)
    assert shift[1].item() > 10.0
    assert skin.per_sample_ita_shift(target, preds)[1].item() == pytest.approx(-shift[1].item(), rel=1e-5)


def test_shift_equals_the_difference_of_the_two_itas_over_the_mask():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 6, 6, generator=generator)
    preds = torch.rand(3, 3, 6, 6, generator=generator)
    mask = (torch.rand(3, 1, 6, 6, generator=generator) > 0.5).float()
    expected = skin.individual_typology_angle(skin.srgb_to_lab(preds), mask) - skin.individual_typology_angle(
        skin.srgb_to_lab(target), mask
    )
    torch.testing.assert_close(skin.per_sample_ita_shift(preds, target, mask), expected)


def test_shift_defaults_to_the_central_face_mask():
    target = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    preds = target.flip(-1)
    expected = skin.per_sample_ita_shift(preds, target, skin.central_face_mask(10))
    torch.testing.assert_close(skin.per_sample_ita_shift(preds, target), expected)


@pytest.mark.gpu
def test_everything_stays_on_the_gpu():
    images = torch.rand(2, 3, 8, 8, device="cuda")
    mask = skin.central_face_mask(8, device="cuda")
    assert skin.srgb_to_lab(images).device.type == "cuda"
    assert skin.individual_typology_angle(skin.srgb_to_lab(images), mask).device.type == "cuda"
    shift = skin.per_sample_ita_shift(images.flip(-1), images)
    assert shift.device.type == "cuda"
    torch.testing.assert_close(shift.cpu(), skin.per_sample_ita_shift(images.flip(-1).cpu(), images.cpu()))


def test_shift_rejects_grayscale_with_the_skip_message():
    images = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=re.escape(skin.GRAYSCALE_MSG)):
        skin.per_sample_ita_shift(images, images)


def test_shift_rejects_mismatched_pairs():
    with pytest.raises(ValueError, match=re.escape(m.SHAPE_MISMATCH_MSG)):
        skin.per_sample_ita_shift(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 6))


def test_skin_functions_are_exported():
    import genfair.audit

    for name in ("srgb_to_lab", "individual_typology_angle", "central_face_mask", "per_sample_ita_shift"):
        assert getattr(genfair.audit, name) is getattr(skin, name)


# --- ΔL*, Δh* and the wrap of angle differences -------------------------------------------------------------

# Published CIELAB (D65) values of the sRGB primaries and secondaries, and their hue angles
# h* = atan2(b*, a*) in [0, 360) worked from them by hand (LCh). Independent of srgb_to_lab.
LAB = {
    "red": ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032), 39.9990),
    "green": ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793), 136.0160),
    "blue": ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602), 306.2849),
    "yellow": ((1.0, 1.0, 0.0), (97.1393, -21.5537, 94.4780), 102.8512),
    "cyan": ((0.0, 1.0, 1.0), (91.1132, -48.0875, -14.1312), 196.3762),
    "magenta": ((1.0, 0.0, 1.0), (60.3242, 98.2343, -60.8249), 328.2350),
}


def _colour(name, size=4):
    return _solid(LAB[name][0], size=size).double()


@pytest.mark.parametrize("name", list(LAB))
def test_the_published_hue_angles_follow_from_the_published_lab(name):
    _, (_, a, b), hue = LAB[name]
    assert math.degrees(math.atan2(b, a)) % 360 == pytest.approx(hue, abs=1e-3)
    lab = skin.srgb_to_lab(_colour(name, size=1))
    assert skin.hue_angle(lab, torch.ones(1, 1, 1, dtype=torch.float64)).item() % 360 == pytest.approx(hue, abs=2e-3)


@pytest.mark.parametrize(
    ("output", "original", "lightness", "hue"),
    [
        ("magenta", "red", 60.3242 - 53.2408, 328.2350 - 360 - 39.9990),  # -71.764: away from yellow
        ("yellow", "red", 97.1393 - 53.2408, 102.8512 - 39.9990),  # +62.852: yellower
        ("cyan", "green", 91.1132 - 87.7347, 196.3762 - 136.0160),  # +60.360, across the ±180 line
        ("green", "cyan", 87.7347 - 91.1132, 136.0160 - 196.3762),  # -60.360, the other way across it
        ("blue", "red", 32.2970 - 53.2408, 306.2849 - 360 - 39.9990),  # -93.714, not +266.286
    ],
)
def test_lightness_and_hue_shifts_match_the_published_cielab_values(output, original, lightness, hue):
    preds, target = _colour(output), _colour(original)
    assert skin.per_sample_lightness_shift(preds, target).item() == pytest.approx(lightness, abs=2e-3)
    shift = skin.per_sample_hue_shift(preds, target).item()
    assert -180 < shift <= 180
    assert shift == pytest.approx(hue, abs=2e-3)


def test_lightness_of_mid_grey_against_white_by_hand():
    # sRGB 0.5 -> Y = ((0.5 + 0.055) / 1.055) ** 2.4; L* = 116 Y^(1/3) - 16 = 53.389; white is 100.
    grey = 116.0 * (((0.5 + 0.055) / 1.055) ** 2.4) ** (1.0 / 3.0) - 16.0
    white, mid = _solid((1.0, 1.0, 1.0)).double(), _solid((0.5, 0.5, 0.5)).double()
    assert skin.per_sample_lightness_shift(white, mid).item() == pytest.approx(100.0 - grey, abs=1e-9)
    assert skin.per_sample_lightness_shift(mid, white).item() == pytest.approx(grey - 100.0, abs=1e-9)


def test_the_ita_shift_is_wrapped_into_the_half_open_circle():
    # blue: ITA = atan2(32.297 - 50, -107.8602) = -170.679; magenta: atan2(10.3242, -60.8249) = 170.367.
    # Their plain difference is 341.046 degrees; the shift is that minus 360.
    blue_ita = math.degrees(math.atan2(32.2970 - 50, -107.8602))
    magenta_ita = math.degrees(math.atan2(60.3242 - 50, -60.8249))
    expected = magenta_ita - blue_ita - 360.0
    assert expected == pytest.approx(-18.954, abs=1e-3)
    shift = skin.per_sample_ita_shift(_colour("magenta"), _colour("blue")).item()
    assert shift == pytest.approx(expected, abs=2e-3)
    assert skin.per_sample_ita_shift(_colour("blue"), _colour("magenta")).item() == pytest.approx(-expected, abs=2e-3)


@pytest.mark.parametrize(
    ("angle", "wrapped"),
    [(0.0, 0.0), (180.0, 180.0), (-180.0, 180.0), (180.5, -179.5), (-180.5, 179.5), (341.0, -19.0),
     (-341.0, 19.0), (360.0, 0.0), (-359.0, 1.0), (540.0, 180.0), (179.999, 179.999)],
)
def test_wrap_degrees_maps_into_minus_180_exclusive_to_180_inclusive(angle, wrapped):
    assert skin.wrap_degrees(torch.tensor([angle], dtype=torch.float64)).item() == pytest.approx(wrapped, abs=1e-9)


def test_wrap_degrees_keeps_nan_shape_and_dtype():
    angles = torch.tensor([[float("nan"), 200.0]], dtype=torch.float32)
    wrapped = skin.wrap_degrees(angles)
    assert wrapped.shape == (1, 2) and wrapped.dtype == torch.float32 and math.isnan(wrapped[0, 0].item())


def _halves(left, right):
    """A 1x3x2x2 image: left column ``left``, right column ``right`` (sRGB names of LAB)."""
    image = torch.empty(1, 3, 2, 2, dtype=torch.float64)
    image[..., 0] = torch.tensor(LAB[left][0], dtype=torch.float64).view(3, 1)
    image[..., 1] = torch.tensor(LAB[right][0], dtype=torch.float64).view(3, 1)
    return image


def test_the_masks_weight_the_pixels_of_lightness_and_hue():
    # original: red | yellow; output: magenta | yellow. Weights 1 (left) and 3 (right) per pixel.
    target, preds = _halves("red", "yellow"), _halves("magenta", "yellow")
    only_left = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64).view(1, 1, 2, 2)
    lightness_left = skin.per_sample_lightness_shift(preds, target, only_left).item()
    assert lightness_left == pytest.approx(60.3242 - 53.2408, abs=2e-3)
    assert skin.per_sample_hue_shift(preds, target, only_left.bool()).item() == pytest.approx(
        328.2350 - 360 - 39.9990, abs=2e-3)
    weights = torch.tensor([[0.25, 0.75], [0.25, 0.75]], dtype=torch.float64).view(1, 1, 2, 2)

    def mean(name_left, name_right, channel):
        return 0.25 * LAB[name_left][1][channel] + 0.75 * LAB[name_right][1][channel]

    lightness = mean("magenta", "yellow", 0) - mean("red", "yellow", 0)
    hue = math.degrees(math.atan2(mean("magenta", "yellow", 2), mean("magenta", "yellow", 1))) - math.degrees(
        math.atan2(mean("red", "yellow", 2), mean("red", "yellow", 1)))
    assert skin.per_sample_lightness_shift(preds, target, weights).item() == pytest.approx(lightness, abs=2e-3)
    assert skin.per_sample_hue_shift(preds, target, weights).item() == pytest.approx(hue, abs=2e-3)
    # the hue of the mean a*, b*, not the mean of the pixels' hues
    pixel_hues = 0.25 * (328.2350 - 360 - 39.9990) + 0.75 * 0.0
    assert abs(hue - pixel_hues) > 1.0


def test_lightness_and_hue_of_lab_by_hand():
    lab = _lab((60.0, 20.0, 20.0), (20.0, -10.0, 0.0))
    mask = torch.tensor([[[[3.0, 1.0]]]], dtype=torch.float64)  # means: L 50, a 12.5, b 15
    assert skin.perceptual_lightness(lab, mask).item() == pytest.approx(50.0)
    assert skin.hue_angle(lab, mask).item() == pytest.approx(math.degrees(math.atan2(15.0, 12.5)))
    empty = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    assert math.isnan(skin.perceptual_lightness(lab, empty).item()) and math.isnan(skin.hue_angle(lab, empty).item())


def test_the_three_shifts_at_once_equal_each_alone():
    generator = torch.Generator().manual_seed(3)
    target = torch.rand(4, 3, 6, 6, generator=generator)
    preds = torch.rand(4, 3, 6, 6, generator=generator)
    mask = (torch.rand(4, 1, 6, 6, generator=generator) > 0.3).float()
    shifts = skin.per_sample_skin_shifts(preds, target, mask)
    assert tuple(shifts) == skin.SKIN_SHIFTS == ("ita_shift", "lightness_shift", "hue_shift")
    torch.testing.assert_close(shifts["ita_shift"], skin.per_sample_ita_shift(preds, target, mask))
    torch.testing.assert_close(shifts["lightness_shift"], skin.per_sample_lightness_shift(preds, target, mask))
    torch.testing.assert_close(shifts["hue_shift"], skin.per_sample_hue_shift(preds, target, mask))
    assert all(value.shape == (4,) for value in shifts.values())


@pytest.mark.parametrize("function", [skin.per_sample_lightness_shift, skin.per_sample_hue_shift,
                                      skin.per_sample_skin_shifts])
def test_the_new_shifts_reject_grayscale_with_the_skip_message(function):
    images = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=re.escape(skin.GRAYSCALE_MSG) + r".*\(2, 1, 8, 8\).*skip"):
        function(images, images)


@pytest.mark.parametrize("function", [skin.perceptual_lightness, skin.hue_angle])
def test_lightness_and_hue_reject_bad_lab(function):
    with pytest.raises(ValueError, match=re.escape(skin.NOT_LAB_MSG)):
        function(torch.rand(2, 3, 4), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match=re.escape(skin.BAD_MASK_MSG)):
        function(torch.rand(2, 3, 4, 4), torch.ones(1, 4, 5))


def test_the_colour_functions_are_exported():
    import genfair.audit

    for name in ("per_sample_lightness_shift", "per_sample_hue_shift", "per_sample_skin_shifts", "perceptual_lightness",
                 "hue_angle", "wrap_degrees", "LIGHTNESS_SHIFT", "HUE_SHIFT"):
        assert getattr(genfair.audit, name) is getattr(skin, name)
    assert genfair.audit.SKIN_MEASURES == skin.SKIN_SHIFTS
