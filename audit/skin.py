"""Skin-tone shift: how much lighter or darker a model makes the skin, as a change of ITA.

The Individual Typology Angle (ITA, Chardon et al. 1991) classifies skin colour from the
CIELAB lightness ``L*`` and yellow-blue component ``b*``:
``ITA = degrees(atan2(L* - 50, b*))``; larger angles are lighter skin (above 55 degrees
"very light", below -30 "dark"). For an image, genfair takes the **mean L\\* and mean
b\\* over the skin region** (the mask's pixels, weighted by the mask), then the ITA of
those means. :func:`per_sample_ita_shift` is ``ITA(output) - ITA(original)`` per image:
positive means the model made the person lighter, the PULSE failure this project exists
to measure.

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
    "SRGB_TO_XYZ",
    "central_face_mask",
    "individual_typology_angle",
    "per_sample_ita_shift",
    "srgb_to_lab",
]

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
GRAYSCALE_MSG = "skin-tone (ITA) analysis needs colour images with 3 channels (RGB)"
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
    import torch

    _check_colour(lab, NOT_LAB_MSG)
    weights = _check_mask(mask, lab)
    total = weights.sum(dim=(1, 2, 3))
    lightness = (lab[:, 0:1] * weights).sum(dim=(1, 2, 3)) / total
    yellow = (lab[:, 2:3] * weights).sum(dim=(1, 2, 3)) / total
    return torch.rad2deg(torch.atan2(lightness - 50.0, yellow))


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


def per_sample_ita_shift(preds: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Skin-tone shift of each image: ``ITA(output) - ITA(original)``, in degrees.

    Positive means the output's skin is lighter than the original's, negative darker.
    Both ITAs use the same skin region: the original's mask (the output should show the
    same face in the same place).

    Args:
        preds: (N, 3, H, W) float sRGB in [0, 1], the model's outputs.
        target: (N, 3, H, W) float sRGB in [0, 1], the originals.
        mask: skin mask (N, 1, H, W), (1, 1, H, W) or (1, H, W) in {0, 1}, e.g. the
            DataModule's ``batch["mask"]``; ``None`` means :func:`central_face_mask`.

    Returns:
        (N,) float tensor on the input's device; NaN where the mask is empty.

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
    _check_pair(preds, target)
    _check_colour(target, NOT_IMAGES_MSG)
    if mask is None:
        mask = central_face_mask(tuple(target.shape[-2:]), device=target.device)
    return individual_typology_angle(srgb_to_lab(preds), mask) - individual_typology_angle(
        srgb_to_lab(target), mask
    )
