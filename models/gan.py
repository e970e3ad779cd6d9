"""A DCGAN-style generative adversarial network (``gan``) that trains on a CPU in minutes.

Architecture (``features=F``, ``n = log2(image_size / 4)`` up-blocks, 64x64: n = 4)::

    generator:     z (B, d) -> Linear -> (F * 2^(n-1), 4, 4)
                   [ConvTranspose2d 4x4 stride 2 -> PixelNorm -> ReLU] x (n - 1)    4 -> ... -> H/2
                   ConvTranspose2d 4x4 stride 2 -> sigmoid                          (B, C, H, W) in [0, 1]
    discriminator: 2x - 1 -> [spectral-norm Conv2d 4x4 stride 2 -> LeakyReLU 0.2] x n  H -> 4
                   flatten -> spectral-norm Linear -> (B,) logits

What keeps it stable on a CPU with small batches: spectral normalisation in the discriminator
(Miyato et al. 2018), the hinge loss, Adam with beta1 = 0.5, and pixelwise feature normalisation
(not BatchNorm) in the generator, so an image never depends on the rest of its batch (nor does a
latent search through it).

Training uses Lightning's manual optimisation: one discriminator step, then one generator step,
per batch. Validation logs ``val/loss``, the moment gap between a fixed set of samples and the
validation images (squared gaps of the per-pixel mean and standard deviation): the checkpoint with
the lowest one is kept. A GAN has no encoder: its output for a test image (``predict_step``,
``forward``) is the generator's closest image, found by a latent search (:mod:`.latent_search`, scale 1).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ._common import (
    ConfiguredModule,
    check_choice,
    check_positive_int,
    check_positive_real,
    check_seed,
    is_int,
    is_real,
    sample_latents,
    seeded,
)
from .latent_search import latent_search
from .registry import register

__all__ = ["GAN", "GANConfig", "GAN_LOSSES", "discriminator_loss", "generator_loss", "moment_gap"]

GANLoss = Literal["hinge", "nonsaturating"]
GAN_LOSSES: tuple[str, ...] = typing.get_args(GANLoss)
"""Allowed values of ``GANConfig.loss``."""

_LEAKY_SLOPE = 0.2
_SMALLEST_SIDE = 4  # px: where the generator starts and the discriminator ends


@dataclass(frozen=True, kw_only=True)
class GANConfig:
    """Hyperparameters of :class:`GAN`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        image_size: Height and width of the images, in pixels: a power of two >= 8 (32 and 64 are
            the tested sizes).
        channels: Image channels: 3 for RGB, 1 for grayscale.
        latent_dim: ``d``, the dimension of the standard Gaussian latent.
        features: ``F``, channels of the generator's last hidden block and the discriminator's first.
        loss: ``"hinge"`` or ``"nonsaturating"`` (the original GAN loss with ``-log D(G(z))``).
        learning_rate: Adam step size of both networks.
        beta1: Adam's first-moment decay (0.5, as DCGAN; in [0, 1)).
        inversion_steps: Adam steps of the latent search that finds each test image's output.
        inversion_restarts: Starting codes of that search.
        seed: Seeds the weights, the training noise and the searches. ``0 <= seed < 2**32``.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    latent_dim: int = 64
    features: int = 16
    loss: GANLoss = "hinge"
    learning_rate: float = 2e-4
    beta1: float = 0.5
    inversion_steps: int = 30
    inversion_restarts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "latent_dim", "features", "inversion_restarts"):
            check_positive_int("GANConfig", name, getattr(self, name))
        size = self.image_size
        if size < 2 * _SMALLEST_SIDE or size & (size - 1):
            raise ValueError(f"GANConfig.image_size must be a power of two >= {2 * _SMALLEST_SIDE} (e.g. 32 or 64), got {size!r}")
        check_choice("GANConfig", "loss", self.loss, GAN_LOSSES)
        check_positive_real("GANConfig", "learning_rate", self.learning_rate)
        if not is_real(self.beta1) or not 0 <= self.beta1 < 1:
            raise ValueError(f"GANConfig.beta1 must be a number in [0, 1), got {self.beta1!r}")
        if not is_int(self.inversion_steps) or self.inversion_steps < 0:
            raise ValueError(f"GANConfig.inversion_steps must be an int >= 0, got {self.inversion_steps!r}")
        check_seed("GANConfig", self.seed)


# --------------------------------------------------------------------------- losses (pure)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, *, kind: GANLoss = "hinge") -> Tensor:
    """The discriminator's loss, a scalar (lower: it tells real from generated better).

    Args:
        real_logits: (N,) float, its logits for real images.
        fake_logits: (M,) float, its logits for generated images.
        kind: ``"hinge"``: ``mean(relu(1 - real)) + mean(relu(1 + fake))``; ``"nonsaturating"``:
            ``mean(softplus(-real)) + mean(softplus(fake))`` (binary cross-entropy).

    Raises:
        ValueError: If ``kind`` is unknown.

    Example:
        >>> float(discriminator_loss(torch.tensor([2.0]), torch.tensor([-2.0])))
        0.0
    """
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "nonsaturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    raise ValueError(f"GAN loss kind must be one of {GAN_LOSSES}, got {kind!r}")


def generator_loss(fake_logits: Tensor, *, kind: GANLoss = "hinge") -> Tensor:
    """The generator's loss, a scalar: ``-mean(fake)`` (hinge) or ``mean(softplus(-fake))`` (non-saturating).

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"GAN loss kind must be one of {GAN_LOSSES}, got {kind!r}")


def moment_gap(samples: Tensor, images: Tensor) -> Tensor:
    """How far samples' pixel statistics are from real images': a scalar >= 0, 0 when they agree.

    ``mean over pixels of (mean_s - mean_r)^2 + (std_s - std_r)^2``, each statistic per pixel
    and channel over the images of its set.

    Args:
        samples: (N, C, H, W) float, N >= 2.
        images: (M, C, H, W) float, M >= 2.

    Raises:
        ValueError: If the image shapes differ or a set has fewer than 2 images.
    """
    if samples.shape[1:] != images.shape[1:] or samples.shape[0] < 2 or images.shape[0] < 2:
        raise ValueError(f"moment_gap needs two sets of at least 2 images of one shape, got {tuple(samples.shape)} and {tuple(images.shape)}")
    mean_gap = (samples.mean(dim=0) - images.mean(dim=0)).square()
    std_gap = (samples.std(dim=0) - images.std(dim=0)).square()
    return (mean_gap + std_gap).mean()


# --------------------------------------------------------------------------- networks


def _widths(config: GANConfig) -> list[int]:
    """Channels at each side from 4 px up to H/2: ``[F * 2^(n-1), ..., F]``."""
    blocks = int(math.log2(config.image_size // _SMALLEST_SIDE))
    return [config.features * 2 ** (blocks - 1 - i) for i in range(blocks)]


class _PixelNorm(nn.Module):
    """Pixelwise feature normalisation (Karras et al. 2018): ``x / sqrt(mean_c x^2 + eps)`` at each pixel.

    Per image and pixel, so no image depends on its batch; built of plain tensor operations, so
    it stays fast under ``torch.use_deterministic_algorithms`` (GroupNorm's CPU backward does not).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class _Generator(nn.Module):
    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        widths = _widths(config)
        self.start_shape = (widths[0], _SMALLEST_SIDE, _SMALLEST_SIDE)
        self.project = nn.Linear(config.latent_dim, math.prod(self.start_shape))
        layers: list[nn.Module] = [_PixelNorm(), nn.ReLU()]
        for wide, narrow in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(wide, narrow, 4, stride=2, padding=1), _PixelNorm(), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], config.channels, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        # channels_last: the transposed convolutions' fastest layout on the CPU (a GAN step
        # and a latent-search step ~10% faster); callers get plain contiguous (N, C, H, W) back
        start = self.project(z).view(z.shape[0], *self.start_shape).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(self.body(start)).contiguous()


class _Discriminator(nn.Module):
    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        widths = _widths(config)[::-1]  # F, 2F, ... at H/2, H/4, ..., 4
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip([config.channels, *widths[:-1]], widths):
            layers += [spectral_norm(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1)), nn.LeakyReLU(_LEAKY_SLOPE)]
        self.body = nn.Sequential(*layers, nn.Flatten(1))
        self.head = spectral_norm(nn.Linear(widths[-1] * _SMALLEST_SIDE ** 2, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.body(images * 2.0 - 1.0)).squeeze(1)


@register("gan", config=GANConfig, task="generation",
          description="DCGAN-style generator and spectral-norm discriminator (hinge loss); outputs: latent-search inversions")
class GAN(ConfiguredModule):
    """DCGAN-style GAN trained with manual optimisation; samples, and inverts test images by latent search.

    Build it with ``GAN(config)``, ``GAN.from_config(config)`` or ``GAN(**asdict(config))``.
    Batches are dicts ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) long}``. Training logs
    ``train/d_loss``, ``train/g_loss`` and ``train/loss`` (the generator's); validation and test
    log ``{stage}/loss`` = ``{stage}/moment_gap`` (:func:`moment_gap` of fixed samples against the batch).

    Attributes:
        config: The :class:`GANConfig` this module was built from.
        generator: latent (B, d) -> images (B, C, H, W) in [0, 1].
        discriminator: images (B, C, H, W) in [0, 1] -> logits (B,).
    """

    config_class = GANConfig

    def __init__(self, config: GANConfig | None = None, **hparams: Any) -> None:
        """Build both networks from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not a ``GANConfig``.
            ValueError: If a field value is invalid (see :class:`GANConfig`).
        """
        super().__init__(config, **hparams)
        self.automatic_optimization = False
        with seeded(self.config.seed):
            self.generator = _Generator(self.config)
            self.discriminator = _Discriminator(self.config)
        # weights in channels_last (loaded checkpoints are copied into them and keep it): see _Generator.forward
        self.generator.to(memory_format=torch.channels_last)
        self.discriminator.to(memory_format=torch.channels_last)
        self._noise: torch.Generator | None = None

    @property
    def latent_dim(self) -> int:
        """``d``, the dimension of the latent codes."""
        return self.config.latent_dim

    def decode_latent(self, z: Tensor) -> Tensor:
        """Images of latent codes: (N, d) float -> (N, C, H, W) float in [0, 1]."""
        return self.generator(z)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Generate ``n`` images from ``z ~ N(0, I)``.

        Args:
            n: Number of images, >= 1.
            generator: Source of the latent draws (CPU). Default: seeded with ``config.seed``.

        Returns:
            (n, C, H, W) float in [0, 1], on the module's device.

        Raises:
            ValueError: If ``n`` is not a positive int.
        """
        return sample_latents(self.generator, n, latent_dim=self.config.latent_dim, seed=self.config.seed,
                              like=self.generator.project.weight, generator=generator)

    def forward(self, images: Tensor) -> Tensor:
        """The generator's closest image to each image (latent search, scale 1).

        Args:
            images: (N, C, H, W) float in [0, 1].

        Returns:
            (N, C, H, W) float in [0, 1].

        Raises:
            ValueError: If the shape does not match the config.
        """
        self._check_images(images)
        return latent_search(self.generator, images, latent_dim=self.config.latent_dim, scale=1,
                             restarts=self.config.inversion_restarts, steps=self.config.inversion_steps,
                             seed=self.config.seed).images

    # ------------------------------------------------------------------ training

    def _latents(self, n: int) -> Tensor:
        if self._noise is None:  # one stream per rank, replayed from the seed by each fit
            self._noise = torch.Generator().manual_seed(self.config.seed + (self.global_rank << 32))
        return torch.randn((n, self.config.latent_dim), generator=self._noise).to(self.device)

    def on_fit_start(self) -> None:
        self._noise = None

    def prior_step(self, batch: Mapping[str, Tensor], optimizers: Sequence[torch.optim.Optimizer],
                   backward: Callable[[Tensor], None]) -> dict[str, Tensor]:
        """One discriminator step, then one generator step, on a batch of real images.

        Args:
            batch: ``{"image": (B, C, H, W) float in [0, 1], ...}``.
            optimizers: the discriminator's and the generator's (what ``configure_optimizers`` returns).
            backward: how to back-propagate a loss (``manual_backward`` of the module being trained).

        Returns:
            Scalar terms: ``d_loss``, ``g_loss`` and ``loss`` (= ``g_loss``), detached.
        """
        images = self._batch_tensor(batch, "image")
        self._check_images(images)
        d_optimizer, g_optimizer = optimizers
        kind = self.config.loss
        fake = self.generator(self._latents(images.shape[0]))
        d_loss = discriminator_loss(self.discriminator(images), self.discriminator(fake.detach()), kind=kind)
        d_optimizer.zero_grad(set_to_none=True)
        backward(d_loss)
        d_optimizer.step()
        # the generator's step needs no gradient for the discriminator's weights (its next step
        # clears them): frozen, its backward skips their weight gradients (~6% of a step)
        trained = [p for p in self.discriminator.parameters() if p.requires_grad]
        for parameter in trained:
            parameter.requires_grad_(False)
        try:
            g_loss = generator_loss(self.discriminator(fake), kind=kind)
            g_optimizer.zero_grad(set_to_none=True)
            backward(g_loss)
        finally:
            for parameter in trained:
                parameter.requires_grad_(True)
        g_optimizer.step()
        return {"loss": g_loss.detach(), "d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def prior_validation_terms(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss", "moment_gap"}`` of a batch: fixed samples (seeded) against its images."""
        images = self._batch_tensor(batch, "image")
        self._check_images(images)
        samples = self.sample(max(images.shape[0], 2)).to(images.dtype)
        gap = moment_gap(samples, images) if images.shape[0] >= 2 else torch.zeros((), device=images.device)
        return {"loss": gap, "moment_gap": gap}

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        terms = self.prior_step(batch, self.optimizers(), self.manual_backward)
        self._log_terms("train", terms, batch_size=batch["image"].shape[0])

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        self._log_terms(stage, self.prior_validation_terms(batch), batch_size=batch["image"].shape[0])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The discriminator's Adam, then the generator's (same step size, ``betas=(beta1, 0.999)``)."""
        betas = (self.config.beta1, 0.999)
        return [torch.optim.Adam(self.discriminator.parameters(), lr=self.config.learning_rate, betas=betas),
                torch.optim.Adam(self.generator.parameters(), lr=self.config.learning_rate, betas=betas)]
