"""An attribute classifier: one softmax head per sensitive attribute (not a generative model).

The audit uses it to ask whether a model's output still *looks like* its input's group: classify
the original and the reconstruction, and count the flips. It is not in the model registry (users
audit generative models, not this); import it from :mod:`genfair.models`.

Architecture (after the lecture's Keras classifier; defaults, 64x64 RGB)::

    [Conv2d 3x3 -> GroupNorm -> ReLU -> MaxPool2d 2] for 16, 32, 64 channels   64 -> 32 -> 16 -> 8
    (no GroupNorm in the first block: it would normalise away each image's brightness and colour)
    flatten -> Dropout -> Linear (128) -> ReLU -> Dropout
    heads: Linear (128 -> K_a) for each attribute a; softmax gives its class probabilities

Dropout draws its masks from the module's own generator (seeded by ``config.seed`` and the
global rank), not from the global RNG, and only while training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    ChannelsLastFit,
    ConfiguredModule,
    adamw,
    check_non_negative_real,
    check_positive_int,
    check_positive_real,
    check_seed,
    group_norm,
    int_tuple_field,
    is_real,
    seeded,
)

__all__ = ["AttributeClassifier", "AttributeClassifierConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AttributeClassifierConfig:
    """Hyperparameters of :class:`AttributeClassifier`. Plain data; round-trips through ``asdict``.

    Attributes:
        image_size: Height and width of the square input images, in pixels. Must be divisible
            by ``2 ** len(hidden_channels)``.
        channels: Image channels: 3 for RGB, 1 for grayscale.
        num_classes: Number of classes of each sensitive attribute, in the order of the batch's
            ``labels`` columns (e.g. ``(2, 2)`` for gender and skin tone); each >= 2. Required.
            A list is converted to a tuple.
        hidden_channels: Output channels of the conv blocks. A list is converted to a tuple.
        dense_units: Width of the dense layer before the heads.
        dropout: Dropout probability before and after the dense layer, in [0, 1).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay.
        seed: Seeds the weight initialisation and the dropout masks. ``0 <= seed < 2**32``.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    num_classes: tuple[int, ...]
    hidden_channels: tuple[int, ...] = (16, 32, 64)
    dense_units: int = 128
    dropout: float = 0.25
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "dense_units"):
            check_positive_int("AttributeClassifierConfig", name, getattr(self, name))
        classes = int_tuple_field(self, "num_classes", allow_empty=False)
        if any(k < 2 for k in classes):
            raise ValueError(f"AttributeClassifierConfig.num_classes must all be >= 2 (a softmax head needs two classes), got {classes!r}")
        hidden = int_tuple_field(self, "hidden_channels", allow_empty=False)
        factor = 2 ** len(hidden)
        if self.image_size % factor:
            raise ValueError(f"AttributeClassifierConfig.image_size must be divisible by 2 ** len(hidden_channels) = {factor}, got image_size={self.image_size!r} with hidden_channels={hidden!r}; use a multiple of {factor} or fewer hidden blocks")
        if not is_real(self.dropout) or not 0 <= self.dropout < 1:
            raise ValueError(f"AttributeClassifierConfig.dropout must be a number in [0, 1), got {self.dropout!r}")
        check_positive_real("AttributeClassifierConfig", "learning_rate", self.learning_rate)
        check_non_negative_real("AttributeClassifierConfig", "weight_decay", self.weight_decay)
        check_seed("AttributeClassifierConfig", self.seed)


class AttributeClassifier(ChannelsLastFit, ConfiguredModule):
    """Conv classifier with one softmax head per sensitive attribute.

    Build it with ``AttributeClassifier(config)``, ``.from_config(config)`` or
    ``AttributeClassifier(**asdict(config))``. Batches are dicts ``{"image": (B, C, H, W) float
    in [0, 1], "labels": (B, A) long, "index": (B,) long}`` with ``A = len(config.num_classes)``
    and ``labels[:, a]`` in ``0..num_classes[a] - 1``. The loss is the mean over heads of each
    head's cross-entropy; logs ``{stage}/loss`` and ``{stage}/accuracy/{a}`` for each head ``a``.

    Attributes:
        config: The :class:`AttributeClassifierConfig` this module was built from.
        features: Conv blocks, flattened: (B, C, H, W) -> (B, hidden_channels[-1] * s * s).
        dense: Linear layer to (B, dense_units).
        heads: One Linear layer per attribute: (B, dense_units) -> logits (B, K_a).
    """

    config_class = AttributeClassifierConfig
    batch_keys = ("image", "labels", "index")

    def __init__(self, config: AttributeClassifierConfig | None = None, **hparams: Any) -> None:
        """Build the network from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not an
                ``AttributeClassifierConfig``, or a keyword is not one of its fields.
            ValueError: If a field value is invalid (see :class:`AttributeClassifierConfig`).
        """
        super().__init__(config, **hparams)
        config = self.config
        side = config.image_size // 2 ** len(config.hidden_channels)
        flat = config.hidden_channels[-1] * side * side
        layers: list[nn.Module] = []
        in_channels = config.channels
        with seeded(config.seed):
            for i, out_channels in enumerate(config.hidden_channels):
                # No GroupNorm on the first block: normalising the first features of each image
                # would remove its overall brightness and colour, which carry skin tone.
                norm: list[nn.Module] = [group_norm(out_channels)] if i else []
                layers += [
                    nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not norm),
                    *norm,
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                ]
                in_channels = out_channels
            self.features = nn.Sequential(*layers, nn.Flatten(1))
            self.dense = nn.Linear(flat, config.dense_units)
            self.heads = nn.ModuleList(nn.Linear(config.dense_units, k) for k in config.num_classes)
        self._dropout_generator: torch.Generator | None = None

    def _dropout(self, x: Tensor) -> Tensor:
        p = self.config.dropout
        if not self.training or p == 0:
            return x
        generator = self._dropout_generator
        if generator is None or generator.device != x.device:
            generator = torch.Generator(device=x.device)
            generator.manual_seed(self.config.seed + (self.global_rank << 32))
            self._dropout_generator = generator
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
        return x * keep.to(x.dtype) / (1.0 - p)

    def logits(self, images: Tensor) -> tuple[Tensor, ...]:
        """Each head's logits (dropout applies only while training).

        Args:
            images: (B, C, H, W) float in [0, 1], with C, H, W matching the config.

        Returns:
            One (B, K_a) float tensor per attribute.

        Raises:
            ValueError: If the image shape does not match the config.
        """
        self._check_images(images)
        hidden = self._dropout(F.relu(self.dense(self._dropout(self.features(images)))))
        return tuple(head(hidden) for head in self.heads)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """Class probabilities of each attribute (softmax of :meth:`logits`).

        Args:
            images: (B, C, H, W) float in [0, 1].

        Returns:
            One (B, K_a) float tensor per attribute; each row sums to 1.

        Raises:
            ValueError: If the image shape does not match the config.
        """
        return tuple(logits.softmax(dim=1) for logits in self.logits(images))

    @torch.no_grad()
    def classify(self, images: Tensor) -> Tensor:
        """The most likely class of each attribute, deterministically (no dropout, whatever the mode).

        Args:
            images: (B, C, H, W) float in [0, 1].

        Returns:
            (B, A) long: ``argmax`` of each head, A = ``len(config.num_classes)``.

        Raises:
            ValueError: If the image shape does not match the config.
        """
        was_training = self.training
        self.train(False)
        try:
            return torch.stack([logits.argmax(dim=1) for logits in self.logits(images)], dim=1)
        finally:
            self.train(was_training)

    def _check_labels(self, labels: Tensor, n: int) -> None:
        a = len(self.config.num_classes)
        if not isinstance(labels, Tensor) or tuple(labels.shape) != (n, a) or labels.dtype != torch.long:
            got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"batch 'labels' must be a long tensor of shape ({n}, {a}) (one column per attribute), got {got}")
        high = torch.tensor(self.config.num_classes, device=labels.device)
        if bool(((labels < 0) | (labels >= high)).any()):
            raise ValueError(f"batch 'labels' column a must be in 0..num_classes[a] - 1 with num_classes={self.config.num_classes}, got values from {int(labels.min())} to {int(labels.max())}")

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        """Mean cross-entropy over heads; logs ``{stage}/loss`` and ``{stage}/accuracy/{a}``."""
        images = self._batch_tensor(batch, "image")
        labels = self._batch_tensor(batch, "labels")
        self._check_images(images)
        self._check_labels(labels, images.shape[0])
        all_logits = self.logits(images)
        losses = [F.cross_entropy(logits, labels[:, a]) for a, logits in enumerate(all_logits)]
        loss = torch.stack(losses).mean()
        terms = {"loss": loss}
        with torch.no_grad():
            for a, logits in enumerate(all_logits):
                terms[f"accuracy/{a}"] = (logits.argmax(dim=1) == labels[:, a]).float().mean()
        self._log_terms(stage, terms, batch_size=images.shape[0])
        return loss

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Class probabilities of a batch, deterministically (no dropout).

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) long, ...}``.
            batch_idx: Position of the batch in the dataloader (unused).
            dataloader_idx: Index of the dataloader (unused).

        Returns:
            ``{"index": (B,) long, "probabilities": tuple of (B, K_a) float}``, one per attribute.

        Raises:
            ValueError: If the batch lacks ``"image"`` or ``"index"``, or the shapes are wrong.
        """
        images = self._batch_tensor(batch, "image")
        self._check_images(images)
        index = self._batch_index(batch, images.shape[0])
        was_training = self.training
        self.train(False)
        try:
            probabilities = self(images)
        finally:
            self.train(was_training)
        return {"index": index, "probabilities": probabilities}

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._dropout_generator = None  # each fit replays the dropout stream from config.seed

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adamw(self.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)

