"""Turn a Faces95-style image folder plus per-subject annotations into a manifest.

Faces95 (Libor Spacek, University of Essex) ships as ``DIR/<subject>/<subject>.<n>.jpg``, about 20
images per subject and no demographic labels. Its sensitive attributes come from a separate,
per-subject annotations table (CSV or Parquet): a ``subject`` column plus one column per attribute
(e.g. ``gender``, ``skin_tone``). :func:`import_faces95` joins the two into a manifest.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from ._importing import ERR_IMAGES_DIR as ERR_IMAGES_DIR  # re-exported: the phrases of the shared checks
from ._importing import ERR_OUT_SUFFIX as ERR_OUT_SUFFIX
from ._importing import (
    ERR_NO_IMAGES,
    IMAGE_SUFFIXES,
    images_folder,
    listing,
    output_path,
    relative_paths,
    write_manifest,
)
from .manifest import RESERVED_COLUMNS, ManifestError, read_table

__all__ = ["import_faces95", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

ERR_NO_SUBJECT_COLUMN = "annotations have no 'subject' column"
ERR_RESERVED_IN_ANNOTATIONS = "annotations use a reserved column"
ERR_DUPLICATE_SUBJECT = "subject annotated twice"
ERR_UNANNOTATED = "subjects with images but no annotation row"


def import_faces95(
    images_dir: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> pd.DataFrame:
    """Write a manifest for a Faces95-style folder and return it.

    Images are ``images_dir/<subject>/<subject>.<n>.<ext>`` (``ext`` in :data:`IMAGE_SUFFIXES`);
    other files are skipped (logged at DEBUG). Every subject with images needs one annotation
    row; annotated subjects without images are only logged (WARNING). The manifest is written to a
    temporary file beside ``out``, validated with :func:`~genfair.datasets.load_manifest` (every
    image's header is read), then renamed to ``out``, so a bad import never leaves a manifest.

    Args:
        images_dir: the Faces95 folder.
        annotations: per-subject table (``.csv`` or ``.parquet``): ``subject`` plus attribute columns.
        out: the manifest to write, ``.csv`` or ``.parquet``; its folder is created if missing.

    Returns:
        The manifest frame: ``path`` (relative to ``out``'s folder, POSIX), ``subject``, then the
        annotation columns, sorted by subject, then image number (numerically). When ``out`` is
        not in a folder above the images, paths start with ``..``: audit such a manifest with
        ``allow_outside_root=True`` (``audit run --allow-outside-root``).

    Raises:
        ManifestError: ``images_dir`` is missing, the annotations lack a ``subject`` column, use a
            reserved column or repeat a subject, images have no annotation, no image matches the
            layout, ``out`` has an unsupported suffix, or the written manifest fails validation.
    """
    target = output_path(out)
    images = images_folder(
        images_dir, expected="<subject>/<subject>.<n>.jpg", fix="pass the folder that holds one sub-folder per subject"
    )
    table = _read_annotations(Path(annotations))
    found = _scan(images)
    if found.empty:
        raise ManifestError(
            f"{images}: {ERR_NO_IMAGES} matching <subject>/<subject>.<n>.<ext> "
            f"(ext in {', '.join(IMAGE_SUFFIXES)}); fix: point at the Faces95 folder itself"
        )
    annotated = set(table["subject"])
    orphans = sorted(set(found["subject"]) - annotated)
    if orphans:
        raise ManifestError(
            f"{annotations}: {ERR_UNANNOTATED}: {len(orphans)} subject(s) in {images} are missing "
            f"({listing(orphans, first=5)}); fix: add a row per subject to the annotations (or remove their folders)"
        )
    unused = sorted(annotated - set(found["subject"]))
    if unused:
        logger.warning(
            "%s: %d annotated subject(s) have no images in %s and are left out: %s",
            annotations,
            len(unused),
            images,
            ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""),
        )

    frame = found.merge(table, on="subject", how="left", validate="many_to_one")
    frame = frame.sort_values(["subject", "number"], kind="stable").reset_index(drop=True)
    frame["path"] = relative_paths(images, frame["file"], target.parent)
    frame = frame[["path", "subject", *[c for c in table.columns if c != "subject"]]]
    return write_manifest(frame, target)


def _read_annotations(path: Path) -> pd.DataFrame:
    """The per-subject annotations table, subjects as ``str``; checked for a unique ``subject`` column."""
    table = read_table(path, what="annotations")
    table.columns = [str(c) for c in table.columns]
    if "subject" not in table.columns:
        raise ManifestError(
            f"{path}: {ERR_NO_SUBJECT_COLUMN} (columns: {list(table.columns)}); "
            f"fix: name the column that holds the Faces95 folder names 'subject'"
        )
    reserved = [c for c in table.columns if c in RESERVED_COLUMNS and c != "subject"]
    if reserved:
        raise ManifestError(
            f"{path}: {ERR_RESERVED_IN_ANNOTATIONS} {reserved[0]!r}; fix: annotations hold one row per subject "
            f"with attribute columns only; drop or rename {reserved[0]!r}"
        )
    table["subject"] = table["subject"].astype("str")
    repeated = table["subject"].duplicated(keep="first")
    if repeated.any():
        position = int(repeated.to_numpy().nonzero()[0][0])
        raise ManifestError(
            f"{path}: data row {position + 1}, column 'subject': {ERR_DUPLICATE_SUBJECT}: "
            f"{table['subject'].iat[position]!r}; fix: keep one row per subject"
        )
    return table


def _scan(images: Path) -> pd.DataFrame:
    """Image files laid out as ``<subject>/<subject>.<n>.<ext>``: columns ``file`` (relative to
    ``images``, POSIX), ``subject``, ``number``."""
    rows: list[tuple[str, str, int]] = []
    skipped = 0
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        pattern = re.compile(rf"^{re.escape(folder.name)}\.(\d+)(\.[A-Za-z]+)$")
        for file in sorted(folder.iterdir()):
            match = pattern.match(file.name)
            if match and match.group(2).lower() in IMAGE_SUFFIXES and file.is_file():
                rows.append((f"{folder.name}/{file.name}", folder.name, int(match.group(1))))
            else:
                skipped += 1
    if skipped:
        logger.debug("%s: skipped %d files not named <subject>.<n>.<ext>", images, skipped)
    return pd.DataFrame(rows, columns=["file", "subject", "number"])
