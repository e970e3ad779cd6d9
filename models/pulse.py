"""PULSE: super-resolution by latent search through a trained generator (Menon et al., CVPR 2020).

Where ``sr`` learns a residual over bicubic upsampling (and so keeps the input's colours), PULSE
never maps the input to an output: it searches the latent space of a generative model (the
*prior*, ``gan`` or ``vae``) for an image whose downscaled version matches the input
(:func:`~genfair.models.latent_search.latent_search`). Everything the few low-resolution pixels do
not pin down comes from the prior, which learned it from its training data: with a prior trained
on a skewed set, the prior decides who comes out.

``Pulse`` trains its prior on the run's training split (the prior's own loss and optimisers,
through Lightning's manual optimisation), or loads a trained one (``prior_checkpoint``: then
nothing trains). Its output for a low-resolution input (B, C, H/s, W/s) is the best image of the
search (B, C, H, W) in [0, 1].
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from ._common import check_choice, check_positive_int, check_positive_real, check_seed, is_int
from .gan import GAN, GANConfig
from .latent_search import latent_search
from .registry import register
from .sr import _LowresModule
from .vae import VAE, VAEConfig

__all__ = ["PRIORS", "PULSE_SCALES", "Pulse", "PulseConfig"]

PriorName = Literal["gan", "vae"]
PRIORS: tuple[str, ...] = typing.get_args(PriorName)
"""Allowed values of ``PulseConfig.prior``: the generative models PULSE searches through."""

PULSE_SCALES: tuple[int, ...] = (2, 4, 8, 16)
"""Allowed downscaling factors of :class:`PulseConfig` (PULSE's own experiments: 8x, from 16x16 to 128x128)."""

_PRIOR_MODULES: dict[str, tuple[type, type]] = {"gan": (GAN, GANConfig), "vae": (VAE, VAEConfig)}


@dataclass(frozen=True, kw_only=True)
class PulseConfig:
    """Settings of :class:`Pulse`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        image_size: Height and width of the outputs (and the prior's images), in pixels.
        channels: Image channels: 3 for RGB, 1 for grayscale.
        scale: Downscaling factor, one of :data:`PULSE_SCALES`: inputs are ``image_size // scale``.
        prior: ``"gan"`` or ``"vae"``: the generative model searched through.
        prior_checkpoint: A Lightning checkpoint of a trained prior of that kind (same
            ``image_size``, ``channels`` and ``latent_dim``); ``""``: train the prior here.
        latent_dim: ``d`` of the prior (the search runs on the sphere of radius ``sqrt(d)``).
        restarts: Starting codes per input; the best match is kept.
        steps: Adam steps of each search.
        search_learning_rate: Adam's step size on the latent codes.
        seed: Seeds the prior's weights and training noise, and the searches' starting codes.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    scale: int = 8
    prior: PriorName = "gan"
    prior_checkpoint: str = ""
    latent_dim: int = 64
    restarts: int = 2
    steps: int = 40
    search_learning_rate: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "latent_dim", "restarts"):
            check_positive_int("PulseConfig", name, getattr(self, name))
        if not is_int(self.scale) or self.scale not in PULSE_SCALES:
            raise ValueError(f"PulseConfig.scale must be one of {PULSE_SCALES}, got {self.scale!r}")
        if self.image_size % self.scale:
            raise ValueError(f"PulseConfig.image_size must be divisible by scale, got image_size={self.image_size!r} with scale={self.scale!r}")
        check_choice("PulseConfig", "prior", self.prior, PRIORS)
        if not isinstance(self.prior_checkpoint, str):
            raise ValueError(f"PulseConfig.prior_checkpoint must be a path string ('' to train the prior), got {self.prior_checkpoint!r}")
        if not is_int(self.steps) or self.steps < 0:
            raise ValueError(f"PulseConfig.steps must be an int >= 0, got {self.steps!r}")
        check_positive_real("PulseConfig", "search_learning_rate", self.search_learning_rate)
        check_seed("PulseConfig", self.seed)

    @property
    def trains(self) -> bool:
        """Whether the run trains the prior (no ``prior_checkpoint``)."""
        return not self.prior_checkpoint


def _load_prior(config: PulseConfig) -> Any:
    """The prior module: fresh (to train), or loaded from ``config.prior_checkpoint``.

    Raises:
        ValueError: an unreadable checkpoint, or one of another model or shape.
    """
    module_class, config_class = _PRIOR_MODULES[config.prior]
    if config.trains:
        return module_class(config_class(image_size=config.image_size, channels=config.channels,
                                         latent_dim=config.latent_dim, seed=config.seed))
    path = config.prior_checkpoint
    try:
        prior = module_class.load_from_checkpoint(path, map_location="cpu")
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"prior_checkpoint={path}: not a checkpoint of a {config.prior!r} model ({type(err).__name__}: {err}); "
                         f"train one with `audit run --model {config.prior}` or drop prior_checkpoint") from err
    for field in ("image_size", "channels", "latent_dim"):
        if getattr(prior.config, field) != getattr(config, field):
            raise ValueError(f"prior_checkpoint={path}: the prior has {field}={getattr(prior.config, field)}, this "
                             f"run needs {field}={getattr(config, field)}; set it to match")
    return prior


@register("pulse", config=PulseConfig, task="upsampling", baseline="bicubic",
          description="PULSE: latent search through a trained generator (gan or vae) for an image that downscales to the input")
class Pulse(_LowresModule):
    """Super-resolution by latent search through ``self.prior`` (PULSE).

    Batches are dicts ``{"lowres": (B, C, H/s, W/s), "image": (B, C, H, W), "index": (B,)}``,
    floats in [0, 1]. Training trains the prior on ``"image"`` (its own loss and optimisers) and
    logs its terms as ``train/<term>``; validation logs the prior's ``val/loss``. Prediction and
    :meth:`forward` search (gradients on, whatever the caller's mode).

    Attributes:
        config: The :class:`PulseConfig` this module was built from.
        prior: The :class:`~genfair.models.GAN` or :class:`~genfair.models.VAE` searched through.
    """

    config_class = PulseConfig

    def __init__(self, config: PulseConfig | None = None, **hparams: Any) -> None:
        """Build (or load) the prior from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not a ``PulseConfig``.
            ValueError: If a field value is invalid, or ``prior_checkpoint`` cannot be used.
        """
        super().__init__(config, **hparams)
        self.automatic_optimization = False
        self.prior = _load_prior(self.config)

    def forward(self, lowres: Tensor) -> Tensor:
        """The best image of the latent search for each low-resolution input.

        Args:
            lowres: (N, C, H/s, W/s) float in [0, 1].

        Returns:
            (N, C, H, W) float in [0, 1].

        Raises:
            ValueError: If the shape does not match the config.
        """
        self._check_lowres(lowres)
        config = self.config
        return latent_search(self.prior.decode_latent, lowres, latent_dim=config.latent_dim, scale=config.scale,
                             restarts=config.restarts, steps=config.steps,
                             learning_rate=config.search_learning_rate, seed=config.seed).images

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from the prior (see the prior's ``sample``): (n, C, H, W) float in [0, 1]."""
        return self.prior.sample(n, generator=generator)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        terms = self.prior.prior_step(batch, optimizers, self.manual_backward)
        self._log_terms("train", terms, batch_size=batch["image"].shape[0])

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        self._log_terms(stage, self.prior.prior_validation_terms(batch), batch_size=batch["image"].shape[0])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The prior's optimisers, as a list."""
        optimizers = self.prior.configure_optimizers()
        return list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
