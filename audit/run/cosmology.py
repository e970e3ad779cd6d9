"""The run's side of the cosmology audit: read each patch's environment map, add the tables.

Active when the manifest has the dataset's per-pixel environment column (``--dataset cosmo``, or a
manifest written like it): each batch gets :func:`genfair.audit.cosmology.cosmology_columns`, and
the result gets the ``environment_errors`` and ``power_spectrum`` tables (intervals over boxes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from genfair.audit.cosmology import (
    BOX_COLUMN,
    cosmology_columns,
    environment_error_table,
    octave_edges,
    power_spectrum_table,
)
from genfair.datasets import ENVIRONMENT_COLUMN, ENVIRONMENTS, Manifest

__all__ = ["CosmologyScorer", "cosmology_scorer"]


class CosmologyScorer:
    """Scores batches of one manifest's patches by environment and builds the cosmology tables."""

    def __init__(self, manifest: Manifest, *, scale: int | None) -> None:
        self.manifest, self.scale = manifest, scale

    def environment_maps(self, rows: Sequence[int]) -> torch.Tensor:
        """``(B, H, W)`` int64 environment codes of manifest rows ``rows``, read from their PNGs."""
        column = self.manifest.frame[ENVIRONMENT_COLUMN]
        maps = []
        for row in rows:
            with Image.open(self.manifest.root / column.iat[row]) as image:
                maps.append(torch.from_numpy(np.asarray(image, dtype=np.int64)))
        return torch.stack(maps)

    def score(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The batch's cosmology columns (``cosmo_*``), as numpy arrays of length ``B``.

        Raises:
            ValueError: an environment map whose size is not the image's (the run's ``--image-size``
                must be the patches' size).
        """
        maps = self.environment_maps(batch["index"].tolist())
        size = batch["image"].shape[-1]
        if maps.shape[-1] != size:
            raise ValueError(f"--image-size {size}: the environment maps are {maps.shape[-1]}x{maps.shape[-2]}; "
                             f"fix: pass --image-size {maps.shape[-1]} (the patches' size)")
        columns = cosmology_columns(batch["output"], batch["image"], maps, environment_names=ENVIRONMENTS,
                                    edges=octave_edges(size))
        return {name: values.detach().cpu().numpy() for name, values in columns.items()}

    def tables(self, per_image: pd.DataFrame, rows: pd.Index, *, attributes: Sequence[str], image_size: int,
               seed: int) -> dict[str, pd.DataFrame]:
        """``environment_errors`` and ``power_spectrum`` of the audited patches.

        Args:
            per_image: the audit's per-image frame (with the ``cosmo_*`` columns), in ``rows`` order.
            rows: the manifest rows of ``per_image``.
            attributes: the run's attributes; the power spectrum is grouped by the first.
            image_size: the patches' side in pixels.
            seed: seeds the box bootstrap.
        """
        frame = per_image.assign(**{BOX_COLUMN: self.manifest.frame[BOX_COLUMN].iloc[rows].to_numpy()})
        nyquist = image_size / (2 * self.scale) if self.scale else image_size / 2
        return {
            "environment_errors": environment_error_table(frame, environment_names=ENVIRONMENTS, seed=seed),
            "power_spectrum": power_spectrum_table(frame, attribute=attributes[0], edges=octave_edges(image_size),
                                                   input_nyquist=nyquist, seed=seed),
        }


def cosmology_scorer(manifest: Manifest, *, scale: int | None) -> CosmologyScorer | None:
    """A scorer when the manifest has environment maps and boxes; None otherwise."""
    columns = set(manifest.frame.columns)
    if ENVIRONMENT_COLUMN in columns and BOX_COLUMN in columns:
        return CosmologyScorer(manifest, scale=scale)
    return None
