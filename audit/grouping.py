"""Per-group tables and disparities: pure functions over pandas DataFrames.

:func:`group_table` turns the per-image frame (one row per evaluated image: ``path,
subject, <attributes...>, <metric columns>``) into one row per group, using fairlearn's
:class:`~fairlearn.metrics.MetricFrame`. :func:`disparity_table` turns that into one row
per (grouping, metric): the worst and best group, their ratio and difference.

Neither function does I/O. pandas and fairlearn are imported inside the functions so
that importing ``genfair.audit`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .metrics import MEASURE_DIRECTIONS, METRICS, _direction

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DISPARITY_COLUMNS",
    "GROUP_COLUMNS",
    "OVERALL_GROUP",
    "OVERALL_GROUPING",
    "disparity_table",
    "group_labels",
    "group_table",
    "validate_per_image",
]

#: ``grouping`` and ``group`` of the row that covers every image.
OVERALL_GROUPING = "overall"
OVERALL_GROUP = "all"
#: Separators of intersectional labels: "gender x skin_tone", "female / darker".
GROUPING_SEPARATOR = " x "
GROUP_SEPARATOR = " / "
#: The columns of :func:`group_table` that precede the metric means.
GROUP_COLUMNS = ("grouping", "group", "n_images", "n_subjects")
#: The columns of :func:`disparity_table`, in order.
DISPARITY_COLUMNS = (
    "grouping",
    "metric",
    "higher_is_better",
    "overall",
    "worst_group",
    "worst",
    "best_group",
    "best",
    "ratio",
    "difference",
    "left_out",
)
SUBJECT_COLUMN = "subject"

# Messages reused by the tests: each raise appends what it received.
NOT_FRAME_MSG = "must be a pandas DataFrame"
NAMES_NOT_SEQUENCE_MSG = "must be a sequence of column names"
NO_ATTRIBUTES_MSG = "attributes must name at least one column"
DUPLICATE_NAMES_MSG = "names repeat"
MISSING_COLUMN_MSG = "missing column"
EMPTY_FRAME_MSG = "per_image has no rows"
MISSING_VALUE_MSG = "has a missing value"
NOT_NUMERIC_MSG = "metric column must be numeric"
RESERVED_NAME_MSG = "metric names may not reuse a table column"
ATTRIBUTE_IS_METRIC_MSG = "a column cannot be both an attribute and a metric"
NO_OVERALL_MSG = "per_group has no overall row"
UNKNOWN_DIRECTION_MSG = "cannot tell whether higher is better for metric"


def _check_frame(frame: Any, label: str) -> None:
    """Raise TypeError unless ``frame`` is a DataFrame."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{label} {NOT_FRAME_MSG}, got {type(frame).__name__}")


def _check_names(names: Sequence[str], label: str) -> list[str]:
    """Return ``names`` as a list of strings, or raise on a bare string or repeats."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"{label} {NAMES_NOT_SEQUENCE_MSG}, got {names!r}; pass e.g. [{names!r}]")
    result = [str(name) for name in names]
    repeated = sorted({name for name in result if result.count(name) > 1})
    if repeated:
        raise ValueError(f"{label} {DUPLICATE_NAMES_MSG}: {repeated}; list each column once")
    return result


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], label: str) -> None:
    """Raise ValueError naming the first column of ``columns`` absent from ``frame``."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(
                f"{label} is {MISSING_COLUMN_MSG} {column!r}; available columns: {[str(c) for c in frame.columns]}"
            )


def _count(y_true: Any, y_pred: Any) -> int:
    """MetricFrame callable: the number of images in the group."""
    return len(y_true)


def _n_unique(y_true: Any, y_pred: Any, *, subject: Any) -> int:
    """MetricFrame callable: the number of distinct subjects in the group."""
    return len(set(subject.tolist()))


def _mean(y_true: Any, y_pred: Any, *, values: Any) -> float:
    """MetricFrame callable: the mean of one per-image metric over the group."""
    import numpy as np

    return float(np.mean(values))


def _metric_frame(per_image: pd.DataFrame, attributes: list[str], metrics: list[str]) -> Any:
    """Build one fairlearn MetricFrame over the groups of ``attributes`` (jointly)."""
    import numpy as np
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    functions: dict[str, Any] = {"n_images": _count, "n_subjects": _n_unique}
    params: dict[str, dict[str, Any]] = {
        "n_subjects": {"subject": per_image[SUBJECT_COLUMN].astype(str).to_numpy(dtype=object)}
    }
    for metric in metrics:
        functions[metric] = _mean
        params[metric] = {"values": per_image[metric].to_numpy(dtype=np.float64)}
    # Positional names keep attribute names from colliding with MetricFrame's own
    # columns (y_true, y_pred, <metric>_<param>).
    features = pd.DataFrame(
        {f"sf{i}": per_image[attribute].to_numpy(dtype=object) for i, attribute in enumerate(attributes)}
    )
    dummy = np.zeros(len(per_image))
    return MetricFrame(
        metrics=functions, y_true=dummy, y_pred=dummy, sensitive_features=features, sample_params=params
    )


def group_labels(frame: pd.DataFrame, columns: Sequence[str]) -> Any:
    """The group label of every row for the attribute ``columns``, as the tables write it.

    One column gives its values as strings; several join them with " / " ("female / darker").
    Vectorised: a row-wise ``frame.agg(" / ".join, axis=1)`` costs a Python call per row.

    Args:
        frame: ``N`` rows holding ``columns``.
        columns: one or more attribute column names.

    Returns:
        ``(N,)`` numpy array of ``str`` (dtype object), in the frame's row order.

    Example:
        >>> import pandas as pd
        >>> group_labels(pd.DataFrame({"gender": ["f", "m"], "skin": [1, 2]}), ["gender", "skin"]).tolist()
        ['f / 1', 'm / 2']
    """
    columns = list(columns)
    if not columns:
        raise ValueError(NO_ATTRIBUTES_MSG)
    labels = frame[columns[0]].astype(str).to_numpy(dtype=object)
    for column in columns[1:]:
        labels = labels + GROUP_SEPARATOR + frame[column].astype(str).to_numpy(dtype=object)
    return labels


def validate_per_image(
    per_image: Any, *, attributes: Sequence[str], metrics: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Check a per-image frame before grouping it; return the attribute and metric names as lists.

    Raises:
        TypeError: ``per_image`` is not a DataFrame.
        ValueError: a name is missing, repeated or both an attribute and a metric; the frame is
            empty; an attribute or subject value is missing; a metric column is not numeric.
    """
    from pandas.api.types import is_numeric_dtype

    _check_frame(per_image, "per_image")
    attrs = _check_names(attributes, "attributes")
    mets = _check_names(metrics, "metrics")
    if not attrs:
        raise ValueError(f"{NO_ATTRIBUTES_MSG}, got {list(attributes)!r}")
    both = sorted(set(attrs) & set(mets))
    if both:
        raise ValueError(f"{ATTRIBUTE_IS_METRIC_MSG}, got {both} in both attributes and metrics")
    _check_columns(per_image, [SUBJECT_COLUMN], "per_image")
    _check_columns(per_image, attrs, "per_image")
    _check_columns(per_image, mets, "per_image")
    if per_image.empty:
        raise ValueError(f"{EMPTY_FRAME_MSG}; evaluate at least one image before grouping")
    for column in [SUBJECT_COLUMN, *attrs]:
        missing = per_image[column].isna()
        if missing.any():
            row = per_image.index[missing.to_numpy()][0]
            raise ValueError(
                f"per_image column {column!r} {MISSING_VALUE_MSG} at row {row!r}; fill or drop it before grouping"
            )
    for metric in mets:
        if not is_numeric_dtype(per_image[metric]) or per_image[metric].dtype == bool:
            raise ValueError(f"{NOT_NUMERIC_MSG}, got {metric!r} of dtype {per_image[metric].dtype}")
    return attrs, mets


def group_table(per_image: pd.DataFrame, *, attributes: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean of each per-image metric per group, with image and subject counts.

    Rows, in order: the overall row (``grouping="overall"``, ``group="all"``); the
    groups of each single attribute, in the order of ``attributes``, groups sorted by
    value; then, only when there are 2+ attributes, the intersection of all of them
    (``grouping="gender x skin_tone"``, ``group="female / darker"``), sorted by value
    tuple. Intersections with no image are left out. A group mean is the plain mean of
    its images: one ``+inf`` PSNR makes it ``+inf``, one NaN makes it NaN.

    Args:
        per_image: one row per image with a ``subject`` column, the ``attributes`` and
            the ``metrics`` columns (numeric).
        attributes: sensitive-attribute columns, e.g. ``["gender", "skin_tone"]``;
            values are shown with ``str()``.
        metrics: per-image metric columns, e.g. ``["mse_error", "ssim_score"]``.

    Returns:
        DataFrame with columns ``grouping, group, n_images, n_subjects, <metrics...>``
        (``n_*`` int64, means float64) and a fresh RangeIndex.

    Raises:
        TypeError: if ``per_image`` is not a DataFrame.
        ValueError: if a column is missing, a name repeats or clashes, ``per_image`` is
            empty, an attribute or subject value is missing, or a metric column is not
            numeric.

    Example:
        >>> import pandas as pd
        >>> per_image = pd.DataFrame({
        ...     "subject": ["a", "a", "b", "c"],
        ...     "gender": ["female", "female", "male", "male"],
        ...     "mse_error": [0.1, 0.3, 0.2, 0.4],
        ... })
        >>> group_table(per_image, attributes=["gender"], metrics=["mse_error"])
          grouping   group  n_images  n_subjects  mse_error
        0  overall     all         4           3       0.25
        1   gender  female         2           1       0.20
        2   gender    male         2           2       0.30
    """
    import pandas as pd

    attrs, mets = validate_per_image(per_image, attributes=attributes, metrics=metrics)
    reserved = sorted(set(mets) & set(GROUP_COLUMNS))
    if reserved:
        raise ValueError(f"{RESERVED_NAME_MSG} {list(GROUP_COLUMNS)}, got {reserved}; rename the column")

    rows: list[dict[str, Any]] = []

    def add_rows(frame: Any, grouping: str | None) -> None:
        if grouping is None:
            rows.append({"grouping": OVERALL_GROUPING, "group": OVERALL_GROUP, **frame.overall.to_dict()})
            return
        by_group = frame.by_group.dropna(subset=["n_images"])
        for key, values in by_group.iterrows():
            parts = key if isinstance(key, tuple) else (key,)
            label = GROUP_SEPARATOR.join(str(part) for part in parts)
            rows.append({"grouping": grouping, "group": label, **values.to_dict()})

    for i, attribute in enumerate(attrs):
        frame = _metric_frame(per_image, [attribute], mets)
        if i == 0:
            add_rows(frame, None)
        add_rows(frame, attribute)
    if len(attrs) > 1:
        add_rows(_metric_frame(per_image, attrs, mets), GROUPING_SEPARATOR.join(attrs))

    table = pd.DataFrame(rows, columns=[*GROUP_COLUMNS, *mets])
    return table.astype(
        {"grouping": "str", "group": "str", "n_images": "int64", "n_subjects": "int64", **dict.fromkeys(mets, "float64")}
    )


def _higher_is_better(metric: str) -> bool:
    """Direction of a metric: from the registry or :data:`MEASURE_DIRECTIONS`, else from its name."""
    if metric in METRICS:
        return METRICS[metric].higher_is_better
    if metric in MEASURE_DIRECTIONS:
        return MEASURE_DIRECTIONS[metric]
    try:
        return _direction(metric)
    except ValueError as err:
        raise ValueError(
            f"{UNKNOWN_DIRECTION_MSG} {metric!r}: it is not registered and its name does not end in "
            f"'_score' (higher is better), '_error' or '_loss' (lower is better); rename the column"
        ) from err


def disparity_table(per_group: pd.DataFrame, *, metrics: Sequence[str], min_subjects: int = 1) -> pd.DataFrame:
    """Worst and best group of each grouping, per metric, with their ratio and difference.

    Only groups of at least ``min_subjects`` people compete for worst and best: a group of one
    person is an anecdote, and the disparity's intervals and tests (:mod:`genfair.audit.stats`)
    leave it out by the same rule, so a row's groups, estimate, interval and p are about the same
    groups. The groups left out are named in ``left_out`` (``"female / 35-55 (2)"``, with their
    people), and a grouping with fewer than two groups left has no worst or best.

    For ``*_error`` metrics the worst group has the highest mean and ``ratio = worst /
    best >= 1``; for ``*_score`` metrics the worst group has the lowest mean and
    ``ratio <= 1``. ``difference = |worst - best|``. Groups whose mean is NaN are
    skipped (a grouping with no finite group gives NaN values and empty group names).
    Ties go to the first group in table order. When worst equals best the ratio is 1
    and the difference 0 (also when both are 0 or both ``+inf``); otherwise a best of 0
    gives a ratio of ``inf`` (``-inf`` for a negative worst score). The ratio is only
    meaningful for non-negative metrics (SSIM can be negative). A grouping with a single
    group reports ratio 1: that says nothing about fairness, only that there is no
    second group.

    Args:
        per_group: the output of :func:`group_table` (at least ``grouping``, ``group``,
            the metric columns and the overall row; ``n_subjects`` when ``min_subjects > 1``).
        metrics: metric columns to compare. Direction comes from :data:`METRICS`, or,
            for unregistered columns, from the ``_score`` / ``_error`` / ``_loss`` suffix.
        min_subjects: fewest people a group needs to take part (1: every group).

    Returns:
        DataFrame with columns :data:`DISPARITY_COLUMNS`, one row per (grouping other
        than overall, metric), groupings in table order, metrics in the given order.

    Raises:
        TypeError: if ``per_group`` is not a DataFrame.
        ValueError: if a column or the overall row is missing, a name repeats, or a
            metric's direction is unknown.

    Example:
        >>> import pandas as pd
        >>> per_group = pd.DataFrame({
        ...     "grouping": ["overall", "gender", "gender"],
        ...     "group": ["all", "female", "male"],
        ...     "mse_error": [0.25, 0.4, 0.1],
        ... })
        >>> row = disparity_table(per_group, metrics=["mse_error"]).iloc[0]
        >>> row["worst_group"], row["best_group"], float(row["ratio"]), round(float(row["difference"]), 6)
        ('female', 'male', 4.0, 0.3)
    """
    import numpy as np
    import pandas as pd

    _check_frame(per_group, "per_group")
    mets = _check_names(metrics, "metrics")
    _check_columns(per_group, ["grouping", "group"], "per_group")
    _check_columns(per_group, mets, "per_group")
    directions = {metric: _higher_is_better(metric) for metric in mets}
    if min_subjects > 1:
        _check_columns(per_group, ["n_subjects"], "per_group")
    is_overall = per_group["grouping"] == OVERALL_GROUPING
    if not is_overall.any():
        raise ValueError(
            f"{NO_OVERALL_MSG} (grouping == {OVERALL_GROUPING!r}); build it with group_table"
        )
    overall = per_group[is_overall].iloc[0]

    rows: list[dict[str, Any]] = []
    for grouping in pd.unique(per_group.loc[~is_overall, "grouping"]):
        groups = per_group[per_group["grouping"] == grouping].reset_index(drop=True)
        few = np.zeros(len(groups), dtype=bool)
        if min_subjects > 1:
            few = groups["n_subjects"].to_numpy() < min_subjects
        left_out = ", ".join(f"{group} ({people})" for group, people in
                             zip(groups["group"][few], groups["n_subjects"][few] if few.any() else []))
        for metric in mets:
            higher = directions[metric]
            values = groups[metric].astype("float64")
            valid = values.notna() & ~few
            if min_subjects > 1 and valid.sum() < 2:
                valid[:] = False  # one group left: no comparison
            row: dict[str, Any] = {
                "grouping": str(grouping),
                "metric": metric,
                "higher_is_better": higher,
                "overall": float(overall[metric]),
                "worst_group": None,
                "worst": np.nan,
                "best_group": None,
                "best": np.nan,
                "ratio": np.nan,
                "difference": np.nan,
                "left_out": left_out,
            }
            if valid.any():
                values = values[valid]
                worst_at = values.idxmin() if higher else values.idxmax()
                best_at = values.idxmax() if higher else values.idxmin()
                worst, best = float(values[worst_at]), float(values[best_at])
                if worst == best:
                    ratio, difference = 1.0, 0.0
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratio = float(np.divide(np.float64(worst), np.float64(best)))
                    difference = abs(worst - best)
                row.update(
                    worst_group=str(groups.at[worst_at, "group"]),
                    worst=worst,
                    best_group=str(groups.at[best_at, "group"]),
                    best=best,
                    ratio=ratio,
                    difference=difference,
                )
            rows.append(row)

    table = pd.DataFrame(rows, columns=list(DISPARITY_COLUMNS))
    return table.astype(
        {
            "grouping": "str",
            "metric": "str",
            "higher_is_better": "bool",
            "worst_group": "str",
            "best_group": "str",
            "left_out": "str",
            **dict.fromkeys(["overall", "worst", "best", "ratio", "difference"], "float64"),
        }
    )
