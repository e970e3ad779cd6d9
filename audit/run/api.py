"""The Python way in: audit your own model on a manifest from a notebook, without the CLI or MLflow.

Example:
    >>> from genfair.audit import audit_model  # doctest: +SKIP
    >>> result = audit_model(my_sr_net, "faces/manifest.csv", task="upsampling", scale=4)  # doctest: +SKIP
    >>> from genfair.reports import log_audit  # doctest: +SKIP
    >>> log_audit(result, experiment="my-sr")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from genfair.audit.label_noise import MIN_ACCURACY
from genfair.audit.result import AuditResult

from .config import RunConfig
from .runner import audit_plan, plan_run
from .sources import ModuleSource

__all__ = ["audit_model"]


def audit_model(
    model: torch.nn.Module,
    manifest: str | os.PathLike[str],
    *,
    attributes: Sequence[str] | None = None,
    task: Literal["reconstruction", "upsampling"] = "reconstruction",
    scale: int | None = None,
    name: str | None = None,
    image_size: int = 64,
    channels: int = 3,
    batch_size: int = 32,
    seed: int = 0,
    classifier_epochs: int = 5,
    classifier: Literal["cnn", "embedding"] = "cnn",
    classifier_min_accuracy: float = MIN_ACCURACY,
    identity: bool = False,
    reference: str = "best",
    allow_outside_root: bool = False,
) -> AuditResult:
    """Audit ``model`` as it is on the test split of ``manifest``, per group, with intervals.

    The same audit as ``audit run --model file.py:factory --manifest M``: the same split (the
    manifest's ``split`` column, else a seeded split by person), the same tables; nothing is
    logged (pass the result to :func:`genfair.reports.log_audit`).

    Args:
        model: maps inputs ``(N, C, h, w)`` float in [0, 1] to outputs ``(N, C, H, W)`` in [0, 1]
            at the original's size: the image itself for reconstruction, its average-pooled
            version (by ``scale``) for upsampling.
        manifest: a CSV/Parquet manifest (``path``, ``subject``, attributes, optional ``split``).
        attributes: the sensitive attribute columns; None: every non-reserved column.
        task: ``"reconstruction"`` or ``"upsampling"``.
        scale: the upsampling factor (2, 4 or 8; upsampling only).
        name: the model's name in the result; None: its class name.
        image_size: side of the square images, in pixels.
        channels: 3 (RGB) or 1 (greyscale).
        batch_size: images per batch.
        seed: seeds the split, the classifier and every resampling.
        classifier_epochs: epochs of the attribute classifier (trained on the training split, every
            intersectional group drawn equally often; checked on the other splits); 0 skips it.
        classifier: ``"cnn"`` or ``"embedding"`` (dlib face embeddings; the ``faces`` extra).
        classifier_min_accuracy: withhold the representation claims of a group the classifier
            labels right less often than this, per attribute.
        identity: measure identity drift with dlib's face recogniser (the ``faces`` extra).
        reference: the group each group is compared with: ``best``, ``largest`` or a label.
        allow_outside_root: accept manifest paths outside the manifest's folder.

    Returns:
        The :class:`~genfair.audit.result.AuditResult`.

    Raises:
        ValueError: a bad manifest or option, or outputs of the wrong shape, dtype, or with NaN.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = RunConfig(
        model=f"{type(model).__module__}:{type(model).__qualname__}", manifest=os.fspath(manifest),
        attributes=tuple(attributes) if attributes is not None else None, task=task, scale=scale,
        name=name or type(model).__name__, image_size=image_size, channels=channels, batch_size=batch_size,
        seed=seed, classifier_epochs=classifier_epochs, classifier=classifier,
        classifier_min_accuracy=classifier_min_accuracy, identity=identity, reference=reference,
        allow_outside_root=allow_outside_root,
        accelerator="cpu",
    )
    plan = plan_run(config, module=model)
    from .config import run_metadata

    metadata = run_metadata(config, plan.dataset_name, plan.manifest, plan.datamodule, plan.model_config,
                            task=plan.task)
    with tempfile.TemporaryDirectory(prefix="genfair-audit-") as folder:
        result, _ = audit_plan(plan, ModuleSource(model, plan.datamodule), metadata, Path(folder), progress_bar=False)
    return result
