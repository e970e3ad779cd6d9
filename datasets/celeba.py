"""Turn CelebA's images and annotation files into a manifest.

CelebA (Liu, Luo, Wang and Tang, 2015) ships its images as ``img_align_celeba/000001.jpg`` ...
and three text files, their columns separated by one or more spaces:

- ``list_attr_celeba.txt``: a count line (``202599``), a header line of 40 attribute names
  (``5_o_Clock_Shadow Arched_Eyebrows ... Young``), then per image its file name and ``1`` or
  ``-1`` per attribute;
- ``identity_CelebA.txt``: ``000001.jpg 2880``, the person in each image;
- ``list_eval_partition.txt``: ``000001.jpg 0``, the split (0 train, 1 val, 2 test).

``Male`` becomes ``gender`` (``male``/``female``), the identity becomes ``subject`` (so the
audit's intervals resample people, not images), the partition ``split``; other attributes can be
kept as lowercase ``yes``/``no`` columns (``Young`` becomes ``young``).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._importing import (
    LineProblems,
    and_more,
    at,
    check_on_disk,
    check_unique,
    images_folder,
    output_path,
    read_lines,
    relative_paths,
    require_all,
    scan_images,
    warn_unlisted,
    write_manifest,
)
from .manifest import RESERVED_COLUMNS, ManifestError

__all__ = ["import_celeba", "SPLIT_CODES"]

logger = logging.getLogger(__name__)

SPLIT_CODES: dict[str, str] = {"0": "train", "1": "val", "2": "test"}
"""``list_eval_partition.txt``'s codes and the ``split`` values they become."""
GENDER_ATTRIBUTE = "Male"
"""The CelebA attribute that becomes ``gender``."""

ERR_COUNT_LINE = "bad count line"
ERR_COUNT_MISMATCH = "the count line does not match the image lines"
ERR_WRONG_HEADER = "not CelebA's attribute header"
ERR_FIELD_COUNT = "wrong number of fields"
ERR_BAD_VALUE = "attribute value is not -1 or 1"
ERR_UNKNOWN_ATTRIBUTE = "not an attribute of the header"
ERR_BAD_IDENTITY = "identity is not a number"
ERR_BAD_PARTITION = "partition is not 0, 1 or 2"
ERR_NO_IDENTITY = "image without an identity"
ERR_NO_PARTITION = "image without a partition"
ERR_IDENTITY_IN_TWO_SPLITS = "identity in two splits"
_ATTRIBUTES_FIX = "pass CelebA's list_attr_celeba.txt (a count line, a header line, then one line per image)"
_ONE_LINE_EACH = "keep one line per image"
_NAME = re.compile(r"[A-Za-z0-9_]+")


def import_celeba(
    images_dir: str | os.PathLike[str],
    attributes: str | os.PathLike[str],
    identities: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    partition: str | os.PathLike[str] | None = None,
    keep: Sequence[str] = (),
) -> pd.DataFrame:
    """Write a manifest for CelebA's images and annotation files and return it.

    The attribute file decides which images are in the manifest: each needs an identity (and,
    with ``partition``, a split) and an image file in ``images_dir``; images there that the
    attribute file does not list are left out with a WARNING, and so are lines of the identity
    and partition files for images it does not list.

    CelebA labels attributes per image, but a manifest's attributes belong to the person: when an
    identity's images disagree (``Male`` on some, not on others; or ``Young``), the identity takes
    the value most of its images have (a tie: its first image's), and a WARNING per attribute
    says how many identities and images that changed. Without ``partition`` there is no ``split``
    column and ``audit run`` splits by identity (seeded); with it, an identity in two splits is an
    error. The manifest is written to a temporary file beside ``out``, validated, then renamed to
    ``out``, so a bad import never leaves a manifest.

    Args:
        images_dir: the folder of CelebA's images (``img_align_celeba/``).
        attributes: ``list_attr_celeba.txt``.
        identities: ``identity_CelebA.txt``.
        out: the manifest to write, ``.csv`` or ``.parquet``; its folder is created if missing.
        partition: ``list_eval_partition.txt`` (0 train, 1 val, 2 test), or ``None`` for no ``split``.
        keep: further attributes of the header to keep (case-insensitive; a comma-separated string
            is split), each as a lowercase column of ``yes``/``no``.

    Returns:
        The manifest frame, in the attribute file's order: ``path`` (relative to ``out``'s folder,
        POSIX; ``..`` when the images are not below it: audit with ``--allow-outside-root``),
        ``subject`` (the identity, e.g. ``"2880"``), ``gender`` (``male``/``female``), a column
        per kept attribute, and with ``partition`` ``split`` (``train``/``val``/``test``).

    Raises:
        ManifestError: ``images_dir`` or a file is missing; the count line is not a number or not
            the number of image lines; the header is not attribute names with ``Male`` among
            them; a line has the wrong number of fields, a value other than ``-1``/``1``, a
            non-number identity or a partition other than 0/1/2; an image is listed twice in a
            file, or lacks an identity, a partition or its image file; a ``keep`` name is not in
            the header (the message lists close matches) or is ``Male``; an identity is in two
            splits; or ``out`` has an unsupported suffix.

    Example:
        >>> frame = import_celeba(  # doctest: +SKIP
        ...     "img_align_celeba", "list_attr_celeba.txt", "identity_CelebA.txt", "celeba.csv",
        ...     partition="list_eval_partition.txt", keep=["Young"])
        >>> frame.iloc[0].to_dict()  # doctest: +SKIP
        {'path': 'img_align_celeba/000001.jpg', 'subject': '2880', 'gender': 'female', 'young': 'yes',
         'split': 'train'}
    """
    target = output_path(out)
    images = images_folder(
        images_dir, expected="CelebA's 000001.jpg, 000002.jpg, ...",
        fix="pass the folder that holds CelebA's images (img_align_celeba/)",
    )
    attribute_file = Path(attributes)
    names, where, labels = _read_attributes(attribute_file, keep)
    subjects = _read_pairs(
        Path(identities), what="identity_CelebA.txt", value="identity", normalise=_identity, bad=ERR_BAD_IDENTITY
    )
    require_all(
        names, where, subjects, problem=lambda name: f"{ERR_NO_IDENTITY}: {name!r} is not in {identities}",
        fix=f"pass the identity_CelebA.txt that goes with {attribute_file.name}",
    )
    frame = pd.DataFrame({"name": names, "subject": [subjects[name][0] for name in names]})
    if partition is not None:
        splits = _read_pairs(
            Path(partition), what="list_eval_partition.txt", value="partition", normalise=SPLIT_CODES.get,
            bad=ERR_BAD_PARTITION,
        )
        require_all(
            names, where, splits, problem=lambda name: f"{ERR_NO_PARTITION}: {name!r} is not in {partition}",
            fix=f"pass the list_eval_partition.txt that goes with {attribute_file.name}, or drop --partition",
        )
        _check_identity_splits(frame, splits, Path(partition))
    found = scan_images(images)
    check_on_disk(
        names, where, images, found,
        fix="pass the folder that holds CelebA's images (img_align_celeba/), or drop the lines of images you "
            "do not have",
    )
    warn_unlisted(found, set(names), images, what="attribute file", log=logger)
    for attribute, codes in labels.items():
        column = "gender" if attribute == GENDER_ATTRIBUTE else attribute.lower()
        words = ("male", "female") if attribute == GENDER_ATTRIBUTE else ("yes", "no")
        voted = _one_value_per_identity(codes, frame["subject"], attribute, words, attribute_file)
        frame[column] = np.where(voted == 1, words[0], words[1])
    if partition is not None:
        frame["split"] = [splits[name][0] for name in names]
    frame.insert(0, "path", relative_paths(images, names, target.parent))
    columns = [c for c in frame.columns if c not in ("path", "subject", "split", "name")]
    return write_manifest(frame.drop(columns="name"), target, attributes=columns)


def _read_attributes(source: Path, keep: Sequence[str]) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """``list_attr_celeba.txt``: the image names, where each is (``file: line n``), and the codes
    (``(N,)`` int8, ``1``/``-1``) of ``Male`` and of each kept attribute, by header name."""
    lines = read_lines(source, what="CelebA attribute file", fix=_ATTRIBUTES_FIX)
    if not lines:
        raise ManifestError(f"{source}: {ERR_COUNT_LINE}: the file is empty; fix: {_ATTRIBUTES_FIX}")
    count_line, count = lines[0][0], lines[0][1].strip()
    if not count.isdigit():
        looks = " (this looks like a CSV, such as Kaggle's list_attr_celeba.csv)" if "," in count else ""
        raise ManifestError(
            f"{at(source, count_line)}: {ERR_COUNT_LINE} {count[:40]!r}: expected the number of images (e.g. 202599)"
            f"{looks}; fix: {_ATTRIBUTES_FIX}"
        )
    if len(lines) < 2:
        raise ManifestError(f"{source}: {ERR_WRONG_HEADER}: no header line after the count; fix: {_ATTRIBUTES_FIX}")
    header_line, header = lines[1][0], lines[1][1].split()
    _check_header(header, at(source, header_line))
    kept = _resolve_keep(keep, header, source)
    wanted = [header.index(GENDER_ATTRIBUTE) + 1, *(header.index(name) + 1 for name in kept)]
    names: list[str] = []
    where: list[str] = []
    rows: list[list[str]] = []
    problems = LineProblems()
    allowed = {"1", "-1"}
    for number, text in lines[2:]:
        fields = text.split()
        place = at(source, number)
        if len(fields) != len(header) + 1:
            problems.add(place, f"{ERR_FIELD_COUNT}: {len(fields)}, expected {len(header) + 1} (an image name and "
                                f"{len(header)} values)", "give every image one value (-1 or 1) per attribute")
        elif not allowed.issuperset(fields[1:]):
            column = next(j for j, value in enumerate(fields[1:]) if value not in allowed)
            problems.add(place, f"{ERR_BAD_VALUE}: {header[column]} {fields[column + 1]!r}",
                         "write 1 (has the attribute) or -1 (has not)")
        else:
            names.append(fields[0])
            where.append(place)
            rows.append([fields[j] for j in wanted])
    problems.raise_first()
    if int(count) != len(lines) - 2:
        raise ManifestError(
            f"{at(source, count_line)}: {ERR_COUNT_MISMATCH}: it says {int(count)} images, the file has "
            f"{len(lines) - 2} image lines; fix: correct the count line (or re-download the file if it was cut short)"
        )
    check_unique(names, where, fix=_ONE_LINE_EACH)
    codes = np.array(rows, dtype=np.int8).reshape(len(rows), len(wanted))
    return names, where, {name: codes[:, j] for j, name in enumerate((GENDER_ATTRIBUTE, *kept))}


def _check_header(header: list[str], place: str) -> None:
    """Raise unless ``header`` is a list of distinct attribute names with ``Male`` among them."""
    odd = next((name for name in header if not _NAME.fullmatch(name)), None)
    twice = next((name for i, name in enumerate(header) if name in header[:i]), None)
    problem = (
        f"{odd!r} is not an attribute name" if odd is not None
        else f"{twice!r} is named twice" if twice is not None
        else f"no {GENDER_ATTRIBUTE!r} attribute" if GENDER_ATTRIBUTE not in header
        else None
    )
    if problem is not None:
        raise ManifestError(
            f"{place}: {ERR_WRONG_HEADER} ({problem}; expected names such as 5_o_Clock_Shadow ... Male ... Young); "
            f"fix: {_ATTRIBUTES_FIX}"
        )


def _resolve_keep(keep: Sequence[str], header: list[str], source: Path) -> list[str]:
    """The header names of the ``keep`` attributes (matched case-insensitively), after checks."""
    wanted = [name.strip() for name in (keep.split(",") if isinstance(keep, str) else keep) if name.strip()]
    by_lower = {name.lower(): name for name in header}
    kept: list[str] = []
    for name in wanted:
        found = by_lower.get(name.lower())
        if found is None:
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close
                    else f"name some of {', '.join(header)}")
            raise ManifestError(f"{source}: {ERR_UNKNOWN_ATTRIBUTE}: keep {name!r}; fix: {hint}")
        if found == GENDER_ATTRIBUTE:
            raise ManifestError(
                f"{source}: keep {name!r}: {GENDER_ATTRIBUTE!r} is already the gender column; fix: leave it out of keep"
            )
        if found in kept:
            raise ManifestError(f"{source}: keep {name!r}: {found!r} is named twice; fix: name each attribute once")
        if found.lower() in RESERVED_COLUMNS:
            raise ManifestError(
                f"{source}: keep {name!r}: {found.lower()!r} is a reserved manifest column; fix: leave it out of keep"
            )
        kept.append(found)
    return kept


def _identity(value: str) -> str | None:
    """An identity as canonical text (``"0042"`` -> ``"42"``); ``None`` when it is not a whole number."""
    return str(int(value)) if value.isdigit() else None


def _read_pairs(
    source: Path, *, what: str, value: str, normalise: Callable[[str], str | None], bad: str
) -> dict[str, tuple[str, str]]:
    """An ``<image> <value>`` file (identities, partition): ``image -> (normalised value, "file: line n")``.

    ``what`` names the file as CelebA does (``identity_CelebA.txt``); ``normalise`` turns a value
    into the manifest's text, or ``None`` when it is bad (``bad`` is the problem phrase).
    """
    lines = read_lines(source, what=f"CelebA's {what}", fix=f"pass CelebA's {what}")
    names: list[str] = []
    values: list[str] = []
    where: list[str] = []
    problems = LineProblems()
    for number, text in lines:
        fields = text.split()
        place = at(source, number)
        if len(fields) != 2:
            problems.add(place, f"{ERR_FIELD_COUNT}: {len(fields)}, expected 2 (<image> <{value}>)",
                         f"write one image and its {value} per line")
            continue
        normalised = normalise(fields[1])
        if normalised is None:
            problems.add(place, f"{bad}: {fields[1]!r}", f"correct the {value} (or drop the line)")
            continue
        names.append(fields[0])
        values.append(normalised)
        where.append(place)
    problems.raise_first()
    check_unique(names, where, fix=_ONE_LINE_EACH)
    return dict(zip(names, zip(values, where, strict=True), strict=True))


def _check_identity_splits(frame: pd.DataFrame, splits: dict[str, tuple[str, str]], source: Path) -> None:
    """Raise when the partition puts one identity's images in two splits."""
    split = frame["name"].map(lambda name: splits[name][0])
    spread = split.groupby(frame["subject"], sort=False).nunique()
    torn = spread.index[spread > 1]
    if len(torn) == 0:
        return
    first = frame["subject"].isin(torn).to_numpy().nonzero()[0][0]
    identity = frame["subject"].iat[first]
    mine = frame.index[frame["subject"] == identity]
    other = next(i for i in mine if split.iat[i] != split.iat[first])
    names = frame["name"]
    also = and_more(len(torn) - 1, "identity is in two or three splits", "identities are in two or three splits")
    raise ManifestError(
        f"{source}: {ERR_IDENTITY_IN_TWO_SPLITS}: identity {identity!r} is in {split.iat[first]} "
        f"({names.iat[first]}, {splits[names.iat[first]][1]}) and {split.iat[other]} ({names.iat[other]}, "
        f"{splits[names.iat[other]][1]}){also}; fix: drop --partition (partition=None) and genfair splits by "
        f"identity (seeded), or give each identity's images one split"
    )


def _one_value_per_identity(
    codes: np.ndarray, subjects: pd.Series, attribute: str, words: tuple[str, str], source: Path
) -> np.ndarray:
    """``(N,)`` int8 codes with each identity's majority (a tie: its first image's); WARNING when any changed."""
    series = pd.Series(codes, dtype=np.int8)
    grouped = series.groupby(subjects.to_numpy(), sort=False)
    total = grouped.transform("sum").to_numpy()
    first = grouped.transform("first").to_numpy()
    voted = np.where(total > 0, 1, np.where(total < 0, -1, first)).astype(np.int8)
    changed = voted != codes
    if changed.any():
        mixed = grouped.nunique()
        mixed = mixed.index[mixed > 1]
        identity = subjects.iat[int(np.flatnonzero(subjects.isin(mixed).to_numpy())[0])]
        mine = codes[(subjects == identity).to_numpy()]
        logger.warning(
            "%s: %d identit%s images with mixed %s labels: each takes the value most of its images have "
            "(a tie: its first image's), %d image(s) changed, since a person has one value of an attribute; "
            "first: identity %r (%d %s, %d %s)",
            source, len(mixed), "y has" if len(mixed) == 1 else "ies have", attribute, int(changed.sum()), identity,
            int((mine == 1).sum()), words[0], int((mine == -1).sum()), words[1],
        )
    return voted
