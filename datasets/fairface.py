"""Turn FairFace's images and label files into a manifest.

FairFace (Kärkkäinen and Joo, 2021) ships its images as ``DIR/train/<n>.jpg`` and
``DIR/val/<n>.jpg`` and its labels as ``fairface_label_train.csv`` and ``fairface_label_val.csv``:
``file,age,gender,race,service_test``, where ``file`` is relative to ``DIR`` (``train/1.jpg``),
``age`` one of nine groups (``0-2`` ... ``more than 70``), ``gender`` ``Male``/``Female``, ``race``
one of seven classes and ``service_test`` ``True``/``False``. FairFace has no identity labels, so
every image is its own subject.

Values are normalised the same way throughout: lowercase, spaces and underscores as one ``_``
(``East Asian`` becomes ``east_asian``, ``Latino_Hispanic`` ``latino_hispanic``, ``Male``
``male``). The age groups keep FairFace's own spelling (``20-29``, ``more than 70``): they are
categories already, not numbers to bin. ``service_test`` becomes ``yes``/``no``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ._importing import (
    ERR_UNREADABLE_TEXT,
    LineProblems,
    at,
    check_on_disk,
    check_unique,
    images_folder,
    input_file,
    output_path,
    relative_paths,
    scan_images,
    warn_unlisted,
    write_manifest,
)
from .manifest import ManifestError

__all__ = ["import_fairface", "AGES", "GENDERS", "RACES", "COLUMNS"]

logger = logging.getLogger(__name__)

AGES: tuple[str, ...] = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
"""FairFace's age groups, the ``age`` values (kept as FairFace spells them)."""
GENDERS: tuple[str, ...] = ("male", "female")
"""The ``gender`` values (FairFace's ``Male``, ``Female``)."""
RACES: tuple[str, ...] = (
    "white", "black", "latino_hispanic", "east_asian", "southeast_asian", "indian", "middle_eastern"
)
"""The ``race`` values (FairFace's ``White``, ``Black``, ``Latino_Hispanic``, ``East Asian``,
``Southeast Asian``, ``Indian``, ``Middle Eastern``)."""
COLUMNS: tuple[str, ...] = ("file", "age", "gender", "race", "service_test")
"""The columns of FairFace's label files; ``service_test`` may be absent (then from every file)."""

ERR_WRONG_HEADER = "not FairFace's label header"
ERR_HEADERS_DIFFER = "label files with different columns"
ERR_FIELD_COUNT = "wrong number of fields"
ERR_BAD_VALUE = "value not in FairFace's labels"
ERR_NO_LABELS = "no image listed"
NO_IDENTITIES = (
    "FairFace has no identity labels: every image is its own subject, so a person photographed twice "
    "counts as two people (confidence intervals resample images, not people)"
)
_LABELS_FIX = "pass FairFace's fairface_label_train.csv (and --labels fairface_label_val.csv)"
_BOOLEANS = {"true": "yes", "false": "no"}


def import_fairface(
    images_dir: str | os.PathLike[str],
    labels: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
) -> pd.DataFrame:
    """Write a manifest for FairFace's images and label file(s) and return it.

    Every labelled image must be in ``images_dir`` (``file`` is relative to it); images there that
    no label file lists (e.g. ``val/`` when only the train labels are given) are left out with a
    WARNING. **FairFace has no identity labels: every image is its own subject** (``subject`` is
    ``file`` without its suffix, e.g. ``train/1``), so a person photographed twice counts as two
    people; the importer logs this as a WARNING.

    Values are normalised: lowercase, spaces and underscores as one ``_`` (:data:`GENDERS`,
    :data:`RACES`); ``age`` keeps FairFace's groups (:data:`AGES`, categories). ``service_test``
    (FairFace's balanced subset for testing commercial services) is kept as ``yes``/``no`` so the
    subset can be selected; it is not a sensitive attribute: name the attributes when auditing
    (``--attributes gender,race``). There is no ``split`` column: FairFace has only a train and a
    validation part, and ``audit run`` needs train, val and test, so it splits by subject
    (seeded, stratified); the ``file`` path still shows each image's part. The manifest is
    written to a temporary file beside ``out``, validated, then renamed to ``out``, so a bad
    import never leaves a manifest.

    Args:
        images_dir: the folder that holds ``train/`` and ``val/``.
        labels: one label file or several (``fairface_label_train.csv``, ``fairface_label_val.csv``).
        out: the manifest to write, ``.csv`` or ``.parquet``; its folder is created if missing.

    Returns:
        The manifest frame, in the label files' order: ``path`` (relative to ``out``'s folder,
        POSIX; ``..`` when the images are not below it: audit with ``--allow-outside-root``),
        ``subject``, ``age``, ``gender``, ``race`` and (when the label files have it) ``service_test``.

    Raises:
        ManifestError: ``images_dir`` or a label file is missing; a label file's header is not
            FairFace's, or the files' headers differ; a line has the wrong number of fields or a
            value outside FairFace's labels; an image is listed twice (in one file or two); a
            listed image is not on disk; or ``out`` has an unsupported suffix.

    Example:
        >>> frame = import_fairface(  # doctest: +SKIP
        ...     "fairface", ["fairface_label_train.csv", "fairface_label_val.csv"], "fairface.csv")
        >>> frame.iloc[0].to_dict()  # doctest: +SKIP
        {'path': 'fairface/train/1.jpg', 'subject': 'train/1', 'age': '50-59', 'gender': 'male',
         'race': 'east_asian', 'service_test': 'yes'}
    """
    target = output_path(out)
    images = images_folder(
        images_dir, expected="FairFace's train/ and val/ folders", fix="pass the folder that holds train/ and val/"
    )
    sources = [Path(labels)] if isinstance(labels, str | os.PathLike) else [Path(path) for path in labels]
    if not sources:
        raise ValueError("labels is empty: pass at least one FairFace label file (fairface_label_train.csv)")
    tables = [_read_labels(source) for source in sources]
    columns = list(tables[0][0].columns)
    for source, (table, _) in zip(sources[1:], tables[1:], strict=True):
        if list(table.columns) != columns:
            raise ManifestError(
                f"{source}: {ERR_HEADERS_DIFFER}: {','.join(table.columns)} here, {','.join(columns)} in "
                f"{sources[0]}; fix: pass label files of one FairFace release"
            )
    frame = pd.concat([table for table, _ in tables], ignore_index=True)
    if frame.empty:
        raise ManifestError(
            f"{', '.join(map(str, sources))}: {ERR_NO_LABELS} (a header but no lines); fix: {_LABELS_FIX}"
        )
    where = [place for _, places in tables for place in places]
    names = frame["file"].tolist()
    check_unique(names, where, fix="list each image once (was one label file passed twice?)")
    found = scan_images(images)
    check_on_disk(
        names, where, images, found, fix="pass the folder that holds train/ and val/ (file is relative to it), "
                                         "or drop the lines of images you do not have"
    )
    warn_unlisted(found, set(names), images, what="label file", log=logger)
    logger.warning("%s", NO_IDENTITIES)
    frame.insert(0, "path", relative_paths(images, names, target.parent))
    frame.insert(1, "subject", [os.path.splitext(name)[0] for name in names])
    return write_manifest(frame.drop(columns="file"), target, attributes=("age", "gender", "race"))


def _read_labels(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """One label file, normalised: the frame (columns as in the file) and where each row is (``file: line n``)."""
    input_file(source, what="FairFace label file", fix=_LABELS_FIX)
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [cell.strip() for cell in next(reader, [])]
            expected = list(COLUMNS) if "service_test" in header else list(COLUMNS[:-1])
            if header != expected:
                raise ManifestError(
                    f"{at(source, 1)}: {ERR_WRONG_HEADER} {','.join(header) or '(empty)'!r}, expected "
                    f"{','.join(COLUMNS)!r} (service_test optional); fix: {_LABELS_FIX}"
                )
            rows, where, problems = [], [], LineProblems()
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                place = at(source, reader.line_num)
                if len(row) != len(header):
                    problems.add(place, f"{ERR_FIELD_COUNT}: {len(row)}, expected {len(header)} ({','.join(header)})",
                                 "write one image per line, its fields separated by commas")
                    continue
                values = _normalised(dict(zip(header, (cell.strip() for cell in row), strict=True)), place, problems)
                if values is not None:
                    rows.append(values)
                    where.append(place)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ManifestError(f"{source}: {ERR_UNREADABLE_TEXT} as CSV ({err}); fix: {_LABELS_FIX}") from err
    problems.raise_first()
    return pd.DataFrame(rows, columns=header), where


_ALLOWED = {
    "age": {age: age for age in AGES},
    "gender": {gender: gender for gender in GENDERS},
    "race": {race: race for race in RACES},
    "service_test": _BOOLEANS,
}
_SHOWN = {
    "age": ", ".join(AGES),
    "gender": "Male, Female",
    "race": "White, Black, Latino_Hispanic, East Asian, Southeast Asian, Indian, Middle Eastern",
    "service_test": "True, False",
}


def _normalised(values: dict[str, str], place: str, problems: LineProblems) -> dict[str, str] | None:
    """One label line's values, normalised; ``None`` (and a problem noted) when one is not FairFace's."""
    if not values["file"]:
        problems.add(place, f"{ERR_BAD_VALUE}: blank file", "give the image's path relative to the images folder")
        return None
    for column, allowed in _ALLOWED.items():
        if column not in values:
            continue
        key = " ".join(values[column].lower().split()) if column == "age" else _snake(values[column])
        if key not in allowed:
            problems.add(place, f"{ERR_BAD_VALUE}: {column} {values[column]!r} (FairFace's: {_SHOWN[column]})",
                         f"correct the {column} (or drop the line)")
            return None
        values[column] = allowed[key]
    return values


def _snake(value: str) -> str:
    """``East Asian`` -> ``east_asian``: lowercase, runs of spaces and underscores as one ``_``."""
    return re.sub(r"[\s_]+", "_", value.strip().lower())
