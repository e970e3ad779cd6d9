"""One audit run, end to end: data -> model -> predictions -> per-group audit -> MLflow.

This module is the composition root (with ``cli.py``): the only place that imports every
package. It holds no statistics of its own; it wires ``genfair.datasets``, ``genfair.models``,
the audit core and ``genfair.reports`` together and owns the MLflow run's life cycle.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import math
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytorch_lightning as pl
import torch

from genfair import datasets, models
from genfair.audit.metrics import names as metric_names
from genfair.audit.metrics import per_sample_metrics
from genfair.audit.result import AuditResult, summarize
from genfair.datasets import FacesDataModule, Manifest
from genfair.reports import error_by_group_figure, log_audit, reconstruction_grid_figure

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "genfair"
GRID_IMAGES_PER_GROUP = 2
VERSIONED_PACKAGES = ("genfair", "torch", "pytorch-lightning", "torchmetrics", "fairlearn", "mlflow", "pandas")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one ``audit run`` needs; logged to MLflow as parameters.

    Args:
        model: model registry key (``genfair.models.names()``).
        dataset: dataset registry key (``genfair.datasets.names()``); ignored when ``manifest`` is set.
        manifest: path of a CSV/Parquet manifest to audit instead of a named dataset.
        attributes: sensitive attribute columns; None means the dataset's own (or, for a
            manifest, every non-reserved column).
        epochs: training epochs.
        batch_size: images per batch.
        seed: seeds the data split, the weights' initialisation and the data order.
        image_size: side of the square images the model sees, in pixels.
        channels: 3 for RGB, 1 for grayscale.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: Lightning devices; one for now (a GPU or the CPU): gathering per-image
            predictions across DDP ranks is not built yet.
        tracking_uri: MLflow tracking URI; None means ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<cwd>/mlflow.db``.
        experiment: MLflow experiment name.
        cache_dir: where generated datasets are cached; None means ``$GENFAIR_CACHE_DIR``
            or ``~/.cache/genfair``.
    """

    model: str = "vae"
    dataset: str = "faces"
    manifest: str | None = None
    attributes: tuple[str, ...] | None = None
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    image_size: int = 64
    channels: int = 3
    accelerator: str = "auto"
    devices: int = 1
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.devices != 1:
            raise ValueError(
                f"--devices {self.devices!r}: this version audits on one device; multi-device (DDP) runs "
                "are not supported yet, use --devices 1"
            )
        if self.attributes is not None and len(self.attributes) == 0:
            raise ValueError("--attributes must name at least one column, got an empty list")


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run hands back to its caller (the CLI prints it)."""

    result: AuditResult
    run_id: str
    experiment_id: str
    tracking_uri: str


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The explicit URI, else ``$MLFLOW_TRACKING_URI``, else a SQLite store in the working directory."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_cache_dir(cache_dir: str | None) -> Path:
    """The explicit folder, else ``$GENFAIR_CACHE_DIR``, else ``$XDG_CACHE_HOME/genfair`` (``~/.cache``)."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("GENFAIR_CACHE_DIR"):
        return Path(os.environ["GENFAIR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genfair"


def load_run_manifest(config: RunConfig) -> tuple[str, Manifest]:
    """Resolve the dataset (a named one or a manifest file) to a validated manifest.

    Returns:
        The dataset's display name and its manifest.
    """
    if config.manifest is not None:
        return Path(config.manifest).name, datasets.load_manifest(config.manifest, attributes=config.attributes)
    builder = datasets.get(config.dataset)
    spec = builder(cache_dir=resolve_cache_dir(config.cache_dir), image_size=config.image_size, seed=config.seed)
    attributes = config.attributes if config.attributes is not None else spec.attributes
    return spec.name, datasets.load_manifest(spec.manifest_path, attributes=attributes)


def run_audit(config: RunConfig, *, progress_bar: bool = True) -> RunOutcome:
    """Train ``config.model`` on the dataset, audit its test-split outputs per group, log to MLflow.

    Everything that can fail on bad input (manifest, registry keys, options) is checked before
    the MLflow run opens, so a usage error never leaves an empty run behind.

    Raises:
        ValueError: an invalid option, an unknown model or dataset, or a bad manifest.
    """
    model_spec = models.get(config.model)
    dataset_name, manifest = load_run_manifest(config)
    model_config = model_spec.config(image_size=config.image_size, channels=config.channels, seed=config.seed)
    datamodule = FacesDataModule(
        manifest, image_size=config.image_size, channels=config.channels, batch_size=config.batch_size, seed=config.seed
    )
    datamodule.setup("fit")

    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment(config.experiment)

    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = model_spec.module.from_config(model_config)
    metadata = _run_metadata(config, dataset_name, manifest, datamodule, model_config)

    with mlflow.start_run(run_name=f"{config.model}-{dataset_name}-seed{config.seed}") as run:
        mlflow.set_tags(
            {"genfair.model": config.model, "genfair.dataset": dataset_name, "genfair.seed": str(config.seed)}
        )
        with tempfile.TemporaryDirectory(prefix="genfair-run-") as workdir:
            trainer = pl.Trainer(
                max_epochs=config.epochs,
                accelerator=config.accelerator,
                devices=config.devices,
                logger=False,
                callbacks=_callbacks(progress_bar),
                enable_checkpointing=False,
                enable_progress_bar=progress_bar,
                enable_model_summary=False,
                default_root_dir=workdir,
                deterministic="warn",  # deterministic kernels where they exist (not all do on GPU)
            )
            trainer.fit(module, datamodule=datamodule)
            checkpoint = Path(workdir) / "model.ckpt"
            trainer.save_checkpoint(checkpoint)
            mlflow.log_artifact(str(checkpoint), artifact_path="model")

            indices, outputs = _predict(trainer, module, datamodule)
        targets = _load_targets(datamodule, indices)
        per_image = _per_image_frame(manifest, indices, outputs, targets)
        result = summarize(per_image, attributes=manifest.attributes, metrics=metric_names(), metadata=metadata)
        _log_result(result, manifest, indices, outputs, targets)
    return RunOutcome(
        result=result, run_id=run.info.run_id, experiment_id=experiment.experiment_id, tracking_uri=tracking_uri
    )


def _callbacks(progress_bar: bool) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = [EpochMetricsToMlflow()]
    if progress_bar:
        callbacks.append(pl.callbacks.RichProgressBar(leave=True))
    return callbacks


def _predict(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: FacesDataModule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs for the test split: row indices ``(N,)`` and outputs ``(N, C, H, W)`` in [0, 1]."""
    batches = trainer.predict(module, datamodule=datamodule)
    indices = torch.cat([batch["index"] for batch in batches]).cpu()
    outputs = torch.cat([batch["output"] for batch in batches]).float().cpu()
    return indices, outputs


def _load_targets(datamodule: FacesDataModule, indices: torch.Tensor) -> torch.Tensor:
    """The original images for manifest rows ``indices``: ``(N, C, H, W)`` in [0, 1]."""
    return torch.stack([datamodule.load_image(int(row)) for row in indices])


def _per_image_frame(
    manifest: Manifest, indices: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
) -> pd.DataFrame:
    """One row per evaluated image: ``path, subject, <attributes>, <metric columns>``."""
    rows = manifest.frame.iloc[indices.numpy()]
    per_image = rows[["path", "subject", *manifest.attributes]].reset_index(drop=True)
    for name, values in per_sample_metrics(outputs, targets).items():
        per_image[name] = values.double().numpy()
    return per_image


def _log_result(
    result: AuditResult, manifest: Manifest, indices: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
) -> None:
    originals, reconstructions, labels = _grid_sample(result.per_image, manifest.attributes, outputs, targets)
    figures = {
        "error_by_group": error_by_group_figure(result.per_image, metric="mse_error", attributes=manifest.attributes),
        "reconstructions": reconstruction_grid_figure(originals, reconstructions, labels),
    }
    log_audit(result, figures=figures)


def _grid_sample(
    per_image: pd.DataFrame, attributes: Sequence[str], outputs: torch.Tensor, targets: torch.Tensor
) -> tuple[Any, Any, list[str]]:
    """The first images of the first subjects of every intersectional group, as ``(N, H, W, C)`` arrays."""
    picks: list[int] = []
    labels: list[str] = []
    for group, rows in per_image.groupby(list(attributes), sort=True):
        first_per_subject = rows.drop_duplicates("subject").index[:GRID_IMAGES_PER_GROUP]
        picks.extend(first_per_subject)
        labels.extend(" / ".join(map(str, group if isinstance(group, tuple) else (group,))) for _ in first_per_subject)
    to_hwc = lambda images: images[picks].permute(0, 2, 3, 1).numpy()  # noqa: E731
    return to_hwc(targets), to_hwc(outputs), labels


def _run_metadata(
    config: RunConfig, dataset_name: str, manifest: Manifest, datamodule: FacesDataModule, model_config: Any
) -> dict[str, Any]:
    """Plain, JSON-ready facts about the run: logged as MLflow params and saved with the result."""
    splits = {
        split: {
            "images": len(frame),
            "subjects": int(frame["subject"].nunique()),
            "composition": {
                " / ".join(map(str, key if isinstance(key, tuple) else (key,))): int(count)
                for key, count in frame.drop_duplicates("subject").groupby(list(manifest.attributes)).size().items()
            },
        }
        for split in ("train", "val", "test")
        for frame in [datamodule.split_frame(split)]
    }
    return {
        "model": config.model,
        "model_config": dataclasses.asdict(model_config),
        "dataset": dataset_name,
        "manifest": str(manifest.source),
        "manifest_sha256": manifest.sha256,
        "attributes": list(manifest.attributes),
        "run": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("tracking_uri", "cache_dir")},
        "splits": splits,
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in VERSIONED_PACKAGES}},
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _epoch_metrics_to_mlflow_base() -> type:
    return pl.Callback


class EpochMetricsToMlflow(_epoch_metrics_to_mlflow_base()):  # type: ignore[misc]
    """Logs the epoch-level training and validation metrics to the active MLflow run, one batch per epoch."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, prefix="val/")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, prefix="train/")

    @staticmethod
    def _log(trainer: pl.Trainer, *, prefix: str) -> None:
        values = {
            name.removesuffix("_epoch"): float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(prefix) and not name.endswith("_step") and math.isfinite(float(value))
        }
        if values:
            mlflow.log_metrics(values, step=trainer.current_epoch)
