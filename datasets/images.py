"""Reading images of a manifest as tensors: originals, masks, outputs a model wrote, and the inputs it saw.

Every image is converted to RGB or greyscale, made square by the run's ``fit`` (:data:`FITS`) and
resized to the run's side (box filter when shrinking, bicubic when enlarging); masks follow the
same geometry with nearest-neighbour resizing. Used by :mod:`genfair.datasets.datamodule`.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .manifest import ASPECT_TOLERANCE, ERR_ASPECT_RATIO

__all__ = ["CHANNEL_MODES", "FITS", "load_image", "load_mask", "load_output"]

#: How an image that is not square becomes square: the centred square cut out of it, the image
#: centred on a black square (masks: outside the mask), or resized without keeping its shape.
FITS = ("crop", "pad", "stretch")
CHANNEL_MODES: dict[int, str] = {1: "L", 3: "RGB"}
"""PIL mode per channel count."""


class _AspectRatioError(ValueError):
    """An output image's aspect ratio differs from its original's (see :func:`load_output`)."""

    def __init__(self, output: tuple[int, int], original: tuple[int, int], path: str | os.PathLike[str]) -> None:
        self.output, self.original, self.path = output, original, os.fspath(path)
        super().__init__(f"{self.path}: {self.problem}; fix: {self.fix}")

    @property
    def problem(self) -> str:
        """The problem, starting with :data:`ERR_ASPECT_RATIO` (no file name)."""
        (width, height), (original_width, original_height) = self.output, self.original
        off = (width / height) / (original_width / original_height) - 1.0
        return (
            f"{ERR_ASPECT_RATIO} by {abs(off):.1%} (more than {ASPECT_TOLERANCE:.0%}): output {width}x{height} "
            f"vs original {original_width}x{original_height}"
        )

    @property
    def fix(self) -> str:
        """What to do about it."""
        width, height = self.original
        return (
            f"save the output at the original's aspect ratio (e.g. {width}x{height}): a stretched output "
            f"would be compared with a differently shaped original"
        )


def load_image(path: str | os.PathLike[str], *, image_size: int, channels: int = 3, fit: str = "crop") -> torch.Tensor:
    """Read one image as a tensor.

    The image is converted to RGB (``channels=3``) or greyscale (``channels=1``), made square
    by ``fit`` when it is not (:data:`FITS`: ``"crop"`` cuts the centred square of side
    ``min(w, h)``, ``"pad"`` centres it on a black square of side ``max(w, h)``, ``"stretch"``
    leaves it to the resize), then, when its size differs, resized to ``image_size x
    image_size`` (a box/area filter when shrinking, bicubic when enlarging).

    Args:
        path: an image file PIL can read.
        image_size: output side in pixels.
        channels: 1 or 3.
        fit: one of :data:`FITS`.

    Returns:
        ``(channels, image_size, image_size)`` float32 in [0, 1].

    Raises:
        ValueError: ``channels`` is not 1 or 3, or a bad ``fit``.
    """
    return _load_sized(path, image_size=image_size, channels=channels, fit=fit)[0]


def _load_sized(path: str | os.PathLike[str], *, image_size: int, channels: int = 3,
                fit: str = "crop") -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`load_image`, with the file's own ``(width, height)`` (what :func:`load_output` compares)."""
    _check_channels(channels)
    with Image.open(path) as opened:
        size = opened.size
        image = opened.convert(CHANNEL_MODES[channels])
    return _as_tensor(_fit(_square(image, fit), image_size)), size


def load_output(
    path: str | os.PathLike[str],
    *,
    original: str | os.PathLike[str] | tuple[int, int],
    image_size: int,
    channels: int = 3,
    fit: str = "crop",
) -> torch.Tensor:
    """Read a model's output image (already on disk) as a tensor, like :func:`load_image` reads originals.

    The output may have any size, but the shape of its original: its aspect ratio (width /
    height) may differ from the original's by at most :data:`ASPECT_TOLERANCE` (1%). It is then
    converted to RGB or greyscale, made square by ``fit`` and resized to ``image_size x
    image_size`` by the rules of :func:`load_image`, so that it lines up with its original. Only
    the original's header is read, and not even that when its size is given.

    Args:
        path: the output image, a file PIL can read.
        original: the image the output was made from (its size is compared), or its ``(width,
            height)`` where the caller already has it (the dataset, which has just decoded it).
        image_size: output side in pixels.
        channels: 1 or 3.
        fit: one of :data:`FITS`, as for the original.

    Returns:
        ``(channels, image_size, image_size)`` float32 in [0, 1].

    Raises:
        ValueError: ``channels`` is not 1 or 3, or the aspect ratios differ by more than 1% (the
            message gives both sizes: ``output 64x48 vs original 64x64``).
    """
    _check_channels(channels)
    if isinstance(original, tuple):
        original_size = original
    else:
        with Image.open(original) as opened:
            original_size = opened.size
    with Image.open(path) as opened:
        (width, height), (original_width, original_height) = opened.size, original_size
        # the 1e-12 keeps a difference of exactly the tolerance (e.g. 101x100 vs 100x100) inside it
        if abs((width * original_height) / (height * original_width) - 1.0) > ASPECT_TOLERANCE + 1e-12:
            raise _AspectRatioError(opened.size, original_size, path)
        image = opened.convert(CHANNEL_MODES[channels])
    return _as_tensor(_fit(_square(image, fit), image_size))


def _read_as_is(path: str | os.PathLike[str], *, channels: int, fit: str = "crop") -> torch.Tensor:
    """One image made square by ``fit`` at its own scale, as RGB or greyscale: ``(channels, s, s)``
    float32 in [0, 1] (``"stretch"``: not made square, ``(channels, h, w)``)."""
    _check_channels(channels)
    with Image.open(path) as opened:
        image = opened.convert(CHANNEL_MODES[channels])
    return _as_tensor(_square(image, fit))


def _check_fit(fit: str) -> None:
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)} (--fit), got {fit!r}")


def _check_channels(channels: int) -> None:
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {sorted(CHANNEL_MODES)}, got {channels!r}")


def _square(image: Image.Image, fit: str) -> Image.Image:
    """``image`` made square by ``fit`` (:data:`FITS`), at its own scale; ``"stretch"`` returns it as it is."""
    _check_fit(fit)
    width, height = image.size
    if width == height or fit == "stretch":
        return image
    if fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), 0)  # black; for masks: outside the mask
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _fit(image: Image.Image, image_size: int) -> Image.Image:
    """``image`` resized to ``image_size x image_size`` (box filter when shrinking, else bicubic)."""
    if image.size == (image_size, image_size):
        return image
    shrinking = image.width >= image_size and image.height >= image_size
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return image.resize((image_size, image_size), resample)


def _as_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit ``L`` or ``RGB`` image as ``(C, h, w)`` float32 in [0, 1]."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).to(torch.float32).div_(255.0)


def load_mask(path: str | os.PathLike[str], *, image_size: int, fit: str = "crop") -> torch.Tensor:
    """Read one mask as a binary tensor.

    The file is read as greyscale, made square by ``fit`` like its image (padding is outside the
    mask) and, when its size differs, resized to ``image_size x image_size`` with
    nearest-neighbour (so it stays binary). Values of 128 or more (of 255) are in the mask.

    Args:
        path: a mask image PIL can read (e.g. a mode ``"L"`` PNG of 0 and 255).
        image_size: output side in pixels.
        fit: one of :data:`FITS`, as for the image.

    Returns:
        ``(1, image_size, image_size)`` float32 in {0, 1}.
    """
    with Image.open(path) as opened:
        mask = _square(opened.convert("L"), fit)
    if mask.size != (image_size, image_size):
        mask = mask.resize((image_size, image_size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.array(mask, dtype=np.uint8) >= 128).to(torch.float32).unsqueeze(0)
