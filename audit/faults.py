"""Runs that stop early: what went wrong, at which stage, where the checkpoints are kept, how to resume.

Plain logic with no Lightning or MLflow in it: the exceptions a run raises when its training
stops early (a non-finite loss, SIGINT or SIGTERM) or a signal stops it at another stage
(:class:`RunInterrupted`), and the file handling that keeps an unfinished run's checkpoints
where the user can find them. :mod:`genfair.audit.pipeline` raises
these from its Lightning callbacks and fills in the MLflow run; the CLI prints their message as
one line and exits with their ``exit_code``.

Where checkpoints go: training writes ``best.ckpt`` (lowest validation loss) and ``last.ckpt``
(the end of the latest finished epoch) into a temporary folder. A run that finishes logs the
best one to MLflow (``model/``) and the folder goes away. A run that stops early copies both to
``genfair-runs/<MLflow run id>/`` under the working folder (and logs them to MLflow under
``model/``), and its message names ``last.ckpt`` there for ``--resume``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .result import write_atomic

__all__ = [
    "BEST_CHECKPOINT",
    "EXIT_NON_FINITE",
    "LAST_CHECKPOINT",
    "RUNS_DIR",
    "RUN_ID_KEY",
    "STAGES",
    "STOPPED_AT_TAG",
    "NonFiniteLoss",
    "RunInterrupted",
    "TrainingInterrupted",
    "TrainingStopped",
    "checkpoint_run_id",
    "keep_checkpoints",
    "relocate_checkpoint_state",
    "store_lock",
]

logger = logging.getLogger(__name__)

RUNS_DIR = Path("genfair-runs")
"""Where a run that stopped early keeps its checkpoints: ``RUNS_DIR / <MLflow run id>``, under the working folder."""
BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
EXIT_NON_FINITE = 2
"""Exit code of a run whose loss became NaN or infinite: a configuration problem (learning rate, loss, data)."""

STAGES = ("data", "training", "prediction", "classifier", "audit", "logging")
"""The stages of ``audit run``, in order ("classifier": the attribute classifier, trained after prediction;
"audit": scoring the outputs and the statistics)."""
STOPPED_AT_TAG = "genfair.stopped_at"
"""The MLflow tag naming the stage a KILLED or FAILED run stopped at (a study's parent: "children" or "report")."""

RUN_ID_KEY = "genfair_run_id"
"""The checkpoint entry naming the MLflow run that wrote it, which ``--resume`` continues."""
_RUN_ID = re.compile(r"[0-9a-f]{32}")

NO_CHECKPOINT_MSG = "no epoch had finished, so there is no checkpoint to keep"
# ModelCheckpoint.state_dict() entries that hold paths inside its folder.
_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class TrainingStopped(Exception):
    """Training (or, for :class:`RunInterrupted`, the run) ended early; ``str(err)`` is the one line the CLI prints.

    Attributes:
        epoch: the epoch that was running, counted from 0 as Lightning's progress bar does (None: not training).
        step: optimiser steps taken so far (Lightning's ``global_step``; None: not training).
        checkpoint: the checkpoint to resume from or audit, once the run has kept one; else None.
        exit_code: what ``audit`` exits with.
    """

    exit_code: int = 1

    def __init__(self, *, epoch: int | None, step: int | None, checkpoint: Path | None = None,
                 run: str | None = None) -> None:
        self.epoch = epoch
        self.step = step
        self.checkpoint = checkpoint
        self.run = run
        super().__init__()

    def _what(self) -> str:
        return f"training stopped at epoch {self.epoch}, step {self.step}"

    def _next(self) -> str:
        return ""

    def _advice(self) -> str:
        return ""

    def _message(self) -> str:
        parts = [self._what()]
        if self.run is not None:
            parts += [self.run, NO_CHECKPOINT_MSG if self.checkpoint is None else self._next()]
        parts.append(self._advice())
        return "; ".join(part for part in parts if part)

    def __str__(self) -> str:
        return self._message()

    def kept(self, *, run: str, checkpoint: Path | None) -> TrainingStopped:
        """Add what became of the run (``run``, e.g. "MLflow run X marked FAILED") and the checkpoint
        that was kept (None: there was none) to the message; returns ``self``."""
        self.run, self.checkpoint = run, checkpoint
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only __init__: pickle the attributes instead
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[TrainingStopped], state: dict[str, Any]) -> TrainingStopped:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    return err


class NonFiniteLoss(TrainingStopped):
    """The training loss became NaN or infinite (exit code 2: lower the learning rate or check the data).

    The message places it as the progress bar does: epoch (from 0), batch ``batch/batches`` of
    that epoch (from 1), and the training step (from 1) whose loss it was.

    Attributes:
        value: the loss, ``nan``, ``inf`` or ``-inf``.
        batch: the batch of the epoch, from 1.
        batches: batches per epoch.
    """

    exit_code = EXIT_NON_FINITE

    def __init__(self, *, epoch: int, step: int, batch: int, batches: int, value: float, **kwargs: Any) -> None:
        self.value, self.batch, self.batches = value, batch, batches
        super().__init__(epoch=epoch, step=step, **kwargs)

    def _what(self) -> str:
        return (
            f"the training loss became {self.value} in epoch {self.epoch} at batch {self.batch}/{self.batches} "
            f"(training step {self.step})"
        )

    def _next(self) -> str:
        return f"kept the last finite checkpoint: {self.checkpoint}"

    def _advice(self) -> str:
        return "lower the learning rate (-o learning_rate=...) or check the images"


class TrainingInterrupted(TrainingStopped):
    """SIGINT (Ctrl+C) or SIGTERM stopped training at the end of a batch (exit code 128 + the signal's number).

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, *, epoch: int | None, step: int | None, signum: int, **kwargs: Any) -> None:
        self.signum = signum
        self.exit_code = 128 + int(signum)
        super().__init__(epoch=epoch, step=step, **kwargs)

    def _what(self) -> str:
        return f"{signal.Signals(self.signum).name} stopped training in epoch {self.epoch} (step {self.step})"

    def _next(self) -> str:
        return (
            f"checkpoint of the last finished epoch: {self.checkpoint}; "
            f"continue with the same options plus --resume {self.checkpoint}"
        )


class RunInterrupted(TrainingInterrupted):
    """SIGINT or SIGTERM stopped the run at once, outside a training loop (exit code 128 + the signal's number).

    Inside a training loop a signal stops at the end of the batch instead (:class:`TrainingInterrupted`).
    A run stopped after its training keeps the trained model (``best.ckpt``), which ``--checkpoint``
    audits without training again.

    Attributes:
        stage: the stage the run was at: one of :data:`STAGES` (a study: "children" or "report").
    """

    def __init__(self, *, signum: int, stage: str, **kwargs: Any) -> None:
        self.stage = stage
        super().__init__(epoch=None, step=None, signum=signum, **kwargs)

    def _what(self) -> str:
        return f"{signal.Signals(self.signum).name} stopped the run during its {self.stage} stage"

    def _next(self) -> str:
        return (f"the trained model is kept: {self.checkpoint}; "
                f"audit it without training again with --checkpoint {self.checkpoint}")

    def _message(self) -> str:
        parts = [self._what(), self.run or "no MLflow run had been opened yet"]
        if self.checkpoint is not None:
            parts.append(self._next())
        return "; ".join(parts)


def keep_checkpoints(files: Iterable[Path], folder: Path) -> dict[str, Path]:
    """Copy the checkpoints that exist among ``files`` into ``folder`` (created), each atomically.

    Args:
        files: checkpoint paths; missing ones are skipped.
        folder: where to keep them.

    Returns:
        The kept copies by file name, in the order given.
    """
    kept: dict[str, Path] = {}
    for source in files:
        if not source.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.name
        write_atomic(target, lambda temp, source=source: shutil.copyfile(source, temp))
        kept[source.name] = target
    return kept


def checkpoint_run_id(checkpoint: str | Path) -> str | None:
    """The MLflow run that wrote ``checkpoint``: its :data:`RUN_ID_KEY` entry, else its folder's name.

    Checkpoints written before the entry existed still name their run by where they are kept
    (``genfair-runs/<run id>/last.ckpt``).

    Args:
        checkpoint: a Lightning checkpoint file.

    Returns:
        The run id, or None when neither the checkpoint nor its folder names one.
    """
    path = Path(checkpoint)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)  # Lightning loads it the same way
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        logger.warning("could not read the MLflow run id from %s (%s)", path, err)
        saved = None
    run_id = saved.get(RUN_ID_KEY) if isinstance(saved, Mapping) else None
    if isinstance(run_id, str) and _RUN_ID.fullmatch(run_id):
        return run_id
    return path.parent.name if _RUN_ID.fullmatch(path.parent.name) else None


def relocate_checkpoint_state(state: Mapping[str, Any], *, folder: str, source: Path) -> dict[str, Any]:
    """A ``ModelCheckpoint.state_dict()`` saved in another folder, moved to ``folder``.

    A resumed run writes its checkpoints into a new folder. Lightning forgets the best score when
    the folder changes, so the first epoch after a resume would count as the best whatever its
    loss. Instead, each file the state names is copied from ``source`` (the folder of the
    checkpoint being resumed, where an interrupted run keeps its ``best.ckpt``) into ``folder``
    and the state points there; a file that is not in ``source`` is dropped from the state (if
    that is the best one, the best score is forgotten too, as Lightning would).

    Args:
        state: the saved state (not modified).
        folder: the new checkpoint folder (created if missing).
        source: the folder to copy the named checkpoints from.

    Returns:
        The state to load.
    """
    moved = dict(state)
    old = state.get("dirpath")
    moved["dirpath"] = folder

    def move(path: Any) -> str:
        if not path or old is None:
            return ""
        name = Path(str(path)).name
        if not (source / name).is_file():
            return ""
        target = Path(folder) / name
        if not target.is_file():
            keep_checkpoints([source / name], Path(folder))
        return str(target)

    for key in _PATH_KEYS:
        if key in moved:
            moved[key] = move(moved[key])
    best_k = {move(path): score for path, score in dict(state.get("best_k_models") or {}).items()}
    moved["best_k_models"] = {path: score for path, score in best_k.items() if path}
    if state.get("best_model_path") and not moved.get("best_model_path"):
        logger.warning(
            "resuming without %s: it is not beside the checkpoint in %s, so the best validation loss "
            "so far is forgotten",
            Path(str(state["best_model_path"])).name,
            source,
        )
        moved["best_model_score"] = None
        moved["kth_best_model_path"], moved["kth_value"] = "", None
    return moved


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock while opening a local SQLite MLflow store; other URIs pass through.

    MLflow creates and migrates a new SQLite store on first use without a lock, so two ``audit
    run`` processes starting on a fresh ``mlflow.db`` corrupt each other's migration
    ("table _alembic_tmp_metrics already exists"). Opening the store inside this lock makes the
    second process wait until the first has finished the schema. The lock is ``.<name>.lock``
    beside the database (a separate file: closing a descriptor of the database itself would drop
    SQLite's own locks), taken with POSIX ``flock``; elsewhere this is a no-op.

    Args:
        tracking_uri: the run's MLflow tracking URI.
    """
    if not tracking_uri.startswith("sqlite:") or os.name == "nt":
        yield
        return
    import fcntl

    # sqlite:////absolute/mlflow.db, sqlite:///relative/mlflow.db, maybe with ?options
    database = Path(tracking_uri.removeprefix("sqlite://").partition("?")[0].removeprefix("/") or "mlflow.db")
    if not database.parent.is_dir():  # MLflow will report the missing folder itself
        yield
        return
    path = database.parent / f".{database.name}.lock"
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        try:  # another user's lock file: locking it read-only works as well
            handle = os.open(path, os.O_RDONLY)
        except OSError:  # a read-only folder: nobody can create the store there anyway
            yield
            return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock
