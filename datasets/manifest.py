"""Image manifests: one row per image, validated before anything trains on it.

A manifest is a CSV or Parquet table with one row per image:

- ``path``: the image file, relative to the manifest's folder (a POSIX string);
- ``subject``: the identity shown in the image (splits never share a subject);
- sensitive attribute columns (``gender``, ``skin_tone``, ...): constant per subject;
- ``split`` (optional): ``train``, ``val`` or ``test``;
- ``mask_path`` (optional): a per-image mask file (e.g. the skin of the face: greyscale, >= 128
  = in the mask), relative to the manifest's folder like ``path``.

Audits of images a model already produced name two more columns (any names, passed as
``load_manifest(outputs=..., inputs=...)``; never attributes):

- the **outputs** column: each audited row's output image (e.g. ``restored``), relative like
  ``path``. A blank cell leaves the row out of the audit (it may still train a classifier); at
  least one row needs an output, and no two rows may share one;
- the **inputs** column (optional, e.g. for super-resolution): the low-resolution input the model
  saw, given exactly for the rows that have an output.

Any other column is kept as-is. :func:`load_manifest` reads a manifest, checks it and returns a
:class:`Manifest`. Every problem raises :class:`ManifestError` with one line that names the file,
the first offending row (its 1-based data row and, for CSV, its line number), the column, the
problem, how many more rows share it, and the fix. The problem phrases are the ``ERR_*`` module
constants, so callers and tests can match them.

Rules a manifest is held to beyond the columns above:

- **Paths stay inside the manifest's folder.** An absolute path, or one whose ``..`` parts climb
  above the folder, is rejected unless ``allow_outside_root=True`` (``audit run
  --allow-outside-root``). The check reads the path's text; symbolic links are followed as-is.
  Two spellings of one path (``img/a.png``, ``img/./a.png``) count as duplicates.
- **Skin-tone scales are numbers.** An attribute column named after a skin-tone scale
  (:data:`TONE_SCALES`: ``fitzpatrick`` 1-6, ``monk`` / ``monk_skin_tone`` 1-10, ``ita`` /
  ``skin_tone_ita`` in degrees, -90 to 90) must hold numbers on that scale, integers for the
  Fitzpatrick and Monk types: a word, a roman numeral (``III``) or an out-of-range number is an
  error (a typo would otherwise become a group of its own), and integer types are written
  canonically (``"03"`` and ``"3.0"`` become ``"3"``). Continuous ITA angles make one group per
  value: bin them into a categorical column to audit by them.
- **Images are checked cheaply and read lazily.** Validating the table is O(rows) and never
  touches an image. The image check (``images=``) then costs one directory listing per folder
  (existence) plus, by default, one header parse per image (PIL's ``verify``: no pixels decoded;
  it also catches truncated PNGs); ``images="exist"`` skips the parsing and ``images="skip"``
  the file system. Pixels are decoded only when a batch needs them.
- **Mixed image sizes and modes are fine; high bit depths are not.** Every image is converted
  to the run's channels (RGB or greyscale; alpha is dropped, palettes expanded), made square
  (the run's ``fit``: the centred square by default) and resized to the run's size (box filter
  when shrinking, bicubic when enlarging). 16- and 32-bit modes (``I;16``, ``I``, ``F``) are
  rejected: converting them to 8 bits clips every value above 255.
- **Numbers with many values are not categories.** An attribute whose values are all numbers,
  with more than ten distinct ones (an age), must be binned (``bins=``, ``audit run --bins``;
  :mod:`genfair.datasets.binning`); the error suggests bins from the column's own quartiles.
- **Blank attribute values** are refused unless ``missing="drop"`` (the rows are left out) or
  ``missing="group"`` (they form the group :data:`MISSING_GROUP`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .binning import Bins, parse_bins_mapping
from .manifest_checks import (  # noqa: F401 - the ERR_* phrases are part of this module's interface
    ASPECT_TOLERANCE,
    MASK_COLUMN,
    MISSING_GROUP,
    SPLITS,
    TONE_SCALES,
    UNSUPPORTED_MODES,
    ManifestError,
    ERR_ABSOLUTE_PATH,
    ERR_ALL_DROPPED,
    ERR_ASPECT_RATIO,
    ERR_BINS_NOT_ATTRIBUTE,
    ERR_BLANK_VALUE,
    ERR_CONFLICTING_ATTRIBUTE,
    ERR_DUPLICATE_ATTRIBUTE,
    ERR_DUPLICATE_OUTPUT,
    ERR_DUPLICATE_PATH,
    ERR_EMPTY,
    ERR_IMAGE_COLUMN_AS_ATTRIBUTE,
    ERR_IMAGE_MODE,
    ERR_INPUT_WITHOUT_OUTPUT,
    ERR_INVALID_SPLIT,
    ERR_MISSING_COLUMNS,
    ERR_MISSING_IMAGE,
    ERR_NOT_A_NUMBER,
    ERR_NOT_FOUND,
    ERR_NO_OUTPUTS,
    ERR_NUMERIC_ATTRIBUTE,
    ERR_OUTPUT_WITHOUT_INPUT,
    ERR_OUTSIDE_BINS,
    ERR_OUTSIDE_ROOT,
    ERR_RESERVED_ATTRIBUTE,
    ERR_RESERVED_IMAGE_COLUMN,
    ERR_SAME_IMAGE_COLUMN,
    ERR_SUBJECT_IN_TWO_SPLITS,
    ERR_TONE_SCALE,
    ERR_UNKNOWN_ATTRIBUTE,
    ERR_UNKNOWN_IMAGE_COLUMN,
    ERR_UNPARSEABLE,
    ERR_UNREADABLE_IMAGE,
    ERR_UNSUPPORTED_FORMAT,
    _Checker,
    _one_line,
)

__all__ = [
    "IMAGE_CHECKS",
    "MASK_COLUMN",
    "MISSING_GROUP",
    "MISSING_RULES",
    "RESERVED_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "SUPPORTED_SUFFIXES",
    "TONE_SCALES",
    "UNSUPPORTED_MODES",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "read_table",
]

logger = logging.getLogger(__name__)

RESERVED_COLUMNS: tuple[str, ...] = ("path", "subject", "split", MASK_COLUMN)
"""Columns with a fixed meaning; never sensitive attributes."""
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "subject")
"""Columns every manifest must have."""
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
"""Manifest file suffixes (case-insensitive) and so the formats they are read as."""
IMAGE_CHECKS: tuple[str, ...] = ("verify", "exist", "skip")
"""What :func:`load_manifest` checks of the image files: ``verify`` (exist, and PIL parses each
header and, for PNG, its chunks; no pixels decoded), ``exist`` (exist only), ``skip`` (nothing)."""
MISSING_RULES: tuple[str, ...] = ("error", "drop", "group")
"""What a blank sensitive value does: refuse the manifest, leave the row out, or join an explicit group."""
@dataclass(frozen=True, eq=False)
class Manifest:
    """A validated manifest.

    Attributes:
        frame: one row per image, with a ``RangeIndex`` (row ``i`` is position ``i``). ``path``
            (relative POSIX string, as given), ``subject`` and every attribute column are ``str``;
            ``split`` (when present) holds only values of :data:`SPLITS`; other columns are kept.
        root: the manifest's folder; image paths are relative to it.
        source: the manifest file.
        attributes: the sensitive attribute columns, in order.
        sha256: hex digest of the manifest file's bytes (identifies the dataset version).
        outputs: the column of the model's output images (``None``: none named). Its cells are
            ``str``: a relative path as given, or ``""`` for a row without an output.
        inputs: the column of the low-resolution inputs the model saw (``None``: none named);
            ``str`` cells, ``""`` exactly where :attr:`outputs` is ``""``.
        bins: the numeric attributes that were binned, with the edges used (``column -> edges``).
        notes: what loading changed that a reader of the audit should know (rows left out for
            blank values, numeric columns binned), one sentence each.
        file_rows: ``(N,)`` int64, the 0-based data row in :attr:`source` of each row of
            :attr:`frame` (they differ once ``missing="drop"`` left rows out); ``None``: the same.
    """

    frame: pd.DataFrame
    root: Path
    source: Path
    attributes: tuple[str, ...]
    sha256: str
    outputs: str | None = None
    inputs: str | None = None
    bins: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    file_rows: np.ndarray | None = None

    def data_row(self, row: int) -> int:
        """The 1-based data row in :attr:`source` of row ``row`` (a position in :attr:`frame`), for messages."""
        return (row if self.file_rows is None else int(self.file_rows[row])) + 1

    def image_path(self, row: int) -> Path:
        """The image file of row ``row`` (a position in :attr:`frame`, 0-based).

        Args:
            row: position of the row in :attr:`frame`, ``0 <= row < len(frame)``.

        Returns:
            ``root / frame.path[row]``.
        """
        return self.root / self.frame["path"].iat[row]

    def mask_path(self, row: int) -> Path:
        """The mask file of row ``row`` (a position in :attr:`frame`, 0-based).

        Args:
            row: position of the row in :attr:`frame`, ``0 <= row < len(frame)``.

        Returns:
            ``root / frame.mask_path[row]``.

        Raises:
            KeyError: the manifest has no ``mask_path`` column (see :attr:`has_mask`).
        """
        if not self.has_mask:
            raise KeyError(f"{self.source}: the manifest has no {MASK_COLUMN!r} column; check has_mask first")
        return self.root / self.frame[MASK_COLUMN].iat[row]

    def output_path(self, row: int) -> Path | None:
        """The model's output image of row ``row`` (a position in :attr:`frame`, 0-based).

        Args:
            row: position of the row in :attr:`frame`, ``0 <= row < len(frame)``.

        Returns:
            ``root / frame[outputs][row]``, or ``None`` when the row has no output (a blank cell).

        Raises:
            KeyError: the manifest was loaded without ``outputs=``.
        """
        return self._optional_path(row, self.outputs, "outputs")

    def input_path(self, row: int) -> Path | None:
        """The low-resolution input the model saw for row ``row`` (a position in :attr:`frame`).

        Args:
            row: position of the row in :attr:`frame`, ``0 <= row < len(frame)``.

        Returns:
            ``root / frame[inputs][row]``, or ``None`` when the row has no output (nor input).

        Raises:
            KeyError: the manifest was loaded without ``inputs=``.
        """
        return self._optional_path(row, self.inputs, "inputs")

    def _optional_path(self, row: int, column: str | None, argument: str) -> Path | None:
        if column is None:
            raise KeyError(f"{self.source}: the manifest was loaded without {argument}=; pass {argument}=<column>")
        value = self.frame[column].iat[row]
        return self.root / value if value else None

    @property
    def output_rows(self) -> np.ndarray:
        """Positions in :attr:`frame` of the rows with an output (the audited rows).

        ``(n,)`` int64, ascending; empty when the manifest was loaded without ``outputs=``.
        """
        if self.outputs is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.frame[self.outputs].to_numpy(dtype=object) != "").astype(np.int64)

    @property
    def has_split(self) -> bool:
        """Whether the manifest assigns every row to a split (has a ``split`` column)."""
        return "split" in self.frame.columns

    @property
    def has_mask(self) -> bool:
        """Whether every row has a mask file (the manifest has a ``mask_path`` column)."""
        return MASK_COLUMN in self.frame.columns

    @property
    def attribute_classes(self) -> dict[str, tuple[str, ...]]:
        """Each attribute's distinct values over the whole manifest, sorted (as strings).

        A value's position in its tuple is its code in :meth:`attribute_codes`. Sorting is by
        string, so ``"10"`` comes before ``"2"``.
        """
        return {name: tuple(sorted(self.frame[name].unique().tolist())) for name in self.attributes}

    def attribute_codes(self) -> np.ndarray:
        """The code of every row's value of every attribute.

        Returns:
            ``(N, A)`` int64, ``N = len(frame)``, ``A = len(attributes)``; entry ``[i, j]`` is the
            position of row ``i``'s value of ``attributes[j]`` in ``attribute_classes[attributes[j]]``.
        """
        classes = self.attribute_classes
        codes = np.zeros((len(self.frame), len(self.attributes)), dtype=np.int64)
        for j, name in enumerate(self.attributes):
            codes[:, j] = pd.Categorical(self.frame[name], categories=classes[name]).codes
        return codes


def read_table(path: str | os.PathLike[str], *, what: str = "manifest") -> pd.DataFrame:
    """Read a CSV or Parquet table chosen by the file's suffix.

    CSV cells are read as strings, verbatim (an empty cell is ``""``; ``NA`` stays ``"NA"``).

    Args:
        path: a ``.csv`` or ``.parquet`` file.
        what: what the file is, for error messages (``"manifest"``, ``"annotations"``).

    Returns:
        The table, with a ``RangeIndex``.

    Raises:
        ManifestError: the file does not exist, its suffix is not supported, or it cannot be parsed.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ManifestError(
            f"{source}: {ERR_UNSUPPORTED_FORMAT} {source.suffix or '(no suffix)'!r} for the {what}; "
            f"fix: save it as one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not source.is_file():
        raise ManifestError(
            f"{source}: {ERR_NOT_FOUND} ({what} file does not exist"
            f"{' or is a folder' if source.exists() else ''}); fix: check the path, relative to {Path.cwd()}"
        )
    try:
        if suffix == ".csv":
            frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_filter=False)
        else:
            frame = pd.read_parquet(source)
    except pd.errors.EmptyDataError as err:
        raise ManifestError(
            f"{source}: {ERR_EMPTY} (the file has no header and no rows); fix: write a header row "
            f"({', '.join(REQUIRED_COLUMNS)}, attributes...) and one row per image"
        ) from err
    except Exception as err:  # pandas/pyarrow raise many types for malformed files
        raise ManifestError(
            f"{source}: {ERR_UNPARSEABLE} as {suffix[1:]} ({type(err).__name__}: {_one_line(err)}); "
            f"fix: re-export the {what} as a valid {suffix[1:]} file"
        ) from err
    return frame.reset_index(drop=True)


def load_manifest(
    path: str | os.PathLike[str],
    *,
    attributes: Sequence[str] | None = None,
    images: Literal["verify", "exist", "skip"] = "verify",
    allow_outside_root: bool = False,
    outputs: str | None = None,
    inputs: str | None = None,
    bins: Mapping[str, str | Sequence[float] | Bins] | None = None,
    missing: Literal["error", "drop", "group"] = "error",
) -> Manifest:
    """Read and validate a manifest.

    Checks, in order (the first failing check raises): the file exists and has a supported
    suffix; it parses and has rows; it has ``path`` and ``subject``; every named attribute is a
    non-reserved column; no ``path``/``subject``/``split``/``mask_path`` value is blank, nor
    (with ``missing="error"``) an attribute's; ``split`` values are in :data:`SPLITS`; skin-tone
    scale attributes (:data:`TONE_SCALES`) hold numbers on their scale; a binned attribute holds
    numbers inside its edges, and an unbinned numeric attribute has at most
    :data:`~genfair.datasets.binning.MAX_CATEGORIES` distinct values; paths (and mask paths) are relative and
    stay inside the manifest's folder (unless ``allow_outside_root``); paths are unique; each
    subject has one value of every attribute and one split; then, unless ``images="skip"``,
    every image file (and mask file) exists, and (``images="verify"``) PIL can parse every
    image's (and mask's) header in an 8-bit mode (pixels are not decoded). Everything before the
    image check is O(rows) and touches no image file.

    With ``outputs`` (and ``inputs``) named, also: each is a non-reserved column that is not an
    attribute (the two differ); at least one row has an output; with ``inputs``, a row has an
    input exactly when it has an output; the non-blank output (and input) paths are held to the
    rules of ``path`` (relative, inside the folder, and with the image check: exist and parse);
    no two rows share an output path (inputs may repeat).

    Args:
        path: the manifest, ``.csv`` or ``.parquet``.
        attributes: the sensitive attribute columns. ``None`` means every non-reserved column.
        images: what to check of the image files, one of :data:`IMAGE_CHECKS`: ``"verify"``
            (exist, and PIL parses each header: about 0.1 ms per file), ``"exist"`` (one
            directory listing per folder), ``"skip"`` (nothing: a bad image then fails when it is
            first read).
        allow_outside_root: accept absolute paths and paths that climb out of the manifest's
            folder with ``..``.
        outputs: the column that holds each audited row's output image (the model's result, e.g.
            ``"restored"``); blank for rows that are not audited. Never an attribute.
        inputs: with ``outputs``, the column that holds the low-resolution input the model saw
            for each row with an output (super-resolution). Never an attribute.
        bins: numeric attributes to audit as intervals, ``column -> spec``: edges (``"18,30,45,65"``
            or ``[18, 30, 45, 65]``) or ``"quantiles:K"`` (edges at the quantiles of the people);
            see :mod:`genfair.datasets.binning`. The column's values become labels such as
            ``"age 18-29"``; :attr:`Manifest.bins` keeps the edges.
        missing: what a blank attribute value does, one of :data:`MISSING_RULES`: ``"error"``
            (refuse the manifest), ``"drop"`` (leave the row out; :attr:`Manifest.notes` says how
            many) or ``"group"`` (the value becomes :data:`MISSING_GROUP`, a group of its own).

    Returns:
        The validated :class:`Manifest`; :attr:`Manifest.outputs` / :attr:`Manifest.inputs` name
        the columns, whose blank cells are ``""``.

    Raises:
        ValueError: a bad ``images``, or ``inputs`` without ``outputs``.
        ManifestError: one line naming the file, the first offending row, the column and the fix.

    Example:
        >>> manifest = load_manifest("data/manifest.csv", attributes=["gender"])  # doctest: +SKIP
        >>> manifest.image_path(0)  # doctest: +SKIP
        PosixPath('data/images/a/a.1.png')
    """
    if images not in IMAGE_CHECKS:
        raise ValueError(f"images must be one of {', '.join(map(repr, IMAGE_CHECKS))}, got {images!r}")
    if inputs is not None and outputs is None:
        raise ValueError(f"inputs={inputs!r} needs outputs=: name the column of the model's output images too")
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_RULES)} (--missing), got {missing!r}")
    bin_specs = parse_bins_mapping(bins)
    source = Path(path)
    raw = read_table(source)
    if len(raw) == 0:
        raise ManifestError(
            f"{source}: {ERR_EMPTY} (a header but no rows); fix: add one row per image"
        )
    columns = [str(c) for c in raw.columns]
    raw.columns = columns
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        hints = "".join(
            f"; did you mean {close[0]!r} for {name!r}?"
            for name in absent
            if (close := difflib.get_close_matches(name, columns, n=1))
        )
        raise ManifestError(
            f"{source}: {ERR_MISSING_COLUMNS}(s) {', '.join(map(repr, absent))} (columns: {columns}){hints}; "
            f"fix: add a column {absent[0]!r} (or rename the one that holds it)"
        )
    image_columns = _resolve_image_columns(source, columns, outputs=outputs, inputs=inputs)
    attrs = _resolve_attributes(source, columns, attributes, image_columns=image_columns)
    for column in bin_specs:
        if column not in attrs:
            raise ManifestError(
                f"{source}: {ERR_BINS_NOT_ATTRIBUTE}: {bin_specs[column].spec} (attributes: {list(attrs)}); fix: add "
                f"{column!r} to the attributes (audit run --attributes {','.join((*attrs, column))}) or drop its bins"
            )
    checker = _Checker(source, raw, inferred=attrs if attributes is None else ())
    frame = raw.copy()
    has_mask = MASK_COLUMN in columns
    optional = tuple(c for c in ("split", MASK_COLUMN) if c in columns)
    for column in (*REQUIRED_COLUMNS, *optional):
        frame[column] = checker.as_str(frame, column)
    for column in attrs:
        frame[column] = checker.as_str(frame, column, blank_allowed=missing != "error")
    notes: list[str] = []
    if missing == "drop":
        frame = checker.drop_blank(frame, attrs, notes)
    checker.check_split_values(frame)
    for column in attrs:
        if column.lower() in TONE_SCALES:
            frame[column] = checker.check_tone_scale(frame, column)
    edges: dict[str, tuple[float, ...]] = {}
    for column in attrs:
        frame[column] = checker.check_numeric(frame, column, bin_specs.get(column), edges, notes)
    if missing == "group":
        checker.group_blank(frame, attrs, notes)
    checker.check_paths(frame, allow_outside_root=allow_outside_root)
    if has_mask:
        checker.check_paths(frame, MASK_COLUMN, unique=False, allow_outside_root=allow_outside_root)
    for column in attrs:
        checker.check_constant_per_subject(frame, column, ERR_CONFLICTING_ATTRIBUTE)
    if "split" in columns:
        checker.check_constant_per_subject(frame, "split", ERR_SUBJECT_IN_TWO_SPLITS)
    present = None  # (N,) bool: the rows with an output
    if outputs is not None:
        for column in image_columns:
            frame[column] = _optional_str(frame[column])
        present = checker.check_output_cells(frame, outputs, inputs)
        for column in image_columns:
            checker.check_paths(
                frame,
                column,
                unique=column == outputs,
                allow_outside_root=allow_outside_root,
                present=present,
                duplicate=(ERR_DUPLICATE_OUTPUT, _ONE_OUTPUT_EACH),
            )
    root = source.parent
    if images != "skip":
        original_sizes = checker.check_images(frame, root, verify=images == "verify")
        if has_mask:
            checker.check_images(frame, root, verify=images == "verify", column=MASK_COLUMN)
        for column in image_columns:
            blank = "blank the cell" if column == outputs else f"blank it and the row's {outputs} cell"
            sizes = checker.check_images(
                frame,
                root,
                verify=images == "verify",
                column=column,
                present=present,
                drop=f"{blank} (the row is then not audited)",
            )
            if column == outputs:
                checker.check_aspect_ratios(frame, column, sizes, original_sizes)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    logger.debug("loaded manifest %s: %d rows, attributes %s, outputs %s", source, len(frame), attrs, outputs)
    return Manifest(
        frame=frame, root=root, source=source, attributes=attrs, sha256=digest, outputs=outputs, inputs=inputs,
        bins=edges, notes=tuple(notes), file_rows=checker.origin,
    )


_ONE_OUTPUT_EACH = "give each row its own output file (two rows cannot share one output)"


def _resolve_image_columns(
    source: Path, columns: list[str], *, outputs: str | None, inputs: str | None
) -> tuple[str, ...]:
    """The named outputs and inputs columns, in that order, after checking each is a usable column."""
    named = tuple((argument, name) for argument, name in (("outputs", outputs), ("inputs", inputs)) if name is not None)
    for argument, name in named:
        holds = "output image" if argument == "outputs" else "low-resolution input image"
        if name in RESERVED_COLUMNS:
            others = [c for c in columns if c not in RESERVED_COLUMNS][:3] or ["restored"]
            raise ManifestError(
                f"{source}: {ERR_RESERVED_IMAGE_COLUMN}: {argument}={name!r} "
                f"(reserved: {', '.join(RESERVED_COLUMNS)}); fix: name the column that holds each row's {holds} path, "
                f"e.g. one of {others}, or add one"
            )
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ManifestError(
                f"{source}: {ERR_UNKNOWN_IMAGE_COLUMN}: {argument}={name!r} (columns: {columns}){hint}; "
                f"fix: name the column that holds each row's {holds} path, or add a {name!r} column"
            )
    if outputs is not None and outputs == inputs:
        raise ManifestError(
            f"{source}: {ERR_SAME_IMAGE_COLUMN} {outputs!r}; fix: name the column of the model's output images "
            f"as outputs and the column of the low-resolution images it was given as inputs"
        )
    return tuple(name for _, name in named)


def _optional_str(series: pd.Series) -> pd.Series:
    """``series`` as ``str``: missing and whitespace-only cells ``""``, the others verbatim."""
    missing = series.isna().to_numpy()
    text = series.astype("str").where(~missing, "")
    return text.where(text.str.strip() != "", "")


def _resolve_attributes(
    source: Path, columns: list[str], attributes: Sequence[str] | None, *, image_columns: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The attribute columns: the named ones after checks, or (``None``) every column not reserved
    and not one of ``image_columns`` (the outputs and inputs columns)."""
    candidates = [c for c in columns if c not in RESERVED_COLUMNS and c not in image_columns]
    if attributes is None:
        return tuple(candidates)
    if isinstance(attributes, str):
        attributes = (attributes,)
    attrs = tuple(str(a) for a in attributes)
    for name in attrs:
        if name in RESERVED_COLUMNS:
            raise ManifestError(
                f"{source}: {ERR_RESERVED_ATTRIBUTE}: {name!r} (reserved: {', '.join(RESERVED_COLUMNS)}); "
                f"fix: name only sensitive attribute columns such as {candidates[:3] or ['gender']}"
            )
        if name in image_columns:
            role = "outputs" if name == image_columns[0] else "inputs"
            raise ManifestError(
                f"{source}: {ERR_IMAGE_COLUMN_AS_ATTRIBUTE}: {name!r} is the {role} column (it holds image paths); "
                f"fix: leave it out of the attributes, e.g. name {candidates[:3] or ['gender']}"
            )
    seen = {a for i, a in enumerate(attrs) if a in attrs[:i]}
    if seen:
        raise ManifestError(
            f"{source}: {ERR_DUPLICATE_ATTRIBUTE}: {sorted(seen)} in {list(attrs)}; fix: name each attribute once"
        )
    for name in attrs:
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ManifestError(
                f"{source}: {ERR_UNKNOWN_ATTRIBUTE}: {name!r} (columns: {columns}); "
                f"fix: {hint}name one of the manifest's columns or add a {name!r} column"
            )
    return attrs
