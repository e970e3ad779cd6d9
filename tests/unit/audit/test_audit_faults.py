"""genfair.audit.faults: messages of a stopped run, kept checkpoints, moved checkpoint state, the store lock."""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import signal
from pathlib import Path

import pytest

from genfair.audit import faults


def test_a_non_finite_loss_names_epoch_batch_step_run_and_checkpoint() -> None:
    err = faults.NonFiniteLoss(epoch=1, step=23, batch=6, batches=17, value=float("nan"))
    assert err.exit_code == faults.EXIT_NON_FINITE == 2
    assert str(err) == (
        "the training loss became nan in epoch 1 at batch 6/17 (training step 23); "
        "lower the learning rate (-o learning_rate=...) or check the images"
    )
    assert err.kept(run="MLflow run abc marked FAILED", checkpoint=Path("genfair-runs/abc/last.ckpt")) is err
    assert str(err) == (
        "the training loss became nan in epoch 1 at batch 6/17 (training step 23); MLflow run abc marked FAILED; "
        "kept the last finite checkpoint: genfair-runs/abc/last.ckpt; "
        "lower the learning rate (-o learning_rate=...) or check the images"
    )
    assert "\n" not in str(err)


def test_an_interruption_exits_128_plus_the_signal_and_says_how_to_resume() -> None:
    err = faults.TrainingInterrupted(epoch=2, step=40, signum=signal.SIGTERM)
    assert err.exit_code == 128 + signal.SIGTERM
    err.kept(run="MLflow run abc marked KILLED", checkpoint=Path("genfair-runs/abc/last.ckpt"))
    assert str(err) == (
        "SIGTERM stopped training in epoch 2 (step 40); MLflow run abc marked KILLED; "
        "checkpoint of the last finished epoch: genfair-runs/abc/last.ckpt; "
        "continue with the same options plus --resume genfair-runs/abc/last.ckpt"
    )
    first_epoch = faults.TrainingInterrupted(epoch=0, step=3, signum=signal.SIGINT)
    first_epoch.kept(run="MLflow run abc marked KILLED", checkpoint=None)
    assert first_epoch.exit_code == 130
    assert str(first_epoch).endswith(faults.NO_CHECKPOINT_MSG)


def test_stopped_runs_survive_pickling() -> None:
    err = faults.NonFiniteLoss(epoch=0, step=1, batch=1, batches=2, value=float("inf"))
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is faults.NonFiniteLoss and str(copy) == str(err)


def test_keep_checkpoints_copies_the_existing_ones(tmp_path: Path) -> None:
    (tmp_path / "best.ckpt").write_bytes(b"best")
    kept = faults.keep_checkpoints([tmp_path / "best.ckpt", tmp_path / "last.ckpt"], tmp_path / "runs" / "abc")
    assert kept == {"best.ckpt": tmp_path / "runs" / "abc" / "best.ckpt"}
    assert kept["best.ckpt"].read_bytes() == b"best"
    assert faults.keep_checkpoints([tmp_path / "none.ckpt"], tmp_path / "empty") == {}
    assert not (tmp_path / "empty").exists()


def checkpoint_state(folder: Path) -> dict:
    best = str(folder / "best.ckpt")
    return {"monitor": "val/loss", "best_model_score": 0.25, "best_model_path": best, "current_score": 0.25,
            "dirpath": str(folder), "best_k_models": {best: 0.25}, "kth_best_model_path": best, "kth_value": 0.25,
            "last_model_path": ""}


def test_relocated_state_points_at_copies_in_the_new_folder(tmp_path: Path) -> None:
    old, kept, new = tmp_path / "old-run", tmp_path / "genfair-runs" / "abc", tmp_path / "new-run"
    kept.mkdir(parents=True)
    (kept / "best.ckpt").write_bytes(b"weights of the best epoch")
    moved = faults.relocate_checkpoint_state(checkpoint_state(old), folder=str(new), source=kept)
    best = str(new / "best.ckpt")
    assert moved["dirpath"] == str(new)
    assert (moved["best_model_path"], moved["kth_best_model_path"], moved["last_model_path"]) == (best, best, "")
    assert moved["best_k_models"] == {best: 0.25} and moved["best_model_score"] == 0.25
    assert (new / "best.ckpt").read_bytes() == b"weights of the best epoch"


def test_relocation_without_the_best_file_forgets_the_best_score(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=faults.__name__):
        moved = faults.relocate_checkpoint_state(checkpoint_state(tmp_path / "old"), folder=str(tmp_path / "new"),
                                                 source=tmp_path / "nowhere")
    assert moved["best_model_path"] == "" and moved["best_k_models"] == {} and moved["best_model_score"] is None
    assert "best.ckpt" in caplog.text and "forgotten" in caplog.text


def test_the_store_lock_is_exclusive_and_beside_the_database(tmp_path: Path) -> None:
    lock = tmp_path / ".mlflow.db.lock"
    with faults.store_lock(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        assert lock.is_file()
        other = os.open(lock, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving
    finally:
        os.close(other)


def test_the_store_lock_ignores_servers_and_missing_folders(tmp_path: Path) -> None:
    with faults.store_lock("http://127.0.0.1:5000"):
        pass
    with faults.store_lock(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"):
        pass
    assert list(tmp_path.iterdir()) == []
