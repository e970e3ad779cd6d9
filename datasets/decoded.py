"""Decoded images kept in memory for a run, so that each file is decoded once, not once an epoch.

A run reads the same files many times: every training epoch, every validation, the attribute
classifier's epochs, the prediction and the audit. :class:`DecodedImages` holds, for the manifest
rows it was built for, each image as the 8-bit pixels PIL decoded (``(H, W, C)`` uint8, the layout
:func:`~genfair.datasets.images.load_image` converts from) and each mask as booleans, filled on
first read. Served tensors are made from them by the same operations as a fresh decode, so they
are bit-identical to it (same values, dtype and strides): storing 8 bits loses nothing, since
images are 8-bit after PIL's resize and masks are binary.

Rows are stored only in the process that owns the store: a ``DataLoader`` worker process works on
a copy that would be thrown away, so a worker serves rows that are stored already (from the
pages it shares with its parent) and decodes the others without storing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

__all__ = ["MIB", "DecodedImages"]

MIB = 2**20
"""Bytes in a mebibyte (``--cache-mb`` counts them)."""


class DecodedImages:
    """Decoded images and masks of some manifest rows, as uint8, each stored on its first read.

    One store serves every dataset of one DataModule: the same manifest, image side, channels
    and fit. Memory is allocated on the first store, for every row at once (the pages are
    touched only as rows are filled); :attr:`nbytes` is what it holds when full.

    Args:
        rows: positions in ``manifest.frame`` it holds (the others are always decoded afresh).
        total_rows: ``len(manifest.frame)``.
        image_size: image side in pixels.
        channels: 1 or 3.
        masks: whether it holds masks as well (the manifest has a ``mask_path`` column).

    Raises:
        ValueError: a row outside ``0 .. total_rows - 1``, or a bad size.
    """

    def __init__(self, rows: Sequence[int] | np.ndarray, *, total_rows: int, image_size: int, channels: int,
                 masks: bool) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if image_size < 1 or channels not in (1, 3):
            raise ValueError(f"image_size must be >= 1 and channels 1 or 3, got {image_size!r} and {channels!r}")
        if len(rows) and (rows.min() < 0 or rows.max() >= total_rows):
            raise ValueError(f"rows must be positions in 0..{total_rows - 1} of the manifest, got {rows.min()} to "
                             f"{rows.max()}")
        self.image_size, self.channels, self.masks = image_size, channels, masks
        self.total_rows = total_rows
        self._rows = rows
        self._slots: np.ndarray | None = None  # manifest row -> slot (-1: not held); built on first use
        self._images: np.ndarray | None = None  # (n, H, W, C) uint8
        self._masks: np.ndarray | None = None  # (n, H, W) bool
        self._have_image = np.zeros(0, dtype=bool)
        self._have_mask = np.zeros(0, dtype=bool)
        self.decoded = 0  # images and masks decoded by this process (stored or not)

    @property
    def bytes_per_row(self) -> int:
        """Bytes one row takes: ``H * W * C`` for its image, plus ``H * W`` for its mask."""
        side = self.image_size * self.image_size
        return side * self.channels + (side if self.masks else 0)

    @property
    def nbytes(self) -> int:
        """Bytes the store takes once every row is in it."""
        return len(self._rows) * self.bytes_per_row

    def __len__(self) -> int:
        """How many rows it may hold."""
        return len(self._rows)

    @property
    def filled(self) -> int:
        """How many rows have their image stored."""
        return int(self._have_image.sum())

    def image(self, row: int, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Row ``row``'s image: stored, or ``decode()`` (then stored if the row is held here).

        Args:
            row: a position in ``manifest.frame``.
            decode: reads the file: ``(C, H, W)`` float32 in [0, 1], 8-bit values over 255.

        Returns:
            ``(C, H, W)`` float32 in [0, 1], bit-identical to ``decode()``.
        """
        slot = self._slot(row)
        if slot >= 0 and self._images is not None and self._have_image[slot]:
            return _image_tensor(self._images[slot])
        image = decode()
        self.decoded += 1
        if slot >= 0 and _may_store():
            self._allocate()
            # exact: every value is k / 255 in float32 for an integer k, and k * 255 / 255 rounds back to k
            self._images[slot] = np.rint(image.permute(1, 2, 0).numpy() * np.float32(255.0)).astype(np.uint8)
            self._have_image[slot] = True
        return image

    def mask(self, row: int, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Row ``row``'s mask: stored, or ``decode()`` (then stored if the row is held here).

        Args:
            row: a position in ``manifest.frame``.
            decode: reads the mask file: ``(1, H, W)`` float32 in {0, 1}.

        Returns:
            ``(1, H, W)`` float32 in {0, 1}, bit-identical to ``decode()``.
        """
        slot = self._slot(row) if self.masks else -1
        if slot >= 0 and self._masks is not None and self._have_mask[slot]:
            return torch.from_numpy(self._masks[slot]).to(torch.float32).unsqueeze(0)
        mask = decode()
        self.decoded += 1
        if slot >= 0 and _may_store():
            self._allocate()
            self._masks[slot] = mask[0].numpy() >= 0.5
            self._have_mask[slot] = True
        return mask

    def missing(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Those of ``rows`` it holds but has not stored yet (image or mask), in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        slots = self._slot_map()[rows] if len(rows) else np.zeros(0, dtype=np.int64)
        held = slots >= 0
        if self._images is None:
            return rows[held]
        have = self._have_image[slots] & (self._have_mask[slots] if self.masks else True)
        return rows[held & ~have]

    def _slot_map(self) -> np.ndarray:
        if self._slots is None:
            self._slots = np.full(self.total_rows, -1, dtype=np.int64)
            self._slots[self._rows] = np.arange(len(self._rows))
        return self._slots

    def _slot(self, row: int) -> int:
        if not 0 <= row < self.total_rows:
            return -1
        return int(self._slot_map()[row])

    def _allocate(self) -> None:
        if self._images is not None:
            return
        count, side = len(self._rows), self.image_size
        # zeros (calloc) rather than empty: the OS hands out pages as rows are written, not up front
        self._images = np.zeros((count, side, side, self.channels), dtype=np.uint8)
        self._have_image = np.zeros(count, dtype=bool)
        if self.masks:
            self._masks = np.zeros((count, side, side), dtype=bool)
            self._have_mask = np.zeros(count, dtype=bool)


def _may_store() -> bool:
    """Whether this process owns the store: not a DataLoader worker, whose copy would be thrown away."""
    return get_worker_info() is None


def _image_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` uint8 as ``(C, H, W)`` float32 in [0, 1], by the same steps as a fresh decode."""
    return torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32).div_(255.0)
