"""The dense autoencoder of the classic lecture example, and its config.

Architecture (defaults, 64x64 RGB)::

    encoder: flatten (B, 12288) - 0.5 -> [Linear -> ReLU] per hidden layer (512) -> Linear -> code (B, 64)
    decoder: [Linear -> ReLU] per hidden layer, mirrored (512) -> Linear (B, 12288)
             -> sigmoid | linear (+ 0.5) -> (B, 3, 64, 64)

One hidden layer of 512 is the default because it trained best in the 10 epochs the audit
usually gives (synthetic faces, 64x64, batch 32: test MSE 0.0079 for (512,), 0.0077 for (1024,)
at twice the cost, 0.0100 for (512, 256), 0.0102 for (1024, 256)); deeper stacks like the
lecture's are a ``hidden_units`` away.

Inputs enter the encoder shifted to [-0.5, 0.5]: zero-centred inputs condition the wide first
layer (12,288 inputs) much better, which on the synthetic faces cut the test MSE after 10 epochs
by about a third. The code (the bottleneck) is linear, not ReLU'd: a ReLU there can switch units off for good
and waste the few dimensions the bottleneck has. ``bottleneck=64`` is the everyday setting and
16 the lecture's "ambitious" one.

Output activation and loss (the lecture's options):

- ``output_activation="sigmoid"``: the last layer's outputs are logits; images are
  ``sigmoid(logits)``. ``loss="bce"`` is computed from the logits (stable), ``loss="mse"`` on
  ``sigmoid(logits)``.
- ``output_activation="linear"``: the last layer's outputs are the image itself, trained with
  ``loss="mse"`` unclamped; :meth:`AE.forward` and ``predict_step`` clamp them to [0, 1].
  ``loss="bce"`` is rejected: cross-entropy needs outputs in [0, 1], which a linear layer does
  not give (use the sigmoid output, which is BCE-with-logits anyway).
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._common import (
    LR_SCHEDULES,
    ConfiguredModule,
    LrSchedule,
    check_choice,
    check_positive_int,
    check_positive_real,
    check_seed,
    int_tuple_field,
    seeded,
    with_lr_schedule,
)
from .losses import per_sample_pixel_loss
from .registry import register

__all__ = ["AE", "AEConfig", "AE_OPTIMIZERS", "DEFAULT_LEARNING_RATES"]

logger = logging.getLogger(__name__)

AELoss = Literal["mse", "bce"]
OutputActivation = Literal["sigmoid", "linear"]
AEOptimizer = Literal["adam", "adadelta"]
AE_OPTIMIZERS: tuple[str, ...] = typing.get_args(AEOptimizer)
"""Allowed values of ``AEConfig.optimizer``."""

_MID_GREY = 0.5
"""Inputs are shifted by -0.5 (to [-0.5, 0.5]) and linear outputs by +0.5 (sigmoid(0) is already 0.5)."""

DEFAULT_LEARNING_RATES: dict[str, float] = {"adam": 1e-3, "adadelta": 1.0}
"""The learning rate each optimiser uses when ``AEConfig.learning_rate`` is None (torch/Keras defaults)."""


@dataclass(frozen=True, kw_only=True)
class AEConfig:
    """Hyperparameters of :class:`AE`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        image_size: Height and width of the square input images, in pixels.
        channels: Image channels: 3 for RGB, 1 for grayscale.
        hidden_units: Widths of the encoder's hidden layers, from the input side; the decoder
            mirrors them. ``()`` gives the one-layer lecture model (pixels -> code -> pixels).
            A list (e.g. from YAML) is converted to a tuple.
        bottleneck: Width of the code (the latent dimension).
        loss: ``"mse"`` or ``"bce"``, averaged over pixels (see :func:`per_sample_pixel_loss`).
        output_activation: ``"sigmoid"`` or ``"linear"`` (clamped to [0, 1] at prediction);
            ``"linear"`` needs ``loss="mse"``.
        optimizer: ``"adam"`` or ``"adadelta"`` (the lecture's two choices).
        learning_rate: The optimiser's learning rate; None uses :data:`DEFAULT_LEARNING_RATES`
            (1e-3 for Adam, 1.0 for Adadelta).
        lr_schedule: ``"plateau"`` halves the learning rate when the validation loss stalls
            (see :func:`~genfair.models._common.with_lr_schedule`), ``"constant"`` keeps it.
        seed: Seeds the weight initialisation. ``0 <= seed < 2**32``.

    Raises:
        ValueError: On any out-of-range or wrongly typed value, or ``loss="bce"`` with a linear
            output; the message quotes the value.
    """

    image_size: int = 64
    channels: int = 3
    hidden_units: tuple[int, ...] = (512,)
    bottleneck: int = 64
    loss: AELoss = "mse"
    output_activation: OutputActivation = "sigmoid"
    optimizer: AEOptimizer = "adam"
    learning_rate: float | None = None
    lr_schedule: LrSchedule = "plateau"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "bottleneck"):
            check_positive_int("AEConfig", name, getattr(self, name))
        int_tuple_field(self, "hidden_units", allow_empty=True)
        check_choice("AEConfig", "loss", self.loss, typing.get_args(AELoss))
        check_choice("AEConfig", "output_activation", self.output_activation, typing.get_args(OutputActivation))
        if self.loss == "bce" and self.output_activation == "linear":
            raise ValueError("AEConfig.loss='bce' needs output_activation='sigmoid' (cross-entropy needs outputs in [0, 1]); use loss='mse' with a linear output")
        check_choice("AEConfig", "optimizer", self.optimizer, AE_OPTIMIZERS)
        if self.learning_rate is not None:
            check_positive_real("AEConfig", "learning_rate", self.learning_rate)
        check_choice("AEConfig", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_seed("AEConfig", self.seed)

    @property
    def effective_learning_rate(self) -> float:
        """``learning_rate``, or the optimiser's default from :data:`DEFAULT_LEARNING_RATES` when None."""
        return DEFAULT_LEARNING_RATES[self.optimizer] if self.learning_rate is None else float(self.learning_rate)


def _mlp(widths: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return layers


@register("ae", config=AEConfig, baseline="pca",
          description="dense (fully connected) autoencoder with a linear bottleneck code")
class AE(ConfiguredModule):
    """Dense (fully connected) autoencoder; reconstructs images in [0, 1].

    Build it with ``AE(config)``, ``AE.from_config(config)`` or ``AE(**asdict(config))``.
    Batches are dicts ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) long}``.
    Logs ``{stage}/loss`` (the configured loss) and ``{stage}/mse``.
    Training objective: the mean of the per-image losses by default; ``set_objective`` attaches a
    :class:`~genfair.models.objectives.GroupObjective` (reweighted, group DRO) that reduces them
    per group in training (batches then need ``"labels"``); validation and test keep the mean.

    Attributes:
        config: The :class:`AEConfig` this module was built from.
        encoder: (B, C, H, W) -> code (B, bottleneck).
        decoder: code (B, bottleneck) -> raw outputs (B, C * H * W): logits (sigmoid output) or
            pixel values (linear output).
    """

    config_class = AEConfig
    supports_objectives = True

    def __init__(self, config: AEConfig | None = None, **hparams: Any) -> None:
        """Build the network from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not an
                ``AEConfig``, or a keyword is not an ``AEConfig`` field.
            ValueError: If a field value is invalid (see :class:`AEConfig`).
        """
        super().__init__(config, **hparams)
        config = self.config
        pixels = config.channels * config.image_size**2
        widths = [pixels, *config.hidden_units]
        with seeded(config.seed):
            self.encoder = nn.Sequential(nn.Flatten(1), *_mlp(widths), nn.Linear(widths[-1], config.bottleneck))
            back = [config.bottleneck, *reversed(config.hidden_units)]
            self.decoder = nn.Sequential(*_mlp(back), nn.Linear(back[-1], pixels))

    def encode_latent(self, images: Tensor) -> Tensor:
        """The code of each image.

        Args:
            images: (N, C, H, W) float in [0, 1], with C, H, W matching the config.

        Returns:
            (N, bottleneck) float.

        Raises:
            ValueError: If the image shape does not match the config.
        """
        self._check_images(images)
        return self.encoder(images - _MID_GREY)

    def decode_raw(self, code: Tensor) -> Tensor:
        """The decoder's raw outputs: logits (sigmoid output) or unclamped pixels (linear output).

        Args:
            code: (N, bottleneck) float.

        Returns:
            (N, C, H, W) float.
        """
        s = self.config.image_size
        raw = self.decoder(code).view(code.shape[0], self.config.channels, s, s)
        return raw if self.config.output_activation == "sigmoid" else raw + _MID_GREY

    def _to_image(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw) if self.config.output_activation == "sigmoid" else raw.clamp(0.0, 1.0)

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruction of each image.

        Args:
            images: (N, C, H, W) float in [0, 1].

        Returns:
            (N, C, H, W) float in [0, 1].

        Raises:
            ValueError: If the image shape does not match the config.
        """
        return self._to_image(self.decode_raw(self.encode_latent(images)))

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        """Loss of one batch; logs ``{stage}/loss`` and ``{stage}/mse``."""
        images = self._batch_tensor(batch, "image")
        raw = self.decode_raw(self.encode_latent(images))
        logits = self.config.output_activation == "sigmoid"
        per_sample = per_sample_pixel_loss(raw, images, kind=self.config.loss, from_logits=logits)
        loss = self._objective_loss(per_sample, batch, stage=stage)
        with torch.no_grad():
            mse = (self._to_image(raw) - images).square().mean()
        self._log_terms(stage, {"loss": loss, "mse": mse}, batch_size=images.shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        lr = self.config.effective_learning_rate
        if self.config.optimizer == "adadelta":
            optimizer: torch.optim.Optimizer = torch.optim.Adadelta(self.parameters(), lr=lr)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        return with_lr_schedule(optimizer, self.config.lr_schedule)

