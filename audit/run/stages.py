"""Where a run is: its stage (data, training, prediction, classifier, audit, logging), the time it
spent in each, and SIGINT and SIGTERM for the whole run.

A signal at any stage stops the run with :class:`~genfair.audit.faults.RunInterrupted` naming the
stage; :func:`close_stopped_run` then marks the MLflow run KILLED (a signal) or FAILED (any other
error), tagged with the stage. The same clock times the stages: :attr:`RunStages.seconds` is what
``audit run`` logs as ``time/<stage>`` and prints in one line at the end.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import mlflow
import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from genfair.audit.faults import (
    BEST_CHECKPOINT,
    RUNS_DIR,
    STOPPED_AT_TAG,
    RunInterrupted,
    TrainingInterrupted,
    TrainingStopped,
)

from .callbacks import StopOnSignal
from .training import keep_stopped_run

__all__ = ["STOPPED_TAG_CHARS", "EnterPrediction", "RunStages", "close_stopped_run", "in_stages"]

STOPPED_TAG_CHARS = 1000  # of an error's text in the ``genfair.stopped`` tag of a FAILED run


class RunStages:
    """Where a run is (its stage), and SIGINT and SIGTERM for the whole of it.

    The stages follow one another (:meth:`enter`); the one a run raised in stays current, so the
    code that closes the run can name it. :meth:`installed` puts one handler on both signals for
    the run's length and puts the previous ones back after. A signal raises
    :class:`~genfair.audit.faults.RunInterrupted` naming the current stage, except inside a
    training loop, where :class:`~genfair.audit.run.callbacks.StopOnSignal` has the signal
    (Lightning calls this handler after its own) and training stops at the end of the batch as
    :class:`~genfair.audit.faults.TrainingInterrupted`. Once one signal has come, more are ignored
    while the run closes, except a second Ctrl+C, which stops at once (``KeyboardInterrupt``).

    The same clock times the stages: :meth:`seconds` is the wall time spent in each so far.
    """

    def __init__(self, first: str = "data") -> None:
        self.name = first
        self.trainer: pl.Trainer | None = None
        self.received: int | None = None
        self._holding = False
        self._spent: dict[str, float] = {}
        self._since = time.perf_counter()

    def seconds(self) -> dict[str, float]:
        """Wall-clock seconds spent in each stage entered so far, in the order first entered."""
        self._charge()
        return dict(self._spent)

    def _charge(self) -> None:
        now = time.perf_counter()
        self._spent[self.name] = self._spent.get(self.name, 0.0) + now - self._since
        self._since = now

    @property
    def current(self) -> str:
        """The stage now; a source's trainer that has moved on from training to predicting says "prediction"."""
        if self.trainer is not None and self.trainer.state.fn == TrainerFn.PREDICTING:
            return "prediction"
        return self.name

    def enter(self, name: str, *, trainer: pl.Trainer | None = None) -> None:
        """Start stage ``name``; ``trainer``: the source's, which trains and then predicts within it."""
        self._charge()
        self.name, self.trainer = name, trainer

    def hold(self) -> None:
        """Keep a signal that comes from now on for :meth:`release` instead of raising it."""
        self._holding = True

    def release(self) -> None:
        """Stop holding; raise the signal that came meanwhile, if one did.

        Raises:
            RunInterrupted: a signal came while held.
        """
        self._holding = False
        if self.received is not None:
            raise RunInterrupted(signum=self.received, stage=self.current)

    @contextlib.contextmanager
    def installed(self) -> Iterator[RunStages]:
        """This object's handler on SIGINT and SIGTERM (in the main thread only), the previous ones after."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, self._on_signal)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if StopOnSignal.handles(signum):  # inside trainer.fit: training stops at the end of the batch
            return
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl+C twice: stop at once
        first = self.received is None
        if first:
            self.received = signum
        if first and not self._holding:
            raise RunInterrupted(signum=signum, stage=self.current)


def close_stopped_run(err: BaseException, run_id: str, stage: str, trainer: pl.Trainer | None) -> None:
    """Mark the active run KILLED (a signal) or FAILED (any other error), tagged with the stage it stopped at.

    A run that trained keeps its checkpoints (:func:`~genfair.audit.run.training.keep_stopped_run`).
    A :class:`TrainingStopped` message then names the run; any other error gets a note naming the
    stage and the run (shown with its traceback).
    """
    if mlflow.active_run() is None:  # the signal came inside mlflow.end_run, after it let go of the run
        mlflow.start_run(run_id=run_id)
    mlflow.set_tag(STOPPED_AT_TAG, stage)
    if isinstance(err, TrainingStopped) and trainer is not None:
        keep_stopped_run(err, run_id, trainer)
        best = RUNS_DIR / run_id / BEST_CHECKPOINT
        if isinstance(err, RunInterrupted) and best.is_file():  # stopped after training: the trained model
            err.checkpoint = best
        return
    status = "KILLED" if isinstance(err, TrainingInterrupted | KeyboardInterrupt | SystemExit) else "FAILED"
    what = str(err) if isinstance(err, TrainingStopped) else f"{type(err).__name__}: {err}"
    mlflow.set_tag("genfair.stopped", what[:STOPPED_TAG_CHARS])
    mlflow.end_run(status=status)
    if isinstance(err, TrainingStopped):
        err.kept(run=f"MLflow run {run_id} marked {status}", checkpoint=None)
    else:
        err.add_note(f"genfair: stopped during the {stage} stage; MLflow run {run_id} marked {status}")


def in_stages(batches: Iterable[Any], stages: RunStages, *, making: str) -> Iterator[Any]:
    """The batches, in stage ``making`` while the next one is made and in "audit" while one is scored."""
    iterator = iter(batches)
    while True:
        stages.enter(making)
        batch = next(iterator, None)
        stages.enter("audit")
        if batch is None:
            return
        yield batch


class EnterPrediction(pl.Callback):
    """Moves the run's stages to "prediction" when the trainer that trained starts predicting.

    Training and prediction happen in one call (:func:`~genfair.audit.run.training.fit_and_predict`);
    this keeps the time of each apart.
    """

    def __init__(self, stages: RunStages) -> None:
        self.stages = stages

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stages.enter("prediction", trainer=trainer)
