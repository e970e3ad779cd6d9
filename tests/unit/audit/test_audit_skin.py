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
