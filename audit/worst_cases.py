"""The worst cases of an audit: per group and per measure, the images that fare worst.

A group's mean error, identity drift or skin-colour shift says how badly a group is served;
its worst images show what that looks like. :func:`worst_cases` picks, from the per-image
frame alone, the ``k`` images of every group with the largest magnitude of each measure
(largest error, largest absolute drift or shift); :func:`measure_statistics` finds the per-group
statistic (estimate and interval) each pick belongs to, so a report can link the two. Both are
pure: frames in, frames out; the images themselves are the composition root's business.

Ties are broken deterministically: equal magnitudes are ordered by ``path``, then by their
position in the input, so the same frame gives the same picks however its rows were batched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .grouping import GROUP_SEPARATOR, GROUPING_SEPARATOR
from .grouping import group_labels as _group_labels
from .identity import IDENTITY_DRIFT
from .skin import ITA_SHIFT, LIGHTNESS_SHIFT

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STATISTIC_COLUMNS",
    "WORST_CASES_K",
    "WORST_CASE_COLUMNS",
    "WORST_MEASURES",
    "measure_statistics",
    "may_enter_worst_cases",
    "rows_that_may_enter",
    "worst_cases",
]

#: The measures whose worst cases an audit shows, when present: the error, the identity drift
#: (``audit run --identity``) and the two skin shifts that say lighter or darker.
WORST_MEASURES: tuple[str, ...] = ("mse_error", IDENTITY_DRIFT, ITA_SHIFT, LIGHTNESS_SHIFT)
#: Worst images per group and measure.
WORST_CASES_K = 3
#: The columns :func:`worst_cases` puts first; the picked rows' ``path, subject, <attributes>`` follow.
WORST_CASE_COLUMNS = ("grouping", "group", "measure", "rank", "value")
#: The columns of a per-group interval table that :func:`measure_statistics` reads.
STATISTIC_COLUMNS = ("grouping", "group", "metric", "n_subjects", "estimate", "ci_low", "ci_high")

NOT_FRAME_MSG = "per_image must be a pandas DataFrame"
BAD_K_MSG = "k must be a positive whole number of images"
NO_ATTRIBUTES_MSG = "attributes must name at least one column"
MISSING_COLUMNS_MSG = "per_image lacks column(s)"
NOT_NUMERIC_MSG = "must be numeric to rank its worst cases"
MISSING_VALUE_MSG = "has missing values: every image needs a group"
NO_MEASURES_MSG = "measures must name at least one per-image column"


def worst_cases(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    measures: Sequence[str] | None = None,
    k: int = WORST_CASES_K,
    groupings: Sequence[Sequence[str]] | None = None,
) -> pd.DataFrame:
    """The ``k`` images of every group with the largest ``|value|`` of every measure.

    Images whose value is NaN (a skin shift with no skin in the mask, a drift with no face) are
    never picked; a group with fewer than ``k`` valued images gives as many as it has.

    Args:
        per_image: one row per image with ``path``, ``subject``, the ``attributes`` and the
            ``measures`` columns (numeric; errors, drifts and signed shifts alike).
        attributes: the sensitive attribute columns, e.g. ``["gender", "skin_tone"]``.
        measures: the columns to rank; None: those of :data:`WORST_MEASURES` that ``per_image`` has.
        k: images per group and measure, at least 1.
        groupings: the attribute sets whose groups are ranked; None: the intersection of all the
            ``attributes`` (the finest grouping, ``"gender x skin_tone"``).

    Returns:
        One row per pick: :data:`WORST_CASE_COLUMNS` (``grouping`` and ``group`` labelled as
        :func:`genfair.audit.group_table` labels them, ``rank`` 1 for the worst, ``value`` the
        signed value) then ``path, subject, <attributes>``; ordered by grouping, group (sorted
        by value), measure (in the given order) and rank. The index holds the picked rows'
        index labels in ``per_image`` (an image picked for two measures appears twice).

    Raises:
        TypeError: ``per_image`` is not a DataFrame.
        ValueError: ``k`` is not a positive integer, ``attributes`` or ``measures`` is empty,
            a column is missing, a measure is not numeric, or an attribute value is missing.

    Example:
        >>> import pandas as pd
        >>> per_image = pd.DataFrame({"path": ["a.png", "b.png", "c.png", "d.png"],
        ...                           "subject": ["s1", "s1", "s2", "s3"], "tone": ["dark", "dark", "dark", "light"],
        ...                           "ita_shift": [1.0, -4.0, 2.0, 0.5]})
        >>> worst_cases(per_image, attributes=["tone"], k=2)[["group", "rank", "path", "value"]].values.tolist()
        [['dark', 1, 'b.png', -4.0], ['dark', 2, 'c.png', 2.0], ['light', 1, 'd.png', 0.5]]
    """
    import numpy as np
    import pandas as pd

    if not isinstance(per_image, pd.DataFrame):
        raise TypeError(f"{NOT_FRAME_MSG}, got {type(per_image).__name__}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{BAD_K_MSG}, got {k!r}")
    attributes = [attributes] if isinstance(attributes, str) else list(attributes)
    if not attributes:
        raise ValueError(f"{NO_ATTRIBUTES_MSG} of per_image, got an empty list")
    if measures is None:
        measures = [name for name in WORST_MEASURES if name in per_image.columns]
    else:
        measures = list(dict.fromkeys([measures] if isinstance(measures, str) else measures))
        if not measures:
            raise ValueError(f"{NO_MEASURES_MSG}, got an empty list; pass None for {list(WORST_MEASURES)}")
    groupings = [attributes] if groupings is None else [[g] if isinstance(g, str) else list(g) for g in groupings]
    needed = list(dict.fromkeys(["path", "subject", *attributes, *(c for g in groupings for c in g), *measures]))
    missing = [column for column in needed if column not in per_image.columns]
    if missing:
        raise ValueError(f"{MISSING_COLUMNS_MSG} {missing}; it has {list(per_image.columns)}")
    for measure in measures:
        column = per_image[measure]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise ValueError(f"per_image column {measure!r} {NOT_NUMERIC_MSG}, got dtype {column.dtype}")
    for attribute in dict.fromkeys(c for g in groupings for c in g):
        if per_image[attribute].isna().any():
            row = per_image.index[per_image[attribute].isna().to_numpy()].tolist()[0]
            raise ValueError(f"per_image column {attribute!r} {MISSING_VALUE_MSG} (row {row!r}); fill or drop it")

    shown = ["path", "subject", *attributes]
    path_rank = np.unique(per_image["path"].astype(str).to_numpy(), return_inverse=True)[1].ravel()
    found: dict[str, list[np.ndarray]] = {"picks": [], "rank": [], "code": [], "grouping": [], "measure": []}
    grouping_names, group_labels = [], []
    for order, columns in enumerate(groupings):
        grouped = per_image.groupby(columns, sort=True)
        codes = grouped.ngroup().to_numpy()  # numbered in the sorted order of the groups' values
        labels = np.array([GROUP_SEPARATOR.join(str(part) for part in (key if isinstance(key, tuple) else (key,)))
                           for key in grouped.size().index], dtype=object)
        grouping_names.append(GROUPING_SEPARATOR.join(columns))
        group_labels.append(labels)
        for index, measure in enumerate(measures):
            values = per_image[measure].to_numpy(dtype=float, na_value=np.nan)
            valued = np.flatnonzero(~np.isnan(values))
            # by group, then largest magnitude first, then path, then position: a total order
            ranked = valued[np.lexsort((valued, path_rank[valued], -np.abs(values[valued]), codes[valued]))]
            starts = np.flatnonzero(np.r_[True, np.diff(codes[ranked]) != 0]) if len(ranked) else np.zeros(0, int)
            rank = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)])) + 1
            keep = rank <= k
            found["picks"].append(ranked[keep])
            found["rank"].append(rank[keep])
            found["code"].append(codes[ranked[keep]])
            found["grouping"].append(np.full(int(keep.sum()), order))
            found["measure"].append(np.full(int(keep.sum()), index))
    arrays = {name: np.concatenate(parts) if parts else np.zeros(0, int) for name, parts in found.items()}
    order = np.lexsort((arrays["rank"], arrays["measure"], arrays["code"], arrays["grouping"]))
    arrays = {name: values[order] for name, values in arrays.items()}
    picks = arrays["picks"]
    picked = pd.DataFrame({
        "grouping": np.array(grouping_names, dtype=object)[arrays["grouping"]],
        "group": np.array([group_labels[g][c] for g, c in zip(arrays["grouping"], arrays["code"], strict=True)],
                          dtype=object),
        "measure": np.array(measures, dtype=object)[arrays["measure"]] if measures else np.zeros(0, object),
        "rank": arrays["rank"].astype("int64"),
        "value": np.array([per_image[measures[m]].iat[i] for m, i in zip(arrays["measure"], picks, strict=True)],
                          dtype="float64"),
    }, index=per_image.index[picks])
    for column in shown:
        picked[column] = per_image[column].iloc[picks].to_numpy()
    return picked


def may_enter_worst_cases(
    kept: pd.DataFrame, new: pd.DataFrame, *, attributes: Sequence[str], measures: Sequence[str],
    k: int = WORST_CASES_K,
) -> bool:
    """Whether a row of ``new`` could be among :func:`worst_cases` of ``kept`` and ``new`` together.

    ``kept`` holds the ``k`` worst images of every group so far (the picks of a stream's earlier
    batches). A new row can enter only where its group has fewer than ``k`` valued kept rows for a
    measure, or where its magnitude reaches the ``k``-th largest kept one; when no row can, the
    picks of ``kept`` plus ``new`` are ``kept``'s own and a stream can skip ranking them again.
    Ties count as a possible entry (the path decides them), so the answer errs only toward True.

    Args:
        kept: the rows picked so far: ``<attributes>`` and ``measures`` columns.
        new: a batch's rows, the same columns.
        attributes: the attributes whose intersection makes the groups (as :func:`worst_cases`'s default).
        measures: the ranked columns.
        k: images per group and measure.

    Returns:
        False when :func:`worst_cases` of the union would pick exactly ``kept``'s rows.

    Example:
        >>> import pandas as pd
        >>> kept = pd.DataFrame({"tone": ["dark"] * 2, "mse_error": [0.5, 0.4]})
        >>> may_enter_worst_cases(kept, pd.DataFrame({"tone": ["dark"], "mse_error": [0.1]}),
        ...                       attributes=["tone"], measures=["mse_error"], k=2)
        False
        >>> may_enter_worst_cases(kept, pd.DataFrame({"tone": ["light"], "mse_error": [0.1]}),
        ...                       attributes=["tone"], measures=["mse_error"], k=2)
        True
    """
    values = {measure: new[measure].to_numpy(dtype=float, na_value=float("nan")) for measure in measures}
    return bool(rows_that_may_enter(kept, _group_labels(new, attributes), values, attributes=attributes, k=k).any())


def rows_that_may_enter(
    kept: pd.DataFrame, groups: Any, values: Mapping[str, Any], *, attributes: Sequence[str],
    k: int = WORST_CASES_K,
) -> Any:
    """Which new rows could be among :func:`worst_cases` of ``kept`` and them together, row by row.

    :func:`may_enter_worst_cases` for each row: a row may enter where, for some measure, it is
    valued and its group has fewer than ``k`` valued kept rows or its magnitude reaches the
    ``k``-th largest kept one (ties included). The rows that may not can be dropped from a
    stream's candidates without changing its picks.

    Args:
        kept: the rows picked so far: ``<attributes>`` and the ``values``' measure columns.
        groups: ``(n,)`` the new rows' group labels (:func:`genfair.audit.grouping.group_labels`
            of ``attributes``).
        values: measure -> ``(n,)`` float, the new rows' values (NaN: not valued).
        attributes: the attributes whose intersection makes the groups.
        k: images per group and measure.

    Returns:
        ``(n,)`` bool.

    Example:
        >>> import numpy as np, pandas as pd
        >>> kept = pd.DataFrame({"tone": ["dark"] * 2, "mse_error": [0.5, 0.4]})
        >>> rows_that_may_enter(kept, np.array(["dark", "dark", "light"]),
        ...                     {"mse_error": np.array([0.1, 0.45, 0.1])}, attributes=["tone"], k=2).tolist()
        [False, True, True]
    """
    import numpy as np

    groups = np.asarray(groups, dtype=object)
    kept_groups = _group_labels(kept, attributes)
    may = np.zeros(len(groups), dtype=bool)
    for measure, new_values in values.items():
        kept_sizes = np.abs(kept[measure].to_numpy(dtype=float, na_value=np.nan))
        sizes = np.abs(np.asarray(new_values, dtype=float))
        valued = ~np.isnan(sizes)
        for group in np.unique(groups[valued]):
            held = kept_sizes[(kept_groups == group) & ~np.isnan(kept_sizes)]
            in_group = valued & (groups == group)
            may |= in_group if len(held) < k else in_group & (sizes >= np.sort(held)[-k])
    return may


def measure_statistics(tables: Mapping[str, pd.DataFrame], measure: str) -> pd.DataFrame:
    """The per-group statistic of ``measure``: its rows in the result's per-group interval table.

    The error metrics' statistics are in ``group_intervals``, the skin shifts' in
    ``skin_tone_intervals``, the identity drift's in ``identity_intervals``; any table named
    ``*_intervals`` with the :data:`STATISTIC_COLUMNS` is searched, in name order, and the first
    with rows for ``measure`` answers.

    Args:
        tables: an :class:`~genfair.audit.result.AuditResult`'s ``tables``.
        measure: a per-image column, e.g. ``"ita_shift"``.

    Returns:
        The :data:`STATISTIC_COLUMNS` of those rows (every grouping, the overall row included) and
        ``table``, the name of the table they come from; no rows when no table has the measure.

    Example:
        >>> import pandas as pd
        >>> intervals = pd.DataFrame({"grouping": ["tone"], "group": ["dark"], "metric": ["ita_shift"],
        ...                           "n_subjects": [2], "estimate": [1.5], "ci_low": [0.5], "ci_high": [2.5]})
        >>> found = measure_statistics({"skin_tone_intervals": intervals}, "ita_shift")
        >>> found[["group", "estimate", "table"]].values.tolist()
        [['dark', 1.5, 'skin_tone_intervals']]
    """
    import pandas as pd

    for name in sorted(tables):
        table = tables[name]
        if not name.endswith("_intervals") or not set(STATISTIC_COLUMNS) <= set(table.columns):
            continue
        rows = table[table["metric"] == measure]
        if len(rows):
            return rows[list(STATISTIC_COLUMNS)].assign(table=name).reset_index(drop=True)
    return pd.DataFrame(columns=[*STATISTIC_COLUMNS, "table"])
