"""Super-resolution: a learned residual network (``sr``) and its no-learning baseline (``bicubic``).

Both read ``batch["lowres"]``: (B, C, H/s, W/s) float in [0, 1], the image area-averaged down by
``s = config.scale`` (``avg_pool2d``), and output the full-size image (B, C, H, W) in [0, 1].

``sr`` (ESPCN-style sub-pixel head, EDSR-style residual blocks without normalisation)::

    base     = clamp(bicubic(lowres, x s), 0, 1)                            (B, C, H, W)
    features = Conv2d 3x3 (C -> F) -> ReLU -> [residual block] x N           at H/s x W/s
               residual block: x + Conv2d 3x3 -> ReLU -> Conv2d 3x3
    residual = Conv2d 3x3 (F -> C * s^2) -> PixelShuffle(s)                  (B, C, H, W)
    output   = clamp(base + residual, 0, 1)

The network works at the low resolution (cheap) and only learns what bicubic upsampling misses.
Its last convolution starts at zero, so an untrained ``sr`` is exactly ``bicubic``. The training
loss compares the unclamped ``base + residual`` (clamping would stop the gradient of pixels
outside [0, 1]); outputs are clamped.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    ConfiguredModule,
    check_choice,
    check_positive_int,
    check_positive_real,
    check_seed,
    is_int,
    seeded,
)
from .losses import per_sample_pixel_loss
from .registry import register

__all__ = ["SCALES", "SR", "SRConfig", "Bicubic", "BicubicConfig", "bicubic_upsample"]

logger = logging.getLogger(__name__)

SCALES: tuple[int, ...] = (2, 4, 8)
"""Allowed super-resolution factors (``config.scale``)."""

SRLoss = Literal["mse", "l1"]


def bicubic_upsample(lowres: Tensor, *, scale: int) -> Tensor:
    """Bicubic upsampling by an integer factor, clamped to [0, 1] (bicubic overshoots at edges).

    Args:
        lowres: (N, C, h, w) float in [0, 1].
        scale: Upsampling factor, >= 1.

    Returns:
        (N, C, h * scale, w * scale) float in [0, 1]:
        ``F.interpolate(lowres, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)``.

    Raises:
        ValueError: If ``lowres`` is not 4-D or ``scale`` is not a positive int.

    Example:
        >>> bicubic_upsample(torch.full((1, 1, 2, 2), 0.5), scale=2).shape
        torch.Size([1, 1, 4, 4])
    """
    if not isinstance(lowres, Tensor) or lowres.ndim != 4:
        got = tuple(lowres.shape) if isinstance(lowres, Tensor) else type(lowres).__name__
        raise ValueError(f"lowres must be a (N, C, h, w) tensor, got {got}")
    if not is_int(scale) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    size = (lowres.shape[-2] * scale, lowres.shape[-1] * scale)
    return F.interpolate(lowres, size=size, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def _check_scale(owner: str, image_size: int, scale: object) -> None:
    if scale not in SCALES or not is_int(scale):
        raise ValueError(f"{owner}.scale must be one of {SCALES}, got {scale!r}")
    if image_size % scale:  # type: ignore[operator]
        raise ValueError(f"{owner}.image_size must be divisible by scale, got image_size={image_size!r} with scale={scale!r}; use a multiple of {scale}")


class _LowresModule(ConfiguredModule):
    """Shared batch handling of the super-resolution modules (they read ``batch["lowres"]``)."""

    batch_keys = ("lowres", "index")

    def _check_lowres(self, lowres: Tensor) -> None:
        self._check_images(lowres, side=self.config.image_size // self.config.scale, what=f"lowres images (scale={self.config.scale})")

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Deterministic full-size outputs of a batch.

        Args:
            batch: ``{"lowres": (B, C, H/s, W/s) float in [0, 1], "index": (B,) long, ...}``.
            batch_idx: Position of the batch in the dataloader (unused).
            dataloader_idx: Index of the dataloader (unused).

        Returns:
            ``{"index": (B,) long, "output": (B, C, H, W) float in [0, 1]}``.

        Raises:
            ValueError: If the batch lacks ``"lowres"`` or ``"index"``, or the shapes are wrong.
        """
        lowres = self._batch_tensor(batch, "lowres")
        self._check_lowres(lowres)
        index = self._batch_index(batch, lowres.shape[0], like="lowres")
        return {"index": index, "output": self(lowres)}


# --------------------------------------------------------------------------- sr


@dataclass(frozen=True, kw_only=True)
class SRConfig:
    """Hyperparameters of :class:`SR`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        image_size: Height and width of the full-size (target) images, in pixels; divisible by ``scale``.
        channels: Image channels: 3 for RGB, 1 for grayscale.
        scale: Super-resolution factor, one of :data:`SCALES`: inputs are ``image_size // scale``.
        features: Channels of the feature maps (at the low resolution).
        residual_blocks: Number of residual blocks (0 gives plain ESPCN: conv -> sub-pixel head).
        loss: ``"mse"`` or ``"l1"``, averaged over pixels.
        learning_rate: Adam learning rate.
        seed: Seeds the weight initialisation. ``0 <= seed < 2**32``.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    scale: int = 4
    features: int = 32
    residual_blocks: int = 3
    loss: SRLoss = "mse"
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "features"):
            check_positive_int("SRConfig", name, getattr(self, name))
        _check_scale("SRConfig", self.image_size, self.scale)
        if not is_int(self.residual_blocks) or self.residual_blocks < 0:
            raise ValueError(f"SRConfig.residual_blocks must be an int >= 0, got {self.residual_blocks!r}")
        check_choice("SRConfig", "loss", self.loss, typing.get_args(SRLoss))
        check_positive_real("SRConfig", "learning_rate", self.learning_rate)
        check_seed("SRConfig", self.seed)


class _ResidualBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(features, features, kernel_size=3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@register("sr", config=SRConfig, task="upsampling", baseline="bicubic",
          description="residual super-resolution network that learns what bicubic upsampling misses")
class SR(_LowresModule):
    """Residual super-resolution network over bicubic upsampling, with a sub-pixel head.

    Build it with ``SR(config)``, ``SR.from_config(config)`` or ``SR(**asdict(config))``.
    Batches are dicts ``{"lowres": (B, C, H/s, W/s), "image": (B, C, H, W), "index": (B,)}``,
    floats in [0, 1]; training, validation and test need ``"image"`` (the target), prediction
    only ``"lowres"`` and ``"index"``. Logs ``{stage}/loss``, ``{stage}/mse`` and
    ``{stage}/bicubic_mse`` (the baseline's error on the same batch, for comparison).
    Training objective: the mean of the per-image losses by default; ``set_objective`` attaches a
    :class:`~genfair.models.objectives.GroupObjective` (reweighted, group DRO) that reduces them
    per group in training (batches then need ``"labels"``); validation and test keep the mean.

    Attributes:
        config: The :class:`SRConfig` this module was built from.
        body: (B, C, H/s, W/s) -> features (B, F, H/s, W/s).
        head: Features -> residual (B, C, H, W): Conv2d to ``C * s^2`` channels, then PixelShuffle.
    """

    config_class = SRConfig
    supports_objectives = True

    def __init__(self, config: SRConfig | None = None, **hparams: Any) -> None:
        """Build the network from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not an
                ``SRConfig``, or a keyword is not an ``SRConfig`` field.
            ValueError: If a field value is invalid (see :class:`SRConfig`).
        """
        super().__init__(config, **hparams)
        config = self.config
        f, s = config.features, config.scale
        with seeded(config.seed):
            self.body = nn.Sequential(
                nn.Conv2d(config.channels, f, kernel_size=3, padding=1),
                nn.ReLU(),
                *[_ResidualBlock(f) for _ in range(config.residual_blocks)],
            )
            self.head = nn.Sequential(nn.Conv2d(f, config.channels * s * s, kernel_size=3, padding=1), nn.PixelShuffle(s))
        nn.init.zeros_(self.head[0].weight)  # start as bicubic: the residual is 0
        nn.init.zeros_(self.head[0].bias)

    def residual(self, lowres: Tensor) -> Tensor:
        """What the network adds to the clamped bicubic upsampling.

        Args:
            lowres: (N, C, H/s, W/s) float in [0, 1].

        Returns:
            (N, C, H, W) float (any sign).

        Raises:
            ValueError: If the shape does not match the config.
        """
        self._check_lowres(lowres)
        return self.head(self.body(lowres))

    def _unclamped(self, lowres: Tensor) -> tuple[Tensor, Tensor]:
        base = bicubic_upsample(lowres, scale=self.config.scale)
        return base, base + self.residual(lowres)

    def forward(self, lowres: Tensor) -> Tensor:
        """Full-size output of each low-resolution image.

        Args:
            lowres: (N, C, H/s, W/s) float in [0, 1].

        Returns:
            (N, C, H, W) float in [0, 1].

        Raises:
            ValueError: If the shape does not match the config.
        """
        return self._unclamped(lowres)[1].clamp(0.0, 1.0)

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        """Loss of one batch; logs ``{stage}/loss``, ``{stage}/mse`` and ``{stage}/bicubic_mse``."""
        lowres = self._batch_tensor(batch, "lowres")
        images = self._batch_tensor(batch, "image")
        self._check_images(images, what="target images")
        base, output = self._unclamped(lowres)
        per_sample = per_sample_pixel_loss(output, images, kind=self.config.loss)
        loss = self._objective_loss(per_sample, batch, stage=stage)
        with torch.no_grad():
            mse = (output.clamp(0.0, 1.0) - images).square().mean()
            bicubic_mse = (base - images).square().mean()
        self._log_terms(stage, {"loss": loss, "mse": mse, "bicubic_mse": bicubic_mse}, batch_size=images.shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.config.learning_rate)


# --------------------------------------------------------------------------- bicubic


@dataclass(frozen=True, kw_only=True)
class BicubicConfig:
    """Settings of :class:`Bicubic`, the no-learning baseline. Plain data.

    Attributes:
        image_size: Height and width of the full-size images, in pixels; divisible by ``scale``.
        channels: Image channels: 3 for RGB, 1 for grayscale.
        scale: Upsampling factor, one of :data:`SCALES`.
        seed: Unused (bicubic upsampling has no randomness); kept so every model config has one.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    scale: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels"):
            check_positive_int("BicubicConfig", name, getattr(self, name))
        _check_scale("BicubicConfig", self.image_size, self.scale)
        check_seed("BicubicConfig", self.seed)


@register("bicubic", config=BicubicConfig, max_epochs=0, task="upsampling",
          description="bicubic upsampling, never trained: the super-resolution baseline")
class Bicubic(_LowresModule):
    """Bicubic upsampling of ``batch["lowres"]`` as a LightningModule; nothing to train.

    Registered with ``max_epochs=0``: the pipeline skips ``fit``. ``trainer.validate`` and
    ``trainer.test`` log ``{stage}/mse`` (and ``{stage}/loss``, the same value); a ``fit``, if run
    anyway, does nothing (no parameters, no optimisers). Training objectives
    (:mod:`genfair.models.objectives`) do not apply: there is no training loss to reduce, and
    ``set_objective`` refuses any kind but ``"erm"``.

    Attributes:
        config: The :class:`BicubicConfig` this module was built from.
    """

    config_class = BicubicConfig

    def __init__(self, config: BicubicConfig | None = None, **hparams: Any) -> None:
        """Build the baseline from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not a
                ``BicubicConfig``, or a keyword is not a ``BicubicConfig`` field.
            ValueError: If a field value is invalid (see :class:`BicubicConfig`).
        """
        super().__init__(config, **hparams)
        self.automatic_optimization = False

    def forward(self, lowres: Tensor) -> Tensor:
        """Bicubic upsampling, clamped.

        Args:
            lowres: (N, C, H/s, W/s) float in [0, 1].

        Returns:
            (N, C, H, W) float in [0, 1], equal to :func:`bicubic_upsample` ``(lowres, scale=config.scale)``.

        Raises:
            ValueError: If the shape does not match the config.
        """
        self._check_lowres(lowres)
        return bicubic_upsample(lowres, scale=self.config.scale)

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        """Logs ``{stage}/loss`` and ``{stage}/mse`` (equal); returns None: there is nothing to optimise."""
        lowres = self._batch_tensor(batch, "lowres")
        images = self._batch_tensor(batch, "image")
        self._check_images(images, what="target images")
        mse = (self(lowres) - images).square().mean()
        self._log_terms(stage, {"loss": mse, "mse": mse}, batch_size=images.shape[0])
        return None

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """No optimisers (an empty list, which Lightning accepts without a warning)."""
        return []
