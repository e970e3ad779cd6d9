"""Images of a manifest as tensors: a torch ``Dataset``, a subject-disjoint split, a DataModule.

Every batch is ``{"image": (B, C, H, W) float in [0, 1], "index": (B,) int64}`` where ``index`` is
the row's position in ``manifest.frame``, so model outputs map back to their manifest rows
(subject, attributes) whatever the shuffling or sharding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .manifest import RESERVED_COLUMNS, SPLITS, Manifest

__all__ = ["ManifestImageDataset", "FacesDataModule", "load_image", "subject_disjoint_split"]

CHANNEL_MODES: dict[int, str] = {1: "L", 3: "RGB"}
"""PIL mode per channel count."""

ERR_EMPTY_SPLIT = "split is empty"
ERR_TOO_FEW_SUBJECTS = "too few subjects"


def load_image(path: str | os.PathLike[str], *, image_size: int, channels: int = 3) -> torch.Tensor:
    """Read one image as a tensor.

    The image is converted to RGB (``channels=3``) or greyscale (``channels=1``) and, when its
    size differs, resized to ``image_size x image_size`` (a box/area filter when shrinking,
    bicubic when enlarging; the aspect ratio is not kept).

    Args:
        path: an image file PIL can read.
        image_size: output side in pixels.
        channels: 1 or 3.

    Returns:
        ``(channels, image_size, image_size)`` float32 in [0, 1].

    Raises:
        ValueError: ``channels`` is not 1 or 3.
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {sorted(CHANNEL_MODES)}, got {channels!r}")
    with Image.open(path) as opened:
        image = opened.convert(CHANNEL_MODES[channels])
    if image.size != (image_size, image_size):
        shrinking = image.width >= image_size and image.height >= image_size
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
        image = image.resize((image_size, image_size), resample)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).to(torch.float32).div_(255.0)


class ManifestImageDataset(Dataset):
    """Some rows of a manifest, read lazily (one file open per item).

    Args:
        manifest: the validated manifest.
        rows: positions in ``manifest.frame`` (0-based), in the order to serve them.
        image_size: output side in pixels.
        channels: 1 (greyscale) or 3 (RGB).

    Items are ``{"image": (C, H, W) float32 in [0, 1], "index": int}`` with ``index`` the row's
    position in ``manifest.frame``; the default collate makes ``index`` a ``(B,)`` int64 tensor.
    """

    def __init__(self, manifest: Manifest, rows: Sequence[int], *, image_size: int, channels: int = 3) -> None:
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {sorted(CHANNEL_MODES)}, got {channels!r}")
        self.manifest = manifest
        self.rows = np.asarray(rows, dtype=np.int64)
        self.image_size = image_size
        self.channels = channels
        root = os.fspath(manifest.root)
        self._files = [os.path.join(root, p) for p in manifest.frame["path"].to_numpy()[self.rows]]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor | int]:
        image = load_image(self._files[item], image_size=self.image_size, channels=self.channels)
        return {"image": image, "index": int(self.rows[item])}


def subject_disjoint_split(
    frame: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    attributes: Sequence[str] | None = None,
) -> pd.Series:
    """Assign whole subjects to train/val/test, stratified by their attribute combination.

    Subjects (not images) are split: about ``round(S * test_fraction)`` of the ``S`` subjects go
    to test and ``round(S * val_fraction)`` to val (at least one each when the fraction is
    positive), the rest to train. Each split's share is apportioned to the strata (each subject's
    combination of attribute values) by largest remainder, so every stratum is represented in
    proportion as far as whole subjects allow. Depends only on ``frame``'s content and ``seed``,
    not on the row order.

    Args:
        frame: one row per image with a ``subject`` column (and the attribute columns).
        seed: seeds a ``numpy.random.Generator``.
        val_fraction: share of subjects for validation, in [0, 1).
        test_fraction: share of subjects for test, in [0, 1); ``val_fraction + test_fraction < 1``.
        attributes: columns to stratify by (a subject's first value is used). ``None`` means
            every non-reserved column; ``()`` means no stratification.

    Returns:
        Split labels (``"train"``, ``"val"``, ``"test"``) named ``split``, with ``frame``'s index.

    Raises:
        ValueError: bad fractions, no ``subject`` column, an unknown attribute, an empty frame, or
            too few subjects to leave one for training.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 to leave subjects for training, "
            f"got {val_fraction} + {test_fraction}"
        )
    if "subject" not in frame.columns:
        raise ValueError(f"frame needs a 'subject' column to split by subject, got columns {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("cannot split an empty frame: it has no rows")
    strata = (
        [c for c in frame.columns if c not in RESERVED_COLUMNS] if attributes is None else list(attributes)
    )
    unknown = [c for c in strata if c not in frame.columns]
    if unknown:
        raise ValueError(f"attributes {unknown} are not columns of the frame (columns: {list(frame.columns)})")

    subjects = frame["subject"].astype("str")
    per_subject = frame.assign(subject=subjects).groupby("subject", sort=True)[strata].first()
    keys = (
        per_subject.astype("str").agg("\x1f".join, axis=1)
        if strata
        else pd.Series("", index=per_subject.index, dtype="str")
    )
    n_subjects = len(keys)
    n_test = _share(n_subjects, test_fraction)
    n_val = _share(n_subjects, val_fraction)
    if n_test + n_val >= n_subjects:
        raise ValueError(
            f"{ERR_TOO_FEW_SUBJECTS}: {n_subjects} subject(s) cannot fill {n_test} test + {n_val} val subject(s) "
            f"and leave one for training; fix: add subjects, lower test_fraction/val_fraction, or give the "
            f"manifest a split column"
        )

    rng = np.random.default_rng(seed)
    stratum_names = sorted(keys.unique())
    members = [keys.index[keys.to_numpy() == name].to_numpy() for name in stratum_names]
    sizes = np.array([len(m) for m in members])
    test_counts = _apportion(n_test, sizes, sizes, rng)
    val_counts = _apportion(n_val, sizes, sizes - test_counts, rng)
    labels: dict[str, str] = {}
    for subjects_in_stratum, k_test, k_val in zip(members, test_counts, val_counts):
        order = rng.permutation(subjects_in_stratum)
        for position, subject in enumerate(order):
            labels[subject] = "test" if position < k_test else "val" if position < k_test + k_val else "train"
    return subjects.map(labels).astype("str").rename("split")


def _share(total: int, fraction: float) -> int:
    """``round(total * fraction)`` (halves up), at least 1 when ``fraction > 0``."""
    count = math.floor(total * fraction + 0.5)
    return max(count, 1) if fraction > 0 else 0


def _apportion(total: int, sizes: np.ndarray, capacity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over strata in proportion to ``sizes`` (largest remainder), within ``capacity``."""
    quotas = total * sizes / sizes.sum()
    counts = np.minimum(np.floor(quotas).astype(int), capacity)
    remainder = quotas - counts
    order = np.lexsort((rng.random(len(sizes)), -remainder))  # largest remainder first, ties at random
    left = total - int(counts.sum())
    while left > 0:
        progressed = False
        for stratum in order:
            if left and counts[stratum] < capacity[stratum]:
                counts[stratum] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


class FacesDataModule(pl.LightningDataModule):
    """Train/val/test loaders over a manifest's images, split by subject.

    Uses the manifest's ``split`` column when it has one, else :func:`subject_disjoint_split`
    (stratified by ``manifest.attributes``, seeded by ``seed``). The split is fixed at
    construction. The training loader shuffles with a ``torch.Generator`` seeded from ``seed``;
    the val, test and predict loaders keep manifest order. ``predict_dataloader`` serves the test
    split. Batches are ``{"image": (B, C, H, W) float32 in [0, 1], "index": (B,) int64}``.

    Args:
        manifest: the validated manifest.
        image_size: image side in pixels (images are resized to ``image_size x image_size``).
        channels: 1 (greyscale) or 3 (RGB).
        batch_size: images per batch.
        seed: seeds the split (when the manifest has none) and the training shuffle.
        val_fraction: share of subjects for validation when splitting.
        test_fraction: share of subjects for test when splitting.
        num_workers: DataLoader worker processes.

    Raises:
        ValueError: a bad option, or an empty train or test split.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        image_size: int,
        channels: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        options = (("image_size", image_size, 1), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0))
        for name, value, low in options:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {sorted(CHANNEL_MODES)}, got {channels!r}")
        self.manifest = manifest
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        if manifest.has_split:
            labels = manifest.frame["split"].astype("str").rename("split")
        else:
            labels = subject_disjoint_split(
                manifest.frame,
                seed=seed,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                attributes=manifest.attributes,
            )
        self.split_labels: pd.Series = labels
        self._rows = {split: np.flatnonzero(labels.to_numpy() == split) for split in SPLITS}
        for split in ("train", "test"):
            if len(self._rows[split]) == 0:
                how = (
                    f"no row of its split column is {split!r}; fix: assign some subjects to {split!r}"
                    if manifest.has_split
                    else f"the seeded split gave {split!r} no subject; fix: add subjects or raise its fraction"
                )
                raise ValueError(f"{manifest.source}: the {split} {ERR_EMPTY_SPLIT}: {how}")

    def split_rows(self, split: str) -> np.ndarray:
        """Positions in ``manifest.frame`` of the rows of ``split``, ascending: ``(n,)`` int64."""
        self._check_split(split)
        return self._rows[split]

    def split_frame(self, split: str) -> pd.DataFrame:
        """The manifest rows of ``split`` (original index kept) with their ``split`` column.

        Raises:
            ValueError: ``split`` is not one of train, val, test.
        """
        rows = self.split_rows(split)
        return self.manifest.frame.iloc[rows].assign(split=split)

    def dataset(self, split: str) -> ManifestImageDataset:
        """The rows of ``split`` as a dataset, in manifest order."""
        return ManifestImageDataset(
            self.manifest, self.split_rows(split), image_size=self.image_size, channels=self.channels
        )

    def load_image(self, row: int) -> torch.Tensor:
        """The image of manifest row ``row`` (position): ``(C, H, W)`` float32 in [0, 1]."""
        return load_image(self.manifest.image_path(row), image_size=self.image_size, channels=self.channels)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return self._loader("train", shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def _loader(self, split: str, *, shuffle: bool = False, generator: torch.Generator | None = None) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
