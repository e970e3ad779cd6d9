"""Per-image metrics against naive references, their input checks and the registry."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from genfair.audit import metrics as m

ALL_FUNCTIONS = [
    m.per_sample_mse_error,
    m.per_sample_mae_error,
    m.per_sample_psnr_score,
    m.per_sample_ssim_score,
]


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """An 8x3x16x16 preds/target pair in [0, 1] from a seeded generator."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(8, 3, 16, 16, generator=generator)
    noise = 0.1 * torch.randn(8, 3, 16, 16, generator=generator)
    return (target + noise).clamp(0, 1), target


@pytest.fixture
def tiny() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x1x2x2 pair with hand-computable errors."""
    preds = torch.tensor([[[[0.0, 0.5], [0.5, 1.0]]], [[[0.2, 0.2], [0.2, 0.2]]]])
    target = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.4], [0.2, 0.2]]]])
    return preds, target


# --- values ------------------------------------------------------------------------------


def test_mse_hand_computed(tiny):
    preds, target = tiny
    # image 0: (0 + .25 + .25 + 1) / 4; image 1: (.04 + .04 + 0 + 0) / 4
    expected = torch.tensor([1.5 / 4, 0.08 / 4])
    torch.testing.assert_close(m.per_sample_mse_error(preds, target), expected)


def test_mae_hand_computed(tiny):
    preds, target = tiny
    expected = torch.tensor([2.0 / 4, 0.4 / 4])
    torch.testing.assert_close(m.per_sample_mae_error(preds, target), expected)


def test_mse_and_mae_match_numpy_loop(pair):
    preds, target = pair
    p, t = preds.numpy().astype(np.float64), target.numpy().astype(np.float64)
    mse = [np.mean((p[i] - t[i]) ** 2) for i in range(len(p))]
    mae = [np.mean(np.abs(p[i] - t[i])) for i in range(len(p))]
    np.testing.assert_allclose(m.per_sample_mse_error(preds, target).numpy(), mse, rtol=1e-5)
    np.testing.assert_allclose(m.per_sample_mae_error(preds, target).numpy(), mae, rtol=1e-5)


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_psnr_matches_log_of_mse(pair, data_range):
    preds, target = pair
    mse = m.per_sample_mse_error(preds, target).double()
    expected = 10 * torch.log10(data_range**2 / mse)
    got = m.per_sample_psnr_score(preds, target, data_range=data_range)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)


def test_psnr_hand_computed(tiny):
    preds, target = tiny
    expected = torch.tensor([10 * math.log10(4 / 1.5), 10 * math.log10(4 / 0.08)])
    torch.testing.assert_close(m.per_sample_psnr_score(preds, target), expected)


def test_psnr_of_identical_images_is_inf(pair):
    _, target = pair
    assert torch.isinf(m.per_sample_psnr_score(target, target)).all()


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_torchmetrics_one_image_at_a_time(pair, data_range):
    preds, target = pair
    expected = torch.stack(
        [
            structural_similarity_index_measure(
                preds[i : i + 1], target[i : i + 1], data_range=data_range, reduction="elementwise_mean"
            )
            for i in range(len(preds))
        ]
    )
    got = m.per_sample_ssim_score(preds, target, data_range=data_range)
    torch.testing.assert_close(got, expected)
    assert len(set(got.tolist())) == len(got)  # really per image, not one batch value


@pytest.mark.parametrize("shape", [(4, 3, 64, 64), (20, 3, 64, 64), (3, 1, 6, 6), (2, 3, 7, 13), (5, 1, 16, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_on_the_cpu_path_equals_torchmetrics_on_the_whole_batch(shape, dtype):
    """The CPU path (matrix products, a few images at a time: 20 at 64x64 are three chunks) against
    torchmetrics' own 2-D convolution, borders included."""
    generator = torch.Generator().manual_seed(sum(shape))
    target = torch.rand(shape, generator=generator, dtype=dtype)
    preds = (target + 0.2 * torch.rand(shape, generator=generator, dtype=dtype)).clamp(0, 1)
    expected = structural_similarity_index_measure(preds, target, data_range=1.0, reduction="none")
    got = m.per_sample_ssim_score(preds, target)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected, atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)


@pytest.mark.parametrize("length", [6, 7, 16, 64])
def test_ssim_window_matrix_filters_as_scipy_does_with_mirrored_borders(length):
    import numpy as np
    from scipy import ndimage

    offsets = np.arange(-5, 6)
    window = np.exp(-((offsets / 1.5) ** 2) / 2)
    signal = np.random.default_rng(length).random((3, length))
    expected = ndimage.correlate1d(signal, window / window.sum(), axis=-1, mode="mirror")
    matrix = m._reflected_gaussian(length, dtype=torch.float64).numpy()
    np.testing.assert_allclose(signal @ matrix.T, expected, rtol=0, atol=1e-14)


def test_ssim_with_gradients_uses_torchmetrics():
    target = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    preds = target.clone().mul(0.9).requires_grad_(True)
    m.per_sample_ssim_score(preds, target).sum().backward()
    assert preds.grad is not None


def test_ssim_of_identical_images_is_one(pair):
    _, target = pair
    torch.testing.assert_close(m.per_sample_ssim_score(target, target), torch.ones(8))


def test_ssim_accepts_the_minimum_size():
    image = torch.rand(2, 1, m.SSIM_MIN_SIZE, m.SSIM_MIN_SIZE, generator=torch.Generator().manual_seed(1))
    assert m.per_sample_ssim_score(image, image).shape == (2,)


@pytest.mark.parametrize("shape", [(2, 1, 5, 16), (2, 1, 16, 5), (2, 1, 2, 2)])
def test_ssim_rejects_images_smaller_than_its_window(shape):
    image = torch.zeros(shape)
    with pytest.raises(ValueError, match=re.escape(m.SSIM_TOO_SMALL_MSG)):
        m.per_sample_ssim_score(image, image)


# --- purity, shape, device, dtype -------------------------------------------------------------


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_output_is_one_value_per_image_and_inputs_are_untouched(fn, pair):
    preds, target = pair
    before = (preds.clone(), target.clone())
    out = fn(preds, target)
    assert out.shape == (8,)
    assert out.dtype == torch.float32
    torch.testing.assert_close(preds, before[0], rtol=0, atol=0)
    torch.testing.assert_close(target, before[1], rtol=0, atol=0)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_output_keeps_double_precision(fn, pair):
    preds, target = pair
    assert fn(preds.double(), target.double()).dtype == torch.float64


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_output_stays_on_the_input_device(fn):
    # The meta device stands in for a GPU: nothing computed, nothing moved.
    preds = torch.empty(4, 3, 16, 16, device="meta")
    out = fn(preds, torch.empty(4, 3, 16, 16, device="meta"))
    assert out.device.type == "meta"
    assert out.shape == (4,)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_cuda_matches_cpu(fn, pair):
    preds, target = pair
    out = fn(preds.cuda(), target.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), fn(preds, target), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_rejects_non_tensors(fn):
    with pytest.raises(ValueError, match=re.escape(m.NOT_TENSOR_MSG)):
        fn(np.zeros((1, 1, 8, 8)), torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_rejects_integer_images(fn):
    image = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=re.escape(m.NOT_FLOAT_MSG)):
        fn(image, image)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_rejects_non_4d(fn):
    image = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match=re.escape(m.NOT_4D_MSG)):
        fn(image, image)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_rejects_different_shapes(fn):
    with pytest.raises(ValueError, match=re.escape(m.SHAPE_MISMATCH_MSG)):
        fn(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("fn", ALL_FUNCTIONS)
def test_rejects_mixed_devices(fn):
    with pytest.raises(ValueError, match=re.escape(m.DEVICE_MISMATCH_MSG)):
        fn(torch.zeros(2, 3, 8, 8), torch.empty(2, 3, 8, 8, device="meta"))


@pytest.mark.parametrize("fn", [m.per_sample_psnr_score, m.per_sample_ssim_score])
@pytest.mark.parametrize("data_range", [0.0, -1.0, math.inf, math.nan, "wide"])
def test_rejects_bad_data_range(fn, data_range):
    image = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match=re.escape(m.DATA_RANGE_MSG)):
        fn(image, image, data_range=data_range)


# --- registry and per_sample_metrics ----------------------------------------------------------


def test_registry_holds_the_four_metrics_with_their_direction():
    assert m.names() == ("mse_error", "mae_error", "psnr_score", "ssim_score")
    assert m.REGISTRY is m.METRICS
    expected = {"mse_error": False, "mae_error": False, "psnr_score": True, "ssim_score": True}
    for name, higher in expected.items():
        spec = m.get(name)
        assert spec == m.MetricSpec(name=name, fn=spec.fn, higher_is_better=higher)
    assert m.get("mse_error").fn is m.per_sample_mse_error


def test_get_unknown_lists_keys_and_suggests():
    with pytest.raises(ValueError, match=r"unknown metric 'ssim_scor'.*'mse_error'.*did you mean 'ssim_score'\?"):
        m.get("ssim_scor")


def test_get_unknown_without_close_match_has_no_hint():
    with pytest.raises(ValueError, match=re.escape(m.UNKNOWN_METRIC_MSG)) as info:
        m.get("zzz")
    assert "did you mean" not in str(info.value)


def test_register_infers_direction_from_the_name():
    try:
        fn = m.register("max_error")(lambda preds, target: (preds - target).abs().amax(dim=(1, 2, 3)))
        assert m.get("max_error").fn is fn
        assert m.get("max_error").higher_is_better is False
        assert "max_error" in m.names()
    finally:
        m.METRICS.pop("max_error", None)


@pytest.mark.parametrize("name", ["MSE_error", "mse", "mse_distance"])
def test_register_rejects_names_without_direction(name):
    with pytest.raises(ValueError, match=re.escape(m.BAD_METRIC_NAME_MSG)):
        m.register(name)


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match=re.escape(m.DUPLICATE_METRIC_MSG)):
        m.register("mse_error")


def test_per_sample_metrics_defaults_to_every_metric(pair):
    preds, target = pair
    out = m.per_sample_metrics(preds, target)
    assert list(out) == list(m.names())
    for name, values in out.items():
        torch.testing.assert_close(values, m.get(name).fn(preds, target))


def test_per_sample_metrics_keeps_the_requested_order(pair):
    preds, target = pair
    out = m.per_sample_metrics(preds, target, metrics=["ssim_score", "mse_error"])
    assert list(out) == ["ssim_score", "mse_error"]


def test_per_sample_metrics_rejects_unknown_names_before_computing(pair):
    preds, target = pair
    with pytest.raises(ValueError, match="did you mean 'psnr_score'"):
        m.per_sample_metrics(preds, target, metrics=["mse_error", "psnr_scroe"])


def test_per_sample_metrics_checks_inputs_even_with_no_metrics():
    with pytest.raises(ValueError, match=re.escape(m.SHAPE_MISMATCH_MSG)):
        m.per_sample_metrics(torch.zeros(1, 1, 8, 8), torch.zeros(2, 1, 8, 8), metrics=[])
