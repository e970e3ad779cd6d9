"""Lightning callbacks of a training run: metrics to MLflow, stops on NaN or a signal, exact resume."""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import pytorch_lightning as pl
import torch

from genfair.audit.faults import LAST_CHECKPOINT, RUN_ID_KEY, NonFiniteLoss, relocate_checkpoint_state
from genfair.datasets import FacesDataModule

logger = logging.getLogger(__name__)


class EpochMetricsToMlflow(pl.Callback):
    """Logs the epoch-level training and validation metrics to the active MLflow run, one batch per epoch.

    Every checkpoint names that run (:data:`~genfair.audit.faults.RUN_ID_KEY`), so ``--resume``
    continues its history.

    Why not Lightning's ``MLFlowLogger``: the run is genfair's, opened before training and closed
    after the audit (KILLED or FAILED with the stage it stopped at, see
    :mod:`genfair.audit.run.stages`); the logger's ``finalize`` ends the run itself when
    training ends, as FINISHED or FAILED, which would close it before the audit is logged and
    overwrite a KILLED status. It also logs per step (against ``global_step``) and its own
    hyperparameters beside the run's parameters, where the UI's training curves here are one
    point per epoch.
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        run = mlflow.active_run() if trainer.is_global_zero else None
        if run is not None:
            checkpoint[RUN_ID_KEY] = run.info.run_id

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

    @staticmethod
    def handles(signum: int) -> bool:
        """Whether a StopOnSignal has ``signum`` now: a training loop that stops at the end of its batch."""
        return isinstance(getattr(signal.getsignal(signum), "__self__", None), StopOnSignal)

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
    same best epoch as an uninterrupted one. With ``save_last=True`` it also writes
    :data:`~genfair.audit.faults.LAST_CHECKPOINT` at every validation's end (Lightning's own
    ``save_last``: one callback, one saved state for both files).
    """

    CHECKPOINT_NAME_LAST = LAST_CHECKPOINT.removesuffix(".ckpt")

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
