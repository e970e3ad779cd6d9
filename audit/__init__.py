"""genfair.audit: per-image metrics, per-group tables, disparities, their uncertainty, and the audit result.

The pure core of the audit lives in this package's modules (no Lightning, no MLflow, no plotting);
the composition root lives in its sub-packages: :mod:`genfair.audit.run` (where outputs come
from, training, studies) and :mod:`genfair.audit.cli` (the ``audit`` command).

The ways in from Python: :func:`audit_outputs` (outputs held in memory) and :func:`audit_model`
(your ``torch.nn.Module`` on a manifest; loaded from :mod:`genfair.audit.run` on first use).

Importing this package is cheap: torch, torchmetrics, numpy, pandas, scipy and fairlearn are
imported inside the functions that use them, so the ``audit`` command answers ``--help`` fast.
"""

from typing import Any

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
from .panel import (
    BASELINE_PREFIX,
    SKIN_MEASURES,
    SKIN_TONE_SHIFT,
    audit_frame,
    audit_outputs,
    majority_groups,
    majority_notes,
    score_batch,
)
from .result import RESULT_FILES, AuditResult, summarize
from .skin import (
    HUE_SHIFT,
    LIGHTNESS_SHIFT,
    central_face_mask,
    hue_angle,
    individual_typology_angle,
    per_sample_hue_shift,
    per_sample_ita_shift,
    per_sample_lightness_shift,
    per_sample_skin_shifts,
    perceptual_lightness,
    srgb_to_lab,
    wrap_degrees,
)
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
    "BASELINE_PREFIX",
    "HUE_SHIFT",
    "LIGHTNESS_SHIFT",
    "SKIN_MEASURES",
    "SKIN_TONE_SHIFT",
    "audit_frame",
    "audit_model",
    "audit_outputs",
    "majority_groups",
    "majority_notes",
    "score_batch",
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
    "hue_angle",
    "individual_typology_angle",
    "interval_tables",
    "names",
    "paired_differences",
    "per_sample_hue_shift",
    "per_sample_ita_shift",
    "per_sample_lightness_shift",
    "per_sample_mae_error",
    "per_sample_metrics",
    "per_sample_mse_error",
    "per_sample_psnr_score",
    "per_sample_skin_shifts",
    "per_sample_ssim_score",
    "perceptual_lightness",
    "proportional_representation",
    "register",
    "representation_demographic_parity",
    "srgb_to_lab",
    "summarize",
    "uninformative_conditional_proportional_representation",
    "wrap_degrees",
]


def __getattr__(name: str) -> Any:
    """``audit_model`` runs a model over a manifest's images: it lives in the run, imported on first use."""
    if name == "audit_model":
        from .run.api import audit_model

        return audit_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
