"""The result of an audit as plain data, and its Parquet + JSON form on disk.

:class:`AuditResult` holds the per-image frame, the per-group table, the disparity
table and JSON metadata (model, dataset hash, seed, versions). It has no plotting or
logging methods: :mod:`genfair.reports` decides how to draw and log it. It saves to a
folder of four files and loads back without MLflow.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .grouping import disparity_table, group_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DISPARITIES_FILE",
    "METADATA_FILE",
    "PER_GROUP_FILE",
    "PER_IMAGE_FILE",
    "RESULT_FILES",
    "AuditResult",
    "pairing_problem",
    "summarize",
    "write_atomic",
]

PER_IMAGE_FILE = "per_image.parquet"
PER_GROUP_FILE = "per_group.parquet"
DISPARITIES_FILE = "disparities.parquet"
METADATA_FILE = "metadata.json"
#: The files :meth:`AuditResult.save` writes, in writing order.
RESULT_FILES = (PER_IMAGE_FILE, PER_GROUP_FILE, DISPARITIES_FILE, METADATA_FILE)
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FRAMES = (("per_image", PER_IMAGE_FILE), ("per_group", PER_GROUP_FILE), ("disparities", DISPARITIES_FILE))

# Messages reused by the tests: each raise appends what it received.
NOT_FRAME_MSG = "must be a pandas DataFrame"
COLUMN_NAMES_MSG = "column names must be strings (Parquet stores them as text)"
METADATA_NOT_MAPPING_MSG = "metadata must be a mapping with string keys"
METADATA_NOT_JSON_MSG = "metadata must be JSON-serialisable"
NO_FOLDER_MSG = "audit result folder does not exist"
MISSING_FILES_MSG = "audit result folder is missing"
BAD_METADATA_FILE_MSG = "is not valid JSON"


def _normalise_metadata(metadata: Any) -> dict[str, Any]:
    """Return ``metadata`` in its JSON round-trip form, or raise if it is not JSON."""
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise TypeError(f"{METADATA_NOT_MAPPING_MSG}, got {type(metadata).__name__}: {metadata!r}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{METADATA_NOT_JSON_MSG} (str, int, finite float, bool, None, lists, dicts with str keys): {err}; "
            f"convert paths with str() and tensors with .tolist()"
        ) from err
    return json.loads(text)


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything an audit found, as plain data.

    ``metadata`` is stored in its JSON round-trip form (tuples become lists, non-string
    dictionary keys are refused), so a saved and loaded result has equal metadata.
    ``==`` compares identity (DataFrames have no single truth value); compare the
    frames with ``pandas.testing.assert_frame_equal``.

    Attributes:
        per_image: one row per evaluated image: ``path, subject, <attributes...>,
            <metric columns>``.
        per_group: :func:`genfair.audit.group_table` of ``per_image``.
        disparities: :func:`genfair.audit.disparity_table` of ``per_group``.
        metadata: JSON-serialisable run facts (model, dataset hash, seed, versions).
        tables: further named tables (e.g. ``classifier_accuracy``), each saved as
            ``<name>.parquet``; names are lowercase identifiers.

    Raises:
        TypeError: if a frame is not a DataFrame or metadata is not a str-keyed mapping.
        ValueError: if a frame has a non-string column name, or metadata is not
            JSON-serialisable (NaN and infinity included).
    """

    per_image: pd.DataFrame
    per_group: pd.DataFrame
    disparities: pd.DataFrame
    metadata: dict[str, Any]
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import pandas as pd

        named = [(name, getattr(self, name)) for name, _ in _FRAMES]
        for name, value in self.tables.items():
            if not _TABLE_NAME.match(str(name)) or f"{name}.parquet" in RESULT_FILES:
                raise ValueError(f"AuditResult.tables names must be lowercase identifiers other than the core files, got {name!r}")
            named.append((f"tables[{name!r}]", value))
        for name, value in named:
            if not isinstance(value, pd.DataFrame):
                raise TypeError(f"AuditResult.{name} {NOT_FRAME_MSG}, got {type(value).__name__}")
            bad = [column for column in value.columns if not isinstance(column, str)]
            if bad:
                raise ValueError(
                    f"AuditResult.{name} {COLUMN_NAMES_MSG}, got {bad!r}; rename them with "
                    f"frame.rename(columns=str)"
                )
        object.__setattr__(self, "metadata", _normalise_metadata(self.metadata))
        object.__setattr__(self, "tables", dict(self.tables))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the four result files into ``directory`` (created if needed).

        Every file is first written (and flushed to disk) under a temporary name in the same
        folder; only when all are written are they renamed over their final names, the old
        ``metadata.json`` removed first and the new one renamed last. So a reader never sees a
        half-written file, a save that fails while writing leaves the old result as it was, and
        a crash among the renames leaves a folder that :meth:`load` refuses (no metadata)
        rather than old and new files mixed. Existing result files are replaced.

        Args:
            directory: destination folder.

        Returns:
            The folder, as a :class:`~pathlib.Path`.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        frames = [(getattr(self, attribute), name) for attribute, name in _FRAMES]
        frames += [(frame, f"{name}.parquet") for name, frame in self.tables.items()]
        text = json.dumps(self.metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"
        staged: list[tuple[str, Path]] = []
        try:
            for frame, name in frames:
                staged.append((_write_temporary(folder / name, lambda path, frame=frame: frame.to_parquet(path)),
                               folder / name))
            staged.append((_write_temporary(folder / METADATA_FILE,
                                            lambda path: Path(path).write_text(text, encoding="utf-8")),
                           folder / METADATA_FILE))
        except BaseException:
            for temp, _ in staged:
                Path(temp).unlink(missing_ok=True)
            raise
        (folder / METADATA_FILE).unlink(missing_ok=True)
        for temp, final in staged:  # metadata.json last: the folder is complete again once it is back
            os.replace(temp, final)
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AuditResult:
        """Read a result written by :meth:`save`.

        Args:
            directory: the folder :meth:`save` wrote.

        Returns:
            The result, with frames and metadata equal to the saved ones.

        Raises:
            FileNotFoundError: if the folder or one of its four files is missing.
            ValueError: if ``metadata.json`` is not valid JSON.
        """
        import pandas as pd

        folder = Path(directory)
        if not folder.is_dir():
            raise FileNotFoundError(f"{NO_FOLDER_MSG}: {str(folder)!r}; pass the folder AuditResult.save wrote")
        missing = [name for name in RESULT_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{MISSING_FILES_MSG} {missing} in {str(folder)!r}; expected all of {list(RESULT_FILES)}, "
                f"re-run the audit or save the result again"
            )
        frames = {attribute: pd.read_parquet(folder / name) for attribute, name in _FRAMES}
        core = {name for _, name in _FRAMES}
        tables = {
            path.stem: pd.read_parquet(path)
            for path in sorted(folder.glob("*.parquet"))
            if path.name not in core and _TABLE_NAME.match(path.stem)
        }
        metadata_path = folder / METADATA_FILE
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{str(metadata_path)!r} {BAD_METADATA_FILE_MSG}: {err}; save the result again") from err
        return cls(metadata=metadata, tables=tables, **frames)


def write_atomic(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(temp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash leaves either the old file or the new one, never half of one: the new file is
    flushed to disk (``fsync``) before the rename, so not even a power cut right after it can
    leave an empty file under the final name. The file gets the permissions a plain ``open``
    would give it (``0o666`` less the umask), not mkstemp's ``0o600``.
    """
    os.replace(_write_temporary(path, write), path)


def _write_temporary(path: Path, write: Callable[[str], object]) -> str:
    """Call ``write(temp_path)`` on a new temporary file beside ``path`` and flush it to disk.

    Returns:
        The temporary file's path (removed again if ``write`` fails).
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    try:
        write(temp)
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return temp


def summarize(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metrics: Sequence[str],
    metadata: Mapping[str, Any] | None = None,
    min_subjects: int = 5,
) -> AuditResult:
    """Build an :class:`AuditResult` from a per-image frame.

    Args:
        per_image: one row per evaluated image: ``path, subject, <attributes...>,
            <metric columns>``.
        attributes: sensitive-attribute columns to group by.
        metrics: per-image metric columns to average and compare.
        metadata: JSON-serialisable run facts; ``None`` means ``{}``.
        min_subjects: fewest people a group needs to compete for worst and best in the
            disparities (the rule of the intervals, :func:`genfair.audit.interval_tables`).

    Returns:
        The result: a copy of ``per_image``, its :func:`group_table`, the
        :func:`disparity_table` of that, and the metadata.

    Raises:
        TypeError, ValueError: as :func:`group_table`, :func:`disparity_table` and
            :class:`AuditResult` do.

    Example:
        >>> import pandas as pd
        >>> per_image = pd.DataFrame({
        ...     "path": ["a.png", "b.png", "c.png"],
        ...     "subject": ["s1", "s2", "s3"],
        ...     "gender": ["female", "male", "male"],
        ...     "mse_error": [0.3, 0.1, 0.2],
        ... })
        >>> result = summarize(per_image, attributes=["gender"], metrics=["mse_error"], metadata={"seed": 0},
        ...                    min_subjects=1)
        >>> result.disparities[["grouping", "worst_group", "best_group"]].to_dict("records")
        [{'grouping': 'gender', 'worst_group': 'female', 'best_group': 'male'}]
    """
    per_group = group_table(per_image, attributes=attributes, metrics=metrics)
    disparities = disparity_table(per_group, metrics=metrics, min_subjects=min_subjects)
    return AuditResult(
        per_image=per_image.copy(),
        per_group=per_group,
        disparities=disparities,
        metadata={} if metadata is None else metadata,
    )


def pairing_problem(a: AuditResult, b: AuditResult) -> str | None:
    """Why two audits cannot be compared image by image, or ``None`` when they can.

    Paired comparisons (``audit compare-runs``, the paired regression check) set each image's
    error under model A against the same image's under model B. They need the same images:
    the same manifest file (its SHA-256, recorded by every run; a generated dataset made with
    another seed has other images under the same names) and the same set of audited paths.

    Args:
        a, b: the two audits (their ``metadata["manifest_sha256"]`` when recorded, and their
            ``per_image["path"]``).

    Returns:
        A one-line reason naming what differs, or ``None``.
    """
    hash_a, hash_b = a.metadata.get("manifest_sha256"), b.metadata.get("manifest_sha256")
    if hash_a and hash_b and hash_a != hash_b:
        return (f"the two audits read different manifests ({a.metadata.get('manifest', '?')} sha256 {hash_a[:12]} vs "
                f"{b.metadata.get('manifest', '?')} sha256 {hash_b[:12]}): the same file names may be other images")
    paths_a, paths_b = set(a.per_image["path"].astype(str)), set(b.per_image["path"].astype(str))
    if paths_a != paths_b:
        only_a, only_b = sorted(paths_a - paths_b), sorted(paths_b - paths_a)
        example = (only_a or only_b)[0]
        return (f"the two audits saw different images ({len(only_a)} only in the first, {len(only_b)} only in the "
                f"second, e.g. {example!r})")
    return None
