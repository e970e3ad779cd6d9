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
import signal
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.exceptions import SIGTERMException

from genfair import datasets, models
from genfair.audit.attributes import classified_column, classifier_accuracy, representation_tables
from genfair.audit.compare import compare_models
from genfair.audit.faults import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    RUNS_DIR,
    NonFiniteLoss,
    TrainingInterrupted,
    TrainingStopped,
    keep_checkpoints,
    relocate_checkpoint_state,
    store_lock,
)
from genfair.audit.grouping import GROUP_SEPARATOR, GROUPING_SEPARATOR, group_table
from genfair.audit.metrics import names as metric_names
from genfair.audit.metrics import per_sample_metrics
from genfair.audit.result import AuditResult, summarize
from genfair.audit.skin import per_sample_ita_shift
from genfair.audit.stats import interval_tables
from genfair.datasets import FacesDataModule, Manifest
from genfair.models import AttributeClassifier, AttributeClassifierConfig
from genfair.reports import error_by_group_figure, log_audit, reconstruction_grid_figure
from genfair.reports.tracking import check_tracking_uri, resolve_tracking_uri

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "genfair"
GRID_IMAGES_PER_GROUP = 2
SKIN_TONE_SHIFT = "ita_shift"  # per-image column: ITA(output) - ITA(original), degrees
UNINFORMATIVE_SIDE = 4  # px: Laszkiewicz et al. (2024) feed upsamplers 4x4 averaged faces for UCPR
UNINFORMATIVE_INPUTS = 200
VERSIONED_PACKAGES = ("genfair", "torch", "pytorch-lightning", "torchmetrics", "fairlearn", "mlflow", "pandas")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one ``audit run`` needs; logged to MLflow as parameters.

    Args:
        model: model registry key (``genfair.models.names()``).
        dataset: dataset registry key (``genfair.datasets.names()``); ignored when ``manifest`` is set.
        manifest: path of a CSV/Parquet manifest to audit instead of a named dataset.
        allow_outside_root: accept manifest paths that are absolute or climb out of the
            manifest's folder with ``..`` (refused by default).
        attributes: sensitive attribute columns; None means the dataset's own (or, for a
            manifest, every non-reserved column).
        epochs: the most training epochs (early stopping may end sooner).
        batch_size: images per batch (per device).
        seed: seeds the data split, the weights' initialisation and the data order.
        image_size: side of the square images the model sees, in pixels.
        channels: 3 for RGB, 1 for grayscale.
        scale: downsampling factor a super-resolution model upsamples from (2, 4 or 8).
        model_options: ``(field, value)`` pairs overriding the model config's defaults.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: Lightning devices per node: a count, ``-1`` for all, or ``auto``.
        num_nodes: machines in a multi-node run (launched by torchrun or SLURM).
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        precision: Lightning precision (``32-true``, ``16-mixed``, ``bf16-mixed``).
        patience: epochs without a better validation loss before training stops; 0 never stops early.
        classifier_epochs: epochs of the attribute classifier trained on the real training
            images (it labels originals and outputs); 0 skips it.
        resume: a checkpoint to continue training from.
        checkpoint: a trained checkpoint to audit without training.
        tracking_uri: MLflow tracking URI; None means ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<cwd>/mlflow.db``.
        experiment: MLflow experiment name.
        cache_dir: where generated datasets are cached; None means ``$GENFAIR_CACHE_DIR``
            or ``~/.cache/genfair``.
        parent_run_id: an MLflow run to file this run under (``audit compare``'s parent run).
        data_seed: seeds the dataset's generation and split; None means ``seed``. An attribution
            study varies ``seed`` (the weights' initialisation) with ``data_seed`` fixed, so that
            every cell audits the same people.
        composition: ``"as-given"`` or ``"balanced"``: the training composition. A dataset
            with a generator makes a balanced counterfactual (the synthetic faces); otherwise
            training subjects are subsampled to the smallest group's count.
        objective: ``"erm"``, ``"reweighted"`` (inverse training frequency of the intersectional
            group) or ``"group-dro"`` (online group DRO); see :mod:`genfair.models.objectives`.
        dro_eta: group DRO's step size; None means :data:`DRO_ETA` for the model.
        sampler: ``"shuffle"`` or ``"balanced"`` (every intersectional group drawn equally often).
        reference: the group every group is compared with in the interval tables: ``"best"``,
            ``"largest"`` (most people) or a group's label (e.g. ``"male / lighter"``).
    """

    model: str = "vae"
    dataset: str = "faces"
    manifest: str | None = None
    allow_outside_root: bool = False
    attributes: tuple[str, ...] | None = None
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    image_size: int = 64
    channels: int = 3
    scale: int | None = None
    model_options: tuple[tuple[str, str], ...] = ()
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    patience: int = 3
    classifier_epochs: int = 5
    resume: str | None = None
    checkpoint: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    cache_dir: str | None = None
    parent_run_id: str | None = None
    data_seed: int | None = None
    composition: str = "as-given"
    objective: str = "erm"
    dro_eta: float | None = None
    sampler: str = "shuffle"
    reference: str = "best"

    def __post_init__(self) -> None:
        for option, value, choices in (("--composition", self.composition, datasets.COMPOSITIONS),
                                       ("--objective", self.objective, models.OBJECTIVES),
                                       ("--sampler", self.sampler, datasets.SAMPLERS)):
            if value not in choices:
                raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
        if self.dro_eta is not None and not self.dro_eta > 0:
            raise ValueError(f"--dro-eta must be a positive number, got {self.dro_eta!r}")
        for name in ("epochs", "batch_size", "image_size", "num_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.classifier_epochs < 0:
            raise ValueError(f"--classifier-epochs must be 0 (no classifier) or more, got {self.classifier_epochs!r}")
        if self.patience < 0:
            raise ValueError(f"--patience must be 0 (never stop early) or more, got {self.patience!r}")
        if self.attributes is not None and len(self.attributes) == 0:
            raise ValueError("--attributes must name at least one column, got an empty list")
        if self.resume is not None and self.checkpoint is not None:
            raise ValueError(
                "--resume and --checkpoint conflict: --resume continues training, --checkpoint audits "
                "without training; pass one"
            )
        for option, path in (("--resume", self.resume), ("--checkpoint", self.checkpoint)):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{option} {path}: no such checkpoint file")

    @property
    def split_seed(self) -> int:
        """The seed of the dataset's generation and split: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def lightning_devices(self) -> int | str:
        """``devices`` as Lightning wants it: an int for a count, else the string (``auto``)."""
        return int(self.devices) if self.devices.lstrip("-").isdigit() else self.devices


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run hands back to its caller (the CLI prints it)."""

    result: AuditResult
    run_id: str
    experiment_id: str
    tracking_uri: str


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
        manifest = datasets.load_manifest(
            config.manifest, attributes=config.attributes, allow_outside_root=config.allow_outside_root
        )
        return Path(config.manifest).name, manifest
    builder = datasets.get(config.dataset)
    spec = builder(cache_dir=resolve_cache_dir(config.cache_dir), image_size=config.image_size,
                   seed=config.split_seed, composition=config.composition)
    attributes = config.attributes if config.attributes is not None else spec.attributes
    return spec.name, datasets.load_manifest(spec.manifest_path, attributes=attributes)


def run_audit(config: RunConfig, *, progress_bar: bool = True) -> RunOutcome | None:
    """Train ``config.model`` on the dataset, audit its test-split outputs per group, log to MLflow.

    Everything that can fail on bad input (tracking store, registry keys, options, manifest) is
    checked before the MLflow run opens, so a usage error never leaves an empty run behind. Under DDP every
    rank trains and predicts; only global rank 0 talks to MLflow and returns the outcome
    (the other ranks return None).

    Training that stops early keeps its checkpoints in ``genfair-runs/<run id>/`` (and in the
    run, under ``model/``) and marks the run FAILED or KILLED; see :mod:`genfair.audit.faults`.

    Raises:
        ValueError: an unreachable tracking store, an invalid option, an unknown model or dataset,
            or a bad manifest.
        genfair.audit.faults.NonFiniteLoss: the training loss became NaN or infinite.
        genfair.audit.faults.TrainingInterrupted: SIGINT or SIGTERM stopped training.
    """
    check_tracking_uri(config.tracking_uri)
    model_spec = models.get(config.model)
    model_config = build_model_config(model_spec, config)
    dataset_name, manifest = load_run_manifest(config)
    _check_reference(config.reference, manifest)
    datamodule = FacesDataModule(
        manifest,
        image_size=config.image_size,
        channels=config.channels,
        batch_size=config.batch_size,
        seed=config.split_seed,
        lowres_scale=getattr(model_config, "scale", None),
        # a manifest (or a dataset without a generator of balanced data) is balanced by subsampling
        balance_training=config.composition == "balanced" and not _generates_balanced(config),
        sampler=config.sampler,
    )
    datamodule.setup("fit")
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = _load_module(model_spec, model_config, config.checkpoint)
    _set_objective(module, config, datamodule)
    max_epochs = 0 if config.checkpoint else (model_spec.max_epochs if model_spec.max_epochs is not None else config.epochs)
    metadata = _run_metadata(config, dataset_name, manifest, datamodule, model_config)

    with tempfile.TemporaryDirectory(prefix="genfair-run-") as workdir:
        trainer = _trainer(config, workdir, max_epochs=max_epochs, progress_bar=progress_bar)
        if not trainer.is_global_zero:  # DDP rank > 0: train and predict alongside rank 0, log nothing
            _fit_and_predict(trainer, module, datamodule, config, max_epochs, Path(workdir))
            return None
        tracking_uri = resolve_tracking_uri(config.tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        with store_lock(tracking_uri):  # two runs creating one SQLite store at once would break its schema
            experiment = mlflow.set_experiment(config.experiment)
        with mlflow.start_run(run_name=f"{config.model}-{dataset_name}-seed{config.seed}") as run:
            mlflow.set_tags(_run_tags(config, dataset_name, metadata))
            try:
                indices, outputs, checkpoint = _fit_and_predict(
                    trainer, module, datamodule, config, max_epochs, Path(workdir)
                )
                mlflow.log_artifact(str(checkpoint), artifact_path="model")
                items = _load_test_items(datamodule, indices)
                result = _audit(config, datamodule, module, indices, outputs, items, metadata, Path(workdir))
                _log_result(result, manifest, indices, outputs, items["image"])
            except TrainingStopped as stopped:  # keeps the checkpoints, marks the run, completes the message
                _keep_stopped_run(stopped, run.info.run_id, trainer)
                raise
            except (KeyboardInterrupt, SystemExit):  # Ctrl+C outside training (or twice): KILLED, not FAILED
                mlflow.end_run(status="KILLED")
                raise
    return RunOutcome(
        result=result, run_id=run.info.run_id, experiment_id=experiment.experiment_id, tracking_uri=tracking_uri
    )


def _audit(
    config: RunConfig,
    datamodule: FacesDataModule,
    module: pl.LightningModule,
    indices: torch.Tensor,
    outputs: torch.Tensor,
    items: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    workdir: Path,
) -> AuditResult:
    """Per-image errors, classifier labels and skin-tone shift, then every per-group table.

    ``items`` holds the test images' ``image`` (the targets) and, where the DataModule makes
    them, ``lowres`` and ``mask``, stacked in the order of ``indices``.
    """
    active = mlflow.active_run()
    seconds_to_predictions = time.time() - active.info.start_time / 1000 if active is not None else math.nan
    manifest = datamodule.manifest
    attributes = manifest.attributes
    targets = items["image"]
    per_image = _per_image_frame(manifest, indices, outputs, targets)
    tables: dict[str, pd.DataFrame] = {}
    scale = datamodule.lowres_scale
    if config.classifier_epochs > 0:
        classifier = _train_classifier(config, datamodule, workdir)
        mlflow.log_artifact(str(workdir / "classifier.ckpt"), artifact_path="classifier")
        per_image = _add_classifications(per_image, classifier, datamodule, targets, outputs)
        tables["classifier_accuracy"] = classifier_accuracy(per_image, attributes=attributes)
        tables["attribute_preservation"] = classifier_accuracy(per_image, attributes=attributes, output=True)
        uninformative = None
        if scale is not None:
            inputs = _uninformative_inputs(targets, per_image, attributes, scale, config.seed)
            uninformative = _classify(classifier, _outputs_of(module, inputs), datamodule)
        tables["representation"], tables["representation_tests"] = representation_tables(
            per_image, attributes=attributes, majority=_majority_groups(datamodule), uninformative=uninformative,
            seed=config.seed,
        )
    shift = _skin_tone_shift(outputs, targets, items.get("mask"))
    if shift is not None:
        per_image[SKIN_TONE_SHIFT] = shift.double().numpy()
        tables["skin_tone_shift"] = group_table(per_image, attributes=attributes, metrics=[SKIN_TONE_SHIFT])
        tables["skin_tone_intervals"], tables["skin_tone_disparities"] = _without_ratios(
            *interval_tables(per_image, attributes=attributes, metrics=[SKIN_TONE_SHIFT], seed=config.seed,
                             reference=config.reference)
        )
    tables["group_intervals"], tables["disparity_intervals"] = interval_tables(
        per_image, attributes=attributes, metrics=metric_names(), seed=config.seed, reference=config.reference
    )
    if scale is not None and config.model != "bicubic":
        baseline = _per_image_frame(manifest, indices, models.bicubic_upsample(items["lowres"], scale=scale), targets)
        versus = compare_models(baseline, per_image, attributes=attributes, metrics=metric_names(), seed=config.seed)
        tables["vs_bicubic_groups"], tables["vs_bicubic_disparities"] = versus.per_group, versus.disparities
    tables["model_facts"] = _model_facts(module, items["lowres"] if scale is not None else targets,
                                         seconds_to_predictions)
    tables["samples"] = _samples(per_image, attributes, outputs, targets)
    if hasattr(module, "encode_latent"):
        tables["latents"] = _latent_codes(module, targets, per_image)
    summary = summarize(per_image, attributes=attributes, metrics=metric_names(), metadata=metadata)
    return dataclasses.replace(summary, tables=tables)


def _model_facts(module: pl.LightningModule, inputs: torch.Tensor, seconds_to_predictions: float) -> pd.DataFrame:
    """One overall row: learned numbers, seconds from run start to predictions, CPU images per second.

    ``parameters`` counts the weights and the floating-point buffers (PCA's components and
    mean are fitted buffers, not trainable weights). Throughput is measured here, on the CPU,
    over the test split's inputs (one warm-up batch first), so every model is timed alike.
    """
    learned = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]
    parameters = sum(tensor.numel() for tensor in learned)
    _outputs_of(module, inputs[:8])  # warm-up: first-call allocations are not the model's speed
    start = time.perf_counter()
    _outputs_of(module, inputs)
    seconds = time.perf_counter() - start
    return pd.DataFrame({"grouping": ["overall"], "group": ["all"], "parameters": [float(parameters)],
                         "seconds_to_predictions": [seconds_to_predictions],
                         "images_per_second": [len(inputs) / seconds if seconds > 0 else math.nan]})


def _png(image: torch.Tensor) -> bytes:
    """A ``(C, H, W)`` image in [0, 1] as PNG bytes."""
    import io

    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _samples(per_image: pd.DataFrame, attributes: Sequence[str], outputs: torch.Tensor,
             targets: torch.Tensor) -> pd.DataFrame:
    """Originals and outputs (PNG bytes) of the first images of the first people of every group.

    The same people for every model audited on the same split: a comparison report shows them
    side by side without re-running any model.
    """
    picks = _grid_picks(per_image, attributes)
    frame = per_image.loc[picks, ["path", "subject", *attributes]].reset_index(drop=True)
    frame["original_png"] = [_png(targets[i]) for i in picks]
    frame["output_png"] = [_png(outputs[i]) for i in picks]
    return frame


def _latent_codes(module: pl.LightningModule, targets: torch.Tensor, per_image: pd.DataFrame,
                  batch_size: int = 256) -> pd.DataFrame:
    """Each test image's latent code (``encode_latent``): ``path`` then ``z_0 .. z_{k-1}``."""
    module = module.cpu().eval()
    with torch.no_grad():
        codes = torch.cat([module.encode_latent(chunk).float() for chunk in targets.split(batch_size)]).numpy()
    frame = pd.DataFrame(codes, columns=[f"z_{i}" for i in range(codes.shape[1])])
    frame.insert(0, "path", per_image["path"].to_numpy())
    return frame


def _without_ratios(per_group: pd.DataFrame, disparities: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interval tables of a signed measure (ΔITA) with the ratio columns blanked: a ratio of angles means nothing."""
    ratios = lambda frame: [column for column in frame.columns if column.startswith("ratio")]  # noqa: E731
    return per_group.assign(**dict.fromkeys(ratios(per_group), np.nan)), disparities.assign(
        **dict.fromkeys(ratios(disparities), np.nan)
    )


def _majority_groups(datamodule: FacesDataModule) -> dict[str, str]:
    """The group with most training images in each grouping (each attribute, then the intersection).

    Ties go to the label that sorts first, so the choice is repeatable.
    """
    train = datamodule.split_frame("train")
    attributes = list(datamodule.manifest.attributes)
    sets = [[attribute] for attribute in attributes] + ([attributes] if len(attributes) > 1 else [])
    majority = {}
    for columns in sets:
        labels = train[columns].astype(str).agg(GROUP_SEPARATOR.join, axis=1)
        counts = labels.value_counts()
        majority[GROUPING_SEPARATOR.join(columns)] = min(counts.index[counts == counts.max()])
    return majority


def _uninformative_inputs(
    targets: torch.Tensor, per_image: pd.DataFrame, attributes: Sequence[str], scale: int, seed: int
) -> torch.Tensor:
    """Low-resolution inputs that carry no group information, for UCPR: ``(N, C, H/s, W/s)``.

    Each is the average of one randomly drawn test image from every intersectional group (no
    group outweighs another), area-downsampled to 4x4 (Laszkiewicz et al.'s uninformative
    resolution; smaller if the model's input is smaller) and bicubic-upsampled to the model's
    input size.
    """
    groups = per_image.groupby(list(attributes), sort=True).ngroup().to_numpy()
    rng = np.random.default_rng(seed)
    picks = np.stack(
        [rng.choice(np.flatnonzero(groups == g), size=UNINFORMATIVE_INPUTS) for g in range(groups.max() + 1)], axis=1
    )
    averages = targets[torch.from_numpy(picks)].mean(dim=1)
    side = targets.shape[-1] // scale
    tiny = F.interpolate(averages, size=min(UNINFORMATIVE_SIDE, side), mode="area")
    return F.interpolate(tiny, size=side, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def _outputs_of(module: pl.LightningModule, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The trained module's outputs for ``inputs``, on the CPU, without gradients."""
    module = module.cpu().eval()
    with torch.no_grad():
        return torch.cat([module(chunk).float() for chunk in inputs.split(batch_size)])


def build_model_config(spec: models.ModelSpec, config: RunConfig) -> Any:
    """The model's config: the run's image size, channels and seed, ``--scale``, then ``model_options``.

    Raises:
        ValueError: an option the model's config does not have, or a value of the wrong type.
    """
    fields = {field.name: field for field in dataclasses.fields(spec.config)}
    values: dict[str, Any] = {"image_size": config.image_size, "channels": config.channels, "seed": config.seed}
    if config.scale is not None:
        if "scale" not in fields:
            scaled = [name for name in models.names() if "scale" in {f.name for f in dataclasses.fields(models.get(name).config)}]
            raise ValueError(f"--scale applies to super-resolution models ({', '.join(scaled)}), not to {config.model!r}")
        values["scale"] = config.scale
    settable = sorted(set(fields) - {"image_size", "channels", "seed", "scale"})
    for key, text in config.model_options:
        if key not in settable:
            import difflib

            close = difflib.get_close_matches(key, settable, n=1)
            raise ValueError(
                f"--model-option {key}={text}: model {config.model!r} has no option {key!r}"
                f"{f'; did you mean {close[0]!r}?' if close else ''}; its options: {', '.join(settable)}"
            )
        values[key] = _parse_option(key, text, fields[key].default)
    return spec.config(**values)


def _parse_option(key: str, text: str, default: Any) -> Any:
    """Parse a ``--model-option`` value like the field's default: bool, int, float, tuple of ints, or str."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        kind = "true or false" if isinstance(default, bool) else f"{type(default).__name__} like {default!r}"
        raise ValueError(f"--model-option {key}={text}: expected {kind}") from err
    return text


def _load_module(spec: models.ModelSpec, model_config: Any, checkpoint: str | None) -> pl.LightningModule:
    """A fresh model, or the trained one in ``checkpoint`` (which must fit the run's images)."""
    if checkpoint is None:
        return spec.module.from_config(model_config)
    try:
        module = spec.module.load_from_checkpoint(checkpoint, map_location="cpu")
    except (RuntimeError, KeyError, TypeError) as err:
        raise ValueError(f"--checkpoint {checkpoint}: not a checkpoint of a {spec.name!r} model ({err})") from err
    for field in ("image_size", "channels"):
        if getattr(module.config, field) != getattr(model_config, field):
            raise ValueError(
                f"--checkpoint {checkpoint}: trained with {field}={getattr(module.config, field)}, "
                f"but this run uses {field}={getattr(model_config, field)}; pass --{field.replace('_', '-')} "
                f"{getattr(module.config, field)}"
            )
    return module


def _trainer(config: RunConfig, workdir: str, *, max_epochs: int, progress_bar: bool) -> pl.Trainer:
    callbacks: list[pl.Callback] = [EpochMetricsToMlflow()]
    if max_epochs > 0:
        callbacks += [StopOnNonFiniteLoss(), StopOnSignal()]
        # dirpath=None: the folder comes from rank 0's default_root_dir, broadcast to every rank.
        # best.ckpt (lowest validation loss), then last.ckpt (every epoch's end: what --resume continues from).
        callbacks.append(ResumableCheckpoint(resume=config.resume, monitor="val/loss", mode="min",
                                             filename=BEST_CHECKPOINT.removesuffix(".ckpt"), save_top_k=1))
        callbacks.append(ResumableCheckpoint(resume=config.resume, filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
                                             save_top_k=1))
        if config.patience > 0:
            callbacks.append(pl.callbacks.EarlyStopping(monitor="val/loss", mode="min", patience=config.patience))
    if progress_bar:
        callbacks.append(pl.callbacks.RichProgressBar(leave=True))
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=config.accelerator,
        devices=config.lightning_devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=max_epochs > 0,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=workdir,
        deterministic="warn",  # deterministic kernels where they exist (not all do on GPU)
    )


def _fit_and_predict(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: FacesDataModule,
    config: RunConfig,
    max_epochs: int,
    workdir: Path,
) -> tuple[torch.Tensor, torch.Tensor, Path]:
    """Train (unless there is nothing to train), predict the test split with the best weights.

    Returns:
        Manifest row indices ``(N,)`` in increasing order, each test image once; outputs
        ``(N, C, H, W)`` in [0, 1]; and the checkpoint of the weights that produced them.
    """
    best = ""
    if max_epochs > 0:
        try:
            trainer.fit(module, datamodule=ResumableShuffle(datamodule), ckpt_path=config.resume)
        except SIGTERMException as err:  # Lightning stops at the end of a batch on SIGTERM (and, see StopOnSignal, SIGINT)
            signals = [callback.received for callback in trainer.callbacks if isinstance(callback, StopOnSignal)]
            raise TrainingInterrupted(
                epoch=trainer.current_epoch, step=trainer.global_step, signum=signals[0] or signal.SIGTERM
            ) from err
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    batches = trainer.predict(module, datamodule=datamodule, ckpt_path=best or None)
    indices, outputs = _gather_predictions(trainer, batches)
    checkpoint = Path(best) if best else workdir / "model.ckpt"
    if not best:
        trainer.save_checkpoint(checkpoint)  # every rank calls it; rank 0 writes
    return indices, outputs, checkpoint


def _keep_stopped_run(stopped: TrainingStopped, run_id: str, trainer: pl.Trainer) -> None:
    """Keep a stopped run's checkpoints in ``genfair-runs/<run id>/`` and in MLflow, and mark the run.

    The run becomes KILLED (a signal) or FAILED (a non-finite loss); ``stopped``'s message then
    names it and the kept ``last.ckpt`` (the end of the last finished epoch), if any.
    """
    files = [
        Path(path)
        for callback in trainer.checkpoint_callbacks
        for path in (callback.best_model_path, callback.last_model_path)  # type: ignore[attr-defined]
        if path
    ]
    kept = keep_checkpoints(dict.fromkeys(files), RUNS_DIR / run_id)
    try:
        for path in kept.values():
            mlflow.log_artifact(str(path), artifact_path="model")
    except Exception as err:  # noqa: BLE001 - the local copies are kept; say so rather than lose the message
        logger.warning("could not log the checkpoints to MLflow (%s); they are in %s", err, RUNS_DIR / run_id)
    status = "KILLED" if isinstance(stopped, TrainingInterrupted) else "FAILED"
    mlflow.set_tag("genfair.stopped", str(stopped))
    mlflow.end_run(status=status)
    stopped.kept(run=f"MLflow run {run_id} marked {status}", checkpoint=kept.get(LAST_CHECKPOINT))


def _gather_predictions(trainer: pl.Trainer, batches: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's predictions, each test image exactly once, ordered by manifest row.

    Under DDP the sampler pads the last batch with repeated images so every rank gets the same
    number; the repeats are dropped here.
    """
    indices = torch.cat([batch["index"] for batch in batches]).cpu()
    outputs = torch.cat([batch["output"] for batch in batches]).float().cpu()
    if trainer.world_size > 1:
        shards: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(shards, (indices, outputs))
        indices = torch.cat([shard[0] for shard in shards])
        outputs = torch.cat([shard[1] for shard in shards])
    unique, first = np.unique(indices.numpy(), return_index=True)  # sorted rows, first occurrence of each
    return torch.from_numpy(unique), outputs[torch.from_numpy(first)]


def _train_classifier(config: RunConfig, datamodule: FacesDataModule, workdir: Path) -> AttributeClassifier:
    """An attribute classifier trained on the real training images, saved as ``classifier.ckpt``.

    It trains on one device, in this process (rank 0 under DDP): it is small, and the audit
    needs it only after the model's predictions are gathered.
    """
    classes = datamodule.attribute_classes
    classifier = AttributeClassifier.from_config(
        AttributeClassifierConfig(
            image_size=config.image_size,
            channels=config.channels,
            num_classes=tuple(len(values) for values in classes.values()),
            seed=config.seed,
        )
    )
    trainer = pl.Trainer(
        max_epochs=config.classifier_epochs,
        accelerator=config.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(workdir),
        deterministic="warn",
    )
    trainer.fit(classifier, datamodule=datamodule)
    trainer.save_checkpoint(workdir / "classifier.ckpt")
    return classifier


def _classify(classifier: AttributeClassifier, images: torch.Tensor, datamodule: FacesDataModule,
              batch_size: int = 256) -> pd.DataFrame:
    """The classifier's label of every attribute for each image: one column per attribute, one row per image."""
    classifier = classifier.cpu().eval()
    with torch.no_grad():
        codes = torch.cat([classifier.classify(chunk) for chunk in images.split(batch_size)]).numpy()
    return pd.DataFrame(
        {
            attribute: np.asarray(values, dtype=object)[codes[:, position]]
            for position, (attribute, values) in enumerate(datamodule.attribute_classes.items())
        }
    )


def _add_classifications(
    per_image: pd.DataFrame,
    classifier: AttributeClassifier,
    datamodule: FacesDataModule,
    targets: torch.Tensor,
    outputs: torch.Tensor,
) -> pd.DataFrame:
    """``per_image`` plus the classifier's label of each attribute for the original and the output."""
    labelled = per_image.copy()
    for images, output in ((targets, False), (outputs, True)):
        for attribute, labels in _classify(classifier, images, datamodule).items():
            labelled[classified_column(attribute, output=output)] = labels.to_numpy()
    return labelled


def _skin_tone_shift(outputs: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor | None:
    """ΔITA per image in degrees (positive: the output's skin is lighter), or None for grayscale.

    The skin region is the manifest's mask where it has one (the synthetic faces do), else
    :func:`genfair.audit.skin.central_face_mask`.
    """
    if targets.shape[1] != 3:
        logger.info("skin-tone shift skipped: ITA needs RGB images, these have %d channel(s)", targets.shape[1])
        return None
    return per_sample_ita_shift(outputs, targets, masks)


def _load_test_items(datamodule: FacesDataModule, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """The dataset items of manifest rows ``indices``, stacked: ``image`` ``(N, C, H, W)`` in [0, 1],
    plus ``lowres`` and ``mask`` where the DataModule makes them."""
    items = [datamodule.load_item(int(row)) for row in indices]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "lowres", "mask") if key in items[0]}


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


def _grid_picks(per_image: pd.DataFrame, attributes: Sequence[str]) -> list[int]:
    """Row positions of the first image of the first people of every intersectional group."""
    picks: list[int] = []
    for _, rows in per_image.groupby(list(attributes), sort=True):
        picks.extend(int(i) for i in rows.drop_duplicates("subject").index[:GRID_IMAGES_PER_GROUP])
    return picks


def _grid_sample(
    per_image: pd.DataFrame, attributes: Sequence[str], outputs: torch.Tensor, targets: torch.Tensor
) -> tuple[Any, Any, list[str]]:
    """The first images of the first subjects of every intersectional group, as ``(N, H, W, C)`` arrays."""
    picks = _grid_picks(per_image, attributes)
    labels = [" / ".join(str(per_image.at[i, a]) for a in attributes) for i in picks]
    to_hwc = lambda images: images[picks].permute(0, 2, 3, 1).numpy()  # noqa: E731
    return to_hwc(targets), to_hwc(outputs), labels


#: Group DRO's default step size per model: the pixel-mean losses of ae, cnn and sr are ~0.01, so
#: their group gaps are thousandths and need a larger step than the VAE's loss summed over pixels.
DRO_ETA = {"vae": 0.001}
DRO_ETA_DEFAULT = 1.0


def _check_reference(reference: str, manifest: Manifest) -> None:
    """Refuse, before training, a named reference group that no grouping of the manifest has."""
    if reference in ("best", "largest"):
        return
    attributes = list(manifest.attributes)
    frame = manifest.frame[attributes].astype(str)
    labels = {value for column in attributes for value in frame[column].unique()}
    labels |= set(frame.agg(GROUP_SEPARATOR.join, axis=1).unique()) if len(attributes) > 1 else set()
    if reference not in labels:
        raise ValueError(f"--reference {reference!r} is no group of {attributes}: use best, largest or one of "
                         f"{sorted(labels)}")


def _generates_balanced(config: RunConfig) -> bool:
    """Whether the named dataset makes its own balanced counterfactual (a manifest never does)."""
    return config.manifest is None and config.dataset in datasets.GENERATES_BALANCED


def _set_objective(module: pl.LightningModule, config: RunConfig, datamodule: FacesDataModule) -> None:
    """Attach the run's training objective (nothing for ERM) over the intersectional groups."""
    if config.objective == "erm":
        return
    num_classes = [len(values) for values in datamodule.attribute_classes.values()]
    counts = torch.from_numpy(datamodule.group_counts("train"))
    weights = tuple(models.inverse_frequency_weights(counts).tolist()) if config.objective == "reweighted" else None
    eta = config.dro_eta if config.dro_eta is not None else DRO_ETA.get(config.model, DRO_ETA_DEFAULT)
    objective = models.GroupObjective(config.objective, n_groups=len(counts), weights=weights, eta=eta)
    module.set_objective(objective, num_classes=num_classes)


def _run_tags(config: RunConfig, dataset_name: str, metadata: dict[str, Any]) -> dict[str, str]:
    """Tags that make the MLflow UI's search and compare view useful; a comparison's child names its parent."""
    composition = metadata["splits"]["train"]["composition"]
    tags = {
        "genfair.model": config.model,
        "genfair.dataset": dataset_name,
        "genfair.seed": str(config.seed),
        "genfair.image_size": str(config.image_size),
        "genfair.objective": config.objective,
        "genfair.training_composition": config.composition,
        "genfair.composition": ", ".join(f"{group}: {count}" for group, count in composition.items()),
    }
    if config.parent_run_id:
        tags["mlflow.parentRunId"] = config.parent_run_id
    return tags


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
        "run": {k: v for k, v in dataclasses.asdict(config).items()
                if k not in ("tracking_uri", "cache_dir", "parent_run_id")},
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
        if not trainer.sanity_checking and trainer.is_global_zero:
            self._log(trainer, prefix="val/")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
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


# --- comparing models: `audit compare` and `audit report` ------------------------------------------


@dataclass(frozen=True)
class ComparisonOutcome:
    """What ``audit compare`` / ``audit report`` hand back: the ranked table, the words, the files."""

    ranked: pd.DataFrame
    recommendation: str
    html: Path
    markdown: Path
    parent_run_id: str | None


def run_comparison(
    base: RunConfig,
    model_names: Sequence[str],
    *,
    priority: dict[str, float],
    out: Path,
    from_experiment: str | None = None,
    perplexity: float = 30.0,
    early_exaggeration: float = 12.0,
    progress_bar: bool = True,
) -> ComparisonOutcome | None:
    """Audit every model on the same data, split and seed (or gather finished runs), rank, report.

    Training: each model runs as ``run_audit(base with model=...)``, a child of one parent MLflow
    run in ``base.experiment``; ``sr`` and ``bicubic`` get ``base.scale``, the others none. The
    report (``report.html``, ``report.md``, ``figures/``, ``comparison.csv``) is written to
    ``out`` and logged to the parent run under ``report/``. With ``from_experiment`` nothing is
    trained: the latest finished audit of each model in that experiment is read back
    (``model_names`` empty: every model found) and the report is written, not logged.

    Returns:
        The outcome, or None on DDP ranks other than 0.

    Raises:
        ValueError: an unknown model, or a bad option of one (checked before anything trains).
    """
    from genfair.audit.ranking import comparison_table, rank_models, recommendation
    from genfair.reports.comparison import comparison_figures, display_table, write_report
    from genfair.reports.tracking import finished_audits, load_audit

    tracking_uri = resolve_tracking_uri(base.tracking_uri)
    configs = {name: dataclasses.replace(base, model=name, scale=base.scale if _has_scale(name) else None)
               for name in model_names}
    for config in configs.values():  # every option checked before the first model trains
        build_model_config(models.get(config.model), config)
    results: dict[str, AuditResult] = {}
    run_ids: dict[str, str] = {}
    parent_id = None
    if from_experiment is not None:
        found = finished_audits(from_experiment, tracking_uri=tracking_uri)
        wanted = list(model_names) or list(found)
        missing = [name for name in wanted if name not in found]
        if missing:
            raise ValueError(f"no finished audit of {missing} in experiment {from_experiment!r} (it has {list(found)}); "
                             f"drop them from --models or run them first")
        for name in wanted:
            run_ids[name] = found[name]
            results[name] = load_audit(found[name], tracking_uri=tracking_uri)
    else:
        children = _run_children(base, configs, kind="compare", model_names=model_names, progress_bar=progress_bar)
        if children is None:  # a DDP rank other than 0
            return None
        client, parent_id, outcomes = children
        for name, outcome in outcomes.items():
            results[name], run_ids[name] = outcome.result, outcome.run_id

    table = comparison_table(results, run_ids=run_ids)
    ranked = rank_models(table, priority)
    text = recommendation(ranked, results, priority, seed=base.seed)
    figures = comparison_figures(results, perplexity=perplexity, early_exaggeration=early_exaggeration,
                                 seed=base.seed)
    first = next(iter(results.values()))
    notes = [
        f"Dataset {first.metadata.get('dataset')}, seed {first.metadata.get('run', {}).get('seed')}, "
        f"{len(first.per_image)} test images of {first.per_image['subject'].nunique()} people; every number in "
        f"a row comes from that model's MLflow run (column 'run'): its group_intervals, disparity_intervals, "
        f"skin_tone_disparities, representation_tests and model_facts tables.",
        "Intervals: 95%, resampling people within groups. Ratio and difference compare the worst- and best-served "
        "group of the finest grouping; p is the permutation test's, Holm-adjusted. Images per second: CPU "
        "inference over the test split, measured alike for every model.",
    ]
    out.mkdir(parents=True, exist_ok=True)
    ranked.to_csv(out / "comparison.csv", index=False)
    html, markdown = write_report(out, title=f"Which model suits {first.metadata.get('dataset')}?",
                                  table=display_table(ranked), recommendation=text, figures=figures, notes=notes)
    if parent_id is not None:
        client.log_artifacts(parent_id, str(out), artifact_path="report")
        client.set_terminated(parent_id, status="FINISHED")
    return ComparisonOutcome(ranked=ranked, recommendation=text, html=html, markdown=markdown,
                             parent_run_id=parent_id)


def _run_children(
    base: RunConfig, configs: Mapping[Any, RunConfig], *, kind: str, model_names: Sequence[str], progress_bar: bool
) -> tuple[Any, str, dict[Any, RunOutcome]] | None:
    """Run every config as a child of one new parent run (tag ``genfair.<kind>``): ``(client, parent id, outcomes)``.

    The parent is marked FAILED if a child fails; the caller finishes it. None on DDP ranks other than 0.
    """
    tracking_uri = resolve_tracking_uri(base.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with store_lock(tracking_uri):
        experiment = mlflow.set_experiment(base.experiment)
    parent = client.create_run(experiment.experiment_id, run_name=f"{kind}-{base.dataset}-seed{base.seed}",
                               tags={f"genfair.{kind}": ",".join(model_names), "genfair.seed": str(base.seed)})
    parent_id = parent.info.run_id
    outcomes: dict[Any, RunOutcome] = {}
    try:
        for key, config in configs.items():
            outcome = run_audit(dataclasses.replace(config, parent_run_id=parent_id), progress_bar=progress_bar)
            if outcome is None:
                return None
            outcomes[key] = outcome
    except BaseException:
        client.set_terminated(parent_id, status="FAILED")
        raise
    return client, parent_id, outcomes


def _has_scale(model: str) -> bool:
    """Whether a model's config takes ``scale`` (the super-resolution models)."""
    return any(field.name == "scale" for field in dataclasses.fields(models.get(model).config))


class StopOnNonFiniteLoss(pl.Callback):
    """Stops training with :class:`~genfair.audit.faults.NonFiniteLoss` when a batch's loss is NaN or infinite.

    Checked after every training batch (under DDP, every rank stops when any rank's loss is
    non-finite), so the epoch never ends and the last checkpoint stays the last finite one.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        value = float(loss.detach().float().mean())
        stop = not math.isfinite(value)
        if trainer.world_size > 1:  # every rank stops together, or the others would wait for this one forever
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            batches = trainer.num_training_batches
            raise NonFiniteLoss(epoch=trainer.current_epoch, step=trainer.global_step, batch=batch_idx + 1,
                                batches=int(batches) if math.isfinite(batches) else batch_idx + 1,
                                value=value if not math.isfinite(value) else math.nan)


class StopOnSignal(pl.Callback):
    """SIGINT (Ctrl+C) and SIGTERM stop training at the end of the current batch; a second Ctrl+C at once.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (and passes the
    signal on to DDP ranks). This callback records which signal came (``received``) and routes
    SIGINT through the same handler, instead of the ``KeyboardInterrupt`` that would stop in the
    middle of a step. Its handlers are installed once Lightning's are (at the sanity check or the
    first epoch), and Lightning's teardown puts the ones from before ``fit`` back.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._lightning: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received, self._lightning = None, None

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()

    def _install(self) -> None:
        if self._lightning is not None or threading.current_thread() is not threading.main_thread():
            return
        self._lightning = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl+C twice: stop now
        if self.received is None:
            self.received = signum
            logger.warning("%s: stopping training at the end of this batch", signal.Signals(signum).name)
        if callable(self._lightning):
            self._lightning(signum, frame)


class ResumableCheckpoint(pl.callbacks.ModelCheckpoint):
    """A ``ModelCheckpoint`` whose best score survives ``--resume`` into a new checkpoint folder.

    Each run writes its checkpoints into its own temporary folder, and Lightning drops a
    checkpoint callback's best score when the folder changes. This one copies the files its
    saved state names from beside the ``resume`` checkpoint into the new folder and keeps the
    score (:func:`~genfair.audit.faults.relocate_checkpoint_state`), so a resumed run picks the
    same best epoch as an uninterrupted one.
    """

    def __init__(self, *, resume: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resume = resume

    @property
    def state_key(self) -> str:  # ModelCheckpoint's, so checkpoints of earlier genfair versions resume too
        return super().state_key.replace(type(self).__qualname__, pl.callbacks.ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_in = state_dict.get("dirpath")
        if self.resume is not None and self.dirpath is not None and saved_in not in (None, self.dirpath):
            state_dict = relocate_checkpoint_state(state_dict, folder=str(self.dirpath), source=Path(self.resume).parent)
        super().load_state_dict(state_dict)


class ResumableShuffle(pl.LightningDataModule):
    """The run's DataModule, with the training shuffle's state in every checkpoint.

    The training loader draws each epoch's order from one generator seeded once per ``fit``, so a
    resumed run would replay the first epoch's order. Lightning checkpoints a DataModule's
    ``state_dict()``; this one holds the generator's state, which at an epoch's end is where the
    next epoch's order comes from, and a resumed run's loader starts from it.
    """

    def __init__(self, datamodule: FacesDataModule) -> None:
        super().__init__()
        self.datamodule = datamodule
        self._generator: torch.Generator | None = None
        self._restored: torch.Tensor | None = None

    def train_dataloader(self) -> Any:
        loader = self.datamodule.train_dataloader()
        self._generator = loader.generator
        if self._restored is not None and self._generator is not None:
            self._generator.set_state(self._restored)
        return loader

    def val_dataloader(self) -> Any:
        return self.datamodule.val_dataloader()

    def state_dict(self) -> dict[str, Any]:
        return {} if self._generator is None else {"train_shuffle": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict.get("train_shuffle")


# --- where does the bias come from? `audit attribute` ----------------------------------------------


@dataclass(frozen=True)
class AttributionOutcome:
    """What ``audit attribute`` hands back: the effects, the excess cuts, the words, the files."""

    effects: pd.DataFrame
    cuts: pd.DataFrame
    summary: str
    reference: str
    html: Path
    markdown: Path
    parent_run_id: str | None
    seconds: float


def run_attribution(
    base: RunConfig,
    model_names: Sequence[str],
    *,
    mitigation: str = "group-dro",
    seeds: int = 3,
    out: Path,
    progress_bar: bool = True,
) -> AttributionOutcome | None:
    """A factorial attribution study: composition x objective x training seed (x model), on one audit panel.

    Cells: training composition {as-given, balanced} x objective {erm, ``mitigation``} x
    ``seeds`` training seeds (``base.seed``, ``base.seed + 1``, ...) for each model. Every cell
    is a full ``run_audit`` (a child of one parent MLflow run) with the data seed fixed at
    ``base.seed``, so every cell audits the same people. The effects
    (:func:`genfair.audit.attribution.attribution_effects`), the excess cuts against the
    majority (the group with most training images as given) and a summary go to ``out``
    (``report.html``, ``report.md``, ``effects.csv``, ``cuts.csv``) and to the parent run.

    Returns:
        The outcome, or None on DDP ranks other than 0.

    Raises:
        ValueError: an unknown model or mitigation, ``seeds < 1``, or a bad option (checked
            before anything trains).
    """
    from genfair.audit.attribution import attribution_effects, attribution_summary, excess_cuts
    from genfair.reports.comparison import effects_figure, write_report

    if mitigation not in ("reweighted", "group-dro"):
        raise ValueError(f"--mitigation must be reweighted or group-dro, got {mitigation!r}")
    if seeds < 1:
        raise ValueError(f"--seeds must be 1 or more, got {seeds}")
    start = time.perf_counter()
    cells = [(model, composition, objective, base.seed + offset)
             for model in model_names for composition in ("as-given", "balanced")
             for objective in ("erm", mitigation) for offset in range(seeds)]
    configs = {cell: dataclasses.replace(base, model=cell[0], composition=cell[1], objective=cell[2],
                                         seed=cell[3], data_seed=base.seed, classifier_epochs=0)
               for cell in cells}
    for config in configs.values():
        build_model_config(models.get(config.model), config)
    children = _run_children(base, configs, kind="attribute", model_names=model_names, progress_bar=progress_bar)
    if children is None:  # a DDP rank other than 0
        return None
    client, parent_id, outcomes = children
    frames = [outcome.result.per_image.assign(model=cell[0], composition=cell[1], objective=cell[2], seed=cell[3])
              for cell, outcome in outcomes.items()]
    as_given = next(outcome for cell, outcome in outcomes.items() if cell[1] == "as-given")
    composition = as_given.result.metadata["splits"]["train"]["composition"]
    majority = max(composition, key=lambda group: (composition[group], group))
    long = pd.concat(frames, ignore_index=True)
    attributes = list(as_given.result.metadata["attributes"])
    effects = attribution_effects(long, attributes=attributes, mitigation=mitigation, seed=base.seed)
    cuts = excess_cuts(long, attributes=attributes, reference=majority, seed=base.seed)
    summary = attribution_summary(effects, cuts, reference=majority)
    out.mkdir(parents=True, exist_ok=True)
    effects.to_csv(out / "effects.csv", index=False)
    cuts.to_csv(out / "cuts.csv", index=False)
    finest = effects[effects["grouping"] == effects["grouping"].iloc[-1]]
    table = finest.assign(**{"95% CI": finest.apply(lambda r: f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}]", axis=1)})[
        ["model", "effect", "group", "n_subjects", "estimate", "95% CI", "seed_se", "within_seed_noise"]]
    table = table.assign(estimate=table["estimate"].map(lambda v: f"{v:+.3g}"),
                         seed_se=table["seed_se"].map(lambda v: f"{v:.2g}"))
    notes = [
        f"{len(cells)} cells: compositions as-given and balanced x objectives erm and {mitigation} x {seeds} training "
        f"seeds x {len(model_names)} model(s), every cell audited on the same {long['path'].nunique()} test images "
        f"of {long['subject'].nunique()} people (data seed {base.seed}). Each cell is a child of MLflow run "
        f"{parent_id}.",
        f"Effects are differences of seed-averaged group errors; intervals resample people (the same people in "
        f"every cell) and add retraining noise (Student t on the per-seed standard error). Excess error is a "
        f"group's error minus {majority}'s (most training images as given) in the same cell.",
    ]
    if base.composition == "as-given" and not _generates_balanced(base):
        notes.append("This data has no generator of a balanced counterfactual: the balanced cells train on a "
                     "subsample of the training subjects, as many per group as the smallest group has.")
    html, markdown = write_report(out, title=f"Where does the bias come from? {base.dataset}", table=table,
                                  recommendation=summary, figures={"effects": effects_figure(effects)}, notes=notes)
    client.log_artifacts(parent_id, str(out), artifact_path="attribution")
    client.log_batch(parent_id, metrics=_effect_metrics(effects))
    client.set_terminated(parent_id, status="FINISHED")
    return AttributionOutcome(effects=effects, cuts=cuts, summary=summary, reference=majority, html=html,
                              markdown=markdown, parent_run_id=parent_id, seconds=time.perf_counter() - start)


def _effect_metrics(effects: pd.DataFrame) -> list[Any]:
    """``attribution/<model>/<effect>/<grouping>/<group>/{estimate,ci_low,ci_high,seed_se}`` for MLflow."""
    from mlflow.entities import Metric

    from genfair.reports.tracking import metric_key

    stamp = int(time.time() * 1000)
    metrics = []
    for row in effects.to_dict("records"):
        for column in ("estimate", "ci_low", "ci_high", "seed_se"):
            if math.isfinite(row[column]):
                key = metric_key("attribution", row["model"], row["effect"], row["grouping"], row["group"], column)
                metrics.append(Metric(key, float(row[column]), stamp, 0))
    return metrics
