"""Pure per-image pixel losses shared by the autoencoders and the super-resolution model.

Each loss is a mean over an image's channels and pixels (the scale of ``torch.nn.MSELoss`` and
of Keras' ``"mse"`` / ``"binary_crossentropy"``), so its value reads like the audit's per-image
``mse_error`` and does not grow with the image size.
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PIXEL_LOSSES", "PixelLoss", "per_sample_pixel_loss"]

PixelLoss = Literal["bce", "l1", "mse"]
PIXEL_LOSSES: tuple[str, ...] = typing.get_args(PixelLoss)
"""Allowed values of ``kind`` in :func:`per_sample_pixel_loss`."""


def per_sample_pixel_loss(preds: Tensor, target: Tensor, *, kind: PixelLoss, from_logits: bool = False) -> Tensor:
    """Per-image loss, averaged over channels and pixels.

    Args:
        preds: (N, C, H, W) float: images (any range for ``"mse"``/``"l1"``, [0, 1] for ``"bce"``),
            or pre-sigmoid logits when ``from_logits`` is true.
        target: (N, C, H, W) float in [0, 1].
        kind: ``"mse"`` (squared error), ``"l1"`` (absolute error) or ``"bce"`` (binary
            cross-entropy; from logits it is computed stably with ``binary_cross_entropy_with_logits``).
        from_logits: Whether ``preds`` are logits; ``"mse"`` and ``"l1"`` then compare
            ``sigmoid(preds)``.

    Returns:
        (N,) float on the inputs' device; lower is better.

    Raises:
        ValueError: If the shapes differ or are not 4-D, or ``kind`` is unknown.

    Example:
        >>> per_sample_pixel_loss(torch.full((2, 1, 2, 2), 0.5), torch.ones(2, 1, 2, 2), kind="mse")
        tensor([0.2500, 0.2500])
    """
    if preds.shape != target.shape or preds.ndim != 4:
        raise ValueError(f"preds and target must have the same (N, C, H, W) shape, got {tuple(preds.shape)} and {tuple(target.shape)}")
    if kind == "bce":
        if from_logits:
            per_pixel = F.binary_cross_entropy_with_logits(preds, target, reduction="none")
        else:
            per_pixel = F.binary_cross_entropy(preds, target, reduction="none")
    elif kind in ("mse", "l1"):
        images = torch.sigmoid(preds) if from_logits else preds
        diff = images - target
        per_pixel = diff.square() if kind == "mse" else diff.abs()
    else:
        raise ValueError(f"pixel loss kind must be one of {PIXEL_LOSSES}, got {kind!r}")
    return per_pixel.flatten(1).mean(dim=1)
