"""The on-disk cache of generated datasets: write once into a temporary folder, verify, rename.

A generated dataset is a folder holding a manifest (``manifest.csv``), its files, and
``config.json`` (the canonical JSON of what was generated, written last). A folder counts as
finished when its ``config.json`` equals the expected JSON and its manifest has the expected number
of rows; anything else is regenerated. Private to :mod:`genfair.datasets`: the synthetic faces and
the digits share it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["MANIFEST_NAME", "CONFIG_NAME", "is_complete", "ensure_cached"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
CONFIG_NAME = "config.json"


def is_complete(folder: Path, *, config_json: str, n_rows: int) -> bool:
    """Whether ``folder`` holds a finished generation of the config ``config_json``.

    Args:
        folder: a cache folder (may be missing).
        config_json: the expected content of its ``config.json`` (compared as parsed JSON).
        n_rows: the expected number of data rows of its manifest (one line per row, no header).

    Returns:
        True when both match.
    """
    try:
        stored = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        with (folder / MANIFEST_NAME).open("rb") as handle:
            rows = sum(1 for line in handle if line.strip()) - 1
    except (OSError, ValueError):
        return False
    return stored == json.loads(config_json) and rows == n_rows


def ensure_cached(
    target: Path, *, config_json: str, n_rows: int, generate: Callable[[Path], object], what: str
) -> Path:
    """The manifest in ``target``, generating the folder first unless it is already complete.

    ``generate(folder)`` writes the dataset into an empty temporary sibling of ``target`` (its
    ``config.json`` last); the finished folder is then renamed into place, so a crash or a
    concurrent run never leaves a half-written dataset where a finished one is expected. An
    incomplete ``target`` is replaced; one finished meanwhile by another process is kept.

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
