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

from .manifest import RESERVED_COLUMNS, SUPPORTED_SUFFIXES, ManifestError, load_manifest, read_table

__all__ = ["import_faces95", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
"""Image file suffixes (case-insensitive) the importer picks up."""

ERR_IMAGES_DIR = "images folder not found"
ERR_NO_SUBJECT_COLUMN = "annotations have no 'subject' column"
ERR_RESERVED_IN_ANNOTATIONS = "annotations use a reserved column"
ERR_DUPLICATE_SUBJECT = "subject annotated twice"
ERR_UNANNOTATED = "subjects with images but no annotation row"
ERR_NO_IMAGES = "no images found"
ERR_OUT_SUFFIX = "unsupported manifest format"


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
    images = Path(images_dir)
    target = Path(out)
    if target.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ManifestError(
            f"{target}: {ERR_OUT_SUFFIX} {target.suffix or '(no suffix)'!r} for the output manifest; "
            f"fix: name it with one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not images.is_dir():
        raise ManifestError(
            f"{images}: {ERR_IMAGES_DIR} (expected <subject>/<subject>.<n>.jpg inside); "
            f"fix: pass the folder that holds one sub-folder per subject"
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
        listed = ", ".join(repr(s) for s in orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
        raise ManifestError(
            f"{annotations}: {ERR_UNANNOTATED}: {len(orphans)} subject(s) in {images} are missing "
            f"({listed}); fix: add a row per subject to the annotations (or remove their folders)"
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
    manifest_dir = target.parent if str(target.parent) else Path(".")
    frame["path"] = [Path(os.path.relpath(file, manifest_dir)).as_posix() for file in frame["file"]]
    frame = frame[["path", "subject", *[c for c in table.columns if c != "subject"]]]

    manifest_dir.mkdir(parents=True, exist_ok=True)
    staging = manifest_dir / f".{target.stem}.importing{target.suffix}"
    try:
        if target.suffix.lower() == ".csv":
            frame.to_csv(staging, index=False, lineterminator="\n")
        else:
            frame.to_parquet(staging, index=False)
        try:
            manifest = load_manifest(staging, allow_outside_root=True)  # relpath may climb to the images: chosen here
        except ManifestError as err:
            message = str(err).replace(str(staging), str(target))
            raise ManifestError(f"{message} ({target} was not written)") from err
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    logger.info("wrote %s: %d images of %d subjects", target, len(frame), frame["subject"].nunique())
    return manifest.frame


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
    """Image files laid out as ``<subject>/<subject>.<n>.<ext>``: columns ``file, subject, number``."""
    rows: list[tuple[str, str, int]] = []
    skipped = 0
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        pattern = re.compile(rf"^{re.escape(folder.name)}\.(\d+)(\.[A-Za-z]+)$")
        for file in sorted(folder.iterdir()):
            match = pattern.match(file.name)
            if match and match.group(2).lower() in IMAGE_SUFFIXES and file.is_file():
                rows.append((str(file), folder.name, int(match.group(1))))
            else:
                skipped += 1
    if skipped:
        logger.debug("%s: skipped %d files not named <subject>.<n>.<ext>", images, skipped)
    return pd.DataFrame(rows, columns=["file", "subject", "number"])
