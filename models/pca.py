"""Principal component analysis: the linear baseline of the autoencoders, as a LightningModule.

``pca`` keeps the ``bottleneck`` leading principal components of the flattened training images
and reconstructs an image as ``mean + projection onto the components`` (clamped to [0, 1]): the
best any linear code of that size can do in squared error, so a learned autoencoder with the
same bottleneck should beat it.

How it fits (exact, in one pass; registered with ``max_epochs=1``):

- ``training_step`` only collects the flattened training images and their ``index`` (no loss, no
  optimiser: ``automatic_optimization = False`` and ``configure_optimizers`` returns ``[]``; the
  module's only parameter is an unused 0-d ``_ddp_anchor``, because DistributedDataParallel
  refuses modules without trainable parameters).
  Memory: N x D floats (1,240 images of 64x64x3: 61 MB).
- The fit is solved when the epoch's images are in (before the epoch's validation and at the
  epoch's end) by :func:`fit_pca`, in float64: centre the data, then ``torch.linalg.eigh`` of the
  smaller of the two Gram matrices: the N x N sample Gram ``Xc Xc^T`` when N <= D (the dual
  trick: components ``Xc^T u / sqrt(lambda)``; 1,240^2 float64 = 12 MB, where the 12,288^2
  covariance would be 1.2 GB), else the D x D scatter ``Xc^T Xc``. Both give exact principal
  components. Eigenvalues below ``lambda_max * max(N, D) * eps`` count as zero: when the data
  has rank r < bottleneck, components r+1.. are zero rows and the reconstruction is exact.
- Signs are fixed (each component's largest-magnitude entry is positive) and the samples are
  sorted by ``index`` first, so the fit does not depend on batch order or shuffling.
- Under DDP every rank gathers all ranks' images (``self.all_gather``, padded to equal length),
  drops the duplicates a ``DistributedSampler`` pads with (by ``index``), fits, and takes rank
  0's result (``strategy.broadcast``): all ranks end with the same components.

The fit lives in buffers (``mean``, ``components``, ``explained_variance``, ``total_variance``,
``n_samples``), so checkpoints carry it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._common import ConfiguredModule, check_positive_int, check_seed, is_int
from .registry import register

__all__ = ["PCA", "PCAConfig", "fit_pca"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PCAConfig:
    """Settings of :class:`PCA`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        image_size: Height and width of the square input images, in pixels.
        channels: Image channels: 3 for RGB, 1 for grayscale.
        bottleneck: Number of principal components kept (the code size; compare with an
            autoencoder's ``bottleneck`` or a VAE's ``latent_dim``).
        seed: Unused (the fit is exact and deterministic); kept so every model config has one.

    Raises:
        ValueError: On any out-of-range or wrongly typed value; the message quotes it.
    """

    image_size: int = 64
    channels: int = 3
    bottleneck: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "bottleneck"):
            check_positive_int("PCAConfig", name, getattr(self, name))
        check_seed("PCAConfig", self.seed)


def fit_pca(samples: Tensor, *, n_components: int) -> dict[str, Tensor]:
    """Exact principal components of a sample matrix, computed in float64.

    Args:
        samples: (N, D) float, one flattened image per row, N >= 1.
        n_components: Number of components k to return, >= 1. Components past the data's rank
            (at most ``min(N - 1, D)``) are returned as zero rows with zero variance.

    Returns:
        float64 tensors on the input's device: ``"mean"`` (D,); ``"components"`` (k, D),
        orthonormal rows (or zero) in order of decreasing variance, each with its largest-magnitude
        entry positive; ``"explained_variance"`` (k,), the variance along each component
        (denominator N - 1, or 1 when N = 1); ``"total_variance"`` (), the summed variance of all
        D coordinates.

    Raises:
        ValueError: If ``samples`` is not a non-empty 2-D tensor or ``n_components`` is not a
            positive int.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> fit_pca(x, n_components=1)["components"].abs().round(decimals=4)
        tensor([[1., 0.]], dtype=torch.float64)
    """
    if not isinstance(samples, Tensor) or samples.ndim != 2 or samples.shape[0] < 1:
        got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise ValueError(f"samples must be an (N, D) tensor with N >= 1, got {got}")
    if not is_int(n_components) or n_components < 1:
        raise ValueError(f"n_components must be a positive int, got {n_components!r}")
    x = samples.detach().to(torch.float64)
    n, d = x.shape
    mean = x.mean(dim=0)
    centred = x - mean
    if n <= d:  # dual: eigen-decompose the N x N sample Gram
        eigenvalues, eigenvectors = torch.linalg.eigh(centred @ centred.T)
    else:  # primal: the D x D scatter matrix
        eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred)
    k = min(n_components, eigenvalues.shape[0])
    eigenvalues = eigenvalues.flip(0)[:k]
    eigenvectors = eigenvectors.flip(1)[:, :k]
    tolerance = eigenvalues[:1].clamp_min(0.0) * max(n, d) * torch.finfo(torch.float64).eps
    keep = eigenvalues > tolerance
    eigenvalues = torch.where(keep, eigenvalues, torch.zeros_like(eigenvalues))
    if n <= d:
        scale = torch.where(keep, eigenvalues.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(), torch.zeros_like(eigenvalues))
        directions = (centred.T @ eigenvectors * scale).T
    else:
        directions = eigenvectors.T * keep[:, None]
    peak = directions.gather(1, directions.abs().argmax(dim=1, keepdim=True))
    directions = directions * torch.where(peak < 0, -1.0, 1.0).to(directions)
    components = torch.zeros(n_components, d, dtype=torch.float64, device=x.device)
    components[:k] = directions
    explained = torch.zeros(n_components, dtype=torch.float64, device=x.device)
    dof = max(n - 1, 1)
    explained[:k] = eigenvalues / dof
    return {
        "mean": mean,
        "components": components,
        "explained_variance": explained,
        "total_variance": centred.square().sum() / dof,
    }


@register("pca", config=PCAConfig, max_epochs=1,
          description="principal-component reconstruction, fitted exactly in one pass: the linear baseline")
class PCA(ConfiguredModule):
    """Principal-component reconstruction, fitted in one pass over the training split.

    Build it with ``PCA(config)``, ``PCA.from_config(config)`` or ``PCA(**asdict(config))``; fit
    it with ``trainer.fit`` (one epoch is enough; more epochs refit the same data) or directly
    with :meth:`fit_images`. Batches are dicts ``{"image": (B, C, H, W) float in [0, 1],
    "index": (B,) long}``. Validation and test log ``{stage}/loss`` and ``{stage}/mse`` (equal);
    the end of each training epoch logs ``train/explained_variance_ratio``. Training objectives
    (:mod:`genfair.models.objectives`) do not apply: the fit is closed-form, with no per-image
    loss to reweight, and ``set_objective`` refuses any kind but ``"erm"``.

    Attributes:
        config: The :class:`PCAConfig` this module was built from.
        mean: Buffer (D,), the training images' mean, D = C * H * W.
        components: Buffer (bottleneck, D), the principal components (zero rows past the rank).
        explained_variance: Buffer (bottleneck,), the variance along each component.
        total_variance: Buffer (), the training images' total variance.
        n_samples: Buffer (), long: the number of training images of the fit (0 = not fitted).
    """

    config_class = PCAConfig

    def __init__(self, config: PCAConfig | None = None, **hparams: Any) -> None:
        """Build an unfitted model from a config, or from the config's fields as keywords.

        Raises:
            TypeError: If both ``config`` and keywords are given, or ``config`` is not a
                ``PCAConfig``, or a keyword is not a ``PCAConfig`` field.
            ValueError: If a field value is invalid (see :class:`PCAConfig`).
        """
        super().__init__(config, **hparams)
        self.automatic_optimization = False
        config = self.config
        d, k = config.channels * config.image_size**2, config.bottleneck
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(k, d))
        self.register_buffer("explained_variance", torch.zeros(k))
        self.register_buffer("total_variance", torch.zeros(()))
        self.register_buffer("n_samples", torch.zeros((), dtype=torch.long))
        # DistributedDataParallel refuses a module without trainable parameters; this unused
        # 0-d parameter lets ``pca`` train under DDP. No optimiser ever steps it.
        self._ddp_anchor = nn.Parameter(torch.zeros(()))
        self._rows: list[Tensor] = []
        self._indices: list[Tensor] = []
        self._pending = False

    # ------------------------------------------------------------------ the linear model

    @property
    def is_fitted(self) -> bool:
        """Whether the components have been fitted (``n_samples > 0``)."""
        return bool(self.n_samples > 0)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("PCA is not fitted; fit it first with trainer.fit(model, ...) on the training split (one epoch) or model.fit_images(images)")

    def fit_images(self, images: Tensor) -> PCA:
        """Fit the components to a stack of images directly, without a Trainer.

        Args:
            images: (N, C, H, W) float in [0, 1], N >= 1, matching the config.

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: If the image shape does not match the config or N = 0.
        """
        self._check_images(images)
        if images.shape[0] < 1:
            raise ValueError(f"PCA.fit_images needs at least one image, got {tuple(images.shape)}")
        self._store(fit_pca(images.flatten(1), n_components=self.config.bottleneck), images.shape[0])
        return self

    def _store(self, fit: Mapping[str, Tensor], n: int) -> None:
        with torch.no_grad():
            for name in ("mean", "components", "explained_variance", "total_variance"):
                buffer = getattr(self, name)
                buffer.copy_(fit[name].to(device=buffer.device, dtype=buffer.dtype))
            self.n_samples.fill_(n)

    def encode_latent(self, images: Tensor) -> Tensor:
        """Component scores of each image: ``(x - mean) @ components.T``.

        Args:
            images: (N, C, H, W) float in [0, 1], matching the config.

        Returns:
            (N, bottleneck) float.

        Raises:
            ValueError: If the image shape does not match the config.
            RuntimeError: If the model is not fitted.
        """
        self._check_images(images)
        self._check_fitted()
        return (images.flatten(1) - self.mean) @ self.components.T

    def decode(self, scores: Tensor) -> Tensor:
        """Images from component scores: ``mean + scores @ components``, unclamped.

        Args:
            scores: (N, bottleneck) float.

        Returns:
            (N, C, H, W) float.
        """
        s = self.config.image_size
        return (self.mean + scores @ self.components).view(scores.shape[0], self.config.channels, s, s)

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruction: mean + projection onto the components, clamped to [0, 1].

        Args:
            images: (N, C, H, W) float in [0, 1].

        Returns:
            (N, C, H, W) float in [0, 1].

        Raises:
            ValueError: If the image shape does not match the config.
            RuntimeError: If the model is not fitted.
        """
        return self.decode(self.encode_latent(images)).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ the one-pass fit

    def on_train_epoch_start(self) -> None:
        self._rows, self._indices, self._pending = [], [], False

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        """Training: collect the batch's images. Validation/test: log ``{stage}/loss`` and ``{stage}/mse``.

        Validation before the fit (Lightning's sanity check) logs nothing. Returns None: there
        is no loss to optimise.
        """
        images = self._batch_tensor(batch, "image")
        self._check_images(images)
        if stage == "train":
            index = self._batch_index(batch, images.shape[0])
            self._rows.append(images.detach().flatten(1))
            self._indices.append(index.detach().to(device=images.device, dtype=torch.long))
            self._pending = True
            return None
        if not self.is_fitted:
            return None
        mse = (self(images) - images).square().mean()
        self._log_terms(stage, {"loss": mse, "mse": mse}, batch_size=images.shape[0])
        return None

    def _gather(self, rows: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
        """All ranks' rows and indices (padded to equal length for ``all_gather``, then unpadded)."""
        if self.trainer.world_size <= 1:
            return rows, indices
        counts = self.all_gather(torch.tensor(rows.shape[0], device=rows.device))
        longest = int(counts.max())
        pad = longest - rows.shape[0]
        rows = torch.cat([rows, rows.new_zeros(pad, rows.shape[1])])
        indices = torch.cat([indices, indices.new_full((pad,), -1)])
        rows = self.all_gather(rows).reshape(-1, rows.shape[1])
        indices = self.all_gather(indices).reshape(-1)
        real = indices >= 0
        return rows[real], indices[real]

    def _fit_pending(self) -> None:
        if not self._pending:
            return
        d = self.mean.shape[0]
        rows = torch.cat(self._rows) if self._rows else self.mean.new_zeros(0, d)
        indices = torch.cat(self._indices) if self._indices else torch.zeros(0, dtype=torch.long, device=self.device)
        rows, indices = self._gather(rows, indices)
        indices, order = torch.sort(indices, stable=True)
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]  # a DistributedSampler repeats rows to even out ranks
        rows = rows[order][first]
        self._store(fit_pca(rows, n_components=self.config.bottleneck), rows.shape[0])
        if self.trainer.world_size > 1:  # identical components on every rank, whatever the kernels did
            for name in ("mean", "components", "explained_variance", "total_variance", "n_samples"):
                getattr(self, name).copy_(self.trainer.strategy.broadcast(getattr(self, name), src=0))
        self._pending = False
        logger.debug("fitted PCA on %d images", rows.shape[0])

    def on_validation_epoch_start(self) -> None:
        self._fit_pending()  # Lightning validates before on_train_epoch_end: fit first

    def on_train_epoch_end(self) -> None:
        self._fit_pending()
        if self.is_fitted:
            ratio = self.explained_variance.sum() / self.total_variance.clamp_min(torch.finfo(self.total_variance.dtype).tiny)
            self.log("train/explained_variance_ratio", ratio, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """No optimisers (an empty list, which Lightning accepts without a warning): the fit is closed-form."""
        return []
