"""genfair.models: one LightningModule per model family, its config, and a registry.

Importing this package registers every model::

    from genfair import models
    spec = models.get("vae")                      # ModelSpec(name, module, config)
    model = spec.module.from_config(spec.config(image_size=64, channels=3))

Every module's ``predict_step(batch, batch_idx)`` returns
``{"index": (B,) long, "output": (B, C, H, W) float in [0, 1]}`` deterministically.
"""

from .registry import REGISTRY, ModelSpec, get, names, register
from .vae import (
    RECONSTRUCTION_LOSSES,
    VAE,
    VAEConfig,
    per_sample_kl_loss,
    per_sample_reconstruction_loss,
    vae_loss_terms,
)

__all__ = [
    "RECONSTRUCTION_LOSSES",
    "REGISTRY",
    "VAE",
    "ModelSpec",
    "VAEConfig",
    "get",
    "names",
    "per_sample_kl_loss",
    "per_sample_reconstruction_loss",
    "register",
    "vae_loss_terms",
]
