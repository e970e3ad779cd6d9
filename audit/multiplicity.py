"""The family of tests a run's p-values are adjusted over: every disparity row of the run, or one
primary metric's.

An audit tests a disparity for every metric in every grouping (4 metrics x 3 groupings, plus the
skin-tone shift's 3: 15 tests on the default run). Adjusting within one grouping at a time, as if
each were the only question, lets one ``p = 0.048`` among fifteen read as a finding. Here the
family is declared:

- by default, **every disparity row of the run** (``disparity_intervals``,
  ``skin_tone_disparities`` and, with ``--identity``, ``identity_disparities``) is Holm-adjusted together;
- with a **primary metric** (``audit run --primary-metric mse_error``), only that metric's rows
  (across groupings) form the family and are Holm-adjusted; every other row is *exploratory*:
  its ``p_holm`` is left empty (NaN) and its raw ``p_value`` is shown as such.

Each adjusted table gets a ``family`` column naming its family, so a reader (and the terminal's
captions) can say which question a p answers. Pure pandas; the adjustment is
:func:`genfair.audit.stats.holm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .stats import holm

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DISPARITY_TABLES", "EXPLORATORY", "adjust_disparity_family"]

#: The tables whose rows are disparity tests (one row per grouping and metric).
DISPARITY_TABLES = ("disparity_intervals", "skin_tone_disparities", "identity_disparities")
#: The ``family`` of a row outside the primary metric's family.
EXPLORATORY = "exploratory"


def adjust_disparity_family(
    tables: Mapping[str, pd.DataFrame], *, primary_metric: str | None = None
) -> dict[str, pd.DataFrame]:
    """The disparity tables with ``p_holm`` adjusted over the run's declared family of tests.

    Args:
        tables: an audit's tables; those named in :data:`DISPARITY_TABLES` that are present need
            ``metric`` and ``p_value`` columns (NaN p-values: no test, left out of the family).
        primary_metric: the metric whose rows alone form the family; ``None``: every row.

    Returns:
        A new mapping with the same tables; the disparity tables are copies with ``p_holm``
        replaced and a ``family`` column: ``"every disparity of the run (m tests)"``, ``"the
        primary metric <metric> (m tests)"`` or :data:`EXPLORATORY` (then ``p_holm`` is NaN).

    Raises:
        ValueError: ``primary_metric`` is not a metric of any disparity table.

    Example:
        >>> import pandas as pd
        >>> tables = {"disparity_intervals": pd.DataFrame({"metric": ["mse_error", "ssim_score"],
        ...                                                "p_value": [0.01, 0.04]})}
        >>> adjust_disparity_family(tables)["disparity_intervals"]["p_holm"].round(3).tolist()
        [0.02, 0.04]
        >>> adjusted = adjust_disparity_family(tables, primary_metric="mse_error")["disparity_intervals"]
        >>> adjusted["family"].tolist()
        ['the primary metric mse_error (1 tests)', 'exploratory']
    """
    import numpy as np
    import pandas as pd

    present = [name for name in DISPARITY_TABLES if name in tables]
    if not present:
        return dict(tables)
    stacked = pd.concat([tables[name][["metric", "p_value"]].assign(_table=name) for name in present],
                        ignore_index=True)
    metrics = sorted(set(stacked["metric"]))
    if primary_metric is not None and primary_metric not in metrics:
        raise ValueError(f"--primary-metric {primary_metric!r} is not a metric of this audit's disparities; "
                         f"choose one of {', '.join(metrics)}")
    in_family = np.ones(len(stacked), dtype=bool) if primary_metric is None else \
        (stacked["metric"] == primary_metric).to_numpy()
    p_values = stacked["p_value"].to_numpy(dtype=np.float64)
    tested = in_family & ~np.isnan(p_values)
    adjusted = np.full(len(stacked), np.nan)
    adjusted[in_family] = holm(np.where(tested, p_values, np.nan)[in_family])
    size = int(tested.sum())
    name = (f"every disparity of the run ({size} tests)" if primary_metric is None
            else f"the primary metric {primary_metric} ({size} tests)")
    family = np.where(in_family, name, EXPLORATORY)
    result = dict(tables)
    for table in present:
        rows = (stacked["_table"] == table).to_numpy()
        result[table] = tables[table].assign(p_holm=adjusted[rows], family=family[rows])
    return result
