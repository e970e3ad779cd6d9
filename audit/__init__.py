"""genfair.audit: per-image metrics, per-group tables, disparities and the audit result.

Importing this package is cheap: torch, torchmetrics, pandas and fairlearn are imported
inside the functions that use them, so the ``audit`` command answers ``--help`` fast.
"""

from .grouping import DISPARITY_COLUMNS, GROUP_COLUMNS, disparity_table, group_table
from .metrics import (
    METRICS,
    REGISTRY,
    MetricSpec,
    get,
    names,
    per_sample_mae_error,
    per_sample_metrics,
    per_sample_mse_error,
    per_sample_psnr_score,
    per_sample_ssim_score,
    register,
)
from .result import RESULT_FILES, AuditResult, summarize

__all__ = [
    "DISPARITY_COLUMNS",
    "GROUP_COLUMNS",
    "METRICS",
    "REGISTRY",
    "RESULT_FILES",
    "AuditResult",
    "MetricSpec",
    "disparity_table",
    "get",
    "group_table",
    "names",
    "per_sample_mae_error",
    "per_sample_metrics",
    "per_sample_mse_error",
    "per_sample_psnr_score",
    "per_sample_ssim_score",
    "register",
    "summarize",
]
