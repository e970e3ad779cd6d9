"""One ``audit run``, the three stages composed: outputs (a source) -> audit (pure) -> reports (MLflow).

The run resolves everything that can fail on bad input (the tracking store, the model, its
options, the manifest) before its MLflow run opens, so a usage error never leaves an empty run
behind. Images stream through the audit batch by batch; only per-image rows are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from genfair import models
from genfair.audit.faults import store_lock
from genfair.audit.panel import audit_frame, majority_groups, majority_notes, score_batch
from genfair.audit.result import AuditResult
from genfair.audit.grouping import group_labels
from genfair.audit.worst_cases import WORST_CASES_K, WORST_MEASURES, rows_that_may_enter, worst_cases
from genfair.datasets import FacesDataModule, Manifest
from genfair.reports import error_by_group_figure, log_audit, reconstruction_grid_figure, samples_grid_figure
from genfair.reports.cosmology import power_spectrum_figure
from genfair.reports.tracking import activate_experiment, check_tracking_uri, resolve_tracking_uri

from .config import (
    RunConfig,
    RunOutcome,
    build_model_config,
    check_reference,
    generates_balanced,
    load_run_manifest,
    run_metadata,
    run_tags,
)
from .cosmology import cosmology_scorer
from .face_tools import MissingFaceTools, read_batch, require_face_tools
from .generative import can_sample, likelihood_tables, sample_tables
from .sources import DiskSource, ModuleSource, TrainedSource, bicubic_baseline
from .stages import EnterPrediction, RunStages, close_stopped_run, in_stages
from .training import (
    classifier_data,
    classifier_file,
    classifier_labels,
    fit,
    gather_rows,
    held_out_labels,
    instrument_note,
    load_module,
    run_to_resume,
    set_objective,
    share_classifier,
    train_classifier,
)
from .user_models import load_user_model

__all__ = ["RunPlan", "Shard", "audit_plan", "follow_rank_zero", "plan_run", "run_audit"]

logger = logging.getLogger(__name__)

GRID_IMAGES_PER_GROUP = 2
UNINFORMATIVE_SIDE = 4  # px: Laszkiewicz et al. (2024) feed upsamplers 4x4 averaged faces for UCPR
UNINFORMATIVE_INPUTS = 200
FACTS_IMAGES = 256  # test inputs timed for the model's images per second
FACTS_CHUNK = 32  # timed at once
FACTS_SECONDS = 3.0  # enough timing: the chunks after it are not run
TRIM_EVERY = 16  # batches between returns of freed heap memory to the system
WORST_PENDING = 256  # rows that may be worst cases, held (with their images) until ranked together


@dataclass
class RunPlan:
    """Everything a run needs, resolved and checked before its MLflow run opens."""

    config: RunConfig
    dataset_name: str
    manifest: Manifest
    datamodule: FacesDataModule
    task: str
    scale: int | None
    model_config: Any
    module: torch.nn.Module | None
    max_epochs: int
    notes: list[str]

    @property
    def model_config_is_plain(self) -> bool:
        """Whether the model has no config dataclass (a user's model or outputs on disk)."""
        return isinstance(self.model_config, dict)

    @property
    def baseline(self) -> bool:
        """Whether each output is set against bicubic upsampling of the same input."""
        return self.task == "upsampling" and self.config.model_name != "bicubic"


def plan_run(config: RunConfig, *, module: torch.nn.Module | None = None) -> RunPlan:
    """Resolve the run's model, data and options; raise one readable line on bad input.

    ``module``: a model object to audit instead of loading ``config.model`` (the Python API's way in).

    Raises:
        ValueError: an unknown model or dataset, a bad option or manifest, or a user's model
            that cannot be loaded.
    """
    kind = "user" if module is not None else config.source_kind
    notes: list[str] = []
    if kind != "registry":
        _refuse_registry_options(config, kind)
    if kind == "registry":
        spec = models.get(config.model)
        model_config = build_model_config(spec, config)
        scale = getattr(model_config, "scale", None)
        task = spec.task
        if config.task is not None and config.task != task:
            raise ValueError(f"--task {config.task}: model {config.model!r} does {task}; drop --task")
        trains = getattr(model_config, "trains", True)  # pulse with a trained prior: nothing to train
        max_epochs = 0 if config.checkpoint or not trains else (spec.max_epochs if spec.max_epochs is not None
                                                                else config.training_epochs)
    dataset_name, manifest = load_run_manifest(config)
    if kind != "registry":
        task = config.task or "reconstruction"
        scale = config.scale
        if task == "upsampling" and scale is None and config.inputs is not None:
            scale = _scale_from_inputs(manifest)
        if task == "upsampling" and scale is None:
            raise ValueError("--task upsampling needs --scale N (how much smaller the model's input was), "
                             "or --inputs COLUMN with the inputs it saw")
        if task == "reconstruction" and scale is not None:
            raise ValueError(f"--scale {scale} applies to upsampling: add --task upsampling or drop --scale")
        max_epochs = 0
        if kind == "user":
            module = module if module is not None else load_user_model(config.model)
            max_epochs = _user_epochs(config, module)
            model_config = {"spec": config.model, "class": type(module).__qualname__}
        else:
            model_config = {"outputs": config.outputs, "inputs": config.inputs}
    check_reference(config.reference, manifest)
    if config.needs_faces_extra:  # before training: a missing extra is a usage error, not a crash at the audit
        notes.extend(_check_face_tools(config, manifest))
    notes.extend(manifest.notes)
    if kind == "disk":
        manifest = _disk_splits(manifest)
    datamodule = FacesDataModule(
        manifest,
        image_size=config.image_size,
        channels=config.channels,
        batch_size=config.batch_size,
        seed=config.split_seed,
        lowres_scale=scale,
        # a manifest (or a dataset without a generator of balanced data) is balanced by subsampling
        balance_training=config.composition == "balanced" and not generates_balanced(config),
        sampler=config.sampler,
        require_train=max_epochs > 0,  # outputs on disk, a checkpoint or a model run as it is may have none
        require_val=max_epochs > 0,
        fit=config.fit,
        cache_mb=config.cache_mb,  # decoded once, shared by training, validation, the classifier and the audit
    )
    notes.extend(datamodule.notes)
    if config.classifier_epochs > 0 and not len(datamodule.split_rows("train")):
        rows = "split=train without an output" if kind == "disk" else "split=train"
        notes.append(f"no training rows ({rows}): the attribute classifier and the tables it reads (classifier "
                     f"accuracy, attribute preservation, representation) are skipped")
    datamodule.setup("fit")
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if kind == "registry":
        module = load_module(spec, model_config, config.checkpoint)
    if isinstance(module, pl.LightningModule) and max_epochs > 0:
        set_objective(module, config, datamodule)
    return RunPlan(config=config, dataset_name=dataset_name, manifest=manifest, datamodule=datamodule, task=task,
                   scale=scale, model_config=model_config, module=module, max_epochs=max_epochs, notes=notes)


def run_audit(config: RunConfig, *, progress_bar: bool = True) -> RunOutcome | None:
    """Get ``config``'s outputs (train, run or read them), audit them per group, log the run to MLflow.

    Under DDP every rank trains and predicts; only global rank 0 talks to MLflow and returns the
    outcome (the other ranks return None). Every run that opens is closed: FINISHED, KILLED (SIGINT
    or SIGTERM at any stage, see :class:`RunStages`) or FAILED (any other error), a stopped one
    tagged ``genfair.stopped_at=<stage>``. A run that trained keeps its checkpoints in
    ``genfair-runs/<run id>/`` (and in the run, under ``model/``); see :mod:`genfair.audit.faults`.

    Raises:
        ValueError: an unreachable tracking store, an invalid option, an unknown model or dataset,
            a bad manifest, or a user's model that fails or returns bad outputs.
        genfair.audit.faults.NonFiniteLoss: the training loss became NaN or infinite.
        genfair.audit.faults.TrainingInterrupted: SIGINT or SIGTERM stopped training.
        genfair.audit.faults.RunInterrupted: SIGINT or SIGTERM stopped the run at another stage.
    """
    stages = RunStages()
    with stages.installed():
        check_tracking_uri(config.tracking_uri)
        plan = plan_run(config)
        metadata = run_metadata(config, plan.dataset_name, plan.manifest, plan.datamodule, plan.model_config,
                                task=plan.task)
        if plan.notes:
            metadata["notes"] = plan.notes
        with tempfile.TemporaryDirectory(prefix="genfair-run-") as folder:
            workdir = Path(folder)
            source = _source(plan, workdir, progress_bar=progress_bar)
            if not source.is_global_zero:  # DDP rank > 0: train, predict and score alongside rank 0, log nothing
                if isinstance(source, TrainedSource):
                    follow_rank_zero(plan, source, stages=stages)
                else:
                    source.prepare()
                return None
            if isinstance(source, ModuleSource):  # a user's model that fails says so before a run is opened
                source.preflight()
            tracking_uri = resolve_tracking_uri(config.tracking_uri)
            mlflow.set_tracking_uri(tracking_uri)
            with store_lock(tracking_uri):  # two runs creating one SQLite store at once would break its schema
                experiment = activate_experiment(config.experiment)
            stages.hold()  # a signal while the run is being created waits until it can be closed
            run = _start_run(config, plan, experiment.experiment_id, metadata)
            try:
                stages.release()
                mlflow.set_tags(run_tags(config, plan.dataset_name, metadata))
                result, shown = audit_plan(plan, source, metadata, workdir, progress_bar=progress_bar, stages=stages)
                stages.enter("logging")
                _log_result(result, plan.manifest.attributes, shown)
                seconds = stages.seconds()
                mlflow.log_metrics({f"time/{stage}": value for stage, value in seconds.items()})
                mlflow.end_run()
            except BaseException as err:  # every way out closes the run, then the error goes on
                stages.hold()  # a second signal must not cut the closing short
                close_stopped_run(err, run.info.run_id, stages.current, getattr(source, "trainer", None))
                raise
    return RunOutcome(result=result, run_id=run.info.run_id, experiment_id=experiment.experiment_id,
                      tracking_uri=tracking_uri, seconds=seconds)


def _start_run(config: RunConfig, plan: RunPlan, experiment_id: str, metadata: dict[str, Any]) -> Any:
    """A new MLflow run, or, with ``--resume``, the stopped run whose checkpoint it continues.

    A resume that cannot continue its run (see :func:`run_to_resume`) starts a new one and adds a
    note saying why to ``metadata``.
    """
    run_id, note = run_to_resume(config.resume, experiment_id) if config.resume is not None else (None, None)
    if note is not None:
        logger.warning("%s", note)
        metadata["notes"] = [*metadata.get("notes", []), note]
    if run_id is not None:
        return mlflow.start_run(run_id=run_id)
    return mlflow.start_run(run_name=f"{config.model_name}-{plan.dataset_name}-seed{config.seed}")


def _source(plan: RunPlan, workdir: Path, *, progress_bar: bool) -> Any:
    """The run's source of outputs (see :mod:`genfair.audit.run.sources`)."""
    config = plan.config
    if config.outputs is not None:
        return DiskSource(plan.datamodule, inputs=config.inputs is not None)
    registered = config.source_kind == "registry" and not plan.model_config_is_plain
    if isinstance(plan.module, pl.LightningModule) and (registered or plan.max_epochs > 0):
        trained = TrainedSource(config, plan.module, plan.datamodule, max_epochs=plan.max_epochs,
                                progress_bar=progress_bar, workdir=workdir)
        if registered:
            return trained
        return _TrainThenRun(trained, plan.datamodule)
    return ModuleSource(plan.module, plan.datamodule)


class _TrainThenRun:
    """A user's LightningModule: trained by Lightning like the built-ins, then run as a plain module.

    Its ``predict_step`` follows the user's conventions, not genfair's, so outputs come from ``forward``.
    """

    def __init__(self, trained: TrainedSource, datamodule: FacesDataModule) -> None:
        self.trained, self.datamodule = trained, datamodule
        self.trainer = trained.trainer
        self.is_global_zero = trained.is_global_zero

    def prepare(self) -> None:
        """Train on every rank; rank 0 then runs the trained model over the whole test split."""
        fit(self.trainer, self.trained.module, self.datamodule, self.trained.config)

    def batches(self) -> Iterable[dict[str, torch.Tensor]]:
        yield from ModuleSource(self.trained.module, self.datamodule).batches()

    def runnable(self) -> torch.nn.Module:
        return self.trained.module


@dataclass
class Shard:
    """What one process scored: per-image rows, a few images to show, inputs to time, latent codes.

    Under DDP each rank scores its own share of the test images and only this (rows, never the
    images, bar the handful the figures show) is gathered on rank 0.
    """

    scores: pd.DataFrame  # index: manifest rows; columns: genfair.audit.panel.score_batch's
    shown: dict[int, tuple[torch.Tensor, torch.Tensor]]  # manifest row -> (original, output)
    inputs: list[torch.Tensor]  # the first inputs seen (for the model's images per second)
    latents: pd.DataFrame | None  # index: manifest rows; columns z_0 .. z_{k-1}
    seconds: float  # from start to the first batch of outputs
    # manifest row -> (original, output) as PNG bytes: this rank's worst cases (_WorstCaseStream)
    worst: dict[int, tuple[bytes, bytes]] = dataclasses.field(default_factory=dict)

    @classmethod
    def merge(cls, shards: Sequence[Shard]) -> Shard:
        """Every rank's shard as one, each manifest row once (DDP pads the last batch with repeats)."""
        def once(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[~frame.index.duplicated(keep="first")].sort_index()

        latents = [shard.latents for shard in shards if shard.latents is not None]
        return cls(scores=once(pd.concat([shard.scores for shard in shards])),
                   shown={row: pair for shard in reversed(shards) for row, pair in shard.shown.items()},
                   inputs=shards[0].inputs, latents=once(pd.concat(latents)) if latents else None,
                   seconds=shards[0].seconds,
                   worst={row: pair for shard in shards for row, pair in shard.worst.items()})


def audit_plan(plan: RunPlan, source: Any, metadata: dict[str, Any], workdir: Path, *,
               progress_bar: bool, stages: RunStages | None = None) -> tuple[AuditResult, dict[str, Any]]:
    """Stream the source's batches through the pure audit; add the tables that need the model or images.

    Runs on rank 0 (or the only process); under DDP the other ranks run :func:`follow_rank_zero`.
    ``stages``: where the run records its stage (training, prediction, audit) as it goes.

    Returns:
        The result, and the images the figures show (``picks``: row positions; ``originals``,
        ``outputs``: ``(P, C, H, W)``).
    """
    config, datamodule = plan.config, plan.datamodule
    stages = stages if stages is not None else RunStages()
    attributes = list(plan.manifest.attributes)
    active = mlflow.active_run()
    start = active.info.start_time / 1000 if active is not None else time.time()

    checked: dict[str, Any] = {}  # the classifier's labels of held-out originals, and where they come from

    def classifier() -> Any:  # after the model's training, as ever: it draws from the same global RNG
        if config.classifier_epochs == 0 or not len(datamodule.split_rows("train")):
            return None
        stages.enter("classifier")
        data = classifier_data(config, datamodule)
        trained = train_classifier(config, datamodule, workdir, data=data)
        checked.update(held_out=held_out_labels(trained, data, datamodule.attribute_classes),
                       note=data.note + instrument_note(trained))
        if active is not None:
            mlflow.log_artifact(str(workdir / classifier_file(trained)), artifact_path="classifier")
        return trained

    shards, classify = _score_on_every_rank(plan, source, classifier, start=start, progress_bar=progress_bar,
                                            stages=stages)
    shard = Shard.merge(shards)
    rows = datamodule.split_frame("test")[["path", "subject", *attributes]]
    scores = shard.scores
    frame = rows.loc[scores.index].reset_index(drop=True)
    per_image = pd.concat([frame, scores.reset_index(drop=True)], axis=1)
    train = datamodule.split_frame("train")
    majority = majority_groups(train, attributes) if len(train) else None
    if majority is not None and classify is not None:
        metadata = {**metadata, "notes": [*metadata.get("notes", []), *majority_notes(train, attributes)]}
    if "held_out" in checked:
        withheld = (f"; the representation claims about a group it labels right less than "
                    f"{config.classifier_min_accuracy:.0%} of the time, there or on the audited originals, are "
                    f"withheld (classifier unreliable)")
        metadata = {**metadata, "notes": [*metadata.get("notes", []), checked["note"] + withheld]}
    runnable = source.runnable()
    uninformative = None
    if classify is not None and plan.task == "upsampling" and runnable is not None:
        uninformative = classify(_outputs_of(runnable, _uninformative_inputs(datamodule, rows, attributes,
                                                                             plan.scale, config.seed)))
    result = audit_frame(per_image, attributes=attributes, metadata=metadata, majority=majority,
                         uninformative=uninformative, seed=config.seed, reference=config.reference,
                         primary_metric=config.primary_metric, classifier_held_out=checked.get("held_out"),
                         min_accuracy=config.classifier_min_accuracy)
    tables = dict(result.tables)
    cosmology = cosmology_scorer(datamodule.manifest, scale=plan.scale)
    if cosmology is not None:  # --dataset cosmo: errors and power spectra by cosmic-web environment
        tables.update(cosmology.tables(per_image, scores.index, attributes=attributes, image_size=config.image_size,
                                       seed=config.seed))
    if "held_out" in checked:  # the rows classifier_validity is computed from, so it can be recomputed
        tables["classifier_held_out"] = checked["held_out"]
    ordered = [row for row in rows.index[_grid_picks(rows.reset_index(drop=True), attributes)] if row in shard.shown]
    figures = {"picks": [int(np.flatnonzero(scores.index == row)[0]) for row in ordered],
               "originals": torch.stack([shard.shown[row][0] for row in ordered]),
               "outputs": torch.stack([shard.shown[row][1] for row in ordered])}
    if classify is not None and config.samples > 0 and can_sample(runnable):  # whom the model generates
        stages.enter("samples")
        generated, figures["generated"] = sample_tables(
            runnable, classify, n=config.samples, attributes=attributes, training=train, panel=rows,
            held_out=checked.get("held_out"), seed=config.seed, min_accuracy=config.classifier_min_accuracy)
        tables.update(generated)
    if callable(getattr(runnable, "bits_per_dim", None)):  # whom the model finds least likely
        stages.enter("likelihood")
        tables.update(likelihood_tables(runnable, datamodule, attributes=attributes, seed=config.seed))
    stages.enter("audit")
    if runnable is not None:
        tables["model_facts"] = _model_facts(runnable, torch.cat(shard.inputs)[:FACTS_IMAGES], shard.seconds)
    tables["samples"] = _samples(per_image, attributes, figures)
    tables["worst_cases"] = _worst_cases_table(per_image.set_axis(scores.index), attributes, shard.worst)
    if shard.latents is not None:
        tables["latents"] = shard.latents.reindex(scores.index).reset_index(drop=True).assign(
            path=per_image["path"].to_numpy())[["path", *shard.latents.columns]]
    return dataclasses.replace(result, tables=tables), figures


def follow_rank_zero(plan: RunPlan, source: Any, *, stages: RunStages | None = None) -> None:
    """A DDP rank other than 0: train and predict alongside rank 0, score this rank's share, hand over the rows."""
    _score_on_every_rank(plan, source, lambda: None, start=time.time(), progress_bar=False,
                         stages=stages if stages is not None else RunStages())


def _score_on_every_rank(plan: RunPlan, source: Any, train: Any, *, start: float,
                         progress_bar: bool, stages: RunStages) -> tuple[list[Shard], Any]:
    """Prepare the source (train, predict), train and share the classifier, score this rank's batches, gather.

    Args:
        train: trains the attribute classifier (rank 0), or returns None (no classifier; other ranks).

    Returns:
        Every rank's shard (on rank 0; an empty list elsewhere) and the classifier's labelling function.
    """
    trains = isinstance(source, TrainedSource | _TrainThenRun) and plan.max_epochs > 0
    trainer = getattr(source, "trainer", None)
    if trainer is not None:
        trainer.callbacks.append(EnterPrediction(stages))
    stages.enter("training" if trains else "prediction", trainer=trainer)
    source.prepare()
    seconds = time.time() - start
    classifier = train()
    sharded = isinstance(source, TrainedSource)  # the only source that runs on several ranks
    if sharded:
        classifier = share_classifier(classifier)
    classify = None if classifier is None else classifier_labels(classifier, plan.datamodule.attribute_classes)
    shard = _score(plan, source, classify, seconds=seconds, progress_bar=progress_bar, stages=stages)
    shards = gather_rows(shard) if sharded else [shard]
    return shards or [], classify


def _score(plan: RunPlan, source: Any, classify: Any, *, seconds: float, progress_bar: bool,
           stages: RunStages) -> Shard:
    """Score every batch the source yields here: per-image rows, and the few images and inputs kept.

    Stages: "audit" while scoring; while the source makes its next batch, "prediction" where a
    model runs batch by batch (a user's model) and "data" where the batch is read from files.
    """
    datamodule = plan.datamodule
    attributes = list(plan.manifest.attributes)
    rows = datamodule.split_frame("test")[["path", "subject", *attributes]]
    shown_rows = set(rows.index[_grid_picks(rows.reset_index(drop=True), attributes)])
    parts: list[dict[str, Any]] = []
    indices: list[np.ndarray] = []
    shown, inputs, latents = {}, [], []
    worst = _WorstCaseStream(rows, attributes)
    runnable = source.runnable()
    cosmology = cosmology_scorer(datamodule.manifest, scale=plan.scale)
    making = "prediction" if isinstance(source, ModuleSource | _TrainThenRun) else "data"
    batches = in_stages(source.batches(), stages, making=making)
    for batch in _progress(batches, total=math.ceil(len(rows) / datamodule.batch_size), enabled=progress_bar):
        faces: dict[str, Any] = {}
        if plan.config.face_tools:  # its own stage (time/identity): ~0.25 s per image
            stages.enter("identity")
            faces = read_batch(batch["image"], batch["output"], identity=plan.config.identity,
                               landmark_masks=plan.config.landmark_masks, masks=batch.get("mask"))
            stages.enter("audit")
        scores = score_batch(batch["image"], batch["output"], masks=faces.pop("masks", batch.get("mask")),
                             baseline=bicubic_baseline(batch, plan.scale) if plan.baseline else None,
                             classify=classify, **faces)
        if cosmology is not None:
            scores.update(cosmology.score(batch))
        index = batch["index"].numpy()
        parts.append(scores)
        indices.append(index)
        for position, row in enumerate(index.tolist()):
            if row in shown_rows:
                shown[row] = (batch["image"][position], batch["output"][position])
        worst.add(index, scores, batch)
        if sum(len(chunk) for chunk in inputs) < FACTS_IMAGES:
            inputs.append(batch["lowres"] if plan.scale is not None else batch["image"])
        if len(parts) % TRIM_EVERY == 0:
            _return_freed_memory()
        if hasattr(runnable, "encode_latent"):
            codes = _latent_codes(runnable, batch["image"]).numpy()
            latents.append(pd.DataFrame(codes, index=index, columns=[f"z_{i}" for i in range(codes.shape[1])]))
    return Shard(scores=_scores_frame(parts, indices), shown=shown, inputs=inputs,
                 latents=pd.concat(latents) if latents else None, seconds=seconds, worst=worst.images())


def _scores_frame(parts: Sequence[dict[str, Any]], indices: Sequence[np.ndarray]) -> pd.DataFrame:
    """The batches' score columns as one frame indexed by manifest row, as ``pd.concat`` of one frame
    a batch would give, built once: a frame a batch cost more than some of the scoring."""
    if not parts:
        return pd.DataFrame(index=pd.Index([], dtype="int64"))
    if any(part.keys() != parts[0].keys() for part in parts):  # columns that come and go: pandas aligns them
        return pd.concat([pd.DataFrame(part, index=index) for part, index in zip(parts, indices, strict=True)])
    columns = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
    return pd.DataFrame(columns, index=np.concatenate(indices))


def _return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Each batch frees megabytes of decoded images and filter planes while the run keeps a few
    small per-image arrays; glibc keeps the freed pages between those, so without this the
    process grows with every batch (about 90 KB per image at 64x64) instead of staying flat.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def _progress(batches: Iterable[Any], *, total: int, enabled: bool) -> Iterable[Any]:
    """The batches, with a progress bar on the terminal when ``enabled``.

    The bar starts once the first batch is there: producing it may train a model under
    Lightning's own progress bar, and two live displays cannot share the terminal.
    """
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return
    yield first
    if not enabled:
        yield from iterator
        return
    from rich.progress import track

    yield from track(iterator, total=max(total - 1, 0), description="auditing", transient=True)


def _check_face_tools(config: RunConfig, manifest: Manifest) -> list[str]:
    """Refuse a run that asks for face tools without the ``faces`` extra; notes on what they will do.

    Raises:
        ValueError: dlib or its models are not installed (names the option and the fix).
    """
    option = ("--identity" if config.identity else "--skin-mask landmarks" if config.face_tools
              else "--classifier embedding")
    try:
        require_face_tools()
    except MissingFaceTools as err:
        raise ValueError(f"{option}: {err}") from err
    if config.landmark_masks and manifest.has_mask:
        return ["the manifest's own skin masks (mask_path) are used for the skin measures, not face landmarks"]
    return []


def _refuse_registry_options(config: RunConfig, kind: str) -> None:
    """Options that only a registered model takes, refused for a user's model and outputs on disk."""
    what = "outputs on disk" if kind == "disk" else f"a user's model ({config.model})"
    for option, given in (("--model-option", bool(config.model_options)), ("--checkpoint", config.checkpoint),
                          ("--resume", config.resume)):
        if given:
            raise ValueError(f"{option} applies to genfair's registered models, not to {what}; drop it")
    if kind == "disk" and config.epochs is not None:
        raise ValueError("--epochs trains a model, and outputs on disk are audited as they are; drop --epochs")


def _user_epochs(config: RunConfig, module: torch.nn.Module) -> int:
    """How long a user's model trains: 0 unless ``--epochs`` is given to a LightningModule."""
    if config.epochs is None:
        return 0
    if not isinstance(module, pl.LightningModule):
        raise ValueError(f"--epochs {config.epochs}: {config.model} is a plain torch.nn.Module, audited as it is "
                         f"(only a LightningModule trains here); drop --epochs")
    return config.epochs


def _disk_splits(manifest: Manifest) -> Manifest:
    """The manifest with rows that have an output as ``test`` and ``split=train`` rows as ``train``
    (the others ``unused``).

    Raises:
        ValueError: a row that has an output is marked ``split=train``.
    """
    frame = manifest.frame
    has_output = np.zeros(len(frame), dtype=bool)
    has_output[manifest.output_rows] = True
    declared = frame["split"].astype(str).to_numpy() if manifest.has_split else np.full(len(frame), "")
    trained = has_output & (declared == "train")
    if trained.any():
        row = int(np.flatnonzero(trained)[0])
        raise ValueError(f"{manifest.source}: data row {manifest.data_row(row)} has an output in column {manifest.outputs!r} and "
                         f"split 'train': an audited image cannot train the classifier; fix: blank its output or "
                         f"change its split")
    split = np.where(has_output, "test", np.where(declared == "train", "train", "unused"))
    return dataclasses.replace(manifest, frame=frame.assign(split=split))


def _scale_from_inputs(manifest: Manifest) -> int:
    """The upsampling factor: the first audited row's original width over its input's width."""
    from PIL import Image

    row = int(manifest.output_rows[0])
    with Image.open(manifest.image_path(row)) as original, Image.open(manifest.input_path(row)) as small:
        return max(1, round(original.width / small.width))


def _model_facts(module: torch.nn.Module, inputs: torch.Tensor, seconds_to_predictions: float) -> pd.DataFrame:
    """One overall row: learned numbers, seconds from run start to predictions, CPU images per second.

    ``parameters`` counts the weights and the floating-point buffers (PCA's components and
    mean are fitted buffers, not trainable weights). Throughput is measured here, on the CPU,
    over up to :data:`FACTS_IMAGES` test inputs (one warm-up batch first), so every model is timed alike,
    in chunks of :data:`FACTS_CHUNK` until :data:`FACTS_SECONDS` have passed.
    """
    learned = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]
    parameters = sum(tensor.numel() for tensor in learned)
    _outputs_of(module, inputs[:8])  # warm-up: first-call allocations are not the model's speed
    timed, seconds = 0, 0.0
    for chunk in inputs.split(FACTS_CHUNK):  # a slow model (a latent search per image) is timed on fewer
        start = time.perf_counter()
        _outputs_of(module, chunk)
        seconds += time.perf_counter() - start
        timed += len(chunk)
        if seconds > FACTS_SECONDS:
            break
    return pd.DataFrame({"grouping": ["overall"], "group": ["all"], "parameters": [float(parameters)],
                         "seconds_to_predictions": [seconds_to_predictions],
                         "images_per_second": [timed / seconds if seconds > 0 else math.nan]})


def _png(image: torch.Tensor) -> bytes:
    """A ``(C, H, W)`` image in [0, 1] as PNG bytes."""
    import io

    from PIL import Image

    # rounded in numpy: torch's CPU round took ~7 ms per 3x64x64 image here, numpy's 0.02 ms (same half-to-even)
    array = np.rint(image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _samples(per_image: pd.DataFrame, attributes: Sequence[str], shown: dict[str, Any]) -> pd.DataFrame:
    """Originals and outputs (PNG bytes) of the first images of the first people of every group.

    The same people for every model audited on the same split: a comparison report shows them
    side by side without re-running any model.
    """
    frame = per_image.loc[shown["picks"], ["path", "subject", *attributes]].reset_index(drop=True)
    frame["original_png"] = [_png(image) for image in shown["originals"]]
    frame["output_png"] = [_png(image) for image in shown["outputs"]]
    return frame


class _WorstCaseStream:
    """The worst cases of a stream of scored batches, with their images as PNG bytes.

    The k worst of every group and measure among (the k worst so far + more rows) are the k worst
    of everything seen, so keeping only those rows is exact and holds a few images per group
    however long the split; under DDP the union of every rank's picks holds the global ones.
    A batch's rows that cannot enter the picks kept so far (:func:`rows_that_may_enter`) are
    dropped at once; the others wait, with their images, until :data:`WORST_PENDING` rows do,
    and are then ranked with the kept ones in one go (ranking every batch cost more than
    scoring it). Thresholds from older picks only let more rows wait, so the picks are the same.

    Args:
        rows: the audited split's ``path, subject, <attributes>`` (index: manifest rows).
        attributes: the groups' attributes.
    """

    def __init__(self, rows: pd.DataFrame, attributes: Sequence[str]) -> None:
        self.rows, self.attributes = rows, list(attributes)
        self.groups = group_labels(rows, self.attributes)
        self.kept: pd.DataFrame | None = None
        self.pngs: dict[int, tuple[bytes, bytes]] = {}
        self.pending: list[pd.DataFrame] = []
        self.pending_images: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, index: np.ndarray, scores: dict[str, Any], batch: dict[str, Any]) -> None:
        """One batch: ``index`` ``(B,)`` manifest rows, ``scores`` :func:`score_batch`'s columns,
        ``batch`` with ``image`` and ``output`` ``(B, C, H, W)`` in [0, 1]."""
        self.measures = [name for name in WORST_MEASURES if name in scores]
        values = {name: np.asarray(scores[name], dtype=float) for name in self.measures}
        positions = self.rows.index.get_indexer(index)
        may = np.ones(len(index), dtype=bool) if self.kept is None else rows_that_may_enter(
            self.kept, self.groups[positions], values, attributes=self.attributes)
        if not may.any():
            return
        chosen = np.flatnonzero(may)
        self.pending.append(self.rows.iloc[positions[chosen]].assign(
            **{name: column[chosen] for name, column in values.items()}))
        for position in chosen.tolist():
            self.pending_images.setdefault(int(index[position]),
                                           (batch["image"][position].clone(), batch["output"][position].clone()))
        if self.kept is None or len(self.pending_images) >= WORST_PENDING:
            self._rank()

    def _rank(self) -> None:
        if not self.pending:
            return
        candidates = pd.concat(self.pending if self.kept is None else [self.kept, *self.pending])
        candidates = candidates[~candidates.index.duplicated(keep="first")].sort_index()  # DDP pads with repeats
        picked = set(worst_cases(candidates, attributes=self.attributes, measures=self.measures,
                                 k=WORST_CASES_K).index)
        self.pngs = {row: pair for row, pair in self.pngs.items() if row in picked}
        for row in sorted(picked - self.pngs.keys()):
            original, output = self.pending_images[row]
            self.pngs[row] = (_png(original), _png(output))
        self.kept = candidates.loc[sorted(picked)]
        self.pending, self.pending_images = [], {}

    def images(self) -> dict[int, tuple[bytes, bytes]]:
        """Manifest row -> (original, output) PNG bytes of every pick, after the last batch."""
        self._rank()
        return self.pngs


def _worst_cases_table(per_image: pd.DataFrame, attributes: Sequence[str],
                       images: dict[int, tuple[bytes, bytes]]) -> pd.DataFrame:
    """:func:`genfair.audit.worst_cases.worst_cases` of the audit, with each pick's original and output.

    Args:
        per_image: the audit's per-image frame, indexed by manifest row (as ``images``).
        images: manifest row -> (original, output) PNG bytes of every pick (:class:`_WorstCaseStream`'s).

    Returns:
        The picks (``grouping, group, measure, rank, value, path, subject, <attributes>``) with
        ``original_png`` and ``output_png``, on a fresh index.
    """
    measures = [name for name in WORST_MEASURES if name in per_image.columns]
    picked = worst_cases(per_image, attributes=attributes, measures=measures, k=WORST_CASES_K)
    pairs = [images[row] for row in picked.index]
    return picked.assign(original_png=[pair[0] for pair in pairs],
                         output_png=[pair[1] for pair in pairs]).reset_index(drop=True)


def _latent_codes(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``encode_latent`` of a batch: ``(B, k)`` float on the CPU."""
    module = module.cpu().eval()
    with torch.no_grad():
        return module.encode_latent(images.cpu()).float()


def _uninformative_inputs(
    datamodule: FacesDataModule, rows: pd.DataFrame, attributes: Sequence[str], scale: int, seed: int
) -> torch.Tensor:
    """Low-resolution inputs that carry no group information, for UCPR: ``(N, C, H/s, W/s)``.

    Each is the average of one randomly drawn test image from every intersectional group (no
    group outweighs another), area-downsampled to 4x4 (Laszkiewicz et al.'s uninformative
    resolution; smaller if the model's input is smaller) and bicubic-upsampled to the model's
    input size.
    """
    groups = rows.groupby(list(attributes), sort=True).ngroup().to_numpy()
    rng = np.random.default_rng(seed)
    picks = np.stack(
        [rng.choice(np.flatnonzero(groups == g), size=UNINFORMATIVE_INPUTS) for g in range(groups.max() + 1)], axis=1
    )
    needed = np.unique(picks)
    loaded = {int(p): datamodule.load_image(int(rows.index[p])) for p in needed}
    targets = torch.stack([loaded[int(p)] for p in picks.ravel()]).view(*picks.shape, *loaded[int(needed[0])].shape)
    averages = targets.mean(dim=1)
    side = targets.shape[-1] // scale
    tiny = F.interpolate(averages, size=min(UNINFORMATIVE_SIDE, side), mode="area")
    return F.interpolate(tiny, size=side, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def _outputs_of(module: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The module's outputs for ``inputs``, on the CPU, without gradients."""
    module = module.cpu().eval()
    with torch.no_grad():
        return torch.cat([module(chunk).float() for chunk in inputs.split(batch_size)]).clamp(0.0, 1.0)


def _log_result(result: AuditResult, attributes: Sequence[str], shown: dict[str, Any]) -> None:
    """The result, its per-group error figure and the grid of originals beside outputs, into the active run."""
    labels = [" / ".join(str(result.per_image.at[i, a]) for a in attributes) for i in shown["picks"]]
    to_hwc = lambda images: images.permute(0, 2, 3, 1).numpy()  # noqa: E731
    figures = {
        "error_by_group": error_by_group_figure(result.per_image, metric="mse_error", attributes=attributes),
        "reconstructions": reconstruction_grid_figure(to_hwc(shown["originals"]), to_hwc(shown["outputs"]), labels),
    }
    if "power_spectrum" in result.tables:  # --dataset cosmo
        figures["power_spectrum"] = power_spectrum_figure(result.tables["power_spectrum"])
    if shown.get("generated") is not None:
        figures["generated_samples"] = samples_grid_figure(to_hwc(shown["generated"]), title="samples from the model's prior")
    log_audit(result, figures=figures)


def _grid_picks(per_image: pd.DataFrame, attributes: Sequence[str]) -> list[int]:
    """Row positions of the first image of the first people of every intersectional group."""
    picks: list[int] = []
    for _, rows in per_image.groupby(list(attributes), sort=True):
        picks.extend(int(i) for i in rows.drop_duplicates("subject").index[:GRID_IMAGES_PER_GROUP])
    return picks

