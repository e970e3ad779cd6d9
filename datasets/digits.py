"""scikit-learn's handwritten digits as a cached image dataset: a small, offline, non-face benchmark.

``sklearn.datasets.load_digits()`` ships with scikit-learn (no download): 1,797 greyscale 8x8
images of the digits 0-9 (the test set of UCI's "Optical Recognition of Handwritten Digits",
written by 13 people; each pixel counts the ink in a 4x4 block of a 32x32 bitmap, 0..16). :func:`generate_digits` writes each one as a PNG and
a manifest with one attribute, ``digit``, so an audit can compare how well a model serves each
digit class.

- Pixels: ``round(count * 255 / 16)``, ink bright on black (as in MNIST), mode ``"L"``.
- Size: upscaled from 8x8 to ``image_size`` with bicubic resampling (Pillow's, values clipped to
  0..255), stored at ``image_size`` so the DataModule does not resize. Bicubic rather than nearest:
  nearest would leave a grid of 8x8 flat blocks, on which ``avg_pool2d`` by any factor dividing
  ``image_size / 8`` loses nothing, so super-resolution would be trivially exact.
- Subjects: the set has no writer ids (which of its 13 writers wrote an image is not recorded),
  so every image is its own subject (``subject`` = the file's stem). Splits are therefore
  image-level: images by one writer can land in both train and test.
- Split: seeded and stratified by digit (train/val/test about 70/10/20), by
  :func:`~genfair.datasets.splits.subject_disjoint_split`. The images do not depend on the seed;
  the split does.

The same config gives byte-identical files. :func:`ensure_digits` caches them under
``cache_dir/digits-<key>`` with the same write-then-rename scheme as the synthetic faces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ._cache import CONFIG_NAME, MANIFEST_NAME, check_empty_folder, ensure_cached
from .splits import subject_disjoint_split

__all__ = [
    "DigitsConfig",
    "generate_digits",
    "ensure_digits",
    "cache_key",
    "N_DIGITS",
    "MANIFEST_COLUMNS",
    "VAL_FRACTION",
    "TEST_FRACTION",
]

logger = logging.getLogger(__name__)

N_DIGITS = 1797
"""Images in scikit-learn's digits set (rows of the manifest)."""
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "subject", "split", "digit")
VAL_FRACTION = 0.1
"""Share of images in the validation split (stratified by digit)."""
TEST_FRACTION = 0.2
"""Share of images in the test split (stratified by digit)."""

# Bump when the files change, so cached datasets written by older code are not reused.
DIGITS_VERSION = 1

ERR_NO_SKLEARN = "the digits dataset needs scikit-learn"


@dataclass(frozen=True, kw_only=True)
class DigitsConfig:
    """What to write. Plain data: ``dataclasses.asdict`` round-trips through JSON.

    Attributes:
        image_size: output side in pixels (square greyscale images), 8..1024.
        seed: seeds the split (>= 0); the images do not depend on it.
    """

    image_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"DigitsConfig.{field.name} must be an int, got {value!r}")
        for name, (low, high) in {"image_size": (8, 1024), "seed": (0, 2**63 - 1)}.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"DigitsConfig.{name} must be in [{low}, {high}], got {value!r}")

    @property
    def n_images(self) -> int:
        """Rows of the manifest (every image of the set)."""
        return N_DIGITS

    def to_json(self) -> str:
        """The config (and the writer's version) as canonical JSON: what the cache is keyed on."""
        return json.dumps({"generator_version": DIGITS_VERSION, **dataclasses.asdict(self)}, sort_keys=True)


def cache_key(config: DigitsConfig) -> str:
    """Short hex hash (12 characters) of ``config.to_json()``."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images ``(1797, 8, 8)`` uint8 in [0, 255] and digits ``(1797,)`` int64.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            f"{ERR_NO_SKLEARN} (its load_digits() holds the images), which is not installed; "
            f"fix: pip install scikit-learn (fairlearn normally brings it)"
        ) from err
    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, np.asarray(bunch.target, dtype=np.int64)


def generate_digits(config: DigitsConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Write every digit image at ``config.image_size`` into ``out_dir`` and a manifest.

    Layout: ``out_dir/images/<digit>/d<nnnn>.png`` (``nnnn`` = the image's position in
    ``load_digits()``, 4 digits), ``manifest.csv`` (columns ``path, subject, split, digit``, one
    row per image in ``load_digits()`` order; ``subject`` is ``d<nnnn>``) and ``config.json``
    (``config.to_json()``), written last. See the module docstring for pixels, size and split.

    Args:
        config: what to write.
        out_dir: an empty or missing folder.

    Returns:
        The manifest's path, ``out_dir / "manifest.csv"``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not an empty folder.
        ImportError: scikit-learn is not installed.
    """
    out = Path(out_dir)
    check_empty_folder(out, what="digits", ensure="ensure_digits")
    images, digits = _load_digits()
    size = config.image_size
    for digit in np.unique(digits):
        (out / "images" / str(digit)).mkdir(parents=True, exist_ok=True)
    subjects = [f"d{index:04d}" for index in range(len(digits))]
    paths = [f"images/{digit}/{subject}.png" for digit, subject in zip(digits, subjects)]
    for pixels, relative in zip(images, paths):
        image = Image.fromarray(pixels, "L")
        if size != image.width:
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        image.save(out / relative, format="PNG", compress_level=1)
    frame = pd.DataFrame({"path": paths, "subject": subjects, "digit": digits})
    frame["split"] = subject_disjoint_split(
        frame, seed=config.seed, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION, attributes=("digit",)
    )
    manifest = out / MANIFEST_NAME
    frame[list(MANIFEST_COLUMNS)].to_csv(manifest, index=False, lineterminator="\n")
    (out / CONFIG_NAME).write_text(config.to_json() + "\n", encoding="utf-8")
    logger.info("wrote %d digit images of %dx%d in %s", len(frame), size, size, out)
    return manifest


def ensure_digits(config: DigitsConfig, cache_dir: str | os.PathLike[str]) -> Path:
    """The manifest of ``config``'s digit images, writing them on first use.

    The files live in ``cache_dir / f"digits-{cache_key(config)}"``, written into a temporary
    sibling folder that is renamed into place when finished (as
    :func:`~genfair.datasets.ensure_synthetic_faces`). A folder is reused when its ``config.json``
    equals the config and its manifest has 1,797 rows; otherwise it is replaced.

    Args:
        config: what to write.
        cache_dir: folder for cached datasets (created if missing).

    Returns:
        The manifest's path.

    Raises:
        ImportError: scikit-learn is not installed (and the folder is not cached yet).
    """
    return ensure_cached(
        Path(cache_dir) / f"digits-{cache_key(config)}",
        config_json=config.to_json(),
        n_rows=config.n_images,
        generate=lambda folder: generate_digits(config, folder),
        what="digits",
    )
