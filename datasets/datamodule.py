"""Images of a manifest as tensors: a torch ``Dataset``, a subject-disjoint split, a DataModule.

Every batch is a dict (``B`` images, ``A = len(manifest.attributes)``):

- ``"image"``: ``(B, C, H, W)`` float32 in [0, 1], the full-size image (always);
- ``"index"``: ``(B,)`` int64, the row's position in ``manifest.frame`` (always), so model outputs
  map back to their manifest rows (subject, attributes) whatever the shuffling or sharding;
- ``"labels"``: ``(B, A)`` int64, each attribute's code: the position of the row's value in
  ``manifest.attribute_classes[attribute]``, the sorted values over the whole manifest (always);
- ``"lowres"``: ``(B, C, H // s, W // s)`` float32 in [0, 1], ``avg_pool2d(image, s)`` (only when
  built with ``lowres_scale=s``);
- ``"mask"``: ``(B, 1, H, W)`` float32 in {0, 1} (only when the manifest has a ``mask_path``
  column; 1 = in the mask, e.g. skin of the face);
- ``"output"``: ``(B, C, H, W)`` float32 in [0, 1], the model's output image already on disk
  (:func:`load_output`; only when the manifest was loaded with ``outputs=`` and the row has one);
- ``"input"``: ``(B, C, h, w)`` float32 in [0, 1], the low-resolution input the model saw, at its
  own size (only when the manifest was loaded with ``inputs=`` and the row has an output).

Rows without an output have neither ``"output"`` nor ``"input"``, and the default collate needs
every item of a batch to have the same keys (and, for ``"input"``, the same size): batch the rows
of ``manifest.output_rows`` to audit outputs.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from .decoded import MIB, DecodedImages
from .images import (
    CHANNEL_MODES,
    FITS,
    _AspectRatioError,
    _check_fit,
    _load_sized,
    _read_as_is,
    load_image,
    load_mask,
    load_output,
)
from .manifest import ASPECT_TOLERANCE, ERR_ASPECT_RATIO, ERR_UNREADABLE_IMAGE, SPLITS, Manifest, ManifestError  # noqa: F401
from .splits import ERR_TOO_FEW_SUBJECTS, describe_group, subject_disjoint_split  # noqa: F401 - ERR_* re-exported

__all__ = [
    "DEFAULT_CACHE_MB",
    "FITS",
    "LOWRES_SCALES",
    "SAMPLERS",
    "UNUSED",
    "DecodedImages",
    "ManifestImageDataset",
    "FacesDataModule",
    "load_image",
    "load_mask",
    "load_output",
    "subject_disjoint_split",
]

#: Training samplers: each image once an epoch, or groups drawn equally often.
SAMPLERS = ("shuffle", "balanced")
#: The split label of training subjects that ``balance_training`` leaves out.
UNUSED = "unused"

LOWRES_SCALES: tuple[int, ...] = (2, 4, 8)
"""The allowed ``lowres_scale`` factors."""

ERR_EMPTY_SPLIT = "split is empty"
ERR_GROUP_NOT_IN_TEST = "the test split has no subject of group"
ERR_LOWRES_SCALE = "lowres_scale must be one of"
ERR_NOT_DIVISIBLE = "is not divisible by lowres_scale"
ERR_OTHER_STORE = "the store of decoded images belongs to another dataset"
DEFAULT_CACHE_MB = 1024
"""The default memory for decoded images (MiB): 64x64 RGB with masks, about 65,000 rows."""


def _check_lowres_scale(lowres_scale: int | None, image_size: int) -> None:
    """Raise unless ``lowres_scale`` is None or in :data:`LOWRES_SCALES` and divides ``image_size``."""
    if lowres_scale is None:
        return
    if not isinstance(lowres_scale, int) or isinstance(lowres_scale, bool) or lowres_scale not in LOWRES_SCALES:
        raise ValueError(f"{ERR_LOWRES_SCALE} {list(LOWRES_SCALES)} or None, got {lowres_scale!r}")
    if image_size % lowres_scale:
        below = image_size - image_size % lowres_scale
        near = [n for n in (below, below + lowres_scale) if n > 0]
        raise ValueError(
            f"image_size {image_size} {ERR_NOT_DIVISIBLE} {lowres_scale}; fix: use an image_size that is a "
            f"multiple of {lowres_scale} (e.g. {' or '.join(map(str, near))}) or a smaller lowres_scale"
        )


class ManifestImageDataset(Dataset):
    """Some rows of a manifest, read lazily (one file open per item, plus one for its mask, one for its
    output (its shape compared with the original's, whose header is read again only when the
    original came from the store) and one for its input).

    With ``decoded``, a store shared by the datasets of one DataModule, each image and mask it
    holds is decoded once and then served from memory (outputs and inputs on disk, read once by
    the audit, are always read from their files).

    Args:
        manifest: the validated manifest.
        rows: positions in ``manifest.frame`` (0-based), in the order to serve them.
        image_size: output side in pixels.
        channels: 1 (greyscale) or 3 (RGB).
        lowres_scale: when set (2, 4 or 8, dividing ``image_size``), items also hold ``"lowres"``.
        fit: how images that are not square become square, one of :data:`FITS` (see :func:`load_image`).
        decoded: a store of decoded images (:class:`DecodedImages`) built for this manifest, side,
            channels and fit; None reads every item from its files.

    Items are dicts (:meth:`load_row`): ``"image"`` ``(C, H, W)`` float32 in [0, 1], ``"index"``
    (int, the row's position in ``manifest.frame``), ``"labels"`` ``(A,)`` int64 (codes of
    ``manifest.attribute_classes``), and when enabled ``"lowres"`` ``(C, H // s, W // s)`` and
    ``"mask"`` ``(1, H, W)`` float32 in {0, 1}. With ``manifest.outputs``, rows with an output
    also hold ``"output"`` ``(C, H, W)`` float32 in [0, 1] (:func:`load_output`) and, with
    ``manifest.inputs``, ``"input"`` ``(C, s, s)`` float32 in [0, 1], the input file made square by
    ``fit`` at its own scale (not resized: the caller checks it). The default collate stacks them into the batch
    contract of this module (``index`` becomes ``(B,)`` int64); it needs every item of a batch to
    have the same keys, so batch ``manifest.output_rows`` to audit outputs.

    Raises:
        ValueError: ``channels`` is not 1 or 3, a bad ``lowres_scale``, or a ``decoded`` store built
            for another image size, channel count or manifest.
    """

    def __init__(
        self,
        manifest: Manifest,
        rows: Sequence[int],
        *,
        image_size: int,
        channels: int = 3,
        lowres_scale: int | None = None,
        fit: str = "crop",
        decoded: DecodedImages | None = None,
    ) -> None:
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {sorted(CHANNEL_MODES)}, got {channels!r}")
        _check_lowres_scale(lowres_scale, image_size)
        _check_fit(fit)
        if decoded is not None:
            built = (decoded.image_size, decoded.channels, decoded.total_rows, decoded.masks)
            wanted = (image_size, channels, len(manifest.frame), manifest.has_mask)
            if built != wanted:
                raise ValueError(f"{ERR_OTHER_STORE}: built for (image_size, channels, rows, masks) {built}, this "
                                 f"dataset is {wanted}")
        self.decoded = decoded
        self.fit = fit
        self.manifest = manifest
        self.rows = np.asarray(rows, dtype=np.int64)
        self.image_size = image_size
        self.channels = channels
        self.lowres_scale = lowres_scale
        self._root = os.fspath(manifest.root)
        self._rows_total = len(manifest.frame)
        self._codes = torch.from_numpy(manifest.attribute_codes())
        self._cells: dict[str, np.ndarray] = {}

    def _cell(self, row: int, column: str) -> Any:
        """``row``'s value in ``column``. The column is taken out of the frame once, as a numpy array:
        a pandas ``.iat`` read of an Arrow string column costs more than decoding a small PNG."""
        values = self._cells.get(column)
        if values is None:
            values = self._cells[column] = self.manifest.frame[column].to_numpy(dtype=object)
        return values[row]

    def _file(self, row: int, column: str = "path") -> str:
        """The file of ``row``'s ``column``, joined to the manifest's folder when it is read."""
        return os.path.join(self._root, self._cell(row, column))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor | int]:
        return self.load_row(int(self.rows[item]))

    def load_row(self, row: int) -> dict[str, torch.Tensor | int]:
        """The item of manifest row ``row`` (a position in ``manifest.frame``, any split).

        Raises:
            IndexError: ``row`` is not in ``0 .. len(manifest.frame) - 1``.
            ManifestError: a file of the row cannot be decoded, or its output's aspect ratio
                differs from its image's (the message names the row and the column).
        """
        row = operator.index(row)  # ints and numpy ints; a float raises TypeError
        if not 0 <= row < self._rows_total:
            raise IndexError(f"row must be a position in 0..{self._rows_total - 1} of the manifest, got {row!r}")
        with self._naming_the_row(row, "path"):
            image, original_size = self._image(row)
        item: dict[str, torch.Tensor | int] = {"image": image, "index": row, "labels": self._codes[row].clone()}
        if self.lowres_scale is not None:
            item["lowres"] = F.avg_pool2d(image, self.lowres_scale)
        if self.manifest.has_mask:
            with self._naming_the_row(row, "mask_path"):
                item["mask"] = self._mask(row)
        outputs, inputs = self.manifest.outputs, self.manifest.inputs
        if outputs is not None and self._cell(row, outputs):
            with self._naming_the_row(row, outputs):
                item["output"] = load_output(  # the original's size from its decode; from its header if stored
                    self._file(row, outputs), original=original_size or self._file(row), image_size=self.image_size,
                    channels=self.channels, fit=self.fit,
                )
            if inputs is not None:
                with self._naming_the_row(row, inputs):
                    item["input"] = _read_as_is(self._file(row, inputs), channels=self.channels, fit=self.fit)
        return item

    def image(self, row: int) -> torch.Tensor:
        """The image of manifest row ``row`` (position): ``(C, H, W)`` float32 in [0, 1], from the
        store of decoded images when it holds the row (see :class:`DecodedImages`), else from its file.

        Raises:
            OSError, ValueError: the file cannot be decoded (:meth:`load_row` names the row).
        """
        return self._image(row)[0]

    def _image(self, row: int) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """:meth:`image`, and the file's ``(width, height)`` where it was decoded here (None: from the store)."""
        size: tuple[int, int] | None = None

        def decode() -> torch.Tensor:
            nonlocal size
            image, size = _load_sized(self._file(row), image_size=self.image_size, channels=self.channels,
                                      fit=self.fit)
            return image

        image = decode() if self.decoded is None else self.decoded.image(row, decode)
        return image, size

    def _mask(self, row: int) -> torch.Tensor:
        def decode() -> torch.Tensor:
            return load_mask(self._file(row, "mask_path"), image_size=self.image_size, fit=self.fit)

        return decode() if self.decoded is None else self.decoded.mask(row, decode)

    def store_decoded(self) -> int:
        """Decode every row of this dataset that the store of decoded images holds but lacks, in this
        process (before ``DataLoader`` workers start, which cannot fill it). Nothing without a store.

        Returns:
            How many rows were decoded.

        Raises:
            ManifestError: a file of a row cannot be decoded (the message names the row and the column).
        """
        if self.decoded is None:
            return 0
        missing = self.decoded.missing(self.rows)
        for row in missing.tolist():
            with self._naming_the_row(row, "path"):
                self.image(row)
            if self.manifest.has_mask:
                with self._naming_the_row(row, "mask_path"):
                    self._mask(row)
        return len(missing)

    @contextlib.contextmanager
    def _naming_the_row(self, row: int, column: str) -> Iterator[None]:
        """Turn a file that fails to decode (e.g. truncated after an intact header) into a ManifestError.

        Images are read lazily, so a file the manifest's header check passed can still fail here.
        """
        try:
            yield
        except _AspectRatioError as err:
            raise ManifestError(
                f"{self.manifest.source}: data row {self.manifest.data_row(row)}, column {column!r}: {err.problem}: {err.path}; "
                f"fix: {err.fix}"
            ) from err
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            detail = " ".join(str(err).split())[:200]
            raise ManifestError(
                f"{self.manifest.source}: data row {self.manifest.data_row(row)}, column {column!r}: {ERR_UNREADABLE_IMAGE}: "
                f"{self._file(row, column)} ({type(err).__name__}: {detail}); fix: replace the file with a "
                f"readable image or drop the row"
            ) from err


class FacesDataModule(pl.LightningDataModule):
    """Train/val/test loaders over a manifest's images, split by subject.

    Uses the manifest's ``split`` column when it has one, else :func:`subject_disjoint_split`
    (stratified by ``manifest.attributes``, seeded by ``seed``). The split is fixed at
    construction. The training loader shuffles with a ``torch.Generator`` seeded from ``seed``;
    the val, test and predict loaders keep manifest order. ``predict_dataloader`` serves the test
    split. Batches are dicts: always ``"image"`` ``(B, C, H, W)`` float32 in [0, 1], ``"index"``
    ``(B,)`` int64 and ``"labels"`` ``(B, A)`` int64 (codes of :attr:`attribute_classes`); also
    ``"lowres"`` ``(B, C, H // s, W // s)`` when ``lowres_scale=s``, and ``"mask"`` ``(B, 1, H, W)``
    float32 in {0, 1} when the manifest has a ``mask_path`` column (see the module docstring).

    Args:
        manifest: the validated manifest.
        image_size: image side in pixels (images are resized to ``image_size x image_size``).
        channels: 1 (greyscale) or 3 (RGB).
        batch_size: images per batch.
        seed: seeds the split (when the manifest has none) and the training shuffle.
        val_fraction: share of subjects for validation when splitting.
        test_fraction: share of subjects for test when splitting.
        num_workers: DataLoader worker processes.
        lowres_scale: None, or 2, 4 or 8 (must divide ``image_size``): batches then also hold
            ``"lowres" = avg_pool2d(image, lowres_scale)``, the input of super-resolution models.
        balance_training: keep, in every intersectional group, only as many training subjects
            as the smallest group has (drawn with ``seed``): a balanced training composition for
            data that has no generator of one. The dropped subjects take no part in any split.
        sampler: ``"shuffle"`` (each training image once an epoch) or ``"balanced"`` (draw
            training images with replacement, each with probability inverse to its
            intersectional group's image count, so every group is seen equally often).
        require_train: refuse an empty training split (an audit of outputs on disk, or of a
            trained checkpoint, may have none: nothing trains there but the attribute
            classifier, which is then skipped).
        require_val: something trains with early stopping on the validation loss: when the
            manifest's split column has ``train`` rows but no ``val`` rows, ``val_fraction`` of
            the training subjects (at least one; seeded, stratified, subject-disjoint) become
            validation, and :attr:`notes` says so.
        fit: how images that are not square become square, one of :data:`FITS` (see :func:`load_image`).
        cache_mb: memory (MiB) for the decoded images and masks of the rows of every split (8 bits
            a pixel): when they fit, each file is decoded once and every loader, :meth:`load_item`
            and :meth:`load_image` serve it from memory afterwards (:attr:`decoded`); when they do
            not, or with 0, every read decodes its file, and :attr:`notes` says so (not for 0).
            Loaders with ``num_workers > 0`` decode their split in this process before the
            workers start (workers cannot fill the store: their copies are thrown away).

    Raises:
        ValueError: a bad option; an empty train or test split; a seeded split that cannot place a
            group (one with a single subject); or a group (combination of the attributes' values)
            with no subject in test, which the audit could not report.
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
        lowres_scale: int | None = None,
        balance_training: bool = False,
        sampler: str = "shuffle",
        require_train: bool = True,
        require_val: bool = False,
        fit: str = "crop",
        cache_mb: int = DEFAULT_CACHE_MB,
    ) -> None:
        super().__init__()
        _check_fit(fit)
        self.fit = fit
        self.notes: list[str] = []
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        options = (("image_size", image_size, 1), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                   ("cache_mb", cache_mb, 0))
        for name, value, low in options:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {sorted(CHANNEL_MODES)}, got {channels!r}")
        _check_lowres_scale(lowres_scale, image_size)
        self.manifest = manifest
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.lowres_scale = lowres_scale
        self.sampler = sampler
        self._classes = manifest.attribute_classes
        if manifest.has_split:
            labels = manifest.frame["split"].astype("str").rename("split")
            if require_val and not (labels == "val").any():
                labels = self._carve_validation(labels, val_fraction)
        else:
            try:
                labels = subject_disjoint_split(
                    manifest.frame,
                    seed=seed,
                    val_fraction=val_fraction,
                    test_fraction=test_fraction,
                    attributes=manifest.attributes,
                )
            except ValueError as err:  # name the manifest: the split knows only its frame
                raise ValueError(f"{manifest.source}: {err}") from err
        if balance_training:
            labels = self._balanced_training(labels)
        self.split_labels: pd.Series = labels
        self._rows = {split: np.flatnonzero((labels == split).to_numpy(dtype=bool)) for split in SPLITS}
        for split in ("train", "test") if require_train else ("test",):
            if len(self._rows[split]) == 0:
                how = (
                    f"no row of its split column is {split!r}; fix: assign some subjects to {split!r}"
                    if manifest.has_split
                    else f"the seeded split gave {split!r} no subject; fix: add subjects or raise its fraction"
                )
                raise ValueError(f"{manifest.source}: the {split} {ERR_EMPTY_SPLIT}: {how}")
        self._check_every_group_is_tested(labels)
        self.decoded: DecodedImages | None = self._decoded_store(np.flatnonzero(labels.isin(SPLITS).to_numpy()),
                                                                 cache_mb)
        self._all_rows = self._dataset(np.arange(len(manifest.frame)))

    def _decoded_store(self, rows: np.ndarray, cache_mb: int) -> DecodedImages | None:
        """The store of decoded images for ``rows`` (those of every split), or None: ``cache_mb`` is 0,
        or they would take more (then a note says so)."""
        if cache_mb == 0 or not len(rows):
            return None
        store = DecodedImages(rows, total_rows=len(self.manifest.frame), image_size=self.image_size,
                              channels=self.channels, masks=self.manifest.has_mask)
        if store.nbytes > cache_mb * MIB:
            needed = math.ceil(store.nbytes / MIB)
            self.notes.append(
                f"the decoded images of the {len(rows)} rows to read take {needed} MiB, more than --cache-mb "
                f"{cache_mb}: every epoch decodes them from their files again; --cache-mb {needed} would decode "
                f"each file once"
            )
            return None
        return store

    def _carve_validation(self, labels: pd.Series, val_fraction: float) -> pd.Series:
        """``labels`` with ``val_fraction`` of the training subjects (at least one) moved to ``val``."""
        training = (labels == "train").to_numpy(dtype=bool)
        people = self.manifest.frame.loc[training, "subject"].nunique()
        if people < 2:
            raise ValueError(
                f"{self.manifest.source}: {ERR_EMPTY_SPLIT}: no row of its split column is 'val' and its "
                f"{people} training subject(s) cannot be split into training and validation; fix: assign some "
                f"subjects to 'val', add training subjects, or drop the split column for a seeded split"
            )
        carved = subject_disjoint_split(self.manifest.frame[training], seed=self.seed, val_fraction=val_fraction,
                                        test_fraction=0.0, attributes=self.manifest.attributes)
        chosen = carved[carved == "val"]
        self.notes.append(f"the manifest has no validation rows: {chosen.index.size} image(s) of "
                          f"{self.manifest.frame.loc[chosen.index, 'subject'].nunique()} of its {people} training "
                          f"subjects (seeded, stratified, subject-disjoint) validate the training instead")
        return labels.where(~labels.index.isin(chosen.index), "val")

    def _check_every_group_is_tested(self, labels: pd.Series) -> None:
        """Raise unless every group (combination of the attributes' values) has a subject in test.

        A group missing from test would silently vanish from the audit's tables.
        """
        attributes = list(self.manifest.attributes)
        if not attributes:
            return
        frame = self.manifest.frame[["subject", *attributes]].assign(_tested=(labels == "test").to_numpy(dtype=bool))
        groups = frame.groupby(attributes, sort=True)
        tested = groups["_tested"].any()
        untested = tested.index[~tested.to_numpy()]
        if len(untested) == 0:
            return
        first = untested[0] if isinstance(untested[0], tuple) else (untested[0],)
        rows = groups.get_group(first)
        subjects = rows["subject"].unique().tolist()
        placed = sorted(set(labels.loc[rows.index].tolist()))
        more = len(untested) - 1
        also = f"; {more} more group{'s' if more != 1 else ''} like this" if more else ""
        count = f"its {len(subjects)} subjects are" if len(subjects) != 1 else "its only subject is"
        fix = (
            f"set split to 'test' for at least one of them (e.g. subject {subjects[0]!r}), or drop the group's rows"
            if self.manifest.has_split
            else "add subjects of this group or raise the test fraction"
        ) + ", or name fewer attributes"
        raise ValueError(
            f"{self.manifest.source}: {ERR_GROUP_NOT_IN_TEST} {describe_group(attributes, first)} ({count} in "
            f"{' and '.join(placed)}), so the audit could not report it{also}; fix: {fix}"
        )

    def _balanced_training(self, labels: pd.Series) -> pd.Series:
        """``labels`` with training subjects beyond the smallest group's count marked ``"unused"``."""
        attributes = list(self.manifest.attributes)
        frame = self.manifest.frame[["subject", *attributes]][(labels == "train").to_numpy(dtype=bool)]
        people = frame.drop_duplicates("subject")
        smallest = int(people.groupby(attributes).size().min())
        rng = np.random.default_rng([self.seed, 17])
        kept = set()
        for _, group in people.groupby(attributes, sort=True):
            names = sorted(group["subject"].astype(str))
            kept.update(rng.choice(names, size=smallest, replace=False).tolist())
        unused = (labels == "train") & ~self.manifest.frame["subject"].astype(str).isin(kept)
        return labels.where(~unused, UNUSED)

    def group_codes(self, split: str) -> np.ndarray:
        """Each row of ``split``'s intersectional group code: ``(n,)`` int64, mixed radix over
        :attr:`attribute_classes` in order (the first attribute most significant), the code
        :func:`genfair.models.intersectional_groups` gives a batch's labels."""
        codes = self.manifest.attribute_codes()[self.split_rows(split)]
        sizes = [len(values) for values in self._classes.values()]
        group = np.zeros(len(codes), dtype=np.int64)
        for position, size in enumerate(sizes):
            group = group * size + codes[:, position]
        return group

    def group_counts(self, split: str = "train") -> np.ndarray:
        """Images of ``split`` in every intersectional group: ``(prod(class counts),)`` int64."""
        sizes = [len(values) for values in self._classes.values()]
        return np.bincount(self.group_codes(split), minlength=int(np.prod(sizes))).astype(np.int64)

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

    @property
    def attribute_classes(self) -> dict[str, tuple[str, ...]]:
        """Each attribute's value names, sorted over the whole manifest: code ``k`` is ``names[k]``.

        Keys follow ``manifest.attributes``, the column order of ``batch["labels"]``.
        """
        return dict(self._classes)

    def dataset(self, split: str) -> ManifestImageDataset:
        """The rows of ``split`` as a dataset, in manifest order."""
        return self._dataset(self.split_rows(split))

    def _dataset(self, rows: np.ndarray) -> ManifestImageDataset:
        return ManifestImageDataset(
            self.manifest, rows, image_size=self.image_size, channels=self.channels, lowres_scale=self.lowres_scale,
            fit=self.fit, decoded=self.decoded,
        )

    def load_image(self, row: int) -> torch.Tensor:
        """The image of manifest row ``row`` (position): ``(C, H, W)`` float32 in [0, 1] (from
        :attr:`decoded` when it holds the row)."""
        return self._all_rows.image(row)

    def load_item(self, row: int) -> dict[str, torch.Tensor | int]:
        """The dataset item of manifest row ``row`` (position, any split): what a batch stacks.

        Returns:
            ``{"image", "index", "labels"}`` plus ``"lowres"``, ``"mask"``, ``"output"`` and
            ``"input"`` when enabled; see :class:`ManifestImageDataset`.
        """
        return self._all_rows.load_row(row)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        if self.sampler == "balanced":
            groups = self.group_codes("train")
            weights = 1.0 / np.bincount(groups)[groups]
            draw = WeightedRandomSampler(torch.from_numpy(weights), num_samples=len(groups), replacement=True,
                                         generator=generator)
            return DataLoader(self._decoded_first("train"), batch_size=self.batch_size, sampler=draw,
                              generator=generator, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return self._loader("train", shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def _loader(self, split: str, *, shuffle: bool = False, generator: torch.Generator | None = None) -> DataLoader:
        return DataLoader(
            self._decoded_first(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _decoded_first(self, split: str) -> ManifestImageDataset:
        """``split``'s dataset; with worker processes, its rows decoded into :attr:`decoded` first."""
        dataset = self.dataset(split)
        if self.num_workers > 0:
            dataset.store_decoded()
        return dataset

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
