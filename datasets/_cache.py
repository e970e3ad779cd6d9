"""The on-disk cache of generated datasets: write once into a temporary folder, verify, rename.

A generated dataset is a folder holding a manifest (``manifest.csv``), its files,
``config.json`` (the canonical JSON of what was generated, written last by the generator) and
``sha256sums.txt`` (every other file's SHA-256, in ``sha256sum`` format, written after the
generator returns). A folder counts as finished when its ``config.json`` equals the expected JSON,
its manifest has the expected number of rows and every listed file still has its checksum (so a
truncated or altered image is caught before a run trusts it); anything else is regenerated.
Private to :mod:`genfair.datasets`: the synthetic faces and the digits share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["MANIFEST_NAME", "CONFIG_NAME", "CHECKSUMS_NAME", "is_complete", "ensure_cached", "write_checksums", "check_empty_folder"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
CONFIG_NAME = "config.json"
CHECKSUMS_NAME = "sha256sums.txt"
_SEPARATOR = "  "  # between digest and path, as sha256sum writes (`sha256sum -c sha256sums.txt` checks a folder)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_checksums(folder: Path) -> Path:
    """Write ``folder / "sha256sums.txt"``: the SHA-256 of every other file under ``folder``.

    One line per file, ``<hex digest>  <path relative to folder, with />``, sorted by path.

    Returns:
        The checksum file's path.
    """
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name != CHECKSUMS_NAME)
    lines = [f"{_sha256(path)}{_SEPARATOR}{path.relative_to(folder).as_posix()}\n" for path in files]
    target = folder / CHECKSUMS_NAME
    target.write_text("".join(lines), encoding="utf-8")
    return target


def _checksums_match(folder: Path) -> bool:
    """Whether ``folder``'s checksum file lists the manifest and config and every listed file matches."""
    try:
        listed = {}
        for line in (folder / CHECKSUMS_NAME).read_text(encoding="utf-8").splitlines():
            digest, separator, relative = line.partition(_SEPARATOR)
            if not separator or Path(relative).is_absolute() or ".." in Path(relative).parts:
                return False
            listed[relative] = digest
        if not {MANIFEST_NAME, CONFIG_NAME} <= set(listed):
            return False
        for relative, digest in listed.items():
            if _sha256(folder / relative) != digest:
                logger.warning("%s in %s does not match its checksum: regenerating the folder", relative, folder)
                return False
    except (OSError, ValueError):
        return False
    return True


def is_complete(folder: Path, *, config_json: str, n_rows: int) -> bool:
    """Whether ``folder`` holds a finished generation of the config ``config_json``.

    Args:
        folder: a cache folder (may be missing).
        config_json: the expected content of its ``config.json`` (compared as parsed JSON).
        n_rows: the expected number of data rows of its manifest (one line per row, no header).

    Returns:
        True when both match and every file still has the checksum its ``sha256sums.txt`` lists.
    """
    try:
        stored = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        with (folder / MANIFEST_NAME).open("rb") as handle:
            rows = sum(1 for line in handle if line.strip()) - 1
    except (OSError, ValueError):
        return False
    return stored == json.loads(config_json) and rows == n_rows and _checksums_match(folder)


def ensure_cached(
    target: Path, *, config_json: str, n_rows: int, generate: Callable[[Path], object], what: str
) -> Path:
    """The manifest in ``target``, generating the folder first unless it is already complete.

    ``generate(folder)`` writes the dataset into an empty temporary sibling of ``target`` (its
    ``config.json`` last); its checksums are written next, and the finished folder is then
    renamed into place, so a crash or a concurrent run never leaves a half-written dataset where
    a finished one is expected. An incomplete or damaged ``target`` (see :func:`is_complete`) is
    replaced; one finished meanwhile by another process is kept.

    Args:
        target: the cache folder (its parent is created if missing).
        config_json: what ``target/config.json`` must hold (see :func:`is_complete`).
        n_rows: how many rows the manifest must have.
        generate: writes the dataset into the folder it is given.
        what: what is cached, for log messages (``"synthetic faces"``).

    Returns:
        ``target / "manifest.csv"``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_complete(target, config_json=config_json, n_rows=n_rows):
        logger.debug("reusing %s in %s", what, target)
        return target / MANIFEST_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        generate(staging)
        write_checksums(staging)
        if target.exists():
            if is_complete(target, config_json=config_json, n_rows=n_rows):  # another process finished first
                return target / MANIFEST_NAME
            logger.warning("replacing incomplete %s folder %s", what, target)
            shutil.rmtree(target)
        try:
            os.rename(staging, target)
        except OSError:
            if not is_complete(target, config_json=config_json, n_rows=n_rows):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target / MANIFEST_NAME


def check_empty_folder(out: Path, *, what: str, ensure: str) -> None:
    """Raise unless ``out`` is missing or an empty folder (where a generator writes ``what``).

    Raises:
        FileExistsError: ``out`` exists and is not an empty folder; the fix names ``ensure``.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out}: output folder for {what} is not empty; fix: pass a new or empty folder "
            f"(or use {ensure}, which caches by config)"
        )
