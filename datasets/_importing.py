"""What the dataset importers share: checking their inputs, reading label files, writing the manifest safely.

An importer reads a data set's own files, builds a frame (``path`` relative to the manifest's
folder, ``subject``, attribute columns) and hands it to :func:`write_manifest`, which writes it to a
temporary file beside ``out``, validates that file with :func:`~genfair.datasets.load_manifest` and
only then renames it to ``out``: a bad import never leaves a manifest behind. Every problem is a
:class:`~genfair.datasets.ManifestError` with one line: the file (and line), the problem, the fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path

import pandas as pd

from .manifest import SUPPORTED_SUFFIXES, ManifestError, load_manifest

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
"""Image file suffixes (case-insensitive) the importers pick up."""

ERR_IMAGES_DIR = "images folder not found"
ERR_OUT_SUFFIX = "unsupported manifest format"
ERR_INPUT_NOT_FOUND = "file not found"
ERR_UNREADABLE_TEXT = "cannot read the file as text"
ERR_DUPLICATE_IMAGE = "image listed twice"
ERR_NO_IMAGES = "no images found"


def output_path(out: str | os.PathLike[str]) -> Path:
    """``out`` as a :class:`~pathlib.Path`, after checking that its suffix names a manifest format."""
    target = Path(out)
    if target.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ManifestError(
            f"{target}: {ERR_OUT_SUFFIX} {target.suffix or '(no suffix)'!r} for the output manifest; "
            f"fix: name it with one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return target


def images_folder(images_dir: str | os.PathLike[str], *, expected: str, fix: str) -> Path:
    """``images_dir`` as a :class:`~pathlib.Path`, after checking that it is a folder.

    Args:
        images_dir: the data set's image folder.
        expected: what the folder should hold, for the message (``"<subject>/<subject>.<n>.jpg"``).
        fix: what to pass instead.
    """
    images = Path(images_dir)
    if not images.is_dir():
        state = " (it is a file)" if images.exists() else ""
        raise ManifestError(f"{images}: {ERR_IMAGES_DIR}{state} (expected {expected} inside); fix: {fix}")
    return images


def read_lines(path: str | os.PathLike[str], *, what: str, fix: str) -> list[tuple[int, str]]:
    """The non-blank lines of a text file, as ``(1-based line number, text without the line end)``.

    Args:
        path: the file.
        what: what the file is, for the message (``"CelebA's identity file"``).
        fix: what to pass when the file is missing.
    """
    source = input_file(path, what=what, fix=fix)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(
            f"{source}: {ERR_UNREADABLE_TEXT} ({what}; {err.reason} at byte {err.start}); fix: {fix}"
        ) from err
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def input_file(path: str | os.PathLike[str], *, what: str, fix: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, after checking that it is a file."""
    source = Path(path)
    if not source.is_file():
        state = "is a folder" if source.exists() else "does not exist"
        raise ManifestError(f"{source}: {ERR_INPUT_NOT_FOUND} ({what} {state}); fix: {fix}")
    return source


def at(source: Path, line: int) -> str:
    """``"<file>: line <n>"``: where a problem is, as messages name it."""
    return f"{source}: line {line}"


class LineProblems:
    """The bad lines of the input files: raises for the first, counting the others."""

    def __init__(self) -> None:
        self.first: tuple[str, str, str] | None = None
        self.count = 0

    def add(self, where: str, problem: str, fix: str) -> None:
        """Note a bad line: ``where`` (see :func:`at`), the problem and its fix."""
        if self.first is None:
            self.first = (where, problem, fix)
        self.count += 1

    def raise_first(self) -> None:
        """Raise :class:`ManifestError` for the first bad line, if any."""
        if self.first is None:
            return
        where, problem, fix = self.first
        raise ManifestError(f"{where}: {problem}{and_more(self.count - 1, 'bad line', 'bad lines')}; fix: {fix}")


def and_more(more: int, one: str, many: str | None = None) -> str:
    """``"; 3 more bad lines"``: how many others share a problem (``""`` for none), for the end of a message."""
    if more <= 0:
        return ""
    return f"; {more} more {one if more == 1 or many is None else many}"


def listing(names: Sequence[str], *, first: int = 3) -> str:
    """``'a', 'b', 'c' and 4 more``: the first few of ``names``, quoted, and how many others."""
    shown = ", ".join(repr(name) for name in names[:first])
    return shown + (f" and {len(names) - first} more" if len(names) > first else "")


def scan_images(images: Path) -> list[str]:
    """The image files below ``images`` (any depth), as sorted POSIX paths relative to it.

    Hidden files and folders (``.name``, such as macOS's ``._000001.jpg``) are left out, and so is
    every file whose suffix is not in :data:`IMAGE_SUFFIXES`.
    """
    found: list[str] = []
    for folder, folders, files in os.walk(images):
        folders[:] = [name for name in folders if not name.startswith(".")]
        relative = os.path.relpath(folder, images)
        prefix = "" if relative == "." else Path(relative).as_posix() + "/"
        found.extend(
            prefix + name
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        )
    return sorted(found)


def check_unique(names: Sequence[str], where: Sequence[str], *, fix: str) -> None:
    """Raise when a name is listed twice, naming both places (``where[i]`` is where ``names[i]`` is)."""
    seen: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for position, name in enumerate(names):
        earlier = seen.setdefault(name, position)
        if earlier != position:
            repeats.append((earlier, position))
    if repeats:
        earlier, position = repeats[0]
        also = and_more(len(repeats) - 1, "repeated name", "repeated names")
        raise ManifestError(
            f"{where[position]}: {ERR_DUPLICATE_IMAGE} {names[position]!r} (already at {where[earlier]}){also}; "
            f"fix: {fix}"
        )


def require_all(
    names: Sequence[str],
    where: Sequence[str],
    present: Container[str],
    *,
    problem: Callable[[str], str],
    fix: str,
) -> None:
    """Raise when a name is not in ``present``, naming the first one, where it is listed, and the count.

    Args:
        names: the listed names.
        where: ``where[i]`` is where ``names[i]`` is listed (see :func:`at`).
        present: the names that are fine (found on disk, given an identity, ...).
        problem: the problem of one missing name.
        fix: what to do.
    """
    missing = [position for position, name in enumerate(names) if name not in present]
    if missing:
        first = missing[0]
        also = and_more(len(missing) - 1, f"like this ({len(missing)} of {len(names)})")
        raise ManifestError(f"{where[first]}: {problem(names[first])}{also}; fix: {fix}")


def check_on_disk(
    names: Sequence[str], where: Sequence[str], images: Path, found: Iterable[str], *, fix: str
) -> None:
    """Raise when a listed image is not a file in ``images`` (``found``: :func:`scan_images`'s list)."""
    present = set(found)
    present.update(name for name in names if name not in present and (images / name).is_file())
    require_all(names, where, present, problem=lambda name: f"image file not found: {images / name}", fix=fix)


def warn_unlisted(
    found: Sequence[str], listed: Container[str], images: Path, *, what: str, log: logging.Logger
) -> None:
    """Log (WARNING, on the importer's logger ``log``) the images in ``images`` that ``what`` does not list."""
    unlisted = [name for name in found if name not in listed]
    if unlisted:
        log.warning("%s: %d image(s) are in no %s and are left out: %s", images, len(unlisted), what, listing(unlisted))


def relative_paths(images: Path, names: Iterable[str], manifest_dir: Path) -> list[str]:
    """``images / name`` for each name, relative to ``manifest_dir`` (POSIX; ``..`` when it must climb)."""
    prefix = Path(os.path.relpath(images, manifest_dir)).as_posix()
    return list(names) if prefix == "." else [f"{prefix}/{name}" for name in names]


def write_manifest(frame: pd.DataFrame, target: Path, *, attributes: Sequence[str] | None = None) -> pd.DataFrame:
    """Write ``frame`` to a temporary file beside ``target``, validate it, then rename it to ``target``.

    Args:
        frame: the manifest: ``path`` (relative to ``target``'s folder), ``subject``, other columns.
        target: ``.csv`` or ``.parquet`` (see :func:`output_path`); its folder is created if missing.
        attributes: the attribute columns to validate (``None``: every non-reserved column).

    Returns:
        The validated manifest's frame (every cell a ``str``).

    Raises:
        ManifestError: the manifest fails validation (the message names ``target``; nothing is written).
    """
    manifest_dir = target.parent
    manifest_dir.mkdir(parents=True, exist_ok=True)
    staging = manifest_dir / f".{target.stem}.importing{target.suffix}"
    try:
        if target.suffix.lower() == ".csv":
            frame.to_csv(staging, index=False, lineterminator="\n")
        else:
            frame.to_parquet(staging, index=False)
        try:
            # relative paths may climb to the images: the importer chose them, the audit asks again
            manifest = load_manifest(staging, attributes=attributes, allow_outside_root=True)
        except ManifestError as err:
            message = str(err).replace(str(staging), str(target))
            raise ManifestError(f"{message} ({target} was not written)") from err
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    logger.info("wrote %s: %d images of %d subjects", target, len(frame), frame["subject"].nunique())
    return manifest.frame
