"""The generative side of a run: whom a model generates (its samples), and whom it finds unlikely (its ELBO).

- :func:`sample_tables`: for a model with ``sample(n, generator=...)`` (``vae``, ``gan``,
  ``pulse``'s prior), ``n`` samples from its prior read by the run's attribute classifier:
  :func:`genfair.audit.samples.sample_composition`'s two tables and a few samples for a grid.
- :func:`likelihood_tables`: for a model with ``bits_per_dim(images)`` (``vae``), each test image's
  negative ELBO in bits per dimension, per group with subject-clustered intervals and
  disparities (:func:`genfair.audit.stats.interval_tables`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from genfair.audit.samples import sample_composition
from genfair.audit.stats import interval_tables
from genfair.datasets import FacesDataModule

__all__ = ["LIKELIHOOD_METRIC", "SAMPLES_SHOWN", "can_sample", "likelihood_tables", "sample_tables"]

SAMPLES_SHOWN = 32
"""Samples kept for the grid figure."""

LIKELIHOOD_METRIC = "elbo_bits_per_dim_loss"
"""The per-image column of :func:`likelihood_tables`: -ELBO in bits per dimension (lower: more likely)."""

_CHUNK = 250  # images sampled, classified or scored at once


def can_sample(module: Any) -> bool:
    """Whether ``module`` draws samples from a prior (a callable ``sample``)."""
    return callable(getattr(module, "sample", None))


def sample_tables(
    module: Any,
    classify: Callable[[torch.Tensor], pd.DataFrame],
    *,
    n: int,
    attributes: Sequence[str],
    training: pd.DataFrame,
    panel: pd.DataFrame,
    held_out: pd.DataFrame | None,
    seed: int,
    min_accuracy: float,
) -> tuple[dict[str, pd.DataFrame], torch.Tensor]:
    """Draw ``n`` samples, classify them, and compose them against the training set and the panel.

    Args:
        module: has ``sample(k, generator=torch.Generator) -> (k, C, H, W)`` in [0, 1].
        classify: images -> one label column per attribute (the run's instrument).
        n: samples, >= 1; drawn in chunks from one generator seeded with ``seed``.
        attributes, training, panel, held_out, min_accuracy: as in
            :func:`~genfair.audit.samples.sample_composition`.

    Returns:
        ``({"sample_composition": ..., "sample_amplification": ...}, shown)``; ``shown``: the first
        :data:`SAMPLES_SHOWN` samples, ``(k, C, H, W)`` on the CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    labels, shown = [], None
    for start in range(0, n, _CHUNK):
        images = module.sample(min(_CHUNK, n - start), generator=generator).detach().float().cpu().clamp(0, 1)
        if shown is None:
            shown = images[:SAMPLES_SHOWN]
        labels.append(classify(images))
    composition, amplification = sample_composition(
        pd.concat(labels, ignore_index=True), attributes=attributes, training=training, panel=panel,
        held_out=held_out, seed=seed, min_accuracy=min_accuracy)
    return {"sample_composition": composition, "sample_amplification": amplification}, shown


def likelihood_tables(module: Any, datamodule: FacesDataModule, *, attributes: Sequence[str],
                      seed: int) -> dict[str, pd.DataFrame]:
    """Each test image's -ELBO (bits per dimension), per group: ``likelihood`` and ``likelihood_disparities``.

    Args:
        module: has ``bits_per_dim(images (N, C, H, W)) -> (N,)``.
        datamodule: the run's data; its test split is scored.
        attributes: the sensitive attributes.
        seed: seeds the intervals' resampling.

    Returns:
        ``{"likelihood": per group (interval columns of genfair.audit.stats.group_intervals),
        "likelihood_disparities": worst against best group per grouping,
        "likelihood_per_image": path, subject, attributes and the bits per dimension}``.
    """
    rows = datamodule.split_rows("test")
    frame = datamodule.split_frame("test")[["path", "subject", *attributes]].reset_index(drop=True)
    module = module.cpu().eval()
    bits = []
    for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / _CHUNK))):
        images = torch.stack([datamodule.load_image(int(row)) for row in chunk])
        bits.append(module.bits_per_dim(images).float().numpy())
    per_image = frame.assign(**{LIKELIHOOD_METRIC: np.concatenate(bits)})
    by_group, disparities = interval_tables(per_image, attributes=list(attributes), metrics=[LIKELIHOOD_METRIC],
                                            seed=seed)
    return {"likelihood": by_group, "likelihood_disparities": disparities, "likelihood_per_image": per_image}
