"""Training and prediction with Lightning: the run's trainer, its model, the attribute classifier.

Everything here that runs under DDP runs on every rank; only rank 0 talks to MLflow.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from mlflow.exceptions import MlflowException
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, WeightedRandomSampler

from genfair import models
from genfair.audit.attributes import classified_column
from genfair.audit.faults import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    RUNS_DIR,
    STOPPED_AT_TAG,
    TrainingInterrupted,
    TrainingStopped,
    checkpoint_run_id,
    keep_checkpoints,
)
from genfair.datasets import FacesDataModule, load_manifest
from genfair.datasets.synthetic import ensure_new_people, synthetic_config_of
from genfair.models import AttributeClassifier, AttributeClassifierConfig

from .callbacks import EpochMetricsToMlflow, ResumableCheckpoint, ResumableShuffle, StopOnNonFiniteLoss, StopOnSignal
from .config import RunConfig, generates_balanced, resolve_cache_dir
from .embedding_classifier import EMBEDDING_FILE, EmbeddingClassifier, embed, fit_embedding_classifier

logger = logging.getLogger(__name__)

#: Group DRO's default step size per model: the pixel-mean losses of ae, cnn and sr are ~0.01, so
#: their group gaps are thousandths and need a larger step than the VAE's loss summed over pixels.
DRO_ETA = {"vae": 0.001}
DRO_ETA_DEFAULT = 1.0


def load_module(spec: models.ModelSpec, model_config: Any, checkpoint: str | None) -> pl.LightningModule:
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


def make_trainer(config: RunConfig, workdir: str, *, max_epochs: int, progress_bar: bool) -> pl.Trainer:
    callbacks: list[pl.Callback] = [EpochMetricsToMlflow()]
    if max_epochs > 0:
        callbacks += [StopOnNonFiniteLoss(), StopOnSignal()]
        # dirpath=None: the folder comes from rank 0's default_root_dir, broadcast to every rank.
        # best.ckpt (lowest validation loss) and, by save_last, last.ckpt (every validation's end: what
        # --resume continues from); its saved state names both, so a resume restores the best score too.
        callbacks.append(ResumableCheckpoint(resume=config.resume, monitor="val/loss", mode="min",
                                             filename=BEST_CHECKPOINT.removesuffix(".ckpt"), save_top_k=1,
                                             save_last=True))
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


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: FacesDataModule, config: RunConfig) -> str:
    """Train ``module`` (resuming from ``config.resume``); a signal becomes :class:`TrainingInterrupted`.

    Returns:
        The best checkpoint's path (lowest validation loss), or "" when none was written.
    """
    try:
        trainer.fit(module, datamodule=ResumableShuffle(datamodule), ckpt_path=config.resume)
    except SIGTERMException as err:  # Lightning stops at the end of a batch on SIGTERM (and, see StopOnSignal, SIGINT)
        signals = [callback.received for callback in trainer.callbacks if isinstance(callback, StopOnSignal)]
        raise TrainingInterrupted(
            epoch=trainer.current_epoch, step=trainer.global_step, signum=signals[0] or signal.SIGTERM
        ) from err
    return trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""


def fit_and_predict(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: FacesDataModule,
    config: RunConfig,
    max_epochs: int,
    workdir: Path,
) -> tuple[torch.Tensor, torch.Tensor, Path]:
    """Train (unless there is nothing to train), predict the test split with the best weights.

    Returns:
        This rank's manifest row indices ``(N,)`` in increasing order, each of its test images
        once (under DDP, its share of the test split); outputs
        ``(N, C, H, W)`` in [0, 1]; and the checkpoint of the weights that produced them.
    """
    best = fit(trainer, module, datamodule, config) if max_epochs > 0 else ""
    batches = trainer.predict(module, datamodule=datamodule, ckpt_path=best or None)
    indices, outputs = local_predictions(batches)
    checkpoint = Path(best) if best else workdir / "model.ckpt"
    if not best:
        trainer.save_checkpoint(checkpoint)  # every rank calls it; rank 0 writes
    return indices, outputs, checkpoint


def keep_stopped_run(stopped: TrainingStopped, run_id: str, trainer: pl.Trainer) -> None:
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


RESUMABLE_STATUSES = ("KILLED", "FAILED")
"""The runs ``--resume`` continues: stopped ones. A finished or running run is never written into again."""


def run_to_resume(checkpoint: str, experiment_id: str) -> tuple[str | None, str | None]:
    """The stopped MLflow run that ``--resume checkpoint`` continues, in the active tracking store.

    The run is the one the checkpoint names (:func:`~genfair.audit.faults.checkpoint_run_id`). It
    is continued when it is in ``experiment_id`` of this store and stopped (KILLED or FAILED); its
    ``genfair.stopped*`` tags are then removed, and the epochs it logged stay. Otherwise the
    resumed training goes into a new run, and the note says why.

    Returns:
        ``(run id, None)`` to continue that run, or ``(None, note)`` to start a new one.
    """
    run_id = checkpoint_run_id(checkpoint)
    new = "the resumed training is logged to a new MLflow run"
    if run_id is None:
        return None, f"--resume {checkpoint}: the checkpoint names no MLflow run; {new}"
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None, f"--resume {checkpoint}: its MLflow run {run_id} is not in this tracking store; {new}"
    if run.info.lifecycle_stage != "active" or run.info.experiment_id != experiment_id:
        where = "deleted" if run.info.lifecycle_stage != "active" else f"in experiment {run.info.experiment_id}"
        return None, f"--resume {checkpoint}: its MLflow run {run_id} is {where}, not in this run's; {new}"
    if run.info.status not in RESUMABLE_STATUSES:
        return None, f"--resume {checkpoint}: its MLflow run {run_id} is {run.info.status}, not stopped; {new}"
    for tag in (STOPPED_AT_TAG, "genfair.stopped"):
        if tag in run.data.tags:
            client.delete_tag(run_id, tag)
    return run_id, None


def local_predictions(batches: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's predictions, each of its test images once, ordered by manifest row.

    Under DDP each rank keeps its own share (the images are never gathered: the audit scores them
    where they are and gathers per-image rows, see :func:`gather_rows`). The sampler pads the last
    batch with repeated images so every rank gets the same number; a rank's own repeats are
    dropped here, repeats across ranks when the rows are gathered.
    """
    indices = torch.cat([batch["index"] for batch in batches]).cpu()
    outputs = torch.cat([batch["output"] for batch in batches]).float().cpu()
    unique, first = np.unique(indices.numpy(), return_index=True)  # sorted rows, first occurrence of each
    return torch.from_numpy(unique), outputs[torch.from_numpy(first)]


def distributed() -> bool:
    """Whether this process is one rank of several (DDP), with the process group up."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and (
        torch.distributed.get_world_size() > 1)


def is_global_zero() -> bool:
    """Whether this process is global rank 0, or the only one, also before a trainer has started DDP.

    With the process group up, its rank. Before, the rank the launcher gave this process: ``RANK``
    (torchrun and the like), else ``NODE_RANK`` and ``LOCAL_RANK``, which Lightning's own launcher
    sets for the processes it starts from the first DDP trainer (they run the same command again).
    """
    if distributed():
        return torch.distributed.get_rank() == 0
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))
    return node == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def share_classifier(classifier: AttributeClassifier | EmbeddingClassifier | None
                     ) -> AttributeClassifier | EmbeddingClassifier | None:
    """Rank 0's trained classifier on every rank (the CNN's config and weights broadcast, the
    embedding classifier pickled), or None everywhere.

    Only rank 0 trains it (small, on one device); the others need it to label their own outputs.
    Outside DDP it is returned as it is.
    """
    if not distributed():
        return classifier
    if isinstance(classifier, EmbeddingClassifier) or classifier is None:
        payload: list[Any] = [classifier]
    else:
        payload = [(dataclasses.asdict(classifier.config), {k: v.cpu() for k, v in classifier.state_dict().items()})]
    torch.distributed.broadcast_object_list(payload, src=0)
    if classifier is not None:
        return classifier
    if payload[0] is None or isinstance(payload[0], EmbeddingClassifier):
        return payload[0]
    config, state = payload[0]
    config["num_classes"] = tuple(config["num_classes"])
    received = AttributeClassifier.from_config(AttributeClassifierConfig(**config))
    received.load_state_dict(state)
    return received


def gather_rows(shard: Any) -> list[Any] | None:
    """Every rank's ``shard`` (plain rows: frames and a few sample images) on rank 0, None elsewhere.

    Outside DDP: ``[shard]``.
    """
    if not distributed():
        return [shard]
    shards: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(shards, shard)
    return shards if torch.distributed.get_rank() == 0 else None


#: People per (gender x skin tone) group the attribute classifier trains on, and holds out to
#: check itself on, and images of each, where the dataset generates its people (the synthetic
#: faces): new people, none of them the audited model's training people or the audit panel. Many
#: people with few images each: on the default 64-pixel faces (5 epochs, seed 0, measured once),
#: 60 people x 8 images read the gender of 16 other new people a group right 77-91% of the time,
#: 24 people x 20 images (the same work) 59-89%.
CLASSIFIER_TRAIN_PEOPLE = 60
CLASSIFIER_HELD_OUT_PEOPLE = 16
CLASSIFIER_IMAGES_PER_PERSON = 8
#: The CNN classifier's file in the run's folder (and the run's ``classifier/`` artifacts).
CNN_FILE = "classifier.ckpt"
#: Training images per intersectional group the embedding classifier reads at most (drawn
#: seeded, without replacement): a logistic regression on 128 numbers needs no more, and each
#: image costs ~0.12 s to embed.
EMBEDDING_IMAGES_PER_GROUP = 250


@dataclass(frozen=True)
class ClassifierData:
    """Where the attribute classifier learns, and the held-out originals its validity is measured on.

    Attributes:
        loader: the training batches (``{"image", "labels", "index", ...}``), every group drawn
            about equally often.
        training: ``(datamodule, split)`` whose rows the loader draws from (each image once: what
            the embedding classifier reads).
        held_out: ``(datamodule, split)`` pairs whose originals are people the classifier never
            trains on.
        note: one sentence for the run's notes: what it trained on and where it was checked.
    """

    loader: DataLoader
    training: tuple[FacesDataModule, str]
    held_out: tuple[tuple[FacesDataModule, str], ...]
    note: str


def balanced_loader(datamodule: FacesDataModule, split: str = "train", *, seed: int = 0) -> DataLoader:
    """Batches of ``split`` drawn with replacement, each image with probability inverse to its
    intersectional group's image count: every group is drawn about equally often.

    The same draw as :class:`~genfair.datasets.FacesDataModule`'s ``sampler="balanced"`` (one
    epoch is as many draws as the split has images), for any split and whatever the run's own
    sampler; seeded by ``seed``.

    Raises:
        ValueError: ``split`` has no rows.
    """
    groups = datamodule.group_codes(split)
    if not len(groups):
        raise ValueError(f"{datamodule.manifest.source}: the {split} split has no rows to train the attribute "
                         f"classifier on")
    weights = 1.0 / np.bincount(groups)[groups]
    generator = torch.Generator().manual_seed(seed)
    draw = WeightedRandomSampler(torch.from_numpy(weights), num_samples=len(groups), replacement=True,
                                 generator=generator)
    return DataLoader(datamodule.dataset(split), batch_size=datamodule.batch_size, sampler=draw, generator=generator)


def classifier_data(config: RunConfig, datamodule: FacesDataModule) -> ClassifierData:
    """The attribute classifier's balanced training set and its held-out originals.

    A dataset that generates its people (``generates_balanced``: the synthetic faces) gets
    :data:`CLASSIFIER_TRAIN_PEOPLE` new people per group to train on and
    :data:`CLASSIFIER_HELD_OUT_PEOPLE` more to check on
    (:func:`genfair.datasets.synthetic.ensure_new_people`: ids and seeds past the dataset's
    last person). Any other data: the run's training split, drawn balanced by intersectional
    group (:func:`balanced_loader`), checked on the validation and test splits' originals
    (people outside the training split). New people whose attribute values differ from the
    run's (a binned or renamed attribute) fall back to the training split, and the note says so.
    """
    fallback = ""
    if generates_balanced(config):
        base = synthetic_config_of(datamodule.manifest.source)
        manifest = load_manifest(
            ensure_new_people(base, resolve_cache_dir(config.cache_dir), train_per_group=CLASSIFIER_TRAIN_PEOPLE,
                              held_out_per_group=CLASSIFIER_HELD_OUT_PEOPLE,
                              images_per_subject=CLASSIFIER_IMAGES_PER_PERSON),
            attributes=datamodule.manifest.attributes, bins=dict(config.bins), missing=config.missing)
        people = FacesDataModule(manifest, image_size=config.image_size, channels=config.channels,
                                 batch_size=config.batch_size, seed=config.seed, fit=config.fit,
                                 cache_mb=config.cache_mb)
        if people.attribute_classes == datamodule.attribute_classes:
            trained, held = (int(people.split_frame(split)["subject"].nunique()) for split in ("train", "test"))
            return ClassifierData(
                loader=people.train_dataloader(), training=(people, "train"), held_out=((people, "test"),),
                note=(f"the attribute classifier trained on {trained} new generated people "
                      f"({CLASSIFIER_TRAIN_PEOPLE} per group, {CLASSIFIER_IMAGES_PER_PERSON} images each; none is a "
                      f"training person of the model or in the audit panel) and its validity (classifier_validity) "
                      f"is its accuracy on {held} more new people it never saw ({CLASSIFIER_HELD_OUT_PEOPLE} per "
                      f"group)"))
        fallback = ("; the new generated people do not have the run's attribute values "
                    f"({dict(people.attribute_classes)} against {dict(datamodule.attribute_classes)})")
    held_out = tuple((datamodule, split) for split in ("val", "test") if len(datamodule.split_rows(split)))
    training_people = int(datamodule.split_frame("train")["subject"].nunique())
    return ClassifierData(
        loader=balanced_loader(datamodule, "train", seed=config.seed), training=(datamodule, "train"),
        held_out=held_out,
        note=(f"the attribute classifier trained on the {training_people} training people, every intersectional "
              f"group drawn equally often, and its validity (classifier_validity) is its accuracy on the originals "
              f"of the {' and '.join(split for _, split in held_out)} split{'s' if len(held_out) > 1 else ''} "
              f"(people it never trained on){fallback}"))


def held_out_labels(classifier: AttributeClassifier | EmbeddingClassifier, data: ClassifierData,
                    classes: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """The classifier's labels of ``data``'s held-out originals, as a per-image frame.

    Returns:
        One row per held-out image: ``subject``, each attribute of ``classes`` (the person's
        own value) and ``classified_<attribute>`` (the classifier's label), what
        :func:`genfair.audit.attributes.classifier_validity` reads.
    """
    label = classifier_labels(classifier, classes)
    frames = []
    for datamodule, split in data.held_out:
        rows = datamodule.split_rows(split)
        frame = datamodule.split_frame(split)[["subject", *classes]].reset_index(drop=True)
        labels = pd.concat([label(torch.stack([datamodule.load_image(int(row)) for row in chunk]))
                            for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / 256)))],
                           ignore_index=True)
        frames.append(frame.assign(**{classified_column(a): labels[a].to_numpy() for a in classes}))
    return pd.concat(frames, ignore_index=True)


def train_classifier(config: RunConfig, datamodule: FacesDataModule, workdir: Path, *,
                     data: ClassifierData | None = None) -> AttributeClassifier | EmbeddingClassifier:
    """An attribute classifier (``config.classifier``) trained on a balanced set (``data``,
    default :func:`classifier_data`), saved in ``workdir`` as :func:`classifier_file`.

    It trains on one device, in this process (rank 0 under DDP; :func:`share_classifier` hands it
    to the other ranks): it is small. No validation loop: its validity is measured afterwards on
    held-out originals (:func:`held_out_labels`).
    """
    data = data if data is not None else classifier_data(config, datamodule)
    if config.classifier == "embedding":
        fitted = fit_embedding(data, seed=config.seed)
        fitted.save(workdir / EMBEDDING_FILE)
        return fitted
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
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(classifier, train_dataloaders=data.loader)
    trainer.save_checkpoint(workdir / CNN_FILE)
    return classifier


def fit_embedding(data: ClassifierData, *, seed: int) -> EmbeddingClassifier:
    """The embedding classifier fitted on ``data``'s training rows: at most
    :data:`EMBEDDING_IMAGES_PER_GROUP` images per intersectional group (seeded), each once,
    every group weighted equally."""
    datamodule, split = data.training
    rows, groups = datamodule.split_rows(split), datamodule.group_codes(split)
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(groups == g), size=min(EMBEDDING_IMAGES_PER_GROUP, int((groups == g).sum())),
                   replace=False) for g in np.unique(groups)]))
    embedded, found = [], []
    for chunk in np.array_split(keep, max(1, math.ceil(len(keep) / 256))):
        vectors, faces = embed(torch.stack([datamodule.load_image(int(rows[i])) for i in chunk]))
        embedded.append(vectors)
        found.append(faces)
    codes = datamodule.manifest.attribute_codes()[rows[keep]]
    return fit_embedding_classifier(np.concatenate(embedded), np.asarray(codes, dtype=np.int64), groups[keep],
                                    attributes=tuple(datamodule.attribute_classes),
                                    face_found=np.concatenate(found).mean(), seed=seed)


def classifier_file(classifier: AttributeClassifier | EmbeddingClassifier) -> str:
    """The file :func:`train_classifier` saved ``classifier`` as."""
    return EMBEDDING_FILE if isinstance(classifier, EmbeddingClassifier) else CNN_FILE


def instrument_note(classifier: AttributeClassifier | EmbeddingClassifier) -> str:
    """What the run's notes add about the kind of classifier (nothing for the CNN)."""
    if not isinstance(classifier, EmbeddingClassifier):
        return ""
    return (f"; it reads dlib's face embeddings with a logistic regression per attribute (at most "
            f"{EMBEDDING_IMAGES_PER_GROUP} training images per group; dlib found a face in "
            f"{classifier.face_found:.0%} of them, and read the whole image elsewhere)")


def classifier_labels(classifier: AttributeClassifier | EmbeddingClassifier, classes: dict[str, tuple[str, ...]],
                      batch_size: int = 256) -> Any:
    """The classifier as the audit's instrument: ``images (N, C, H, W) in [0, 1] -> frame`` of labels.

    The frame has one column per attribute (``classes``' keys, in order) holding the label names.
    """
    if isinstance(classifier, torch.nn.Module):
        classifier = classifier.cpu().eval()

    def labels(images: torch.Tensor) -> pd.DataFrame:
        with torch.no_grad():
            codes = torch.cat([classifier.classify(chunk.cpu()) for chunk in images.split(batch_size)]).numpy()
        return pd.DataFrame({
            attribute: np.asarray(values, dtype=object)[codes[:, position]]
            for position, (attribute, values) in enumerate(classes.items())
        })

    return labels


def set_objective(module: pl.LightningModule, config: RunConfig, datamodule: FacesDataModule) -> None:
    """Attach the run's training objective (nothing for ERM) over the intersectional groups."""
    if config.objective == "erm":
        return
    num_classes = [len(values) for values in datamodule.attribute_classes.values()]
    counts = torch.from_numpy(datamodule.group_counts("train"))
    weights = tuple(models.inverse_frequency_weights(counts).tolist()) if config.objective == "reweighted" else None
    eta = config.dro_eta if config.dro_eta is not None else DRO_ETA.get(config.model, DRO_ETA_DEFAULT)
    objective = models.GroupObjective(config.objective, n_groups=len(counts), weights=weights, eta=eta)
    module.set_objective(objective, num_classes=num_classes)
