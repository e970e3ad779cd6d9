"""Per-image quality metrics: pure functions, tensors in, one value per image out.

Every metric here takes ``preds`` and ``target`` of shape ``(N, C, H, W)``, float in
``[0, 1]``, on the same device, and returns a float tensor of shape ``(N,)`` on that
device. Nothing is reduced over the batch: averaging and grouping happen later, in
:mod:`genfair.audit.grouping`. The functions never call ``.item()`` or ``.cpu()`` and
never modify their inputs.

Column names follow the direction of the metric: ``*_error`` is lower-is-better,
``*_score`` is higher-is-better. :data:`METRICS` maps each column name to a
:class:`MetricSpec`.

torch and torchmetrics are imported inside the functions so that importing
``genfair.audit`` stays cheap (the ``audit`` command answers ``--help`` without them).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "MEASURE_DIRECTIONS",
    "METRICS",
    "REGISTRY",
    "SSIM_MIN_SIZE",
    "MetricSpec",
    "get",
    "names",
    "per_sample_mae_error",
    "per_sample_metrics",
    "per_sample_mse_error",
    "per_sample_psnr_score",
    "per_sample_ssim_score",
    "register",
]

# Messages reused by the tests: each raise appends what it received.
NOT_TENSOR_MSG = "preds and target must be torch.Tensor"
NOT_FLOAT_MSG = "preds and target must be floating point tensors"
NOT_4D_MSG = "preds and target must be 4-D (N, C, H, W)"
SHAPE_MISMATCH_MSG = "preds and target must have the same shape"
DEVICE_MISMATCH_MSG = "preds and target must be on the same device"
SSIM_TOO_SMALL_MSG = "per_sample_ssim_score needs images of at least"
DATA_RANGE_MSG = "data_range must be a positive finite number"
UNKNOWN_METRIC_MSG = "unknown metric"
DUPLICATE_METRIC_MSG = "metric already registered"
BAD_METRIC_NAME_MSG = "metric names must be lowercase and end in"

#: Smallest height and width SSIM accepts: its 11x11 Gaussian window (sigma 1.5) is
#: applied after a 5-pixel reflection padding, which needs at least 6 pixels per side.
SSIM_MIN_SIZE = 6

_SSIM_SIGMA = 1.5
_SSIM_CHUNK_BYTES = 2 * 2**20  # the five filtered planes of this many bytes of images at once (about a cache)
_HIGHER_SUFFIXES = ("_score",)
_LOWER_SUFFIXES = ("_error", "_loss")


@dataclass(frozen=True)
class MetricSpec:
    """One registered per-image metric.

    Attributes:
        name: the per-image column name, e.g. ``"mse_error"``.
        fn: ``fn(preds, target) -> Tensor (N,)``.
        higher_is_better: ``True`` for ``*_score`` metrics, ``False`` for ``*_error``
            and ``*_loss`` metrics.
    """

    name: str
    fn: Callable[..., Tensor]
    higher_is_better: bool


#: The metric registry, keyed by per-image column name, in registration order.
METRICS: dict[str, MetricSpec] = {}
#: Alias of :data:`METRICS`, the name every genfair package uses for its registry.
REGISTRY = METRICS
#: Per-image measures that no registered metric function computes but that the audit analyses
#: per group like one, with ``higher_is_better``; the skin-colour shifts of
#: :mod:`genfair.audit.skin`, each output minus original:
#:
#: - ``ita_shift`` (ΔITA, degrees) and ``lightness_shift`` (ΔL*, L* units): lightening is treated
#:   as the harm (PULSE's failure), so the "worst" group is the most lightened one.
#: - ``hue_shift`` (Δh*, degrees; positive: yellower, negative: redder). Neither direction of a
#:   hue shift is the harm: moving a person's skin toward red or toward yellow misrepresents it
#:   alike, so the harm is the shift's size. The checks that decide anything treat it so: the
#:   policy's ``[hue]`` rules bound ``|mean Δh*|`` and the gap between groups, and a disparity's
#:   gap (``|worst - best|``), its interval and its permutation p are symmetric. The tables still
#:   need an orientation to name a "worst" group and to give each group a one-sided p; they take
#:   ``False`` (as the other shifts), so there "worst" means the group moved furthest toward
#:   yellow and a group's p asks whether it is moved more toward yellow than the rest. Read those
#:   two as orientation, not harm (the terminal shows hue's gap p only).
MEASURE_DIRECTIONS: dict[str, bool] = {"ita_shift": False, "lightness_shift": False, "hue_shift": False}
#: The identity measures of :mod:`genfair.audit.identity` (``audit run --identity``), both lower
#: is better: ``identity_drift`` (face-embedding distance, output to original) and
#: ``identity_lost`` (1.0 where the recogniser no longer matches the output to its original).
MEASURE_DIRECTIONS.update({"identity_drift": False, "identity_lost": False})


def _direction(name: str) -> bool:
    """Return ``higher_is_better`` implied by a metric name, or raise."""
    if name != name.lower() or not name.endswith(_HIGHER_SUFFIXES + _LOWER_SUFFIXES):
        suffixes = ", ".join(repr(s) for s in _HIGHER_SUFFIXES + _LOWER_SUFFIXES)
        raise ValueError(f"{BAD_METRIC_NAME_MSG} one of {suffixes}, got {name!r}")
    return name.endswith(_HIGHER_SUFFIXES)


def register(name: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register a per-image metric function under a column name (a decorator).

    ``higher_is_better`` follows from the name: ``*_score`` is higher-is-better,
    ``*_error`` and ``*_loss`` are lower-is-better.

    Args:
        name: lowercase column name ending in ``_score``, ``_error`` or ``_loss``.

    Returns:
        A decorator that stores ``MetricSpec(name, fn, higher_is_better)`` in
        :data:`METRICS` and returns ``fn`` unchanged.

    Raises:
        ValueError: if the name breaks the naming rule or is already registered.
    """
    higher_is_better = _direction(name)
    if name in METRICS:
        raise ValueError(f"{DUPLICATE_METRIC_MSG}: {name!r}; register the new behaviour under a new name")

    def decorator(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        METRICS[name] = MetricSpec(name=name, fn=fn, higher_is_better=higher_is_better)
        return fn

    return decorator


def names() -> tuple[str, ...]:
    """Return the registered metric names, in registration order.

    Example:
        >>> names()
        ('mse_error', 'mae_error', 'psnr_score', 'ssim_score')
    """
    return tuple(METRICS)


def get(name: str) -> MetricSpec:
    """Return the :class:`MetricSpec` registered under ``name``.

    Args:
        name: a key of :data:`METRICS`.

    Returns:
        The metric's spec.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the valid keys and the
            closest one.

    Example:
        >>> get("psnr_score").higher_is_better
        True
    """
    if name in METRICS:
        return METRICS[name]
    close = difflib.get_close_matches(str(name), list(METRICS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{UNKNOWN_METRIC_MSG} {name!r}, expected one of {sorted(METRICS)}{hint}")


def _check_pair(preds: Tensor, target: Tensor) -> None:
    """Validate that preds and target are same-shape 4-D float tensors on one device."""
    import torch

    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"{NOT_TENSOR_MSG}, got {type(preds).__name__} and {type(target).__name__}")
    if not preds.is_floating_point() or not target.is_floating_point():
        raise ValueError(f"{NOT_FLOAT_MSG}, got {preds.dtype} and {target.dtype}; convert with .float() / 255")
    if preds.ndim != 4 or target.ndim != 4:
        raise ValueError(f"{NOT_4D_MSG}, got {tuple(preds.shape)} and {tuple(target.shape)}")
    if preds.shape != target.shape:
        raise ValueError(f"{SHAPE_MISMATCH_MSG}, got {tuple(preds.shape)} and {tuple(target.shape)}")
    if preds.device != target.device:
        raise ValueError(f"{DEVICE_MISMATCH_MSG}, got {preds.device} and {target.device}")


def _check_data_range(data_range: float) -> float:
    """Return ``data_range`` as a float, or raise if it is not positive and finite."""
    import math

    try:
        value = float(data_range)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{DATA_RANGE_MSG}, got {data_range!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{DATA_RANGE_MSG}, got {data_range!r}")
    return value


@register("mse_error")
def per_sample_mse_error(preds: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each image, averaged over its ``C * H * W`` values.

    Args:
        preds: (N, C, H, W) float in [0, 1], the model's outputs.
        target: (N, C, H, W) float in [0, 1], the original images.

    Returns:
        (N,) float tensor on the input's device, in ``[0, 1]`` for inputs in ``[0, 1]``;
        lower is better.

    Raises:
        ValueError: if the inputs are not same-shape 4-D float tensors on one device.

    Example:
        >>> import torch
        >>> target = torch.zeros(2, 1, 2, 2)
        >>> preds = torch.tensor([[[[0.0, 0.5], [0.5, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
        >>> per_sample_mse_error(preds, target)
        tensor([0.3750, 0.0000])
    """
    _check_pair(preds, target)
    diff = preds - target
    return (diff * diff).flatten(start_dim=1).mean(dim=1)


@register("mae_error")
def per_sample_mae_error(preds: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of each image, averaged over its ``C * H * W`` values.

    Args:
        preds: (N, C, H, W) float in [0, 1], the model's outputs.
        target: (N, C, H, W) float in [0, 1], the original images.

    Returns:
        (N,) float tensor on the input's device, in ``[0, 1]`` for inputs in ``[0, 1]``;
        lower is better.

    Raises:
        ValueError: if the inputs are not same-shape 4-D float tensors on one device.

    Example:
        >>> import torch
        >>> target = torch.zeros(2, 1, 2, 2)
        >>> preds = torch.tensor([[[[0.0, 0.5], [0.5, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
        >>> per_sample_mae_error(preds, target)
        tensor([0.5000, 0.0000])
    """
    _check_pair(preds, target)
    return (preds - target).abs().flatten(start_dim=1).mean(dim=1)


@register("psnr_score")
def per_sample_psnr_score(preds: Tensor, target: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each image, in decibels.

    ``10 * log10(data_range**2 / mse)`` with the MSE taken over the image's
    ``C * H * W`` values (torchmetrics' ``peak_signal_noise_ratio`` with
    ``dim=(1, 2, 3)`` and ``reduction="none"``). An image identical to its target has
    MSE 0 and a PSNR of ``+inf``; a group mean that includes it is ``+inf`` as well.

    Args:
        preds: (N, C, H, W) float in [0, 1], the model's outputs.
        target: (N, C, H, W) float in [0, 1], the original images.
        data_range: the span of possible pixel values (1.0 for images in [0, 1]).

    Returns:
        (N,) float tensor in dB on the input's device; higher is better.

    Raises:
        ValueError: if the inputs are not same-shape 4-D float tensors on one device,
            or ``data_range`` is not positive and finite.

    Example:
        >>> import torch
        >>> target = torch.zeros(2, 1, 2, 2)
        >>> preds = torch.stack([torch.full((1, 2, 2), 0.1), torch.zeros(1, 2, 2)])
        >>> per_sample_psnr_score(preds, target)
        tensor([20., inf])
    """
    _check_pair(preds, target)
    value = _check_data_range(data_range)
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(preds, target, data_range=value, reduction="none", dim=(1, 2, 3))


@register("ssim_score")
def per_sample_ssim_score(preds: Tensor, target: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Structural similarity (SSIM) of each image, averaged over channels and pixels.

    torchmetrics' ``structural_similarity_index_measure`` with its defaults (11x11
    Gaussian window, sigma 1.5, k1 0.01, k2 0.03, reflection-padded borders) and
    ``reduction="none"``. Images must be at least :data:`SSIM_MIN_SIZE` (6) pixels high
    and wide.

    Args:
        preds: (N, C, H, W) float in [0, 1], the model's outputs; H, W >= 6.
        target: (N, C, H, W) float in [0, 1], the original images.
        data_range: the span of possible pixel values (1.0 for images in [0, 1]).

    Returns:
        (N,) float tensor in [-1, 1] on the input's device, 1 for identical images;
        higher is better.

    Raises:
        ValueError: if the inputs are not same-shape 4-D float tensors on one device,
            are smaller than 6x6, or ``data_range`` is not positive and finite.

    Example:
        >>> import torch
        >>> target = torch.linspace(0, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
        >>> per_sample_ssim_score(target, target)
        tensor([1., 1.])
        >>> per_sample_ssim_score(target * 0.5, target).shape
        torch.Size([2])
    """
    _check_pair(preds, target)
    value = _check_data_range(data_range)
    height, width = preds.shape[-2:]
    if height < SSIM_MIN_SIZE or width < SSIM_MIN_SIZE:
        raise ValueError(
            f"{SSIM_TOO_SMALL_MSG} {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels (its 11x11 Gaussian window), "
            f"got {height}x{width}; upsample the images or leave 'ssim_score' out of the metrics"
        )
    if preds.device.type == "cpu" and not preds.requires_grad and not target.requires_grad:
        return _ssim_on_cpu(preds, target, data_range=value)
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        preds, target, sigma=_SSIM_SIGMA, data_range=value, reduction="none"
    )


def _ssim_on_cpu(preds: Tensor, target: Tensor, *, data_range: float) -> Tensor:
    """torchmetrics' SSIM (same window, constants and borders) with the Gaussian filter as two matmuls.

    Filtering one axis of length ``L`` with the 11-tap window and reflected borders is a linear map,
    an ``(L, L)`` matrix (:func:`_reflected_gaussian`); the five local moments of every channel are
    filtered at once by two matrix products, which a BLAS does several times faster on a CPU than
    torchmetrics' 11x11 2-D convolution or a separable 1-D filter (``benchmarks/outputs_throughput.py``).
    The values agree with torchmetrics' to float rounding (the unit tests check it).
    """
    import torch

    compute = torch.float32 if preds.dtype in (torch.float16, torch.bfloat16) else preds.dtype
    a, b = preds.detach().to(compute), target.detach().to(compute)
    rows = _reflected_gaussian(a.shape[-2], dtype=compute)
    columns = _reflected_gaussian(a.shape[-1], dtype=compute)
    # a few images at a time, so that their five planes stay in the cache (32 at 64x64: ~25% slower)
    per_image = 5 * a[0].numel() * a.element_size()
    chunk = max(1, _SSIM_CHUNK_BYTES // per_image)
    index = torch.cat([_ssim_index(x, y, rows, columns, data_range=data_range)
                       for x, y in zip(a.split(chunk), b.split(chunk), strict=True)])
    return index.to(preds.dtype)


def _ssim_index(a: Tensor, b: Tensor, rows: Tensor, columns: Tensor, *, data_range: float) -> Tensor:
    """Mean SSIM index of each of ``a``'s images against ``b``'s: ``(n,)``; ``rows`` ``(H, H)`` and
    ``columns`` ``(W, W)``: :func:`_reflected_gaussian` of each axis."""
    import torch

    n, channels, height, width = a.shape
    compute = a.dtype
    # The five planes written into one buffer and the arithmetic done in place, in torchmetrics'
    # order (the same values): a fresh tensor per step cost a third of the time at 64x64.
    moments = torch.empty((5, n, channels, height, width), dtype=compute)
    moments[0], moments[1] = a, b
    torch.mul(a, a, out=moments[2])
    torch.mul(b, b, out=moments[3])
    torch.mul(a, b, out=moments[4])
    along_rows = moments.view(-1, width) @ columns.T  # (5 N C H, W): along each row...
    torch.matmul(rows, along_rows.view(-1, height, width), out=moments.view(-1, height, width))  # ...then each column
    mu_a, mu_b, aa, bb, ab = moments
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_aa, mu_bb = mu_a * mu_a, mu_b * mu_b
    mu_ab = mu_a.mul_(mu_b)
    var_a, var_b, cov = aa.sub_(mu_aa).clamp_(min=0.0), bb.sub_(mu_bb).clamp_(min=0.0), ab.sub_(mu_ab)
    # (2 mu_ab + c1)(2 cov + c2) / ((mu_aa + mu_bb + c1)(var_a + var_b + c2))
    numerator = mu_ab.mul_(2).add_(c1).mul_(cov.mul_(2).add_(c2))
    denominator = mu_aa.add_(mu_bb).add_(c1).mul_(var_a.add_(var_b).add_(c2))
    return numerator.div_(denominator).reshape(n, -1).mean(-1)


def _reflected_gaussian(length: int, *, dtype: torch.dtype) -> Tensor:
    """``(length, length)`` matrix of torchmetrics' SSIM window along one axis with reflected borders.

    Row ``i`` holds the weight each input position gets in output ``i``: the 11 taps of the
    normalised Gaussian (sigma 1.5) centred on ``i``, a tap past an edge folded back onto its
    mirror image without repeating the edge (``reflect`` padding: ``-1 -> 1``, ``L -> L - 2``).
    """
    import numpy as np
    import torch

    radius = int(3.5 * _SSIM_SIGMA + 0.5)  # torchmetrics' window: 11 taps for sigma 1.5
    offsets = np.arange(-radius, radius + 1)
    window = np.exp(-((offsets / _SSIM_SIGMA) ** 2) / 2)
    window /= window.sum()
    taps = np.arange(length)[:, None] + offsets[None, :]  # (L, 11) input positions, before folding
    taps = np.abs(taps)
    taps = np.where(taps > length - 1, 2 * (length - 1) - taps, taps)
    matrix = np.zeros((length, length))
    np.add.at(matrix, (np.repeat(np.arange(length), len(offsets)), taps.ravel()), np.tile(window, length))
    return torch.from_numpy(matrix).to(dtype)


def per_sample_metrics(
    preds: Tensor, target: Tensor, *, metrics: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """Compute several registered per-image metrics at once.

    Args:
        preds: (N, C, H, W) float in [0, 1], the model's outputs.
        target: (N, C, H, W) float in [0, 1], the original images.
        metrics: keys of :data:`METRICS`; ``None`` means all of them, in registration
            order.

    Returns:
        ``{name: (N,) tensor}`` in the order of ``metrics``, each on the input's device.

    Raises:
        ValueError: if a name is unknown or the inputs are invalid.

    Example:
        >>> import torch
        >>> target = torch.zeros(2, 1, 2, 2)
        >>> preds = torch.full((2, 1, 2, 2), 0.5)
        >>> per_sample_metrics(preds, target, metrics=["mse_error", "mae_error"])
        {'mse_error': tensor([0.2500, 0.2500]), 'mae_error': tensor([0.5000, 0.5000])}
    """
    specs = [get(name) for name in (names() if metrics is None else metrics)]
    _check_pair(preds, target)
    return {spec.name: spec.fn(preds, target) for spec in specs}
