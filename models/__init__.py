"""genfair.models: one LightningModule per model family, its config, and a registry.

Importing this package registers every model::

    from genfair import models
    spec = models.get("vae")                      # ModelSpec(name, module, config, max_epochs, task, ...)
    model = spec.module.from_config(spec.config(image_size=64, channels=3, seed=0))

Each :class:`ModelSpec` also carries ``task`` (``"reconstruction"`` or ``"upsampling"``), a one-line
``description``, its ``baseline`` (the key of the model it should beat: ``"pca"`` for ``ae``,
``cnn`` and ``vae``, ``"bicubic"`` for ``sr``, None for the baselines) and its ``origin``
(``"built in"`` or ``"plugin <distribution> <version>"``).

Plugins: other installed distributions add models through entry points of the group
``genfair.models`` (:data:`ENTRY_POINT_GROUP`), one per model, named by its registry key and
pointing at the class their module registers with :func:`register`; :func:`get` and
:func:`names` load them, once, on their first call (see :mod:`genfair.models.registry`).

Registered: ``ae`` (dense autoencoder), ``bicubic`` (super-resolution baseline, never trained),
``cnn`` (convolutional autoencoder), ``gan`` (DCGAN-style generator, task ``"generation"``), ``pca``
(linear baseline, fitted in one pass), ``pulse`` (super-resolution by latent search through a
``gan`` or ``vae`` prior), ``sr``
(residual super-resolution), ``vae`` (variational autoencoder).

Every module's ``predict_step(batch, batch_idx)`` returns
``{"index": (B,) long, "output": (B, C, H, W) float in [0, 1]}`` deterministically. The
autoencoders (``ae``, ``cnn``, ``pca``, ``vae``) also have ``encode_latent(images) -> (N, latent_dim)``.
Super-resolution models (``sr``, ``bicubic``) have a config ``scale`` and read ``batch["lowres"]``.

Training objectives (:mod:`genfair.models.objectives`): the learned models (``ae``, ``cnn``,
``sr``, ``vae``) minimise the mean per-image loss by default; ``model.set_objective(objective,
num_classes=...)`` attaches a :class:`GroupObjective` (``"reweighted"``, ``"group-dro"``) that
reduces the training loss per intersectional group of the batches' ``"labels"``::

    objective = models.GroupObjective(kind="group-dro", n_groups=math.prod(num_classes))
    model.set_objective(objective, num_classes=num_classes)

:class:`AttributeClassifier` (one softmax head per sensitive attribute) is exported but not
registered: it is a tool of the audit, not a model a user audits.
"""

from .registry import ENTRY_POINT_GROUP, REGISTRY, TASKS, ModelSpec, get, names, register
from .losses import PIXEL_LOSSES, per_sample_pixel_loss
from .vae import (
    RECONSTRUCTION_LOSSES,
    VAE,
    VAEConfig,
    per_sample_kl_loss,
    per_sample_reconstruction_loss,
    vae_loss_terms,
)
from .ae import AE, AE_OPTIMIZERS, DEFAULT_LEARNING_RATES, AEConfig
from .cnn import ConvAE, ConvAEConfig
from .gan import GAN, GAN_LOSSES, GANConfig
from .latent_search import SearchResult, latent_search
from .pulse import PRIORS, PULSE_SCALES, Pulse, PulseConfig
from .sr import SCALES, SR, Bicubic, BicubicConfig, SRConfig, bicubic_upsample
from .pca import PCA, PCAConfig, fit_pca
from .classifier import AttributeClassifier, AttributeClassifierConfig
from .objectives import (
    DEFAULT_DRO_STEP_SIZE,
    OBJECTIVES,
    GroupObjective,
    GroupObjectiveConfig,
    intersectional_groups,
    inverse_frequency_weights,
)

__all__ = [
    "AE",
    "AE_OPTIMIZERS",
    "GAN",
    "GAN_LOSSES",
    "GANConfig",
    "PRIORS",
    "PULSE_SCALES",
    "Pulse",
    "PulseConfig",
    "SearchResult",
    "latent_search",
    "DEFAULT_DRO_STEP_SIZE",
    "DEFAULT_LEARNING_RATES",
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "PCA",
    "PIXEL_LOSSES",
    "RECONSTRUCTION_LOSSES",
    "REGISTRY",
    "SCALES",
    "SR",
    "TASKS",
    "VAE",
    "AEConfig",
    "AttributeClassifier",
    "AttributeClassifierConfig",
    "Bicubic",
    "BicubicConfig",
    "ConvAE",
    "ConvAEConfig",
    "GroupObjective",
    "GroupObjectiveConfig",
    "ModelSpec",
    "PCAConfig",
    "SRConfig",
    "VAEConfig",
    "bicubic_upsample",
    "fit_pca",
    "get",
    "intersectional_groups",
    "inverse_frequency_weights",
    "names",
    "per_sample_kl_loss",
    "per_sample_pixel_loss",
    "per_sample_reconstruction_loss",
    "register",
    "vae_loss_terms",
]
