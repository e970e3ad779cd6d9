"""The row-level checks of a manifest, and the phrases of their errors.

Each check raises :class:`ManifestError` with one line: the file, the first offending row (its
1-based data row and, for CSV, its line number), the column, the problem (one of the ``ERR_*``
phrases, so callers and tests can match them), how many more rows share it, and the fix.
:func:`genfair.datasets.load_manifest` runs them in order; this module holds what they check.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .binning import MAX_CATEGORIES, Bins, bin_column, numeric_values, suggest_bins

MASK_COLUMN = "mask_path"
"""The optional column of per-image mask files (relative paths, checked like ``path``)."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The allowed values of the ``split`` column."""
TONE_SCALES: dict[str, tuple[str, float, float, bool]] = {
    "fitzpatrick": ("Fitzpatrick skin types", 1, 6, True),
    "monk": ("Monk Skin Tone steps", 1, 10, True),
    "monk_skin_tone": ("Monk Skin Tone steps", 1, 10, True),
    "ita": ("Individual Typology Angles in degrees", -90, 90, False),
    "skin_tone_ita": ("Individual Typology Angles in degrees", -90, 90, False),
}
"""Attribute columns (by lowercase name) that hold a skin-tone scale: ``name -> (what, low,
high, integer)``; their values must be numbers in ``[low, high]`` (integers when ``integer``)."""
MISSING_GROUP = "unknown"
"""The group of blank sensitive values under ``missing="group"``."""
UNSUPPORTED_MODES: frozenset[str] = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
"""PIL image modes that cannot become 8-bit RGB or greyscale without clipping."""

# Problem phrases, one per check; every ManifestError message contains exactly one of them.
ERR_NOT_FOUND = "manifest not found"
ERR_UNSUPPORTED_FORMAT = "unsupported manifest format"
ERR_UNPARSEABLE = "cannot read manifest"
ERR_EMPTY = "empty manifest"
ERR_MISSING_COLUMNS = "missing required column"
ERR_RESERVED_ATTRIBUTE = "reserved column named as an attribute"
ERR_DUPLICATE_ATTRIBUTE = "attribute named twice"
ERR_UNKNOWN_ATTRIBUTE = "attribute is not a column"
ERR_BLANK_VALUE = "blank value"
ERR_INVALID_SPLIT = "invalid split"
ERR_ABSOLUTE_PATH = "path is not relative"
ERR_OUTSIDE_ROOT = "path leaves the manifest's folder"
ERR_DUPLICATE_PATH = "duplicate path"
ERR_TONE_SCALE = "value is not on the skin-tone scale"
ERR_NUMERIC_ATTRIBUTE = "numeric attribute with many values"
ERR_NOT_A_NUMBER = "value to bin is not a number"
ERR_OUTSIDE_BINS = "value outside the bins"
ERR_BINS_NOT_ATTRIBUTE = "bins for a column that is not an attribute"
ERR_ALL_DROPPED = "every row has a blank sensitive value"
ERR_CONFLICTING_ATTRIBUTE = "subject has two values of an attribute"
ERR_SUBJECT_IN_TWO_SPLITS = "subject is in two splits"
ERR_MISSING_IMAGE = "image file not found"
ERR_UNREADABLE_IMAGE = "unreadable image file"
ERR_ASPECT_RATIO = "output's aspect ratio differs from the original's"
ASPECT_TOLERANCE = 0.01
"""The largest relative difference of an output's aspect ratio (width / height) from its original's."""
ERR_IMAGE_MODE = "unsupported image mode"
ERR_UNKNOWN_IMAGE_COLUMN = "image column is not a column"
ERR_RESERVED_IMAGE_COLUMN = "reserved column named as an image column"
ERR_SAME_IMAGE_COLUMN = "outputs and inputs name the same column"
ERR_IMAGE_COLUMN_AS_ATTRIBUTE = "image column named as an attribute"
ERR_NO_OUTPUTS = "no row has an output"
ERR_DUPLICATE_OUTPUT = "duplicate output path"
ERR_INPUT_WITHOUT_OUTPUT = "input without an output"
ERR_OUTPUT_WITHOUT_INPUT = "output without an input"


class ManifestError(ValueError):
    """A manifest (or the images it lists) is missing, malformed or inconsistent.

    The message is one line naming the file, the row, the column, the problem and the fix.
    """


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10}
_LIST_FOLDER_FROM = 32  # a folder named this many times is listed once instead of stat-ing each of its files
# what PIL raises for files that are not images, are cut short or corrupt, or claim absurd sizes
_UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _climbs_out(paths: pd.Series) -> np.ndarray:
    """``(N,)`` bool: whether each relative path's ``..`` parts climb above its starting folder.

    Reads the text only (``/`` and ``\\`` both separate parts); symbolic links are not resolved.
    """
    candidates = paths.str.contains(r"(?:^|[/\\])\.\.(?:[/\\]|$)", regex=True).to_numpy(dtype=bool)
    climbs = np.zeros(len(paths), dtype=bool)
    for position in np.flatnonzero(candidates):
        depth = 0
        for part in re.split(r"[/\\]", paths.iat[position]):
            if part == "..":
                depth -= 1
                if depth < 0:
                    climbs[position] = True
                    break
            elif part not in ("", "."):
                depth += 1
    return climbs


def _tidy_paths(paths: pd.Series) -> pd.Series:
    """Paths with ``.`` parts, repeated and trailing ``/`` removed (``img/./a.png`` -> ``img/a.png``).

    ``..`` is kept: ``a/../b`` need not be ``b`` when ``a`` is a symbolic link.
    """
    untidy = paths.str.contains(r"(?:^|/)\.(?:/|$)|//|/$", regex=True).to_numpy(dtype=bool)
    if not untidy.any():
        return paths
    tidy = paths.copy()
    for position in np.flatnonzero(untidy):
        text = paths.iat[position]
        lead = "/" if text.startswith("/") else ""
        tidy.iat[position] = lead + "/".join(part for part in text.split("/") if part not in ("", "."))
    return tidy


def _existing(files: list[str]) -> np.ndarray:
    """``(N,)`` bool: whether each file exists (and is a file, after symbolic links).

    A folder that holds many of the files is listed once (``os.scandir``: one directory read
    instead of one ``stat`` per file, which matters on network file systems); other files, and
    any name missing from its folder's listing, are ``stat``-ed.
    """
    parts = [os.path.split(file) for file in files]
    uses = collections.Counter(folder for folder, _ in parts)
    listings: dict[str, frozenset[str]] = {}
    for folder, count in uses.items():
        if count >= _LIST_FOLDER_FROM:
            try:
                with os.scandir(folder or ".") as entries:
                    listings[folder] = frozenset(entry.name for entry in entries if entry.is_file())
            except OSError:  # no such folder, not a folder, no permission: stat the files instead
                listings[folder] = frozenset()
    found = np.empty(len(files), dtype=bool)
    for position, (file, (folder, name)) in enumerate(zip(files, parts)):
        listing = listings.get(folder)
        found[position] = (listing is not None and name in listing) or os.path.isfile(file)
    return found


def _first_position(keys: pd.Series) -> np.ndarray:
    """For each row, the 0-based position of the first row with the same key: ``(N,)`` int."""
    positions = pd.Series(np.arange(len(keys)))
    return positions.groupby(keys.to_numpy(), sort=False).transform("min").to_numpy()


class _Checker:
    """Row-level checks on a manifest frame; each raises on the first offending row."""

    def __init__(self, source: Path, frame: pd.DataFrame, *, inferred: tuple[str, ...] = ()) -> None:
        self.source = source
        self.frame = frame
        self.inferred = inferred  # attribute columns taken by default (attributes=None)
        self.is_csv = source.suffix.lower() == ".csv"
        self._line_numbers: list[int] | None = None
        self.origin: np.ndarray | None = None  # (N,) the file's data row of each kept row, once rows are dropped

    def row(self, position: int) -> int:
        """The 0-based data row in the file of the frame's row ``position`` (they differ once rows are dropped)."""
        return position if self.origin is None else int(self.origin[position])

    # -- locating rows -------------------------------------------------------------------
    def _line(self, position: int) -> int | None:
        """The CSV line (1-based) where data row ``position`` (0-based) starts."""
        if not self.is_csv:
            return None
        if self._line_numbers is None:
            starts: list[int] = []
            with self.source.open(newline="", encoding="utf-8", errors="replace") as handle:
                reader = csv.reader(handle)
                previous_end = 0
                for record in reader:
                    start, previous_end = previous_end + 1, reader.line_num
                    if record:  # pandas skips blank lines
                        starts.append(start)
            self._line_numbers = starts[1:]  # drop the header
        if position < len(self._line_numbers):
            return self._line_numbers[position]
        return None

    def where(self, position: int, column: str) -> str:
        """``"<file>: data row R (line L), column 'c'"`` for a 0-based row position."""
        row = self.row(position)
        line = self._line(row)
        at_line = f" (line {line})" if line is not None else ""
        return f"{self.source}: data row {row + 1}{at_line}, column {column!r}"

    def fail(self, bad: np.ndarray, column: str, problem: Callable[[int], str], fix: str) -> None:
        """Raise for the first ``True`` in ``bad`` (a boolean mask over rows), if any.

        Args:
            bad: ``(N,)`` bool, one entry per data row.
            column: the column at fault.
            problem: describes the problem at a 0-based row position (starts with an ``ERR_*`` phrase).
            fix: what the user should do.
        """
        positions = np.flatnonzero(bad)
        if len(positions) == 0:
            return
        first = int(positions[0])
        more = len(positions) - 1
        also = f"; {more} more row{'s' if more != 1 else ''} like this" if more else ""
        raise ManifestError(f"{self.where(first, column)}: {problem(first)}{also}; fix: {fix}")

    def _plausible_attribute(self, column: str) -> bool:
        """Whether ``column`` of :attr:`frame` has no blanks and one value per subject."""
        values = self.frame[column].astype("str").where(self.frame[column].notna(), "")
        if (values.str.strip() == "").any():
            return False
        return bool(values.groupby(self.frame["subject"].astype("str")).nunique().max() <= 1)

    def _not_an_attribute(self, column: str) -> str:
        """A hint for columns that became attributes only because none were named."""
        if column not in self.inferred:
            return ""
        others = [c for c in self.inferred if c != column and self._plausible_attribute(c)]
        named = others or ["gender"]
        return (
            f", or name the sensitive attributes (e.g. audit run --attributes {','.join(named)}; "
            f"attributes={named}) to leave {column!r} out"
        )

    # -- checks --------------------------------------------------------------------------
    def as_str(self, frame: pd.DataFrame, column: str, *, blank_allowed: bool = False) -> pd.Series:
        """Column ``column`` as ``str``, after checking that no value is missing or blank
        (``blank_allowed``: missing and blank values become ``""``)."""
        series = frame[column]
        missing = series.isna().to_numpy()
        if series.dtype.kind == "f":  # parquet ints with nulls: 3.0 -> "3"
            values = series.to_numpy(dtype=float, na_value=np.nan)
            finite = values[~missing]
            if len(finite) and np.all(finite == np.round(finite)):
                series = series.astype("Int64")
        text = series.astype("str").where(~missing, "")
        blank = (text.str.strip() == "").to_numpy()
        if blank_allowed:
            return text.where(~blank, "")
        what = {
            "path": "the image's path",
            "subject": "the subject id",
            "split": "train, val or test",
            MASK_COLUMN: f"the mask's path (every row needs one while there is a {MASK_COLUMN} column)",
        }
        self.fail(
            blank,
            column,
            lambda i: f"{ERR_BLANK_VALUE} {text.iat[i]!r}",
            f"fill in {what.get(column, f'the {column} of this row')} or drop the row{self._not_an_attribute(column)}"
            + ("" if column in what else
               ", or leave such rows out (--missing drop) or make them a group (--missing group)"),
        )
        return text

    def drop_blank(self, frame: pd.DataFrame, attrs: tuple[str, ...], notes: list[str]) -> pd.DataFrame:
        """``frame`` without the rows that have a blank attribute (``--missing drop``), renumbered;
        :attr:`origin` keeps each kept row's data row in the file."""
        blank = np.zeros(len(frame), dtype=bool)
        for column in attrs:
            blank |= (frame[column] == "").to_numpy()
        if not blank.any():
            return frame
        columns = [column for column in attrs if (frame[column] == "").any()]
        if blank.all():
            raise ManifestError(
                f"{self.source}: {ERR_ALL_DROPPED} ({', '.join(columns)}), so --missing drop leaves nothing; "
                f"fix: fill in the values, name other attributes, or make the blanks a group (--missing group)"
            )
        people = frame.loc[blank, "subject"].nunique()
        notes.append(f"left out {int(blank.sum())} image(s) of {people} subject(s) with a blank "
                     f"{' or '.join(columns)} (--missing drop)")
        self.origin = np.flatnonzero(~blank)
        kept = frame[~blank].reset_index(drop=True)
        self.frame = self.frame.iloc[self.origin].reset_index(drop=True)
        return kept

    @staticmethod
    def group_blank(frame: pd.DataFrame, attrs: tuple[str, ...], notes: list[str]) -> None:
        """Blank attribute values become :data:`MISSING_GROUP` in place (``--missing group``)."""
        for column in attrs:
            blank = (frame[column] == "").to_numpy()
            if blank.any():
                frame[column] = frame[column].where(~blank, MISSING_GROUP)
                people = frame.loc[blank, "subject"].nunique()
                notes.append(f"{int(blank.sum())} image(s) of {people} subject(s) with a blank {column} form the "
                             f"group {column}={MISSING_GROUP!r} (--missing group)")

    def check_numeric(
        self, frame: pd.DataFrame, column: str, bins: Bins | None, edges: dict[str, tuple[float, ...]],
        notes: list[str],
    ) -> pd.Series:
        """Column ``column`` binned by ``bins`` (its edges recorded in ``edges``), or as it is after
        checking that an unbinned numeric column has at most :data:`MAX_CATEGORIES` values.

        Blank cells (``""``, kept by ``--missing group``) stay blank.
        """
        text = frame[column]
        present = (text != "").to_numpy()
        numbers = numeric_values(text)
        subjects = frame["subject"].to_numpy(dtype=object)
        if bins is None:
            distinct = np.unique(numbers[present])
            if not np.all(np.isfinite(numbers[present])) or len(distinct) <= MAX_CATEGORIES:
                return text  # words, or few numbers: categories
            suggestion = suggest_bins(column, numbers[present], subjects[present])
            raise ManifestError(
                f"{self.source}: column {column!r}: {ERR_NUMERIC_ATTRIBUTE} ({len(distinct)} distinct numbers from "
                f"{distinct[0]:g} to {distinct[-1]:g}: each would be a group of its own); fix: bin it, e.g. "
                f"--bins {suggestion} (its quartiles over subjects) or --bins {column}=quantiles:4 "
                f"(bins={{{column!r}: 'quantiles:4'}}), or leave {column!r} out of the attributes"
            )
        self.fail(
            present & ~np.isfinite(numbers),
            column,
            lambda i: f"{ERR_NOT_A_NUMBER} {text.iat[i]!r} (--bins {bins.spec})",
            "write a number, or blank the cell and pass --missing drop or --missing group, or drop the bins",
        )
        if bins.edges is not None:
            low, high = bins.edges[0], bins.edges[-1]
            outside = present & ((numbers < low) | (numbers > high))
            if outside.any():
                values = numbers[present]
                wider = (*((math.floor(values.min()),) if values.min() < low else ()), *bins.edges,
                         *((math.ceil(values.max()),) if values.max() > high else ()))
                self.fail(
                    outside,
                    column,
                    lambda i: f"{ERR_OUTSIDE_BINS}: {text.iat[i]!r} (--bins {bins.spec} covers {low:g} to {high:g})",
                    f"add edges that cover every value, e.g. --bins {Bins(column, edges=wider).spec}",
                )
        labels, used = bin_column(numbers[present], subjects[present], bins)
        edges[column] = used
        binned = text.copy()
        binned[present] = labels
        groups = ", ".join(dict.fromkeys(sorted(labels.tolist())))
        notes.append(f"{column} binned by --bins {bins.spec} into {groups}")
        return binned

    def check_split_values(self, frame: pd.DataFrame) -> None:
        if "split" not in frame.columns:
            return
        split = frame["split"]
        bad = ~split.isin(SPLITS).to_numpy()
        self.fail(
            bad,
            "split",
            lambda i: f"{ERR_INVALID_SPLIT} {split.iat[i]!r}",
            f"use one of {', '.join(SPLITS)} (lowercase), or drop the split column for a seeded subject-disjoint split",
        )

    def check_tone_scale(self, frame: pd.DataFrame, column: str) -> pd.Series:
        """Column ``column`` (a :data:`TONE_SCALES` attribute) after checking its values are on the scale.

        Returns:
            The column as ``str``; integer scales written canonically (``"03"``, ``"3.0"`` -> ``"3"``).
        """
        what, low, high, integer = TONE_SCALES[column.lower()]
        text = frame[column]
        numbers = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(numbers) | (numbers < low) | (numbers > high)
            if integer:
                bad |= numbers != np.round(numbers)
        bad &= (text != "").to_numpy()  # blank values (--missing group) are not on any scale
        scale = f"{what}, {'integers' if integer else 'numbers'} from {low:g} to {high:g}"
        positions = np.flatnonzero(bad)
        if len(positions):
            first = str(text.iat[int(positions[0])]).strip()
            roman = _ROMAN.get(first.upper())
            hint = (
                f"write {roman} for {first!r}"
                if roman is not None and integer and roman <= high
                else f"write a number from {low:g} to {high:g}"
            )
            self.fail(
                bad,
                column,
                lambda i: f"{ERR_TONE_SCALE} {text.iat[i]!r} ({column!r} holds {scale})",
                f"{hint} (or fill in the right value), or rename the column if it is not this scale",
            )
        if not integer:
            return text
        canonical = pd.Series(np.round(np.nan_to_num(numbers)).astype(np.int64), index=text.index).astype("str")
        return canonical.where(text != "", "")

    def check_output_cells(self, frame: pd.DataFrame, outputs: str, inputs: str | None) -> np.ndarray:
        """Check which rows have an output (and, with ``inputs``, an input exactly for those rows).

        Args:
            frame: the manifest, ``outputs`` (and ``inputs``) as ``str`` with ``""`` for blank cells.
            outputs: the column of output image paths.
            inputs: the column of low-resolution input paths, or ``None``.

        Returns:
            ``(N,)`` bool: whether each row has an output.
        """
        output = frame[outputs]
        present = (output != "").to_numpy(dtype=bool)
        if not present.any():
            raise ManifestError(
                f"{self.source}: column {outputs!r}: {ERR_NO_OUTPUTS} (all {len(output)} cells are blank); "
                f"fix: fill in the output image path of the rows to audit, "
                f"or name the column that holds them as outputs"
            )
        if inputs is None:
            return present
        given = frame[inputs]
        has_input = (given != "").to_numpy(dtype=bool)
        self.fail(
            has_input & ~present,
            inputs,
            lambda i: f"{ERR_INPUT_WITHOUT_OUTPUT}: {given.iat[i]!r} but the row's {outputs!r} cell is blank",
            f"fill in the row's {outputs} path, or blank its {inputs} cell (the row is then not audited)",
        )
        self.fail(
            present & ~has_input,
            inputs,
            lambda i: f"{ERR_OUTPUT_WITHOUT_INPUT}: blank, but the row's {outputs!r} cell is {output.iat[i]!r}",
            f"fill in the low-resolution image the model was given for this row, or blank its {outputs} cell "
            f"(the row is then not audited)",
        )
        return present

    def check_paths(
        self,
        frame: pd.DataFrame,
        column: str = "path",
        *,
        unique: bool = True,
        allow_outside_root: bool = False,
        present: np.ndarray | None = None,
        duplicate: tuple[str, str] = (ERR_DUPLICATE_PATH, "list each image once (drop or merge the repeated rows)"),
    ) -> None:
        """Check ``column``'s paths: relative, inside the manifest's folder, and (``unique``) not repeated.

        Args:
            frame: the manifest, ``column`` as ``str``.
            column: the column of paths.
            unique: whether two rows may not name one file (two spellings of it count).
            allow_outside_root: skip the relative and inside-the-folder checks.
            present: ``(N,)`` bool, the rows whose cell holds a path (``None``: every row); the
                others (blank cells) are not checked.
            duplicate: the problem phrase and fix for a repeated path.
        """
        paths = frame[column]
        if not allow_outside_root:
            allow = "or allow paths outside it (audit run --allow-outside-root; allow_outside_root=True)"
            # POSIX root, Windows root or drive ("C:", "\\server"): never relative to the manifest
            absolute = paths.str.match(r"^(?:[/\\]|[A-Za-z]:)").to_numpy(dtype=bool)
            self.fail(
                absolute,
                column,
                lambda i: f"{ERR_ABSOLUTE_PATH} {paths.iat[i]!r}",
                f"write paths relative to the manifest's folder {self.source.parent}, {allow}",
            )
            self.fail(
                _climbs_out(paths),
                column,
                lambda i: f"{ERR_OUTSIDE_ROOT} {self.source.parent}: {paths.iat[i]!r} climbs above it with '..'",
                f"move the image into the manifest's folder (or the manifest up), {allow}",
            )
        if not unique:
            return
        tidy = _tidy_paths(paths)
        duplicated = tidy.duplicated(keep="first").to_numpy()
        if present is not None:  # blank cells ("") repeat only each other
            duplicated = duplicated & present
        if duplicated.any():
            first_seen = _first_position(tidy)
            problem, fix = duplicate

            def describe(i: int) -> str:
                first = first_seen[i]
                spelled = f" as {paths.iat[first]!r}" if paths.iat[first] != paths.iat[i] else ""
                return f"{problem} {paths.iat[i]!r} (already at data row {self.row(first) + 1}{spelled})"

            self.fail(duplicated, column, describe, fix)

    def check_constant_per_subject(self, frame: pd.DataFrame, column: str, problem: str) -> None:
        grouped = frame.groupby("subject", sort=False)[column]
        if int(grouped.nunique().max()) <= 1:
            return
        first_value = grouped.transform("first")
        bad = (frame[column] != first_value).to_numpy()
        subject_first = _first_position(frame["subject"])
        n_subjects = int((grouped.nunique() > 1).sum())
        fix = (
            "give all of a subject's rows the same split (splits never share a subject)"
            if column == "split"
            else f"give all of a subject's rows the same {column} (fix the typo, or use two subject ids)"
            f"{self._not_an_attribute(column)}"
        )

        def describe(i: int) -> str:
            subject = frame["subject"].iat[i]
            plural = "s" if n_subjects != 2 else ""
            others = f"; {n_subjects - 1} more subject{plural} affected" if n_subjects > 1 else ""
            return (
                f"{problem}: subject {subject!r} has {column} {frame[column].iat[i]!r} here but "
                f"{first_value.iat[i]!r} at data row {self.row(subject_first[i]) + 1}{others}"
            )

        self.fail(bad, column, describe, fix)

    def check_images(
        self,
        frame: pd.DataFrame,
        root: Path,
        *,
        verify: bool,
        column: str = "path",
        present: np.ndarray | None = None,
        drop: str = "drop the row",
    ) -> np.ndarray:
        """Check that ``column``'s files exist and (``verify``) parse in an 8-bit mode.

        Args:
            frame: the manifest, ``column`` as ``str`` (relative paths).
            root: the manifest's folder.
            verify: also parse each header (no pixels decoded).
            column: the column of paths.
            present: ``(N,)`` bool, the rows whose cell holds a path (``None``: every row); the
                others (blank cells) are not checked.
            drop: the alternative to fixing the file, in the fixes (``"drop the row"``).

        Returns:
            ``(N, 2)`` int64: each checked row's image ``(width, height)`` from its header
            (``verify``), ``-1`` for rows not read.
        """
        root_text = os.fspath(root)
        n_rows = len(frame)
        positions = np.arange(n_rows) if present is None else np.flatnonzero(present)
        values = frame[column].tolist() if present is None else frame[column].to_numpy(dtype=object)[positions].tolist()
        files = [os.path.join(root_text, p) for p in values]
        slot = np.full(n_rows, -1, dtype=np.int64)  # row position -> index in files
        slot[positions] = np.arange(len(positions))
        missing = np.zeros(n_rows, dtype=bool)
        missing[positions[~_existing(files)]] = True
        self.fail(
            missing,
            column,
            lambda i: f"{ERR_MISSING_IMAGE}: {files[slot[i]]}",
            f"correct the path (relative to the manifest's folder) or {drop}"
            + (f" (or the whole {column} column)" if column != "path" and present is None else ""),
        )
        sizes = np.full((n_rows, 2), -1, dtype=np.int64)
        if not verify:
            return sizes
        problems: dict[int, tuple[str, str]] = {}  # row position -> (problem, fix)
        for position, file in zip(positions.tolist(), files):
            try:
                with Image.open(file) as image:
                    mode = image.mode
                    sizes[position] = image.size
                    image.verify()  # PNG: walks the chunks and their checksums; no pixel is decoded
            except _UNREADABLE as err:
                problems[position] = (
                    f"{ERR_UNREADABLE_IMAGE}: {file} ({type(err).__name__}: {_one_line(err)})",
                    f"replace the file with a readable image (PNG, JPEG, ...) or {drop}",
                )
                continue
            if mode in UNSUPPORTED_MODES:
                problems[position] = (
                    f"{ERR_IMAGE_MODE} {mode!r}: {file} (16- or 32-bit pixels would be clipped at 255 when "
                    f"converted to 8-bit RGB or greyscale)",
                    f"save the image as 8-bit (scale it to 0-255 first) or {drop}",
                )
        if problems:
            bad = np.zeros(n_rows, dtype=bool)
            bad[list(problems)] = True
            first = int(np.flatnonzero(bad)[0])
            self.fail(bad, column, lambda i: problems[i][0], problems[first][1])
        return sizes

    def check_aspect_ratios(self, frame: pd.DataFrame, column: str, sizes: np.ndarray, originals: np.ndarray) -> None:
        """Refuse outputs whose aspect ratio (width / height) differs from their original's by more than 1%.

        Args:
            frame: the manifest.
            column: the outputs column.
            sizes: ``(N, 2)`` the outputs' ``(width, height)``, ``-1`` where not read.
            originals: ``(N, 2)`` the originals' ``(width, height)``.
        """
        read = (sizes[:, 0] > 0) & (originals[:, 0] > 0)
        ratio = np.ones(len(frame))
        ratio[read] = (sizes[read, 0] * originals[read, 1]) / (sizes[read, 1] * originals[read, 0])
        bad = read & (np.abs(ratio - 1.0) > ASPECT_TOLERANCE + 1e-12)

        def describe(i: int) -> str:
            return (f"{ERR_ASPECT_RATIO} by {abs(ratio[i] - 1):.1%} (more than {ASPECT_TOLERANCE:.0%}): output "
                    f"{sizes[i, 0]}x{sizes[i, 1]} vs original {originals[i, 0]}x{originals[i, 1]}: "
                    f"{frame[column].iat[i]}")

        first = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        self.fail(bad, column, describe, f"save the output at the original's aspect ratio (e.g. "
                                         f"{originals[first, 0]}x{originals[first, 1]}): a stretched output would be "
                                         f"compared with a differently shaped original, or blank the cell")
