"""Stage 1 of a run: where each audited image's output comes from.

Three sources, one protocol: ``prepare()`` (train and predict, where there is anything to do),
then ``batches()``, which yields batches of the audited rows (the test split, or for outputs on
disk the rows that have an output; under DDP, this rank's share), in increasing manifest order, as dicts:
``"index"`` ``(B,)`` int64 manifest rows, ``"image"`` ``(B, C, H, W)`` the originals, ``"output"``
``(B, C, H, W)`` in [0, 1], and ``"lowres"`` / ``"mask"`` where the data has them.

- :class:`TrainedSource`: a registered model (or a user's LightningModule) trained here with
  Lightning (CPU, one GPU or DDP), then predicted with its best weights.
- :class:`ModuleSource`: a user's ``torch.nn.Module`` (or TorchScript file) run as it is.
- :class:`DiskSource`: the manifest's column of output files; nothing runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from genfair import models
from genfair.datasets import FacesDataModule

from .config import RunConfig
from .training import fit_and_predict, make_trainer
from .user_models import run_user_model

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
DECODE_WORKERS = 1  # DataLoader workers that decode outputs on disk beside the scoring process


class TrainedSource:
    """A LightningModule trained on the run's training split, its test outputs predicted by Lightning.

    Args:
        config: the run.
        module: the model, fresh or loaded from ``config.checkpoint``.
        datamodule: the run's data.
        max_epochs: 0 audits the module without training (``--checkpoint``, ``bicubic``).
        progress_bar: Lightning's progress bar.
    """


    def __init__(self, config: RunConfig, module: pl.LightningModule, datamodule: FacesDataModule, *,
                 max_epochs: int, progress_bar: bool, workdir: Path) -> None:
        self.config, self.module, self.datamodule = config, module, datamodule
        self.max_epochs = max_epochs
        self.workdir = workdir
        self.trainer = make_trainer(config, str(workdir), max_epochs=max_epochs, progress_bar=progress_bar)
        self.checkpoint: Path | None = None

    @property
    def is_global_zero(self) -> bool:
        """Whether this process talks to MLflow (DDP rank 0, or the only process)."""
        return self.trainer.is_global_zero

    def prepare(self) -> None:
        """Train, then predict this rank's share of the test split (every rank takes part)."""
        self.indices, self.outputs, self.checkpoint = fit_and_predict(
            self.trainer, self.module, self.datamodule, self.config, self.max_epochs, self.workdir
        )
        if mlflow.active_run() is not None:
            mlflow.log_artifact(str(self.checkpoint), artifact_path="model")

    def batches(self, batch_size: int = 256) -> Iterator[Batch]:
        """This rank's predicted test images with their originals, after :meth:`prepare`."""
        for start in range(0, len(self.indices), batch_size):
            rows = self.indices[start:start + batch_size]
            batch = _stack([self.datamodule.load_item(int(row)) for row in rows])
            batch["output"] = self.outputs[start:start + batch_size]
            yield batch

    def runnable(self) -> torch.nn.Module:
        """The trained module, for the tables that run the model again (speed, UCPR, latents)."""
        return self.module


class ModuleSource:
    """A user's model run as it is over the test split, batch by batch: nothing trains.

    Args:
        module: maps inputs ``(B, C, h, w)`` float in [0, 1] to outputs ``(B, C, H, W)``: the
            original itself for reconstruction, its ``avg_pool2d`` by ``scale`` for upsampling.
        datamodule: the run's data (its ``lowres_scale`` is the upsampling factor).
        option: the option that named the model, for error messages.
    """

    is_global_zero = True

    def __init__(self, module: torch.nn.Module, datamodule: FacesDataModule, *, option: str = "--model") -> None:
        self.module, self.datamodule, self.option = module, datamodule, option
        self.clamped = 0

    def prepare(self) -> None:
        """Nothing to train: the model runs as it is."""

    def preflight(self, images: int = 2) -> None:
        """Run the model on the first test images, so that a model that fails or returns outputs of the
        wrong shape, dtype or with NaN is refused before the MLflow run opens.

        Raises:
            ValueError: one line naming the option and what is wrong.
        """
        batch = _stack([self.datamodule.dataset("test")[i] for i in range(min(images, len(self.datamodule.dataset("test"))))])
        inputs = batch["lowres"] if self.datamodule.lowres_scale is not None else batch["image"]
        run_user_model(self.module, inputs, expected_shape=tuple(batch["image"].shape))

    def batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """The test batches with the model's outputs; values outside [0, 1] are clamped and counted."""
        loader = _loader(self.datamodule, batch_size)
        for batch in loader:
            inputs = batch["lowres"] if self.datamodule.lowres_scale is not None else batch["image"]
            batch["output"], clamped = run_user_model(self.module, inputs, expected_shape=tuple(batch["image"].shape))
            self.clamped += clamped
            yield batch
        if self.clamped:
            logger.warning("%s: clamped %d output values outside [0, 1]", self.option, self.clamped)

    def runnable(self) -> torch.nn.Module:
        return self.module


class DiskSource:
    """Outputs a model already produced, read from the manifest's ``outputs`` column: nothing runs.

    The audited rows are the test split of ``datamodule``: the rows that have an output.
    """

    is_global_zero = True

    def __init__(self, datamodule: FacesDataModule, *, inputs: bool = False) -> None:
        self.datamodule = datamodule
        self.inputs = inputs

    def prepare(self) -> None:
        """Nothing to run: the outputs are files."""

    def batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        # one worker process decodes the next files while this one scores (2 cores: +30-60% pairs/s)
        workers = max(self.datamodule.num_workers, DECODE_WORKERS)
        with _threads_beside(workers):
            yield from self._batches(_loader(self.datamodule, batch_size, workers=workers))

    def _batches(self, loader: DataLoader) -> Iterator[Batch]:
        for batch in loader:
            if self.inputs:  # the input the model saw, for the bicubic baseline, at the run's low resolution
                side = batch["image"].shape[-1] // self.datamodule.lowres_scale
                batch["lowres"] = torch.stack([
                    F.interpolate(item.unsqueeze(0), size=(side, side), mode="area").squeeze(0)
                    if item.shape[-1] != side else item for item in batch.pop("input")
                ])
            yield batch

    def runnable(self) -> None:
        return None


@contextlib.contextmanager
def _threads_beside(workers: int) -> Iterator[None]:
    """torch's intra-op threads in this process cut to the cores the ``workers`` leave (at least one).

    Threads that outnumber the free cores wait for each other: beside one decoding worker on two
    cores, SSIM's matrix products on two threads scored 10,000 pairs several times slower than
    on one (``benchmarks/outputs_throughput.py``).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, _usable_cores() - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _loader(datamodule: FacesDataModule, batch_size: int | None, *, workers: int | None = None) -> DataLoader:
    """The test split in manifest order; items of unequal size (raw inputs) are kept as lists."""
    workers = datamodule.num_workers if workers is None else workers
    return DataLoader(datamodule.dataset("test"), batch_size=batch_size or datamodule.batch_size, shuffle=False,
                      num_workers=workers, collate_fn=_stack, prefetch_factor=4 if workers else None)


def _stack(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into a batch; ``"input"`` (files at their own size) stays a list."""
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "input":
            batch[key] = values
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.as_tensor(values)
    return batch


def bicubic_baseline(batch: Batch, scale: int | None) -> torch.Tensor | None:
    """The bicubic upsampling of the batch's low-resolution input, or None for reconstruction."""
    if scale is None or "lowres" not in batch:
        return None
    return models.bicubic_upsample(batch["lowres"], scale=scale)
