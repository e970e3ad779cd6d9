"""genfair.audit: per-image metrics, per-group tables, disparities, their uncertainty, and the audit result.

Importing this package is cheap: torch, torchmetrics, numpy, pandas, scipy and fairlearn are
imported inside the functions that use them, so the ``audit`` command answers ``--help`` fast.
"""

from .compare import (
    COMPARISON_DISPARITY_COLUMNS,
    COMPARISON_GROUP_COLUMNS,
    Comparison,
    RepresentationResult,
    compare_models,
    paired_differences,
    proportional_representation,
    representation_demographic_parity,
    uninformative_conditional_proportional_representation,
)
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
from .skin import central_face_mask, individual_typology_angle, per_sample_ita_shift, srgb_to_lab
from .stats import (
    DISPARITY_INTERVAL_COLUMNS,
    EVIDENCE_INSUFFICIENT,
    EVIDENCE_SUFFICIENT,
    GROUP_INTERVAL_COLUMNS,
    StatsConfig,
    disparity_intervals,
    group_intervals,
    holm,
    interval_tables,
)

__all__ = [
    "COMPARISON_DISPARITY_COLUMNS",
    "COMPARISON_GROUP_COLUMNS",
    "DISPARITY_COLUMNS",
    "DISPARITY_INTERVAL_COLUMNS",
    "EVIDENCE_INSUFFICIENT",
    "EVIDENCE_SUFFICIENT",
    "GROUP_COLUMNS",
    "GROUP_INTERVAL_COLUMNS",
    "METRICS",
    "REGISTRY",
    "RESULT_FILES",
    "AuditResult",
    "Comparison",
    "MetricSpec",
    "RepresentationResult",
    "StatsConfig",
    "central_face_mask",
    "compare_models",
    "disparity_intervals",
    "disparity_table",
    "get",
    "group_intervals",
    "group_table",
    "holm",
    "individual_typology_angle",
    "interval_tables",
    "names",
    "paired_differences",
    "per_sample_ita_shift",
    "per_sample_mae_error",
    "per_sample_metrics",
    "per_sample_mse_error",
    "per_sample_psnr_score",
    "per_sample_ssim_score",
    "proportional_representation",
    "register",
    "representation_demographic_parity",
    "srgb_to_lab",
    "summarize",
    "uninformative_conditional_proportional_representation",
]
