"""Turn a UTKFace image folder into a manifest: the labels are in the file names.

UTKFace (Zhang, Song and Qi, 2017) names every image ``[age]_[gender]_[race]_[date&time].jpg``;
the aligned-and-cropped release appends ``.chip.jpg`` (``1_0_0_20161219140623097.jpg.chip.jpg``).
``gender`` is 0 (male) or 1 (female) and ``race`` 0 to 4 (White, Black, Asian, Indian, Others).
UTKFace has no identity labels, so every image is its own subject.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from ._importing import (
    ERR_NO_IMAGES,
    IMAGE_SUFFIXES,
    and_more,
    images_folder,
    listing,
    output_path,
    relative_paths,
    scan_images,
    write_manifest,
)
from .manifest import ManifestError

__all__ = ["import_utkface", "GENDERS", "RACES"]

logger = logging.getLogger(__name__)

GENDERS: tuple[str, ...] = ("male", "female")
"""The ``gender`` values, by UTKFace's code (0, 1)."""
RACES: tuple[str, ...] = ("white", "black", "asian", "indian", "others")
"""The ``race`` values, by UTKFace's code (0 to 4)."""
NAME_FORM = "[age]_[gender]_[race]_[date&time].jpg"
"""UTKFace's file names, as its documentation spells them."""

ERR_MALFORMED_NAME = f"file name(s) not in UTKFace's form {NAME_FORM}"
ERR_SAME_IMAGE_TWICE = "one image under two file names"
NO_IDENTITIES = (
    "UTKFace has no identity labels: every image is its own subject, so a person photographed twice "
    "counts as two people (confidence intervals resample images, not people)"
)
_DIGITS = re.compile(r"[0-9]+")
_CHIP = ".chip.jpg"


def import_utkface(
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    skip_malformed: bool = False,
) -> pd.DataFrame:
    """Write a manifest for a UTKFace folder and return it.

    Every image below ``images_dir`` (any depth, so the in-the-wild release's ``part1/`` to
    ``part3/`` import together) must be named ``[age]_[gender]_[race]_[date&time].jpg``, optionally
    with ``.chip.jpg`` after it; other files are skipped. **UTKFace has no identity labels: every
    image is its own subject** (``subject`` is the file name without ``.jpg``/``.jpg.chip.jpg``),
    so a person photographed twice counts as two people; the importer logs this as a WARNING.
    The manifest has no ``split`` column: ``audit run`` splits it by subject (seeded). It is
    written to a temporary file beside ``out``, validated, then renamed to ``out``, so a bad
    import never leaves a manifest.

    Args:
        images_dir: the UTKFace folder (e.g. ``UTKFace/`` or ``crop_part1/``).
        out: the manifest to write, ``.csv`` or ``.parquet``; its folder is created if missing.
        skip_malformed: leave out images whose name is not in UTKFace's form (logged as one
            WARNING line: the first few names and the count) instead of raising.

    Returns:
        The manifest frame, sorted by path: ``path`` (relative to ``out``'s folder, POSIX; it
        starts with ``..`` when the images are not below that folder: audit with
        ``--allow-outside-root``), ``subject``, ``age`` (whole years as text, e.g. ``"26"``: bin it
        to audit by age, ``--bins age=0,18,30,45,65,120``), ``gender`` (:data:`GENDERS`) and
        ``race`` (:data:`RACES`).

    Raises:
        ManifestError: ``images_dir`` is missing, a name is malformed (a missing field, a space, a
            non-number, a gender or race code out of range; unless ``skip_malformed``), one image
            is there under two names (e.g. in two releases), no image is found, or ``out`` has an
            unsupported suffix.

    Example:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp()) / "UTKFace"
        >>> root.mkdir()
        >>> Image.new("RGB", (8, 8)).save(root / "26_0_1_20170116220224657.jpg.chip.jpg", format="JPEG")
        >>> frame = import_utkface(root, root.parent / "utkface.csv")
        >>> frame["path"].iat[0], frame["subject"].iat[0]
        ('UTKFace/26_0_1_20170116220224657.jpg.chip.jpg', '26_0_1_20170116220224657')
        >>> frame[["age", "gender", "race"]].iloc[0].tolist()
        ['26', 'male', 'black']
    """
    target = output_path(out)
    images = images_folder(
        images_dir, expected=f"UTKFace's {NAME_FORM} files", fix="pass the folder that holds UTKFace's images"
    )
    rows: list[tuple[str, str, str, str, str]] = []
    malformed: list[tuple[str, str]] = []  # (name, problem)
    for name in scan_images(images):
        try:
            rows.append((name, *_labels(name.rsplit("/", 1)[-1])))
        except ValueError as err:
            malformed.append((name, str(err)))
    if malformed:
        first, problem = malformed[0]
        if not skip_malformed:
            raise ManifestError(
                f"{images}: {len(malformed)} {ERR_MALFORMED_NAME}, first {first!r} ({problem}); fix: rename or "
                f"remove them, or leave them out (audit data import-utkface --skip-malformed; skip_malformed=True)"
            )
        logger.warning(
            "%s: skipped %d %s: %s", images, len(malformed), ERR_MALFORMED_NAME, listing([n for n, _ in malformed])
        )
    if not rows:
        raise ManifestError(
            f"{images}: {ERR_NO_IMAGES} named {NAME_FORM} (any depth; suffixes {', '.join(IMAGE_SUFFIXES)}); "
            f"fix: point at the folder that holds UTKFace's images"
        )
    frame = pd.DataFrame(rows, columns=["name", "subject", "age", "gender", "race"])
    _check_one_name_per_image(frame, images)
    logger.warning("%s", NO_IDENTITIES)
    frame.insert(0, "path", relative_paths(images, frame["name"], target.parent))
    return write_manifest(frame.drop(columns="name"), target, attributes=("gender", "race"))


def _labels(file_name: str) -> tuple[str, str, str, str]:
    """``(subject, age, gender, race)`` of a UTKFace file name; ``ValueError(problem)`` when malformed."""
    if file_name.lower().endswith(_CHIP):
        stem = file_name[: -len(_CHIP)]
        stem = stem[:-4] if stem.lower().endswith(".jpg") else stem
    else:
        stem = os.path.splitext(file_name)[0]
    if any(character.isspace() for character in stem):
        raise ValueError("a space in the name")
    fields = stem.split("_")
    if len(fields) != 4:
        raise ValueError(f"{len(fields)} fields, expected 4: {NAME_FORM}")
    for field, value in zip(("age", "gender", "race", "date&time"), fields, strict=True):
        if not _DIGITS.fullmatch(value):
            raise ValueError(f"{field} {value!r} is not a number")
    age, gender, race = (int(value) for value in fields[:3])
    if gender >= len(GENDERS):
        raise ValueError(f"gender code {gender} is not 0 (male) or 1 (female)")
    if race >= len(RACES):
        codes = ", ".join(f"{code} {word}" for code, word in enumerate(RACES))
        raise ValueError(f"race code {race} is not one of {codes}")
    return stem, str(age), GENDERS[gender], RACES[race]


def _check_one_name_per_image(frame: pd.DataFrame, images: Path) -> None:
    """Raise when two files carry one image's name (``X.jpg`` and ``X.jpg.chip.jpg``, or one name in two folders)."""
    repeated = frame["subject"].duplicated(keep=False)
    if repeated.any():
        subject = frame.loc[repeated, "subject"].iat[0]
        names = frame.loc[frame["subject"] == subject, "name"].tolist()
        count = frame.loc[repeated, "subject"].nunique()
        also = and_more(count - 1, "image like this", "images like this")
        raise ManifestError(
            f"{images}: {ERR_SAME_IMAGE_TWICE}: {subject!r} is {names[0]!r} and {names[1]!r}{also}; fix: keep one "
            f"copy of each image (UTKFace's releases overlap: import one release's folder)"
        )
