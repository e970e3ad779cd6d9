"""Log an :class:`~genfair.audit.result.AuditResult` into the active MLflow run.

What lands in the run:

- **params**: ``result.metadata`` flattened (nested dicts joined with dots, e.g.
  ``model_config.latent_dim``), values stringified and cut to MLflow's length limit.
- **metrics** (one batched call): the numbers charted and compared across runs, not every
  cell of every table (:data:`TABLE_METRICS` lists them): ``test/<metric>`` with
  ``test/n_images`` and ``test/n_subjects``; ``group/<grouping>/<group>/<metric>`` (the group
  means); ``disparity/<grouping>/<metric>/<statistic>`` (:data:`DISPARITY_STATISTICS`: the
  worst-to-best ratio with its interval, the difference and the Holm-adjusted p); and a few
  columns of the known extra tables, keyed ``<table>/<column>`` for the overall row and
  ``<table>/<grouping>/<group or metric>/<column>`` otherwise. Every key goes through
  :func:`metric_key`. Non-finite values (an ``inf`` PSNR) are skipped with one INFO line.
- **tables**: ``per_group``, ``disparities`` and every entry of ``result.tables`` in full, each
  with ``mlflow.log_table`` as ``tables/<name>.json``: the UI shows them on the run's artifacts
  and ``mlflow.load_table("tables/<name>.json", run_ids=[...])`` reads them back across runs.
- **tags**: ``genfair.model`` and ``genfair.dataset`` from the metadata keys ``model`` and
  ``dataset`` when present.
- **artifacts**: the saved result under ``audit/`` (Parquet + JSON, loadable without MLflow, read by
  :func:`load_audit`),
  ``audit/per_group.csv`` for reading in the MLflow UI, and each figure as
  ``figures/<name>.png`` (with a ``worst_cases`` table, also ``figures/worst_cases_<measure>.png``:
  every group's worst images, original beside output, labelled with the group's statistic).

MLflow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from mlflow.entities import Experiment

    from genfair.audit.policy import CheckReport
    from genfair.audit.result import AuditResult

__all__ = [
    "NO_ACTIVE_RUN_MESSAGE",
    "activate_experiment",
    "audit_metrics",
    "check_tracking_uri",
    "finished_audits",
    "flatten_params",
    "load_audit",
    "log_audit",
    "log_check",
    "metric_key",
    "resolve_tracking_uri",
]

logger = logging.getLogger(__name__)

NO_ACTIVE_RUN_MESSAGE = (
    "log_audit needs an active MLflow run, and there is none: open one first, "
    "e.g. `with mlflow.start_run(): log_audit(result)`, or name one: log_audit(result, experiment='NAME')"
)
# mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH and MAX_PARAM_VAL_LENGTH / MAX_TAG_VAL_LENGTH (MLflow 3.17).
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
TRUNCATION_MARK = "..."

OVERALL_GROUPING = "overall"
GROUP_ID_COLUMNS = ("grouping", "group")
#: Key columns of the extra tables, tried in this order: the first that identifies every row
#: gives ``<table>/<grouping>/<group>/<metric>/<column>`` and so on.
TABLE_KEYS = (("grouping", "group"), ("grouping", "group", "metric"), ("grouping", "metric"),
              ("grouping", "group", "attribute"), ("grouping",))
COUNT_COLUMNS = ("n_images", "n_subjects")
DISPARITY_COLUMNS = ("grouping", "metric", "ratio", "difference")
#: The table whose rows give the disparities' intervals and p-values, and the statistics logged
#: as ``disparity/<grouping>/<metric>/<statistic>`` (from it when present; ratio and difference
#: otherwise from ``disparities``).
DISPARITY_INTERVALS_TABLE = "disparity_intervals"
DISPARITY_STATISTICS = ("ratio", "ratio_ci_low", "ratio_ci_high", "difference", "p_holm")
ALL_VALUES = "*"
#: Extra tables with columns kept as metrics: ``{table: (rows, columns)}``, rows ``"overall"``
#: (the overall row only) or ``"all"``, columns a tuple or :data:`ALL_VALUES` (every numeric
#: column other than keys and counts). Every other table, and every other column, is in its
#: ``tables/<name>.json`` and the Parquet files only.
TABLE_METRICS: dict[str, tuple[str, tuple[str, ...] | str]] = {
    "classifier_accuracy": ("overall", ALL_VALUES),  # <attribute>_accuracy
    # the classifier's validity: its accuracy on held-out originals per group and attribute, with the interval
    "classifier_validity": ("all", ("accuracy",)),  # its interval: tables/classifier_validity.json
    "attribute_preservation": ("overall", ALL_VALUES),  # <attribute>_flip_rate
    # the skin-colour shifts (ita_shift, lightness_shift, hue_shift): each group's mean, and each gap per grouping
    "skin_tone_shift": ("all", ALL_VALUES),
    "skin_tone_disparities": ("all", ("difference", "difference_ci_low", "difference_ci_high", "p_holm")),
    # audit run --identity: each group's mean drift, share lost and share with a face found; each gap per grouping
    "identity": ("all", ALL_VALUES),
    "identity_disparities": ("all", ("difference", "difference_ci_low", "difference_ci_high", "p_holm")),
    "representation_tests": ("all", ("p_value", "difference", "difference_ci_low", "difference_ci_high")),
    "model_facts": ("overall", ALL_VALUES),
    # the samples audit: each group's share of the samples (raw, corrected) and of the training data; amplification
    "sample_composition": ("all", ("sample_share", "corrected_share")),
    "sample_amplification": ("all", ("majority_amplification", "directional_amplification")),
    # the VAE's per-group -ELBO (bits per dimension) and its gaps
    "likelihood": ("all", ("estimate",)),
    "likelihood_disparities": ("all", ("difference", "p_holm")),
    "vs_bicubic_groups": ("all", ("difference", "p_value")),
    "vs_bicubic_disparities": ("all", ("difference", "p_value")),
    # --dataset cosmo: each environment's per-pixel error, and output/target power per k-bin and environment
    "environment_errors": ("all", ("mse_error", "ci_low", "ci_high", "mae_error", "relative_error", "pixel_share")),
    "power_spectrum": ("all", ("power_ratio", "ci_low", "ci_high")),
}
TABLES_FOLDER = "tables"
TAGGED_METADATA = {"model": "genfair.model", "dataset": "genfair.dataset"}

# Characters kept inside one part of a key. MLflow also allows "/", which separates the parts
# here, and ":" (rejected by MLflow on Windows) and " ": all three become "_" inside a part.
_DISALLOWED_IN_PART = re.compile(r"[^A-Za-z0-9_.\-]+")
_UNDERSCORE_RUNS = re.compile(r"_{2,}")


def metric_key(*parts: object) -> str:
    """An MLflow metric key from its parts, each sanitised, joined with ``/``.

    Inside a part, every run of characters other than ASCII letters, digits, ``_``, ``-`` and
    ``.`` (so also spaces, ``/`` and ``:``) becomes one ``_``; repeated underscores collapse and
    leading or trailing ones go. A part therefore never adds a level to the key.

    Args:
        *parts: the key's levels, e.g. ``("group", "gender x skin_tone", "female / darker",
            "mse_error")``; each is converted with ``str``.

    Returns:
        The key, e.g. ``"group/gender_x_skin_tone/female_darker/mse_error"``.

    Raises:
        ValueError: no parts, a part that is empty (or only dots) once sanitised, or a key
            longer than MLflow's 250 characters.

    Example:
        >>> metric_key("group", "gender x skin_tone", "female / darker", "mse_error")
        'group/gender_x_skin_tone/female_darker/mse_error'
    """
    if not parts:
        raise ValueError("metric_key needs at least one part, got none")
    key = "/".join(_sanitise_part(part, parts) for part in parts)
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"metric key {key!r} is {len(key)} characters long; MLflow allows {MAX_KEY_LENGTH}")
    return key


def flatten_params(metadata: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params from (nested) metadata: keys joined with dots and sanitised, values as strings.

    Nested mappings are flattened (``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``); lists and tuples
    become JSON (``'["gender", "skin_tone"]'``), everything else ``str(value)``. A value longer
    than MLflow's 6000-character limit is cut and ends with ``"..."``. Each key part is
    sanitised like a :func:`metric_key` part. An empty mapping contributes nothing.

    Args:
        metadata: the run's metadata, e.g. ``AuditResult.metadata``.

    Returns:
        ``{param_key: value}``.

    Raises:
        ValueError: a key part is empty once sanitised, two keys sanitise to the same param
            key, or a key is longer than 250 characters.

    Example:
        >>> flatten_params({"model": "vae", "model_config": {"latent dim": 16}, "attributes": ["gender"]})
        {'model': 'vae', 'model_config.latent_dim': '16', 'attributes': '["gender"]'}
    """
    params: dict[str, str] = {}
    sources: dict[str, tuple[str, ...]] = {}
    for path, value in _walk(metadata, ()):
        key = ".".join(_sanitise_part(part, path) for part in path)
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"param key {key!r} is {len(key)} characters long; MLflow allows {MAX_KEY_LENGTH}")
        if key in params:
            raise ValueError(
                f"metadata keys {sources[key]!r} and {path!r} both become the MLflow param {key!r}; rename one"
            )
        params[key] = _truncate(_param_value(value), MAX_PARAM_VALUE_LENGTH)
        sources[key] = path
    return params


def log_audit(result: AuditResult, *, figures: Mapping[str, Figure] | None = None,
              experiment: str | None = None, tracking_uri: str | None = None) -> str:
    """Log an audit result (params, metrics, tags, tables, artifacts) and figures into an MLflow run.

    Into the active run; or, with ``experiment`` and no active run, into a new finished run of
    that experiment (the notebook case: ``log_audit(audit_model(...), experiment="mine")``).
    Each table is stored as ``MlflowClient.log_table`` stores it (the UI's table view reads it), all
    in one upload. A table the run already holds (a resumed run that was stopped while logging) is
    kept, not appended to, so each table holds one audit.

    Args:
        result: the audit to log: ``per_group`` (columns ``grouping, group, n_images,
            n_subjects, <metric means>`` with the ``overall``/``all`` row), ``disparities``
            (columns ``grouping, metric, ..., ratio, difference``), ``metadata`` and ``save``.
        figures: ``{name: figure}``; each is logged as ``figures/<name>.png`` (the name
            sanitised like a :func:`metric_key` part). None logs no figure but the worst cases'
            (``worst_cases_<measure>``, drawn from ``result.tables["worst_cases"]`` when present).
        experiment: with no active run, open a run in this experiment, log, and finish it.
        tracking_uri: the store for ``experiment``; None: ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``.

    Returns:
        The run's id.

    Raises:
        RuntimeError: no MLflow run is active and no ``experiment`` is given.
        ValueError: ``per_group`` or ``disparities`` lacks a needed column, ``per_group`` has
            no overall row, a metadata key or a figure name is unusable (see :func:`metric_key`,
            :func:`flatten_params`), or two figure names sanitise to the same file.
    """
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    run = mlflow.active_run()
    if run is None and experiment is not None:
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
        activate_experiment(experiment)
        with mlflow.start_run(run_name=f"{result.metadata.get('model', 'audit')}-{result.metadata.get('dataset', '')}"):
            return log_audit(result, figures=figures)
    if run is None:
        raise RuntimeError(NO_ACTIVE_RUN_MESSAGE)
    run_id = run.info.run_id

    # Everything that can fail on bad input is built before anything is logged.
    params = flatten_params(result.metadata)
    metrics = audit_metrics(result.per_group, result.disparities, tables=result.tables)
    tags = _tags(result.metadata)
    figure_files = _figure_files({**_worst_case_figures(result), **(figures or {})})
    table_files = _table_files(result)

    timestamp = int(time.time() * 1000)
    client = MlflowClient()
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, timestamp, 0) for key, value in metrics.items()],
        params=[Param(key, value) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    with tempfile.TemporaryDirectory(prefix="genfair-audit-") as tmp:
        folder = Path(tmp) / "audit"
        folder.mkdir()
        saved = Path(result.save(folder))
        local = saved if saved.is_dir() else folder
        result.per_group.to_csv(local / "per_group.csv", index=False)
        client.log_artifacts(run_id, str(local), artifact_path="audit")
    logged = {entry.path for entry in client.list_artifacts(run_id, TABLES_FOLDER)}
    _log_tables(client, run_id, {file: frame for file, frame in table_files.items() if file not in logged})
    for artifact_file, figure in figure_files.items():
        client.log_figure(run_id, figure, artifact_file, save_kwargs={"dpi": 120})
    logger.info(
        "logged audit to MLflow run %s: %d params, %d metrics, %d tables, %d figures",
        run_id, len(params), len(metrics), len(table_files), len(figure_files),
    )
    return run_id


def audit_metrics(
    per_group: pd.DataFrame, disparities: pd.DataFrame, *, tables: Mapping[str, pd.DataFrame] | None = None
) -> dict[str, float]:
    """The metrics :func:`log_audit` logs, as ``{key: value}``, non-finite values left out.

    Args:
        per_group: columns ``grouping, group, n_images, n_subjects, <metric means>``; the row
            with ``grouping == "overall"`` gives ``test/<column>`` for every numeric column,
            every other row ``group/<grouping>/<group>/<column>`` for every numeric column
            but the counts.
        disparities: columns ``grouping, metric, ratio, difference`` (others ignored): one
            ``disparity/<grouping>/<metric>/{ratio,difference}`` pair per row.
        tables: further tables by name. ``disparity_intervals`` (columns ``grouping, metric``
            and :data:`DISPARITY_STATISTICS`) gives ``disparity/<grouping>/<metric>/<statistic>``,
            its finite ratio and difference replacing ``disparities``' for the same row, so that
            each estimate and its interval come from one table. The tables of :data:`TABLE_METRICS`
            give their chosen columns, keyed by ``grouping, group``, ``grouping, group, metric``,
            ``grouping, metric`` or ``grouping, group, attribute`` (:data:`TABLE_KEYS`):
            ``<name>/<column>`` (overall row; ``<name>/<metric>/<column>`` with a metric or
            attribute key) and ``<name>/<grouping>/<key...>/<column>``.
            Any other table, and one with several rows per key, gives no metric.

    Returns:
        ``{metric key: float value}``, in the frames' row order.

    Raises:
        ValueError: a needed column is missing, there is no overall row, or two rows give
            the same key once sanitised.
    """
    _require_columns(per_group, (*GROUP_ID_COLUMNS, *COUNT_COLUMNS), "per_group")
    _require_columns(disparities, DISPARITY_COLUMNS, "disparities")
    if not (per_group["grouping"] == OVERALL_GROUPING).any():
        raise ValueError(
            f"per_group has no overall row (grouping == {OVERALL_GROUPING!r}); its groupings are "
            f"{sorted(per_group['grouping'].astype(str).unique())}: build it with genfair.audit.grouping.group_table"
        )
    value_columns = [
        column
        for column in per_group.columns
        if column not in GROUP_ID_COLUMNS and _is_numeric_column(per_group[column])
    ]
    # Rows as plain tuples, read by position (itertuples renames non-identifier column names).
    entries: list[tuple[str, object]] = []
    columns = list(per_group.columns)
    grouping_at, group_at = columns.index("grouping"), columns.index("group")
    value_at = [(column, columns.index(column)) for column in value_columns]
    for row in per_group.itertuples(index=False, name=None):
        if row[grouping_at] == OVERALL_GROUPING:
            entries.extend((metric_key("test", column), row[at]) for column, at in value_at)
        else:
            prefix = ("group", row[grouping_at], row[group_at])
            entries.extend((metric_key(*prefix, column), row[at]) for column, at in value_at
                           if column not in COUNT_COLUMNS)
    entries.extend(_disparity_entries(disparities, (tables or {}).get(DISPARITY_INTERVALS_TABLE)))
    for name, table in (tables or {}).items():
        if name in TABLE_METRICS:
            entries.extend(_table_entries(name, table, *TABLE_METRICS[name]))

    metrics: dict[str, float] = {}
    skipped: list[str] = []
    seen: set[str] = set()
    for key, value in entries:
        if key in seen:
            raise ValueError(
                f"two audit rows give the MLflow metric {key!r} once sanitised; "
                f"make the group or grouping names distinct"
            )
        seen.add(key)
        number = _as_float(value)
        if number is None or not math.isfinite(number):
            skipped.append(key)
            continue
        metrics[key] = number
    if skipped:  # expected: no interval for a small group, no ratio of angles; the tables keep them
        logger.info(
            "not logging %d non-finite or missing metric value(s) to MLflow (e.g. %s)", len(skipped),
            ", ".join(skipped[:3]),
        )
    return metrics


def _disparity_entries(disparities: pd.DataFrame, intervals: pd.DataFrame | None) -> list[tuple[str, object]]:
    """``disparity/<grouping>/<metric>/<statistic>``: ratio and difference, with the intervals' row where there is one.

    The intervals' finite values win, so an estimate comes with the interval built around it; where
    the intervals have none (too few people in a group to compare), the summary's estimate stays.
    """
    rows: dict[tuple[object, object], dict[str, object]] = {}
    for grouping, metric, ratio, difference in disparities[list(DISPARITY_COLUMNS)].itertuples(index=False, name=None):
        rows[(grouping, metric)] = {"ratio": ratio, "difference": difference}
    if intervals is not None and {"grouping", "metric"} <= set(intervals.columns):
        present = [column for column in DISPARITY_STATISTICS if column in intervals.columns]
        for grouping, metric, *values in intervals[["grouping", "metric", *present]].itertuples(index=False, name=None):
            finite = {k: v for k, v in zip(present, values, strict=True) if _is_finite(v)}
            rows.setdefault((grouping, metric), {}).update(finite)
    return [
        (metric_key("disparity", grouping, metric, statistic), statistics[statistic])
        for (grouping, metric), statistics in rows.items()
        for statistic in DISPARITY_STATISTICS
        if statistic in statistics
    ]


def _table_entries(name: str, table: pd.DataFrame, rows: str, chosen: tuple[str, ...] | str) -> list[tuple[str, object]]:
    """The chosen columns of one extra table as metric entries; none when no key identifies its rows."""
    keys = next((k for k in TABLE_KEYS if set(k) <= set(table.columns) and not table.duplicated(list(k)).any()), None)
    if keys is None:
        return []  # not one row per group, per grouping and metric, or per both: a table only
    names = list(table.columns)
    value_at = [
        (column, names.index(column))
        for column in names
        if column not in (*keys, *COUNT_COLUMNS) and _is_numeric_column(table[column])
        and (chosen == ALL_VALUES or column in chosen)
    ]
    key_at = [names.index(key) for key in keys]
    overall_drops = [at for key, at in zip(keys, key_at, strict=True) if key in GROUP_ID_COLUMNS]
    grouping_at = names.index("grouping")
    entries: list[tuple[str, object]] = []
    for row in table.itertuples(index=False, name=None):
        overall = row[grouping_at] == OVERALL_GROUPING
        if rows == "overall" and not overall:
            continue
        drop = overall_drops if overall else []
        prefix = (name, *(row[at] for at in key_at if at not in drop))
        entries.extend((metric_key(*prefix, column), row[at]) for column, at in value_at)
    return entries


def _log_tables(client: Any, run_id: str, tables: Mapping[str, pd.DataFrame]) -> None:
    """Log ``{tables/<name>.json: frame}`` as ``MlflowClient.log_table`` would, in one upload.

    ``log_table`` costs four store calls a table (list, upload, read the run, write its tag); a run
    logs a dozen tables. The same files (JSON, ``orient="split"``) go up in one ``log_artifacts``,
    and the run's ``mlflow.loggedArtifacts`` tag, which lists them for the UI's table view, is
    written once. A table with image cells still goes through ``log_table``, which stores the images.
    """
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    plain = {file: frame for file, frame in tables.items() if not _has_images(frame)}
    if plain:
        with tempfile.TemporaryDirectory(prefix="genfair-tables-") as tmp:
            for file, frame in plain.items():
                frame.to_json(Path(tmp) / Path(file).name, orient="split", index=False, date_format="iso")
            client.log_artifacts(run_id, tmp, artifact_path=TABLES_FOLDER)
        listed = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        listed += [entry for entry in ({"path": file, "type": "table"} for file in plain) if entry not in listed]
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(listed))
    for file, frame in tables.items():
        if file not in plain:
            client.log_table(run_id, data=frame, artifact_file=file)


def _has_images(frame: pd.DataFrame) -> bool:
    """Whether a column of ``frame`` holds images (what :func:`_json_ready` makes of PNG bytes)."""
    return any(values.dtype == object and len(values) > 0 and values.map(lambda v: hasattr(v, "resize")).all()
               for _, values in frame.items())


def _table_files(result: AuditResult) -> dict[str, pd.DataFrame]:
    """``{tables/<name>.json: frame}`` for ``mlflow.log_table``: per_group, disparities and every extra table.

    A column of PNG bytes (``samples``) becomes images, which the UI shows in the table (the worst
    cases' images are their figures', so their table keeps paths and values only); other
    bytes become base64 text, since JSON holds no bytes.
    """
    frames = {"per_group": result.per_group, "disparities": result.disparities, **result.tables}
    if "worst_cases" in frames:  # their images are the worst-case figures already: dozens of images per run
        worst = frames["worst_cases"]
        frames["worst_cases"] = worst.drop(columns=[c for c in worst.columns if str(c).endswith("_png")])
    files: dict[str, pd.DataFrame] = {}
    for name, frame in frames.items():
        # AuditResult keeps table names lowercase identifiers other than the core files: each its own file.
        files[f"{TABLES_FOLDER}/{name}.json"] = _json_ready(frame)
    return files


def _json_ready(frame: pd.DataFrame) -> pd.DataFrame:
    import base64
    import io

    from PIL import Image, UnidentifiedImageError

    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object or len(values) == 0 or not values.map(lambda v: isinstance(v, bytes)).all():
            continue
        try:
            frame[column] = values.map(lambda v: Image.open(io.BytesIO(v)))
        except UnidentifiedImageError:
            frame[column] = values.map(lambda v: base64.b64encode(v).decode("ascii"))
    return frame


def _sanitise_part(part: object, context: tuple[object, ...]) -> str:
    text = _UNDERSCORE_RUNS.sub("_", _DISALLOWED_IN_PART.sub("_", str(part))).strip("_")
    if not text.strip("."):
        raise ValueError(
            f"key part {part!r} in {context!r} is empty once sanitised to letters, digits, '_', '-' and '.'; "
            f"give it a name with at least one of those characters"
        )
    return text


def _walk(mapping: Mapping[Any, Any], prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in mapping.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            yield from _walk(value, path)
        else:
            yield path, value


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), default=str)
    return str(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def _tags(metadata: Mapping[str, Any]) -> dict[str, str]:
    tags = {}
    for key, tag in TAGGED_METADATA.items():
        if metadata.get(key) is not None:
            value = metadata[key]
            if isinstance(value, Mapping) and "name" in value:
                value = value["name"]
            tags[tag] = _truncate(str(value), MAX_TAG_VALUE_LENGTH)
    return tags


def _worst_case_figures(result: AuditResult) -> dict[str, Figure]:
    """The result's worst cases drawn, one ``worst_cases_<measure>`` figure per measure (none without them)."""
    if "worst_cases" not in result.tables:
        return {}
    from .figures import worst_case_figures

    return worst_case_figures(result.tables)


def _figure_files(figures: Mapping[str, Figure]) -> dict[str, Figure]:
    files: dict[str, Figure] = {}
    for name, figure in figures.items():
        artifact_file = f"figures/{_sanitise_part(name, ('figures', name))}.png"
        if artifact_file in files:
            raise ValueError(f"two figure names give the artifact {artifact_file!r}; make the names distinct")
        files[artifact_file] = figure
    return files


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}; it has {list(frame.columns)}: pass an AuditResult built by "
            f"genfair.audit.result.summarize"
        )


def _is_numeric_column(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _is_finite(value: object) -> bool:
    number = _as_float(value)
    return number is not None and math.isfinite(number)


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


TRACKING_TIMEOUT_S = 5.0  # seconds a tracking server gets to answer before a run gives up on it


def check_tracking_uri(tracking_uri: str | None, *, timeout: float = TRACKING_TIMEOUT_S) -> None:
    """Fail fast, before any data or training, when the MLflow store cannot be reached.

    MLflow itself would retry an unreachable server for minutes (about four for a refused
    connection) and only after training. An ``http(s)`` URI must answer an HTTP request within
    ``timeout`` seconds (any status counts: the server is there); a ``sqlite`` URI's folder must
    exist. Other schemes are left to MLflow.

    Args:
        tracking_uri: the run's ``--tracking-uri``; None means ``$MLFLOW_TRACKING_URI`` or the default store.
        timeout: seconds to wait for a server's answer.

    Raises:
        ValueError: one line naming the URI, where it came from, what failed and the fix.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    uri = resolve_tracking_uri(tracking_uri)
    from_environment = "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else None
    source = "--tracking-uri" if tracking_uri else from_environment
    named = f"{source} {uri}" if source else f"the tracking store {uri}"
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in ("http", "https"):
        host = parsed.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parsed.port}" if parsed.port else ""
        health = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/") + "/health", "", ""))
        try:
            with urllib.request.urlopen(health, timeout=timeout):
                return
        except urllib.error.HTTPError:
            return  # it answered (no /health route, or it wants credentials): a server is there
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = " ".join(str(getattr(err, "reason", err)).split())
            raise ValueError(
                f"{named}: cannot reach the MLflow tracking server ({reason}; nothing was trained or logged); "
                f"fix: start the server, correct the URI, or drop {source or 'it'} to log to ./mlflow.db"
            ) from err
    elif parsed.scheme == "sqlite" and uri.startswith("sqlite:///"):
        database = uri[len("sqlite:///"):]
        folder = Path(database).parent
        if database and database != ":memory:" and not folder.is_dir():
            raise ValueError(
                f"{named}: the folder of the SQLite store, {folder}, does not exist; fix: create it or "
                f"point the URI at an existing folder"
            )


def activate_experiment(name: str) -> Experiment:
    """``mlflow.set_experiment(name)`` that holds when other processes create the experiment at the same time.

    When MLflow 3.17's ``set_experiment`` finds no experiment, creates it and loses that race to
    another process (the store answers "already exists"), it returns the experiment without
    making it the active one, so the next ``mlflow.start_run()`` opens its run in experiment 0
    ("Default"). With eight ``audit run`` processes starting at once on one tracking server, one
    run in eight went there. Here the experiment is created first (a lost race is fine: it
    exists either way), and ``set_experiment`` then finds it and makes it active.

    Args:
        name: the experiment's name, in the current tracking URI (``mlflow.set_tracking_uri``).

    Returns:
        The experiment, now the active one.

    Raises:
        mlflow.exceptions.MlflowException: the store fails, or the experiment is deleted.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(name) is None:
        try:
            client.create_experiment(name)
        except MlflowException as err:
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            logger.debug("experiment %r was created by another process meanwhile", name)
    return mlflow.set_experiment(name)


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The explicit URI, else ``$MLFLOW_TRACKING_URI``, else a SQLite store in the working directory."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def load_audit(reference: str, *, tracking_uri: str) -> AuditResult:
    """The audit a run logged, from a saved result folder or an MLflow run id.

    Args:
        reference: a folder :meth:`AuditResult.save` wrote (e.g. one downloaded from a run's
            ``audit/`` artifacts), or the id of a run that :func:`log_audit` logged to.
        tracking_uri: where to look the run id up.

    Returns:
        The :class:`~genfair.audit.result.AuditResult`.

    Raises:
        FileNotFoundError: ``reference`` is neither a folder nor a run in ``tracking_uri``, or
            the run has no audit artifacts, or the folder lacks a result file; the message says which.
        ValueError: the tracking server does not answer (:func:`check_tracking_uri`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from genfair.audit.result import AuditResult

    if Path(reference).is_dir():
        return AuditResult.load(reference)
    if not re.fullmatch(r"[0-9a-f]{32}", reference):
        raise FileNotFoundError(
            f"{reference!r} is neither a folder nor an MLflow run id (32 hex digits); pass a saved audit folder "
            f"or the run id that `audit run` printed"
        )
    check_tracking_uri(tracking_uri)  # MLflow would retry an unreachable server for minutes
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_run(reference)
    except MlflowException:
        raise FileNotFoundError(
            f"no MLflow run {reference} in {tracking_uri}; pass --tracking-uri of the store that holds it"
        ) from None
    progress = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # a bar per file clutters the CLI's output
    with tempfile.TemporaryDirectory(prefix="genfair-load-") as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(
                run_id=reference, artifact_path="audit", dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError):
            raise FileNotFoundError(
                f"MLflow run {reference} in {tracking_uri} has no audit/ artifacts; was it logged by `audit run` "
                f"and did it finish?"
            ) from None
        finally:
            if progress is None:
                os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
            else:
                os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = progress
        return AuditResult.load(folder)


def log_check(run_id: str, report: CheckReport, *, tracking_uri: str, junit: str | None = None) -> None:
    """Record a fairness check's verdicts on the run it checked.

    Logs the tag ``genfair.check.verdict`` (pass/warn/fail), the metrics
    ``check/{fail,warn,pass}`` (rule counts), and the artifacts ``check/rules.csv`` (every
    rule row) and, when given, ``check/junit.xml``. A later check of the same run replaces them.

    Args:
        run_id: the checked MLflow run.
        report: the :class:`~genfair.audit.policy.CheckReport`.
        tracking_uri: the store that holds the run.
        junit: the JUnit XML text to keep beside the rules.
    """
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    timestamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(f"check/{verdict}", float(count), timestamp, 0) for verdict, count in report.counts.items()],
        tags=[RunTag("genfair.check.verdict", report.verdict)],
    )
    with tempfile.TemporaryDirectory(prefix="genfair-check-") as tmp:
        folder = Path(tmp) / "check"
        folder.mkdir()
        report.rules.to_csv(folder / "rules.csv", index=False)
        if junit is not None:
            (folder / "junit.xml").write_text(junit, encoding="utf-8")
        client.log_artifacts(run_id, str(folder), artifact_path="check")


def finished_audits(experiment: str, *, tracking_uri: str) -> dict[str, str]:
    """The latest finished audit of each model in an MLflow experiment: ``{model: run id}``.

    Runs are those ``audit run`` logged (tag ``genfair.model``); comparison parents are left
    out. Models come in the order of their latest run, oldest first.

    Raises:
        FileNotFoundError: no such experiment, or it holds no finished audit.
    """
    import mlflow

    check_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise FileNotFoundError(f"no MLflow experiment {experiment!r} in {tracking_uri}; it has {names}")
    runs = client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    latest: dict[str, str] = {}
    for run in runs:
        model = run.data.tags.get("genfair.model")
        if model and model not in latest:
            latest[model] = run.info.run_id
    if not latest:
        raise FileNotFoundError(f"MLflow experiment {experiment!r} in {tracking_uri} holds no finished audit run; "
                                f"run `audit run --experiment {experiment}` or `audit compare` first")
    return dict(reversed(list(latest.items())))


LEARNING_CURVE_COLUMNS = ("model", "stage", "epoch", "loss")
"""Columns of :func:`learning_curves`: ``stage`` is ``"train"`` or ``"val"``, ``epoch`` counts from 1."""


def learning_curves(run_ids: Mapping[str, str], *, tracking_uri: str) -> pd.DataFrame:
    """Each model's training and validation loss per epoch, read back from its MLflow run.

    Args:
        run_ids: ``{model: run id}``; a model whose run logged no ``train/loss`` (nothing
            trained by gradient steps: ``pca``, fitted in one pass, ``bicubic``, a model run as
            it is) has no rows.
        tracking_uri: the store the runs are in.

    Returns:
        One row per model, stage and epoch (:data:`LEARNING_CURVE_COLUMNS`), the epoch's mean
        loss as the run logged it; an epoch logged twice (a resumed run) keeps its last value.
    """
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    rows = []
    for model, run_id in run_ids.items():
        for stage in ("train", "val"):
            for metric in sorted(client.get_metric_history(run_id, f"{stage}/loss") if run_id else [],
                                 key=lambda m: m.timestamp):
                rows.append({"model": model, "stage": stage, "epoch": int(metric.step) + 1, "loss": float(metric.value)})
    frame = pd.DataFrame(rows, columns=list(LEARNING_CURVE_COLUMNS))
    frame = frame.drop_duplicates(["model", "stage", "epoch"], keep="last")
    frame = frame[frame["model"].isin(frame.loc[frame["stage"] == "train", "model"])]
    return frame.sort_values(["model", "stage", "epoch"], kind="stable").reset_index(drop=True)
