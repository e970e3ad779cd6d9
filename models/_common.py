"""Shared plumbing of the model zoo: config checks, the config-built module base, batch access.

Private to :mod:`genfair.models`; nothing here is part of the public API. Every message is one
f-string that names the config field (or batch key), quotes the bad value and says what is allowed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
import torch
from torch import Tensor, nn

from .objectives import ObjectiveMixin

MAX_SEED = 2**32 - 1
"""Largest allowed ``seed`` of a model config (``torch.Generator.manual_seed`` takes 64 bits; we keep 32)."""

LrSchedule = Literal["plateau", "constant"]
LR_SCHEDULES: tuple[str, ...] = ("plateau", "constant")
"""Allowed values of a model config's ``lr_schedule``."""
PLATEAU_FACTOR = 0.5
"""``lr_schedule="plateau"``: the factor the learning rate is multiplied by when the validation loss stalls."""
PLATEAU_PATIENCE = 1
"""``lr_schedule="plateau"``: epochs without a better validation loss tolerated before the rate drops (with
early stopping's patience 3, a stalled run tries one lower rate before it stops)."""


def is_int(value: object) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for a finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1."""
    if not is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be a positive int, got {value!r}")


def check_non_negative_int(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 0."""
    if not is_int(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be an int >= 0, got {value!r}")


def check_seed(owner: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an int in ``[0, MAX_SEED]``."""
    if not is_int(value) or not 0 <= value <= MAX_SEED:  # type: ignore[operator]
        raise ValueError(f"{owner}.seed must be an int in [0, {MAX_SEED}], got {value!r}")


def check_positive_real(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0."""
    if not is_real(value) or value <= 0:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


def check_non_negative_real(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0."""
    if not is_real(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")


def check_choice(owner: str, name: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{owner}.{name} must be one of {tuple(choices)}, got {value!r}")


def int_tuple_field(config: object, name: str, *, allow_empty: bool) -> tuple[int, ...]:
    """Normalise a tuple-of-positive-ints config field in place (a list, e.g. from YAML, becomes a tuple).

    Args:
        config: A frozen dataclass instance, inside its ``__post_init__``.
        name: The field's name.
        allow_empty: Whether ``()`` is allowed.

    Returns:
        The field's value as a tuple.

    Raises:
        ValueError: If the value is not a (non-empty, unless allowed) tuple of positive ints.
    """
    value = getattr(config, name)
    if isinstance(value, list):
        value = tuple(value)
        object.__setattr__(config, name, value)
    if not isinstance(value, tuple) or (not value and not allow_empty) or not all(is_int(v) and v >= 1 for v in value):
        kind = "a tuple" if allow_empty else "a non-empty tuple"
        raise ValueError(f"{type(config).__name__}.{name} must be {kind} of positive ints, got {value!r}")
    return value


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (weight initialisation) under ``torch.manual_seed(seed)``, restoring the global CPU RNG after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def with_lr_schedule(optimizer: torch.optim.Optimizer, schedule: str) -> Any:
    """What ``configure_optimizers`` returns: ``optimizer`` alone, or with a plateau schedule on ``val/loss``.

    ``"plateau"``: :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` (factor
    :data:`PLATEAU_FACTOR`, patience :data:`PLATEAU_PATIENCE`) stepped after each validation on
    ``val/loss``; without a validation loop (no ``val/loss``) the rate stays constant.
    ``"constant"``: the optimiser's rate throughout.
    """
    if schedule == "constant":
        return optimizer
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=PLATEAU_FACTOR,
                                                           patience=PLATEAU_PATIENCE)
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch", "strict": False}}

def sample_latents(decode: Any, n: object, *, latent_dim: int, seed: int, like: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """Decode ``n`` draws ``z ~ N(0, I_d)``: a generative model's samples.

    Args:
        decode: latent codes (n, d) -> images (n, C, H, W) float in [0, 1].
        n: number of images, >= 1.
        latent_dim: ``d``.
        seed: seeds the default generator, so repeated calls return the same images.
        like: a tensor (a parameter of the model) whose device and dtype the codes take.
        generator: source of the draws (on any device); default ``torch.Generator().manual_seed(seed)``.

    Returns:
        (n, C, H, W) float in [0, 1], without gradients.

    Raises:
        ValueError: If ``n`` is not a positive int.
    """
    if not is_int(n) or n < 1:  # type: ignore[operator]
        raise ValueError(f"sample needs a positive int number of images, got {n!r}")
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    z = torch.randn((n, latent_dim), generator=generator, device=generator.device)  # type: ignore[arg-type]
    with torch.no_grad():
        return decode(z.to(device=like.device, dtype=like.dtype))


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups: each image is normalised on its own, independent of its batch."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ChannelsLastFit:
    """Mixin of a convolutional LightningModule (before it in the bases): fit in the channels-last format.

    On a CPU, oneDNN's convolutions run a training step of the default VAE and attribute classifier
    (64x64, batch 32) 20-27% faster when the weights and the images are channels-last
    (``benchmarks/channels_last.py``). Only while fitting: the weights go back to the default
    format when the fit ends, so predictions and every tensor the audit reads keep the usual
    (contiguous) layout. Values are unchanged; only the memory order (and so the order of the
    floating-point sums inside a convolution) differs. ``fit_channels_last = False`` on a
    subclass turns it off.
    """

    fit_channels_last: ClassVar[bool] = True

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.fit_channels_last:
            self.to(memory_format=torch.channels_last)

    def on_fit_end(self) -> None:
        super().on_fit_end()
        if self.fit_channels_last:
            self.to(memory_format=torch.contiguous_format)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """While fitting, the batch's ``"image"`` (B, C, H, W) in channels-last format too."""
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        images = batch.get("image") if isinstance(batch, Mapping) else None
        if (self.fit_channels_last and self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
                and isinstance(images, Tensor) and images.ndim == 4):
            return {**batch, "image": images.contiguous(memory_format=torch.channels_last)}
        return batch


def adamw(parameters: Any, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the parameters' device has one (CPU, CUDA): one kernel for
    every tensor instead of a Python loop over them, the same update up to rounding."""
    parameters = list(parameters)
    fused = all(p.device.type in ("cpu", "cuda") for p in parameters) or None
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=fused)


class ConfiguredModule(ObjectiveMixin, pl.LightningModule):
    """Base of the zoo's LightningModules: built from one frozen config, one shared step.

    A subclass sets :attr:`config_class` (and :attr:`batch_keys`, the keys its batches need),
    builds its layers after ``super().__init__(config, **hparams)``, and implements
    ``_shared_step(batch, stage)``; ``training_step``, ``validation_step`` and ``test_step``
    delegate to it. Checkpoints hold ``asdict(config)`` as hyperparameters, so
    ``Module.load_from_checkpoint(path).config == config``.

    A subclass with a per-image training loss sets ``supports_objectives = True`` and reduces
    that loss with ``self._objective_loss(per_sample_loss, batch, stage=stage)``: the plain mean,
    or in training the objective attached with :meth:`set_objective` (see
    :mod:`genfair.models.objectives`, which also says how checkpoints carry it).
    """

    config_class: ClassVar[type]
    batch_keys: ClassVar[tuple[str, ...]] = ("image", "index")

    def __init__(self, config: Any = None, **hparams: Any) -> None:
        super().__init__()
        name, config_class = type(self).__name__, self.config_class
        if config is None:
            config = config_class(**hparams)
        elif hparams:
            raise TypeError(f"{name} takes either a {config_class.__name__} or its fields as keywords, not both; got config and {sorted(hparams)}; use dataclasses.replace(config, ...)")
        elif not isinstance(config, config_class):
            raise TypeError(f"{name} config must be a {config_class.__name__}, got {type(config).__name__}; build one with {config_class.__name__}(**fields)")
        self.config = config
        self.save_hyperparameters(asdict(config))

    @classmethod
    def from_config(cls, config: Any) -> Any:
        """Build a fresh (untrained) model from its config.

        Args:
            config: An instance of the module's config class.

        Returns:
            A new module.

        Raises:
            TypeError: If ``config`` is not an instance of the module's config class.
        """
        return cls(config)

    # ------------------------------------------------------------------ checks

    def _batch_tensor(self, batch: Mapping[str, Tensor], key: str) -> Tensor:
        if not isinstance(batch, Mapping) or key not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            quoted = [repr(k) for k in self.batch_keys]
            keys = " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            raise ValueError(f"{type(self).__name__} batches must be dicts with keys {keys}, got {got} (missing {key!r})")
        return batch[key]

    def _check_images(self, images: Tensor, *, side: int | None = None, what: str = "images") -> None:
        c = self.config.channels
        s = self.config.image_size if side is None else side
        if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (c, s, s):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"{type(self).__name__} expects {what} of shape (B, {c}, {s}, {s}) for its config (channels={c}, image_size={self.config.image_size}), got {got}")

    def _batch_index(self, batch: Mapping[str, Tensor], n: int, *, like: str = "image") -> Tensor:
        index = self._batch_tensor(batch, "index")
        if not isinstance(index, Tensor) or tuple(index.shape) != (n,):
            got = tuple(index.shape) if isinstance(index, Tensor) else type(index).__name__
            raise ValueError(f"batch 'index' must have shape ({n},) to match {like!r}, got {got}")
        return index

    # ------------------------------------------------------------------ Lightning hooks

    def _log_terms(self, stage: str, terms: Mapping[str, Tensor], *, batch_size: int) -> None:
        """Log each term as ``{stage}/{name}``: per step and epoch in training, per epoch otherwise."""
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value,
                on_step=stage == "train",
                on_epoch=True,
                prog_bar=name == "loss",
                batch_size=batch_size,
                sync_dist=stage != "train",
            )

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Deterministic outputs of a batch: ``self(batch["image"])`` (autoencoders' reconstructions).

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) long}``.
            batch_idx: Position of the batch in the dataloader (unused).
            dataloader_idx: Index of the dataloader (unused).

        Returns:
            ``{"index": (B,) long, "output": (B, C, H, W) float in [0, 1]}``.

        Raises:
            ValueError: If the batch lacks ``"image"`` or ``"index"``, or the shapes are wrong.
        """
        images = self._batch_tensor(batch, "image")
        index = self._batch_index(batch, images.shape[0])
        return {"index": index, "output": self(images)}

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        return self._shared_step(batch, "test")
