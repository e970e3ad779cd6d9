"""Skin-colour shift: how a model changes the skin's colour, as ΔITA, ΔL* and Δh*.

The Individual Typology Angle (ITA, Chardon et al. 1991) classifies skin colour from the
CIELAB lightness ``L*`` and yellow-blue component ``b*``:
``ITA = degrees(atan2(L* - 50, b*))``; larger angles are lighter skin (above 55 degrees
"very light", below -30 "dark"). ITA folds two things into one angle, and work on apparent
skin colour (Sony AI's skin-colour extraction) advises against relying on it alone, so two
more measures sit beside it, each of the same skin region:

- the perceptual lightness ``L*`` (0 black to 100 white);
- the hue angle ``h* = degrees(atan2(b*, a*))`` (skin lies between red, small angles, and
  yellow, larger ones: roughly 20 to 80 degrees).

For an image, genfair takes the **mean L\\*, a\\* and b\\* over the skin region** (the mask's
pixels, weighted by the mask), then ITA, L* and h* of those means. The per-image shifts are
output minus original: :func:`per_sample_ita_shift` (ΔITA, degrees) and
:func:`per_sample_lightness_shift` (ΔL*, L* units) are positive when the model made the
person lighter, the PULSE failure this project exists to measure; :func:`per_sample_hue_shift`
(Δh*, degrees) is positive when the skin moved toward yellow and negative toward red. The
angle differences are wrapped into (-180, 180] (:func:`wrap_degrees`): a difference of two
``atan2`` angles can otherwise reach ±360. :func:`per_sample_skin_shifts` computes all three
from one colour conversion (what the audit runs per batch).

Colour conversion (:func:`srgb_to_lab`): sRGB in [0, 1] -> linear RGB (the sRGB transfer
function) -> CIE XYZ under the D65 white point (the sRGB matrix of IEC 61966-2-1) ->
CIELAB relative to that white point, so sRGB white maps to exactly ``L* = 100, a* = b* = 0``.

Pure functions: tensors in, tensors out, on the input's device, no ``.item()``, inputs
left alone. torch is imported inside the functions so that importing ``genfair.audit``
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .metrics import _check_pair

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = [
    "GRAYSCALE_MSG",
    "HUE_SHIFT",
    "ITA_SHIFT",
    "LIGHTNESS_SHIFT",
    "SKIN_SHIFTS",
    "SRGB_TO_XYZ",
    "central_face_mask",
    "hue_angle",
    "individual_typology_angle",
    "per_sample_hue_shift",
    "per_sample_ita_shift",
    "per_sample_lightness_shift",
    "per_sample_skin_shifts",
    "perceptual_lightness",
    "srgb_to_lab",
    "wrap_degrees",
]

#: Per-image column names of the three skin-colour shifts (output minus original):
#: ΔITA in degrees, ΔL* in L* units, Δh* in degrees.
ITA_SHIFT = "ita_shift"
LIGHTNESS_SHIFT = "lightness_shift"
HUE_SHIFT = "hue_shift"
SKIN_SHIFTS = (ITA_SHIFT, LIGHTNESS_SHIFT, HUE_SHIFT)

#: Linear sRGB -> CIE XYZ (D65), rows X, Y, Z (IEC 61966-2-1).
SRGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
#: The default face region: an ellipse centred in the image whose axes span this
#: fraction of the width and of the height (the middle 40% x 50%).
FACE_WIDTH_FRACTION = 0.4
FACE_HEIGHT_FRACTION = 0.5

# Messages reused by the tests: each raise appends what it received.
GRAYSCALE_MSG = "skin-colour analysis (ITA, L*, hue) needs colour images with 3 channels (RGB)"
NOT_IMAGES_MSG = "images must be a floating point torch.Tensor of shape (N, 3, H, W)"
NOT_LAB_MSG = "lab must be a floating point torch.Tensor of shape (N, 3, H, W) (L*, a*, b*)"
BAD_MASK_MSG = "mask must be a floating point or bool torch.Tensor broadcastable to (N, 1, H, W)"
MASK_DEVICE_MSG = "mask must be on the images' device"
BAD_SIZE_MSG = "image_size must be a positive int or a (height, width) pair of them"

_DELTA = 6.0 / 29.0


def _check_colour(images: Tensor, message: str) -> None:
    """Raise ValueError unless ``images`` is a float (N, 3, H, W) tensor; C=1 gets its own message."""
    import torch

    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{message}, got {shape}")
    if images.shape[1] == 1:
        raise ValueError(
            f"{GRAYSCALE_MSG}, got grayscale images of shape {tuple(images.shape)}; skip the skin-tone "
            f"analysis for this dataset"
        )
    if images.shape[1] != 3:
        raise ValueError(f"{message}, got {tuple(images.shape)}")


def srgb_to_lab(images: Tensor) -> Tensor:
    """Convert sRGB images to CIELAB (D65 white point).

    Values are clamped to [0, 1] first (a model output a hair outside the range would
    otherwise give NaN in the transfer function).

    Args:
        images: (N, 3, H, W) float sRGB in [0, 1].

    Returns:
        (N, 3, H, W) tensor of the input's dtype and device: channel 0 ``L*`` in [0, 100],
        channels 1-2 ``a*`` and ``b*`` (roughly [-128, 128]).

    Raises:
        ValueError: if ``images`` is not a float 4-D tensor with 3 channels (the message
            for grayscale, C=1, is :data:`GRAYSCALE_MSG`).

    Example:
        >>> import torch
        >>> pixels = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0]).reshape(2, 3, 1, 1)
        >>> srgb_to_lab(pixels).flatten(1).round(decimals=2)
        tensor([[100.0000,   0.0000,   0.0000],
                [ 53.2400,  80.0900,  67.2000]])
    """
    import torch

    _check_colour(images, NOT_IMAGES_MSG)
    rgb = images.clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(SRGB_TO_XYZ, dtype=images.dtype, device=images.device)
    xyz = torch.einsum("ij,njhw->nihw", matrix, linear)
    white = matrix.sum(dim=1).view(1, 3, 1, 1)  # XYZ of sRGB white (1, 1, 1)
    t = xyz / white
    f = torch.where(t > _DELTA**3, t.clamp_min(_DELTA**3) ** (1.0 / 3.0), t / (3 * _DELTA**2) + 4.0 / 29.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def _check_mask(mask: Tensor, like: Tensor) -> Tensor:
    """Return ``mask`` as a float tensor broadcastable to (N, 1, H, W), or raise."""
    import torch

    n, _, height, width = like.shape
    if not isinstance(mask, torch.Tensor) or not (mask.is_floating_point() or mask.dtype == torch.bool):
        got = f"{mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{BAD_MASK_MSG}, got {got}")
    if mask.device != like.device:
        raise ValueError(f"{MASK_DEVICE_MSG}, got {mask.device} and {like.device}")
    shape = tuple(mask.shape)
    if mask.ndim == 3:
        mask = mask.unsqueeze(0)
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != (height, width) or mask.shape[0] not in (1, n):
        raise ValueError(f"{BAD_MASK_MSG} = {(n, 1, height, width)}, got {shape}")
    return mask.to(like.dtype)


def individual_typology_angle(lab: Tensor, mask: Tensor) -> Tensor:
    """ITA of each image's skin region, in degrees.

    ``ITA = degrees(atan2(mean L* - 50, mean b*))`` where the means are over the mask's
    pixels (weighted by the mask value). ``atan2`` equals the usual ``arctan((L* - 50) /
    b*)`` for ``b* > 0`` (all real skin) and stays defined at ``b* <= 0``. An image whose
    mask is empty has no skin region and gets NaN.

    Args:
        lab: (N, 3, H, W) float CIELAB (``L*, a*, b*``), e.g. from :func:`srgb_to_lab`.
        mask: float {0, 1} (or bool) skin mask of shape (N, 1, H, W), (1, 1, H, W) or
            (1, H, W), on ``lab``'s device (e.g. :func:`central_face_mask`).

    Returns:
        (N,) float tensor of angles in (-180, 180] degrees, on the input's device.

    Raises:
        ValueError: if ``lab`` or ``mask`` has the wrong type or shape, or they are on
            different devices.

    Example:
        >>> import torch
        >>> lab = torch.tensor([70.0, 10.0, 20.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
        >>> individual_typology_angle(lab, torch.ones(1, 2, 2))
        tensor([45.])
    """
    return _ita(_skin_means(lab, mask))


def perceptual_lightness(lab: Tensor, mask: Tensor) -> Tensor:
    """Mean perceptual lightness ``L*`` of each image's skin region (weighted by the mask).

    Args:
        lab: (N, 3, H, W) float CIELAB (``L*, a*, b*``), e.g. from :func:`srgb_to_lab`.
        mask: skin mask as for :func:`individual_typology_angle`.

    Returns:
        (N,) float tensor in [0, 100] (L* units) on the input's device; NaN where the mask is empty.

    Raises:
        ValueError: as :func:`individual_typology_angle`.

    Example:
        >>> import torch
        >>> lab = torch.tensor([[60.0, 20.0], [10.0, 10.0], [20.0, 20.0]]).view(1, 3, 1, 2)
        >>> perceptual_lightness(lab, torch.ones(1, 1, 2))
        tensor([40.])
    """
    return _skin_means(lab, mask)[:, 0]


def hue_angle(lab: Tensor, mask: Tensor) -> Tensor:
    """Hue angle ``h* = degrees(atan2(mean b*, mean a*))`` of each image's skin region.

    The means are over the mask's pixels (weighted by the mask value), as for ITA. Skin lies
    between red (small angles) and yellow (larger ones), roughly 20 to 80 degrees. The hue of
    a colourless mean (``a* = b* = 0``, a grey region) is undefined; ``atan2`` then gives 0.

    Args:
        lab: (N, 3, H, W) float CIELAB (``L*, a*, b*``), e.g. from :func:`srgb_to_lab`.
        mask: skin mask as for :func:`individual_typology_angle`.

    Returns:
        (N,) float tensor of angles in (-180, 180] degrees on the input's device; NaN where
        the mask is empty.

    Raises:
        ValueError: as :func:`individual_typology_angle`.

    Example:
        >>> import torch
        >>> lab = torch.tensor([60.0, 20.0, 20.0]).view(1, 3, 1, 1)
        >>> hue_angle(lab, torch.ones(1, 1, 1))
        tensor([45.])
    """
    return _hue(_skin_means(lab, mask))


def wrap_degrees(angles: Tensor) -> Tensor:
    """Angles (or differences of angles) in degrees, wrapped into (-180, 180].

    ``180`` stays ``180`` and ``-180`` becomes ``180``; NaN stays NaN.

    Args:
        angles: float tensor of any shape, degrees.

    Returns:
        Tensor of the same shape, dtype and device.

    Example:
        >>> import torch
        >>> wrap_degrees(torch.tensor([-340.0, -180.0, 0.0, 180.0, 190.0, 540.0]))
        tensor([  20.,  180.,    0.,  180., -170.,  180.])
    """
    import torch

    return 180.0 - torch.remainder(180.0 - angles, 360.0)


def _skin_means(lab: Tensor, mask: Tensor) -> Tensor:
    """(N, 3) mean ``L*, a*, b*`` over each image's mask (weighted by it); NaN rows for empty masks."""
    _check_colour(lab, NOT_LAB_MSG)
    weights = _check_mask(mask, lab)
    return (lab * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3))


def _ita(means: Tensor) -> Tensor:
    """ITA in degrees of (N, 3) mean ``L*, a*, b*``."""
    import torch

    return torch.rad2deg(torch.atan2(means[:, 0] - 50.0, means[:, 2]))


def _hue(means: Tensor) -> Tensor:
    """Hue angle in degrees of (N, 3) mean ``L*, a*, b*``."""
    import torch

    return torch.rad2deg(torch.atan2(means[:, 2], means[:, 1]))


def central_face_mask(
    image_size: int | tuple[int, int], *, device: str | torch.device | None = None
) -> Tensor:
    """The default skin region for data without masks: a centred ellipse.

    The ellipse is centred in the image and spans the middle 40% of the width and the
    middle 50% of the height (semi-axes 0.2 W and 0.25 H), where a centred, cropped face
    has cheeks, nose and forehead. A pixel is inside when its centre is.

    Args:
        image_size: ``H`` (square images) or ``(H, W)``; each at least 1.
        device: where to build the mask.

    Returns:
        (1, H, W) float32 tensor of 0s and 1s.

    Raises:
        ValueError: if ``image_size`` is not positive, or so small that no pixel centre
            falls inside the ellipse (e.g. 2x2).

    Example:
        >>> central_face_mask(6).int()
        tensor([[[0, 0, 0, 0, 0, 0],
                 [0, 0, 0, 0, 0, 0],
                 [0, 0, 1, 1, 0, 0],
                 [0, 0, 1, 1, 0, 0],
                 [0, 0, 0, 0, 0, 0],
                 [0, 0, 0, 0, 0, 0]]], dtype=torch.int32)
    """
    import torch

    size = (image_size, image_size) if not isinstance(image_size, (tuple, list)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise ValueError(f"{BAD_SIZE_MSG}, got {image_size!r}")
    height, width = size
    y = (torch.arange(height, dtype=torch.float64) + 0.5) / height - 0.5
    x = (torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5
    inside = (y[:, None] / (FACE_HEIGHT_FRACTION / 2)) ** 2 + (x[None, :] / (FACE_WIDTH_FRACTION / 2)) ** 2 <= 1.0
    if not bool(inside.any()):  # built on the CPU: no device sync
        raise ValueError(f"{BAD_SIZE_MSG}; no pixel centre of a {height}x{width} image falls inside the face ellipse")
    return inside.to(dtype=torch.float32, device=device).unsqueeze(0)


def _shift_means(preds: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(N, 3) skin-region mean ``L*, a*, b*`` of the outputs and of the originals, over one mask."""
    _check_pair(preds, target)
    _check_colour(target, NOT_IMAGES_MSG)
    if mask is None:
        mask = central_face_mask(tuple(target.shape[-2:]), device=target.device)
    weights = _check_mask(mask, target).flatten(2)  # (N or 1, 1, H * W)
    # Only the pixels some mask covers add to the means, so only they are converted to Lab: the
    # central face ellipse is 16% of the image. (On a GPU, where finding them would sync, all are.)
    if target.device.type == "cpu":
        covered = weights.ne(0).any(dim=0).any(dim=0).nonzero().squeeze(1)
        weights, preds, target = (x.flatten(2).index_select(2, covered) for x in (weights, preds, target))
    else:
        preds, target = preds.flatten(2), target.flatten(2)
    weights, preds, target = (x.unsqueeze(-1) for x in (weights, preds, target))  # (., ., K, 1) "images"
    return _skin_means(srgb_to_lab(preds), weights), _skin_means(srgb_to_lab(target), weights)


def _shifts(output: Tensor, original: Tensor) -> dict[str, Tensor]:
    """The three shifts from (N, 3) skin-region mean ``L*, a*, b*`` of outputs and originals."""
    return {
        ITA_SHIFT: wrap_degrees(_ita(output) - _ita(original)),
        LIGHTNESS_SHIFT: output[:, 0] - original[:, 0],
        HUE_SHIFT: wrap_degrees(_hue(output) - _hue(original)),
    }


def per_sample_ita_shift(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Skin-tone shift of each image: ``ITA(output) - ITA(original)``, in degrees.

    Positive means the output's skin is lighter than the original's, negative darker. The
    difference is wrapped into (-180, 180] (:func:`wrap_degrees`). Both measurements use the
    same skin region: the original's mask (the output should show the same face in the same
    place).

    Args:
        preds: (N, 3, H, W) float sRGB in [0, 1], the model's outputs.
        target: (N, 3, H, W) float sRGB in [0, 1], the originals.
        mask: skin mask (N, 1, H, W), (1, 1, H, W) or (1, H, W) in {0, 1} (a float mask
            weights the pixels), e.g. the DataModule's ``batch["mask"]``; ``None`` means
            :func:`central_face_mask`.

    Returns:
        (N,) float tensor of degrees in (-180, 180] on the input's device; NaN where the
        mask is empty.

    Raises:
        ValueError: if preds/target are not same-shape float tensors on one device,
            are grayscale (:data:`GRAYSCALE_MSG`; skip the analysis), or the mask is
            invalid.

    Example:
        >>> import torch
        >>> skin = torch.tensor([0.55, 0.40, 0.30]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
        >>> per_sample_ita_shift(skin, skin)
        tensor([0.])
        >>> bool(per_sample_ita_shift(skin + 0.2, skin) > 0)  # a lighter output
        True
    """
    return _shifts(*_shift_means(preds, target, mask))[ITA_SHIFT]


def per_sample_lightness_shift(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Lightness shift of each image: mean ``L*(output) - L*(original)`` over the skin region.

    Positive means the output's skin is lighter (perceptual lightness, in L* units: 0 black,
    100 white), negative darker.

    Args:
        preds, target, mask: as for :func:`per_sample_ita_shift` (one mask, the original's,
            for both images).

    Returns:
        (N,) float tensor of L* units in [-100, 100] on the input's device; NaN where the
        mask is empty.

    Raises:
        ValueError: as :func:`per_sample_ita_shift`.

    Example:
        >>> import torch
        >>> white, black = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
        >>> per_sample_lightness_shift(white, black), per_sample_lightness_shift(black, white)
        (tensor([100.]), tensor([-100.]))
    """
    return _shifts(*_shift_means(preds, target, mask))[LIGHTNESS_SHIFT]


def per_sample_hue_shift(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Hue shift of each image: ``h*(output) - h*(original)`` of the skin region, in degrees.

    ``h* = atan2(mean b*, mean a*)`` (:func:`hue_angle`); positive means the output's skin is
    yellower, negative redder. The difference is wrapped into (-180, 180]: a hue that crosses
    the ±180 line (from 170 to -170 degrees) shifts by 20, not -340.

    Args:
        preds, target, mask: as for :func:`per_sample_ita_shift` (one mask, the original's,
            for both images).

    Returns:
        (N,) float tensor of degrees in (-180, 180] on the input's device; NaN where the mask
        is empty.

    Raises:
        ValueError: as :func:`per_sample_ita_shift`.

    Example:
        >>> import torch
        >>> red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
        >>> yellow = torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
        >>> per_sample_hue_shift(yellow, red).round(decimals=1)  # hue 40.0 -> 102.9 degrees
        tensor([62.9000])
    """
    return _shifts(*_shift_means(preds, target, mask))[HUE_SHIFT]


def per_sample_skin_shifts(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
    """All three skin-colour shifts of each image from one colour conversion.

    Equal to :func:`per_sample_ita_shift`, :func:`per_sample_lightness_shift` and
    :func:`per_sample_hue_shift` with the same arguments (each converts to CIELAB on its own).

    Args:
        preds, target, mask: as for :func:`per_sample_ita_shift` (one mask, the original's,
            for both images).

    Returns:
        ``{ITA_SHIFT: ΔITA (N,), LIGHTNESS_SHIFT: ΔL* (N,), HUE_SHIFT: Δh* (N,)}``, keyed
        ``"ita_shift"``, ``"lightness_shift"``, ``"hue_shift"`` (:data:`SKIN_SHIFTS`).

    Raises:
        ValueError: as :func:`per_sample_ita_shift`.

    Example:
        >>> import torch
        >>> skin = torch.tensor([0.55, 0.40, 0.30]).view(1, 3, 1, 1).expand(2, 3, 8, 8)
        >>> {name: shift.abs().max().item() for name, shift in per_sample_skin_shifts(skin, skin).items()}
        {'ita_shift': 0.0, 'lightness_shift': 0.0, 'hue_shift': 0.0}
    """
    return _shifts(*_shift_means(preds, target, mask))

