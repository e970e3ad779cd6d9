"""Hand-built audit frames (the contracts' exact columns) shared by the reports tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.result import AuditResult

ATTRIBUTES = ("gender", "skin_tone")
METRICS = {"mse_error": False, "psnr_score": True}  # name -> higher_is_better


def make_per_image(*, with_inf: bool = False) -> pd.DataFrame:
    """8 images, 6 subjects, 4 intersectional groups; one ``inf`` PSNR when ``with_inf``."""
    mse = np.array([0.010, 0.012, 0.030, 0.020, 0.004, 0.006, 0.016, 0.008])
    frame = pd.DataFrame(
        {
            "path": [f"img/{i}.png" for i in range(8)],
            "subject": ["s0", "s0", "s1", "s2", "s3", "s3", "s4", "s5"],
            "gender": ["female", "female", "female", "female", "male", "male", "male", "male"],
            "skin_tone": ["lighter", "lighter", "darker", "darker", "lighter", "lighter", "darker", "darker"],
            "mse_error": mse,
            "psnr_score": -10.0 * np.log10(mse),
        }
    )
    if with_inf:
        frame.loc[4, ["mse_error", "psnr_score"]] = [0.0, np.inf]
    return frame


def make_per_group(per_image: pd.DataFrame) -> pd.DataFrame:
    """``grouping, group, n_images, n_subjects, <metric means>``: overall, each attribute, the intersection."""
    rows = [_group_row("overall", "all", per_image)]
    for attributes in ([a] for a in ATTRIBUTES):
        for (value,), part in per_image.groupby(attributes, sort=True):
            rows.append(_group_row(attributes[0], value, part))
    for values, part in per_image.groupby(list(ATTRIBUTES), sort=True):
        rows.append(_group_row(" x ".join(ATTRIBUTES), " / ".join(values), part))
    return pd.DataFrame(rows)


def make_disparities(per_group: pd.DataFrame) -> pd.DataFrame:
    """One row per (grouping other than overall, metric), worst/best by the metric's direction."""
    overall = per_group.loc[per_group["grouping"] == "overall"].iloc[0]
    rows = []
    for grouping, part in per_group.loc[per_group["grouping"] != "overall"].groupby("grouping", sort=False):
        for metric, higher_is_better in METRICS.items():
            ordered = part.sort_values(metric, ascending=higher_is_better)
            worst, best = ordered.iloc[0], ordered.iloc[-1]
            rows.append(
                {
                    "grouping": grouping,
                    "metric": metric,
                    "higher_is_better": higher_is_better,
                    "overall": overall[metric],
                    "worst_group": worst["group"],
                    "worst": worst[metric],
                    "best_group": best["group"],
                    "best": best[metric],
                    "ratio": worst[metric] / best[metric],
                    "difference": abs(worst[metric] - best[metric]),
                }
            )
    return pd.DataFrame(rows)


def make_result(*, with_inf: bool = False, metadata: dict | None = None) -> AuditResult:
    per_image = make_per_image(with_inf=with_inf)
    per_group = make_per_group(per_image)
    return AuditResult(
        per_image=per_image,
        per_group=per_group,
        disparities=make_disparities(per_group),
        metadata=metadata if metadata is not None else dict(METADATA),
    )


METADATA = {
    "model": "vae",
    "dataset": "faces",
    "manifest_sha256": "ab" * 32,
    "attributes": ["gender", "skin_tone"],
    "model_config": {"image_size": 16, "channels": 3, "latent_dim": 8},
    "splits": {"test": {"images": 8, "composition": {"female / darker": 2}}},
    "seed": 0,
}


def _group_row(grouping: str, group: str, part: pd.DataFrame) -> dict:
    return {
        "grouping": grouping,
        "group": group,
        "n_images": len(part),
        "n_subjects": part["subject"].nunique(),
        **{metric: part[metric].mean() for metric in METRICS},
    }


@pytest.fixture
def per_image() -> pd.DataFrame:
    return make_per_image()


@pytest.fixture
def result_factory():
    """``make_result(*, with_inf=False, metadata=None) -> AuditResult``."""
    return make_result

