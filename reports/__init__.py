"""Reports of an audit: figures, terminal tables and MLflow logging of an ``AuditResult``.

The submodules are imported on first use of one of their names (PEP 562), so
``import genfair.reports`` costs neither matplotlib/seaborn nor MLflow; ``tracking`` imports
MLflow only inside its functions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .figures import (
        error_by_group_figure,
        higher_is_better_from_name,
        reconstruction_grid_figure,
        samples_grid_figure,
    )
    from .terminal import print_audit, print_comparison
    from .tracking import audit_metrics, flatten_params, load_audit, log_audit, metric_key

__all__ = [
    "audit_metrics",
    "error_by_group_figure",
    "flatten_params",
    "higher_is_better_from_name",
    "load_audit",
    "log_audit",
    "metric_key",
    "print_audit",
    "print_comparison",
    "reconstruction_grid_figure",
    "samples_grid_figure",
]

_HOMES = {
    "error_by_group_figure": "figures",
    "higher_is_better_from_name": "figures",
    "reconstruction_grid_figure": "figures",
    "samples_grid_figure": "figures",
    "audit_metrics": "tracking",
    "flatten_params": "tracking",
    "load_audit": "tracking",
    "log_audit": "tracking",
    "metric_key": "tracking",
    "print_audit": "terminal",
    "print_comparison": "terminal",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
