"""A small convolutional variational autoencoder (VAE) and its config.

Architecture (``hidden_channels=(32, 64, 128)``, 64x64 RGB input)::

    encoder: [Conv2d 3x3 stride 2 -> GroupNorm -> LeakyReLU] x 3   64 -> 32 -> 16 -> 8
             flatten -> Linear -> (mu, logvar), each (B, latent_dim)
    decoder: Linear -> (128, 8, 8) -> [ConvTranspose2d stride 2 -> GroupNorm -> LeakyReLU] x 2
             -> ConvTranspose2d stride 2 -> logits (B, C, 64, 64); outputs are sigmoid(logits)

GroupNorm (not BatchNorm) keeps every image's output independent of the rest of its batch and
makes training and evaluation behave the same, so per-image audit errors do not depend on how
the test set was batched. The loss terms are pure functions (:func:`vae_loss_terms`).
"""

from __future__ import annotations

import logging
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import LR_SCHEDULES, ChannelsLastFit, LrSchedule, adamw, sample_latents, with_lr_schedule
from .objectives import ObjectiveMixin
from .registry import register

__all__ = [
    "NOISE_CHECKPOINT_KEY",
    "RECONSTRUCTION_LOSSES",
    "VAE",
    "VAEConfig",
    "per_sample_kl_loss",
    "per_sample_reconstruction_loss",
    "vae_loss_terms",
]

logger = logging.getLogger(__name__)

ReconstructionLoss = Literal["bce", "mse"]
RECONSTRUCTION_LOSSES: tuple[str, ...] = typing.get_args(ReconstructionLoss)
"""Allowed values of ``VAEConfig.reconstruction_loss``."""

_MAX_SEED = 2**32 - 1
NOISE_CHECKPOINT_KEY = "genfair_vae_noise"
"""The checkpoint entry holding the reparameterisation generator's state, so a resumed fit continues its stream."""
_LEAKY_SLOPE = 0.2


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Hyperparameters of :class:`VAE`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        image_size: Height and width of the square input images, in pixels. Must be divisible
            by ``2 ** len(hidden_channels)`` (each encoder block halves the resolution).
        channels: Image channels: 3 for RGB, 1 for grayscale.
        latent_dim: Dimension of the Gaussian latent code.
        hidden_channels: Output channels of the encoder blocks, from the input side; the decoder
            mirrors them. A list (e.g. from YAML) is converted to a tuple.
        beta: Weight of the KL term (``loss = reconstruction + beta * kl``); 0 disables it.
        kl_warmup_epochs: Training epochs over which the KL weight rises linearly to ``beta``
            (``beta * min(1, (epoch + 1) / kl_warmup_epochs)``), so the decoder learns to
            reconstruct before the prior pulls the codes together; 0 uses ``beta`` from the
            first epoch. Validation and test always weigh the KL by ``beta``: the validation
            loss that early stopping and the learning-rate schedule watch is the real objective.
        reconstruction_loss: ``"bce"`` (Bernoulli likelihood, BCE with logits) or ``"mse"``
            (squared error of ``sigmoid(logits)``), summed over pixels of each image.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay.
        lr_schedule: ``"plateau"`` halves the learning rate when the validation loss stalls
            (see :func:`~genfair.models._common.with_lr_schedule`), ``"constant"`` keeps it.
        seed: Seeds the weight initialisation and the module's reparameterisation noise, so a
            config fully determines a run without touching the global RNG. ``0 <= seed < 2**32``.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    latent_dim: int = 32
    hidden_channels: tuple[int, ...] = (32, 64, 128)
    beta: float = 1.0
    kl_warmup_epochs: int = 5
    reconstruction_loss: ReconstructionLoss = "bce"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: LrSchedule = "plateau"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "latent_dim"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"VAEConfig.{name} must be a positive int, got {value!r}")
        hidden = self.hidden_channels
        if isinstance(hidden, list):
            hidden = tuple(hidden)
            object.__setattr__(self, "hidden_channels", hidden)
        if not isinstance(hidden, tuple) or not hidden or not all(_is_int(c) and c >= 1 for c in hidden):
            raise ValueError(f"VAEConfig.hidden_channels must be a non-empty tuple of positive ints, got {hidden!r}")
        factor = 2 ** len(hidden)
        if self.image_size % factor:
            raise ValueError(f"VAEConfig.image_size must be divisible by 2 ** len(hidden_channels) = {factor}, got image_size={self.image_size!r} with hidden_channels={hidden!r}; use a multiple of {factor} or fewer hidden blocks")
        if not _is_real(self.beta) or self.beta < 0:
            raise ValueError(f"VAEConfig.beta must be a finite number >= 0, got {self.beta!r}")
        if not _is_int(self.kl_warmup_epochs) or self.kl_warmup_epochs < 0:
            raise ValueError(f"VAEConfig.kl_warmup_epochs must be an int >= 0, got {self.kl_warmup_epochs!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"VAEConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"VAEConfig.reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, got {self.reconstruction_loss!r}")
        if not _is_real(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"VAEConfig.learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"VAEConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= _MAX_SEED:
            raise ValueError(f"VAEConfig.seed must be an int in [0, {_MAX_SEED}], got {self.seed!r}")


# --------------------------------------------------------------------------- loss terms (pure)


def per_sample_reconstruction_loss(logits: Tensor, target: Tensor, *, kind: ReconstructionLoss = "bce") -> Tensor:
    """Reconstruction loss of each image, summed over its channels and pixels.

    Args:
        logits: (N, C, H, W) float, the decoder's pre-sigmoid outputs.
        target: (N, C, H, W) float in [0, 1], the input images.
        kind: ``"bce"``: binary cross-entropy of ``sigmoid(logits)`` against ``target``,
            computed stably from the logits; ``"mse"``: squared error of ``sigmoid(logits)``.

    Returns:
        (N,) float, on the inputs' device; lower is better.

    Raises:
        ValueError: If the shapes differ, are not 4-D, or ``kind`` is unknown.
    """
    if logits.shape != target.shape or logits.ndim != 4:
        raise ValueError(f"logits and target must have the same (N, C, H, W) shape, got {tuple(logits.shape)} and {tuple(target.shape)}")
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "mse":
        per_pixel = (torch.sigmoid(logits) - target).square()
    else:
        raise ValueError(f"reconstruction loss kind must be one of {RECONSTRUCTION_LOSSES}, got {kind!r}")
    return per_pixel.flatten(1).sum(dim=1)


def per_sample_kl_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """Analytic KL divergence ``KL(N(mu, exp(logvar)) || N(0, I))`` of each sample, in nats.

    ``KL = 0.5 * sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)``.

    Args:
        mu: (N, D) float, posterior means.
        logvar: (N, D) float, posterior log-variances.

    Returns:
        (N,) float, >= 0, summed over the D latent dimensions.

    Raises:
        ValueError: If the shapes differ or are not 2-D.
    """
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"mu and logvar must have the same (N, D) shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


def vae_loss_terms(
    logits: Tensor,
    target: Tensor,
    mu: Tensor,
    logvar: Tensor,
    *,
    beta: float,
    reconstruction_loss: ReconstructionLoss,
) -> dict[str, Tensor]:
    """The negative ELBO and its two terms, averaged over the batch.

    Args:
        logits: (N, C, H, W) float, the decoder's pre-sigmoid outputs.
        target: (N, C, H, W) float in [0, 1].
        mu: (N, D) float, posterior means.
        logvar: (N, D) float, posterior log-variances.
        beta: Weight of the KL term.
        reconstruction_loss: ``"bce"`` or ``"mse"``, see :func:`per_sample_reconstruction_loss`.

    Returns:
        Scalar tensors, each the batch mean of a per-image sum: ``"loss"`` (reconstruction +
        beta * kl, what training minimises), ``"reconstruction"``, ``"kl"`` and ``"elbo"`` =
        -(reconstruction + kl), the evidence lower bound (whatever ``beta``; up to the constant
        of the Gaussian likelihood when ``reconstruction_loss="mse"``, which is a surrogate).

    Raises:
        ValueError: As :func:`per_sample_reconstruction_loss` and :func:`per_sample_kl_loss`, or
            if the batch sizes of the image and latent tensors differ.
    """
    if logits.shape[:1] != mu.shape[:1]:
        raise ValueError(f"images and latents must have the same batch size, got {tuple(logits.shape)} and {tuple(mu.shape)}")
    reconstruction = per_sample_reconstruction_loss(logits, target, kind=reconstruction_loss)
    return _mean_terms(reconstruction, per_sample_kl_loss(mu, logvar), beta=beta)


def _mean_terms(per_sample_reconstruction: Tensor, per_sample_kl: Tensor, *, beta: float) -> dict[str, Tensor]:
    """The batch means of :func:`vae_loss_terms` from the per-image terms, each (N,)."""
    reconstruction, kl = per_sample_reconstruction.mean(), per_sample_kl.mean()
    return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl, "elbo": -(reconstruction + kl)}


# --------------------------------------------------------------------------- network


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _build_encoder(config: VAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = config.channels
    for out_channels in config.hidden_channels:
        layers += [
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False),
            _norm(out_channels),
            nn.LeakyReLU(_LEAKY_SLOPE),
        ]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.Flatten(1))


def _up(in_channels: int, out_channels: int, *, bias: bool) -> nn.ConvTranspose2d:
    # kernel 3, stride 2, padding 1, output_padding 1: exactly doubles height and width.
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias)


def _build_decoder(config: VAEConfig) -> nn.Sequential:
    reversed_channels = config.hidden_channels[::-1]
    layers: list[nn.Module] = []
    for in_channels, out_channels in zip(reversed_channels[:-1], reversed_channels[1:]):
        layers += [_up(in_channels, out_channels, bias=False), _norm(out_channels), nn.LeakyReLU(_LEAKY_SLOPE)]
    layers.append(_up(reversed_channels[-1], config.channels, bias=True))
    return nn.Sequential(*layers)


@register("vae", config=VAEConfig, baseline="pca",
          description="convolutional variational autoencoder with a Gaussian latent")
class VAE(ChannelsLastFit, ObjectiveMixin, pl.LightningModule):
    """Convolutional VAE with a Gaussian latent; reconstructs images in [0, 1].

    Build it with ``VAE(config)``, ``VAE.from_config(config)`` or ``VAE(**asdict(config))`` (the
    form ``load_from_checkpoint`` uses). Checkpoints hold ``asdict(config)`` only, so
    ``VAE.load_from_checkpoint(path).config == config``.

    Batches are dicts ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) long}``.
    Training samples the latent with the reparameterisation trick, drawing noise from the
    module's own generator (seeded by ``config.seed`` and the global rank); validation, test,
    prediction and :meth:`forward` decode the posterior mean and are deterministic.

    Training objective: the mean of the per-image ``reconstruction + beta * kl`` by default;
    ``set_objective`` attaches a :class:`~genfair.models.objectives.GroupObjective` (reweighted,
    group DRO) that reduces them per group in training (batches then need ``"labels"``);
    validation and test keep the mean. Checkpoints carry the objective beside ``asdict(config)``.

    Attributes:
        config: The :class:`VAEConfig` this module was built from.
        encoder: Conv blocks, flattened: (B, C, H, W) -> (B, hidden_channels[-1] * s * s),
            where ``s = image_size // 2 ** len(hidden_channels)``.
        to_latent: Linear layer to ``(mu, logvar)`` concatenated: (B, 2 * latent_dim).
        from_latent: Linear layer from the latent: (B, latent_dim) -> (B, hidden_channels[-1] * s * s).
        decoder: Transposed-conv blocks: (B, hidden_channels[-1], s, s) -> logits (B, C, H, W).
    """

    supports_objectives = True

    def __init__(self, config: VAEConfig | None = None, **hparams: Any) -> None:
        """Build the network from a config, or from the config's fields as keywords.

        Args:
            config: The model's config. Leave it out to pass ``VAEConfig`` fields as keywords.
            **hparams: ``VAEConfig`` fields (e.g. from a checkpoint); only without ``config``.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not a
                ``VAEConfig``; or (from ``VAEConfig``) a keyword is not a ``VAEConfig`` field.
            ValueError: If a field value is invalid (see :class:`VAEConfig`).
        """
        super().__init__()
        if config is None:
            config = VAEConfig(**hparams)
        elif hparams:
            raise TypeError(f"VAE takes either a VAEConfig or its fields as keywords, not both; got config and {sorted(hparams)}; use dataclasses.replace(config, ...)")
        elif not isinstance(config, VAEConfig):
            raise TypeError(f"VAE config must be a VAEConfig, got {type(config).__name__}; build one with VAEConfig(**fields)")
        self.config: VAEConfig = config
        self.save_hyperparameters(asdict(config))

        side = config.image_size // 2 ** len(config.hidden_channels)
        self._bottleneck_shape = (config.hidden_channels[-1], side, side)
        flat = math.prod(self._bottleneck_shape)
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global RNG alone
            torch.manual_seed(config.seed)
            self.encoder = _build_encoder(config)
            self.to_latent = nn.Linear(flat, 2 * config.latent_dim)
            self.from_latent = nn.Linear(config.latent_dim, flat)
            self.decoder = _build_decoder(config)
        self._noise_generator: torch.Generator | None = None
        self._restored_noise: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, config: VAEConfig) -> VAE:
        """Build a fresh (untrained) model from its config.

        Args:
            config: The model's :class:`VAEConfig`.

        Returns:
            A new :class:`VAE`.

        Raises:
            TypeError: If ``config`` is not a :class:`VAEConfig`.
        """
        return cls(config)

    # ------------------------------------------------------------------ network pieces

    def _check_images(self, images: Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (c, s, s):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"VAE expects images of shape (B, {c}, {s}, {s}) for its config (channels={c}, image_size={s}), got {got}")

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters of each image.

        Args:
            images: (B, C, H, W) float in [0, 1], with C, H, W matching the config.

        Returns:
            ``(mu, logvar)``, each (B, latent_dim) float.

        Raises:
            ValueError: If the image shape does not match the config.
        """
        self._check_images(images)
        mu, logvar = self.to_latent(self.encoder(images)).chunk(2, dim=1)
        return mu, logvar

    def encode_latent(self, images: Tensor) -> Tensor:
        """The posterior mean of each image: the deterministic latent code.

        Args:
            images: (N, C, H, W) float in [0, 1], with C, H, W matching the config.

        Returns:
            (N, latent_dim) float.

        Raises:
            ValueError: If the image shape does not match the config.
        """
        return self.encode(images)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Decoder logits for latent codes.

        Args:
            z: (B, latent_dim) float.

        Returns:
            (B, C, H, W) float logits; ``torch.sigmoid`` of them is the image in [0, 1].
        """
        return self.decoder(self.from_latent(z).view(z.shape[0], *self._bottleneck_shape))

    def forward(self, images: Tensor) -> Tensor:
        """Deterministic reconstruction, decoded from the posterior mean.

        Args:
            images: (B, C, H, W) float in [0, 1].

        Returns:
            (B, C, H, W) float in [0, 1].

        Raises:
            ValueError: If the image shape does not match the config.
        """
        mu, _ = self.encode(images)
        return torch.sigmoid(self.decode(mu))

    def _noise_like(self, mu: Tensor) -> Tensor:
        generator = self._noise_generator
        if generator is None or generator.device != mu.device:
            # One stream per rank, so DDP ranks draw different noise; re-seeded on each fit.
            generator = torch.Generator(device=mu.device)
            generator.manual_seed(self.config.seed + (self.global_rank << 32))
            restored, self._restored_noise = self._restored_noise, None
            if restored is not None and self._restorable(restored, generator):
                generator.set_state(restored["state"])
            self._noise_generator = generator
        return torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """Latent codes: ``mu + eps * exp(logvar / 2)`` while training, ``mu`` otherwise.

        Args:
            mu: (B, latent_dim) float.
            logvar: (B, latent_dim) float.

        Returns:
            (B, latent_dim) float. The noise ``eps`` comes from the module's generator.
        """
        if not self.training:
            return mu
        return mu + self._noise_like(mu) * torch.exp(0.5 * logvar)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``n`` draws from the prior ``N(0, I)``.

        Args:
            n: Number of images, >= 1.
            generator: Source of the latent draws (on any device). Default: a fresh generator
                seeded with ``config.seed``, so repeated calls return the same images.

        Returns:
            (n, C, H, W) float in [0, 1], on the module's device.

        Raises:
            ValueError: If ``n`` is not a positive int.
        """
        return sample_latents(self.decode_latent, n, latent_dim=self.config.latent_dim, seed=self.config.seed,
                              like=self.from_latent.weight, generator=generator)

    # ------------------------------------------------------------------ Lightning hooks

    @staticmethod
    def _batch_tensor(batch: Mapping[str, Tensor], key: str) -> Tensor:
        if not isinstance(batch, Mapping) or key not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"VAE batches must be dicts with keys 'image' and 'index', got {got} (missing {key!r})")
        return batch[key]

    def _terms(self, batch: Mapping[str, Tensor], stage: str) -> dict[str, Tensor]:
        """The batch's ``loss``, ``reconstruction``, ``kl`` and ``elbo`` (see :meth:`_shared_step`)."""
        images = self._batch_tensor(batch, "image")
        mu, logvar = self.encode(images)
        logits = self.decode(self.reparameterize(mu, logvar))
        reconstruction = per_sample_reconstruction_loss(logits, images, kind=self.config.reconstruction_loss)
        kl = per_sample_kl_loss(mu, logvar)
        beta = self.kl_weight(stage)
        terms = _mean_terms(reconstruction, kl, beta=beta)
        terms["loss"] = self._objective_loss(reconstruction + beta * kl, batch, stage=stage, plain=terms["loss"])
        return terms

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        """Loss of one batch; logs ``{stage}/loss``, ``{stage}/reconstruction``, ``{stage}/kl``, ``{stage}/elbo``.

        Each is logged per epoch (the mean over the epoch's images), and in training also per step.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], ...}``.
            stage: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            The scalar loss to minimise: ``loss``, or in training with an objective attached, the
            objective's reduction of the per-image ``reconstruction + beta * kl`` (then logged
            as ``train/loss``).
        """
        terms = self._terms(batch, stage)
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value,
                on_step=stage == "train",
                on_epoch=True,
                prog_bar=name == "loss",
                batch_size=batch["image"].shape[0],
                sync_dist=stage != "train",
            )
        return terms["loss"]

    def kl_weight(self, stage: str) -> float:
        """The KL term's weight in ``stage``: ``beta``, warmed up over ``kl_warmup_epochs`` in training.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            ``beta * min(1, (epoch + 1) / kl_warmup_epochs)`` in training under a trainer,
            ``beta`` otherwise (outside a trainer, e.g. trained as another model's prior through
            :meth:`prior_step`, there is no epoch to warm up over).
        """
        warmup, beta = self.config.kl_warmup_epochs, float(self.config.beta)
        if stage != "train" or warmup == 0 or self._trainer is None:
            return beta
        return beta * min(1.0, (self.trainer.current_epoch + 1) / warmup)

    # ------------------------------------------------------------------ as a prior (PULSE) and a likelihood

    @property
    def latent_dim(self) -> int:
        """``d``, the dimension of the latent codes."""
        return self.config.latent_dim

    def decode_latent(self, z: Tensor) -> Tensor:
        """Images of latent codes: (N, d) float -> (N, C, H, W) float in [0, 1] (``sigmoid(decode(z))``)."""
        return torch.sigmoid(self.decode(z))

    def prior_step(self, batch: Mapping[str, Tensor], optimizers: Sequence[torch.optim.Optimizer],
                   backward: Callable[[Tensor], None]) -> dict[str, Tensor]:
        """One optimiser step on the batch's negative ELBO, for a module that trains this VAE inside it.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], ...}``.
            optimizers: ``[configure_optimizers()]``.
            backward: how to back-propagate (``manual_backward`` of the module being trained).

        Returns:
            The detached terms of :meth:`_terms` (``loss``, ``reconstruction``, ``kl``, ``elbo``).
        """
        (optimizer,) = optimizers
        terms = self._terms(batch, "train")
        optimizer.zero_grad(set_to_none=True)
        backward(terms["loss"])
        optimizer.step()
        return {name: value.detach() for name, value in terms.items()}

    def prior_validation_terms(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The terms of :meth:`_terms` on a validation batch (posterior means: deterministic)."""
        return self._terms(batch, "val")

    @torch.no_grad()
    def bits_per_dim(self, images: Tensor, *, draws: int = 8, generator: torch.Generator | None = None) -> Tensor:
        """Each image's negative ELBO in bits per dimension: an upper bound on ``-log2 p(x) / D``.

        ``-ELBO = E_q[reconstruction(x, z)] + KL(q(z|x) || N(0, I))``, the expectation over ``draws``
        reparameterised latents of the posterior, the KL analytic, divided by ``D ln 2`` with
        ``D = C * H * W``. The reconstruction term is the config's likelihood (``"bce"``: Bernoulli,
        the likelihood the model trains on, for continuous pixels a surrogate without the continuous
        Bernoulli's normaliser; ``"mse"``: squared error, a likelihood only up to a constant). Higher:
        the model finds the image less likely.

        Args:
            images: (N, C, H, W) float in [0, 1], matching the config.
            draws: latent draws per image, >= 1.
            generator: source of the draws (CPU); default seeded with ``config.seed``, so the
                result is deterministic.

        Returns:
            (N,) float >= 0, bits per dimension, on the images' device.

        Raises:
            ValueError: If the image shape does not match the config or ``draws`` is not a positive int.
        """
        if not _is_int(draws) or draws < 1:
            raise ValueError(f"draws must be a positive int, got {draws!r}")
        generator = generator if generator is not None else torch.Generator().manual_seed(self.config.seed)
        mu, logvar = self.encode(images)
        reconstruction = torch.zeros(images.shape[0], device=images.device, dtype=images.dtype)
        for _ in range(draws):
            noise = torch.randn(mu.shape, generator=generator).to(device=mu.device, dtype=mu.dtype)
            logits = self.decode(mu + noise * torch.exp(0.5 * logvar))
            reconstruction += per_sample_reconstruction_loss(logits, images, kind=self.config.reconstruction_loss)
        dims = math.prod(images.shape[1:])
        return (reconstruction / draws + per_sample_kl_loss(mu, logvar)) / (dims * math.log(2.0))

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Deterministic reconstructions of a batch.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) long}``.
            batch_idx: Position of the batch in the dataloader (unused).
            dataloader_idx: Index of the dataloader (unused).

        Returns:
            ``{"index": (B,) long, the batch's own index tensor, "output": (B, C, H, W) float in
            [0, 1]}``, the output decoded from the posterior mean.

        Raises:
            ValueError: If the batch lacks ``"image"`` or ``"index"``, or the shapes are wrong.
        """
        images = self._batch_tensor(batch, "image")
        index = self._batch_tensor(batch, "index")
        if index.shape != images.shape[:1]:
            raise ValueError(f"batch 'index' must have shape ({images.shape[0]},) to match 'image', got {tuple(index.shape)}")
        return {"index": index, "output": self(images)}

    def _restorable(self, saved: Mapping[str, Any], generator: torch.Generator) -> bool:
        """Whether a checkpoint's noise state fits this rank's ``generator`` (same device type, same rank)."""
        if saved.get("device") == generator.device.type and saved.get("rank") == self.global_rank:
            return True
        logger.warning(
            "the checkpoint's reparameterisation noise is of rank %s on %s, this is rank %s on %s: the noise "
            "restarts from the seed, so the resumed run is not exactly the uninterrupted one",
            saved.get("rank"), saved.get("device"), self.global_rank, generator.device.type,
        )
        return False

    def on_fit_start(self) -> None:
        super().on_fit_start()
        # Each fit replays the noise stream from config.seed, except one that resumes a checkpoint
        # (``trainer.fit(ckpt_path=...)``, restored before this hook), which continues the saved stream.
        self._noise_generator = None
        if self.trainer.ckpt_path is None:
            self._restored_noise = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the objective (see the mixin) and the training noise generator's state."""
        super().on_save_checkpoint(checkpoint)
        generator = self._noise_generator
        if generator is not None:
            checkpoint[NOISE_CHECKPOINT_KEY] = {"state": generator.get_state(), "device": generator.device.type,
                                                "rank": self.global_rank}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the objective (see the mixin) and keep the noise state for the next training batch."""
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get(NOISE_CHECKPOINT_KEY)
        self._restored_noise = dict(saved) if isinstance(saved, Mapping) else None

    def configure_optimizers(self) -> Any:
        optimizer = adamw(self.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        return with_lr_schedule(optimizer, self.config.lr_schedule)
