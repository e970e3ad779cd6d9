"""Training faults, interruptions and concurrency, end to end (issue 6, part 2).

- A non-finite loss stops training with one line naming the epoch and step (exit 2), keeps the
  last finite checkpoint and marks the MLflow run FAILED.
- SIGINT and SIGTERM stop training at the end of a batch, keep the last finished epoch's
  checkpoint in ``genfair-runs/<run id>/``, mark the run KILLED and exit 128 + the signal; a run
  resumed from that checkpoint continues that MLflow run (its epochs kept, the rest appended) and
  ends with exactly the metrics of an uninterrupted one.
- Two ``audit run`` processes on one fresh SQLite store both finish.
- A result folder is never left half-old, half-new.

Tiny runs: 464 synthetic 16x16 faces (17 training people), a dense autoencoder, at most 3
epochs, one MLflow store for the module. The signals are real: SIGTERM to an ``audit run``
subprocess, and SIGINT that a test-only model sends to its own process.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from cli_runner import invoke
from genfair import models
from genfair.audit.faults import NO_CHECKPOINT_MSG, RUN_ID_KEY, RUNS_DIR, checkpoint_run_id
from genfair.audit.run.training import run_to_resume
from genfair.audit.result import METADATA_FILE, PER_IMAGE_FILE, RESULT_FILES, AuditResult
from genfair.datasets.synthetic import SyntheticFacesConfig, ensure_synthetic_faces
from genfair.models.ae import AE, AEConfig

AUDIT = str(Path(sys.executable).with_name("audit"))
SMALL_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=16, train_lighter_male=8, train_lighter_female=3,
                                   train_darker_male=4, train_darker_female=2, test_subjects_per_group=2)
BATCHES_PER_EPOCH = 17  # 17 training people x 16 images, in batches of 16
TINY = ["--image-size", "16", "--batch-size", "16", "--classifier-epochs", "0", "--accelerator", "cpu",
        "--patience", "0", "--attributes", "gender,skin_tone"]


# -- a test-only model with faults on demand ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FaultyAEConfig(AEConfig):
    """``AEConfig`` plus two faults, by training step (from 1; 0 = never)."""

    nan_from_step: int = 0
    sigint_at_step: int = 0


class FaultyAE(AE):
    """The dense autoencoder, whose loss turns NaN, or which sends itself SIGINT (once), at a given step."""

    config_class = FaultyAEConfig
    sigint_sent = False

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        step = self.global_step + 1
        if step == self.config.sigint_at_step and not FaultyAE.sigint_sent:
            FaultyAE.sigint_sent = True
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl+C would
        if self.config.nan_from_step and step >= self.config.nan_from_step:
            loss = loss * float("nan")
        return loss


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers ``faulty-ae`` for one test."""
    monkeypatch.setitem(models.REGISTRY, "faulty-ae", models.ModelSpec(name="faulty-ae", module=FaultyAE,
                                                                        config=FaultyAEConfig))
    monkeypatch.setattr(FaultyAE, "sigint_sent", False)
    return "faulty-ae"


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces(cache_dir: Path) -> list[str]:
    """``--manifest`` options of a small synthetic face set (generated once per session)."""
    return ["--manifest", str(ensure_synthetic_faces(SMALL_FACES, cache_dir))]


@pytest.fixture(scope="module")
def module_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One working folder (MLflow store, genfair-runs/) for the module: a new SQLite store costs seconds."""
    return tmp_path_factory.mktemp("faults")


@pytest.fixture
def workdir(module_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(module_store)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return module_store


def error_line(stderr: str) -> str:
    """The one ``error:`` line, after checking that there is exactly one and no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def stopped_run(line: str, status: str) -> str:
    match = re.search(rf"MLflow run ([0-9a-f]{{32}}) marked {status}", line)
    assert match, line
    return match.group(1)


def store(folder: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def run_id_from(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]


def mse_of(folder: Path, run_id: str, dst: Path) -> pd.Series:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"audit/{PER_IMAGE_FILE}",
                                                dst_path=str(dst), tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    return pd.read_parquet(local).set_index("path")["mse_error"]


# -- non-finite loss ---------------------------------------------------------------------------------


def test_a_diverging_learning_rate_fails_the_run_with_one_line(workdir: Path, faces: list[str]) -> None:
    """A real option: sr with learning rate 1e6 turns NaN within a few steps of the first epoch."""
    code, _, stderr = invoke("run", "--model", "sr", "--scale", "2", "-o", "learning_rate=1e6", "--epochs", "2",
                             *faces, *TINY)
    line = error_line(stderr)
    assert code == 2, stderr
    assert re.search(r"the training loss became (nan|inf|-inf) in epoch 0 at batch \d+/17 \(training step \d+\)", line)
    assert NO_CHECKPOINT_MSG in line and "lower the learning rate" in line
    run = store(workdir).get_run(stopped_run(line, "FAILED"))
    assert run.info.status == "FAILED"
    assert "training loss became" in run.data.tags["genfair.stopped"]


def test_a_loss_that_turns_nan_keeps_the_last_finite_checkpoint(workdir: Path, faces: list[str], faulty: str) -> None:
    code, _, stderr = invoke("run", "--model", faulty, "-o", "nan_from_step=23", "--epochs", "3", *faces, *TINY)
    line = error_line(stderr)
    assert code == 2
    assert "the training loss became nan in epoch 1 at batch 6/17 (training step 23)" in line
    run_id = stopped_run(line, "FAILED")
    kept = RUNS_DIR / run_id / "last.ckpt"
    assert f"kept the last finite checkpoint: {kept}" in line
    checkpoint = torch.load(workdir / kept, map_location="cpu", weights_only=False)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, BATCHES_PER_EPOCH), "the end of epoch 0"
    assert all(torch.isfinite(weights).all() for weights in checkpoint["state_dict"].values())
    client = store(workdir)
    assert client.get_run(run_id).info.status == "FAILED"
    assert {f.path for f in client.list_artifacts(run_id, "model")} == {"model/best.ckpt", "model/last.ckpt"}


# -- interruptions -----------------------------------------------------------------------------------


def test_ctrl_c_stops_at_the_end_of_the_batch_and_keeps_the_last_epoch(workdir: Path, faces: list[str],
                                                                       faulty: str) -> None:
    # what the run found, which it must give back (another test of the session may have left SIGINT ignored)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    code, _, stderr = invoke("run", "--model", faulty, "-o", "sigint_at_step=20", "--epochs", "3", *faces, *TINY)
    line = error_line(stderr)
    assert code == 128 + signal.SIGINT
    assert "SIGINT stopped training in epoch 1 (step 20)" in line
    run_id = stopped_run(line, "KILLED")
    kept = RUNS_DIR / run_id / "last.ckpt"
    assert f"continue with the same options plus --resume {kept}" in line
    assert torch.load(workdir / kept, map_location="cpu", weights_only=False)["epoch"] == 0
    assert (workdir / RUNS_DIR / run_id / "best.ckpt").is_file()
    assert store(workdir).get_run(run_id).info.status == "KILLED"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before, "the handlers it found"


RESUMABLE = ["run", "--model", "ae", "--epochs", "3", *TINY]


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def runs_at_once(tmp_path_factory: pytest.TempPathFactory, faces: list[str]) -> tuple[Path, list[Finished]]:
    """Three identical `audit run` processes started at once on one new store (so all of them create it).

    The first two run to the end; the third gets SIGTERM as soon as its first epoch's checkpoint
    exists (it works in its own TMPDIR, which the test watches; no fixed sleep).

    Returns:
        The working folder (store, genfair-runs/) and each process's outcome, the interrupted one last.
    """
    folder = tmp_path_factory.mktemp("at-once")
    temp = tmp_path_factory.mktemp("at-once-tmp")
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    processes, logs = [], []
    for number, extra in enumerate([{}, {}, {"TMPDIR": str(temp)}]):
        # files, not pipes: nobody reads while the test waits, and a full pipe would block the run
        out, err = (open(folder / f"process-{number}.{name}", "w+") for name in ("out", "err"))  # noqa: SIM115
        logs.append((out, err))
        processes.append(subprocess.Popen([AUDIT, *RESUMABLE, *faces], cwd=folder, env={**env, **extra},
                                          stdout=out, stderr=err, text=True))
    interrupted = processes[-1]
    deadline = time.monotonic() + 300
    try:
        while interrupted.poll() is None and time.monotonic() < deadline:
            if glob.glob(str(temp / "genfair-run-*" / "checkpoints" / "last.ckpt")):
                interrupted.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        for process in processes:
            process.wait(timeout=300)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    outcomes = []
    for process, (out, err) in zip(processes, logs):
        out.seek(0)
        err.seek(0)
        outcomes.append(Finished(process.returncode, out.read(), err.read()))
        out.close()
        err.close()
    return folder, outcomes


def test_sigterm_then_resume_gives_the_uninterrupted_metrics(
    runs_at_once: tuple[Path, list[Finished]], faces: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SIGTERM to a real `audit run` after its first epoch; `--resume` ends exactly where an uninterrupted run does."""
    folder, (uninterrupted, _, killed) = runs_at_once
    line = error_line(killed.stderr)
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr[-3000:]
    assert re.search(r"SIGTERM stopped training in epoch [12] \(step \d+\)", line)
    killed_id = stopped_run(line, "KILLED")
    resume = re.search(r"--resume (\S+)$", line).group(1)
    assert resume == str(RUNS_DIR / killed_id / "last.ckpt") and (folder / resume).is_file()
    client = store(folder)
    assert client.get_run(killed_id).info.status == "KILLED"
    assert {f.path for f in client.list_artifacts(killed_id, "model")} == {"model/best.ckpt", "model/last.ckpt"}

    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert torch.load(folder / resume, map_location="cpu", weights_only=False)[RUN_ID_KEY] == killed_id
    before = {m.step: m.value for m in client.get_metric_history(killed_id, "val/loss")}
    assert 0 in before and 2 not in before, "the killed run logged the epochs it finished"
    code, stdout, stderr = invoke(*RESUMABLE, *faces, "--resume", resume)
    assert code == 0, stderr
    resumed, reference = run_id_from(stdout), run_id_from(uninterrupted.stdout)
    assert resumed == killed_id, "the resume continues the interrupted MLflow run"
    run = client.get_run(resumed)
    assert run.info.status == "FINISHED"
    assert not {"genfair.stopped", "genfair.stopped_at"} & set(run.data.tags), "no longer a stopped run"
    pd.testing.assert_series_equal(mse_of(folder, resumed, tmp_path / "resumed"),
                                   mse_of(folder, reference, tmp_path / "reference"), check_exact=True)
    for key in ("val/loss", "train/loss"):
        history = client.get_metric_history(resumed, key)
        assert sorted(m.step for m in history) == [0, 1, 2], f"{key}: every epoch once, the ones before the stop kept"
        assert {m.step: m.value for m in history} == {m.step: m.value for m in client.get_metric_history(
            reference, key)}, f"{key}: the uninterrupted run's values"
    assert {m.step: m.value for m in client.get_metric_history(resumed, "val/loss")}.items() >= before.items()


def test_a_resume_continues_only_a_stopped_run_of_this_store(workdir: Path) -> None:
    """Which run ``--resume`` continues: never a missing, finished or foreign one (those get a new run and a note)."""
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    client = store(workdir)
    experiment = mlflow.set_experiment("resume-choice").experiment_id
    stopped = client.create_run(experiment, tags={"genfair.stopped": "SIGTERM", "genfair.stopped_at": "training"})
    client.set_terminated(stopped.info.run_id, status="KILLED")
    finished = client.create_run(experiment)
    client.set_terminated(finished.info.run_id, status="FINISHED")

    def checkpoint(name: str, run_id: str | None, folder: str = "any") -> str:
        path = workdir / "resume-choice" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({} if run_id is None else {RUN_ID_KEY: run_id}, path)
        return str(path)

    assert run_to_resume(checkpoint("stopped.ckpt", stopped.info.run_id), experiment) == (stopped.info.run_id, None)
    assert not {"genfair.stopped", "genfair.stopped_at"} & set(client.get_run(stopped.info.run_id).data.tags)
    by_folder = checkpoint("last.ckpt", None, folder=stopped.info.run_id)  # written before checkpoints named their run
    assert checkpoint_run_id(by_folder) == stopped.info.run_id
    elsewhere = "0123456789abcdef0123456789abcdef"
    for path, why in [(checkpoint("finished.ckpt", finished.info.run_id), "is FINISHED, not stopped"),
                      (checkpoint("elsewhere.ckpt", elsewhere), "is not in this tracking store"),
                      (checkpoint("nameless.ckpt", None), "the checkpoint names no MLflow run")]:
        run_id, note = run_to_resume(path, experiment)
        assert run_id is None and why in note and "logged to a new MLflow run" in note
    other = mlflow.set_experiment("resume-choice-other").experiment_id
    run_id, note = run_to_resume(checkpoint("stopped.ckpt", stopped.info.run_id), other)
    assert run_id is None and f"in experiment {experiment}" in note


# -- concurrency -------------------------------------------------------------------------------------


def test_two_runs_at_once_on_a_fresh_store_both_finish(runs_at_once: tuple[Path, list[Finished]]) -> None:
    folder, (first, second, killed) = runs_at_once
    for finished in (first, second):
        assert finished.returncode == 0, finished.stderr[-3000:]
    run_ids = {run_id_from(first.stdout), run_id_from(second.stdout)}
    assert len(run_ids) == 2
    client = store(folder)
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert "test/mse_error" in run.data.metrics and "val/loss" in run.data.metrics
        assert f"audit/{PER_IMAGE_FILE}" in {f.path for f in client.list_artifacts(run_id, "audit")}
    assert killed.returncode == 128 + signal.SIGTERM, "the third was stopped (its run: the resume test)"


# -- atomic writes -----------------------------------------------------------------------------------


def test_a_save_that_crashes_between_renames_leaves_a_folder_load_refuses(
    make_audit: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = make_audit(seed=0), make_audit(seed=1, harm=2.0)
    old.save(tmp_path)
    renames = []

    def crash_after_two(source: str, target: str) -> None:
        if len(renames) == 2:
            raise OSError("power cut")
        renames.append(target)
        os.rename(source, target)

    monkeypatch.setattr(os, "replace", crash_after_two)
    with pytest.raises(OSError, match="power cut"):
        new.save(tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / METADATA_FILE).exists(), "half old, half new: not a result"
    with pytest.raises(FileNotFoundError, match=METADATA_FILE):
        AuditResult.load(tmp_path)
    new.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        [*RESULT_FILES, *(f"{name}.parquet" for name in new.tables)]
    )
    pd.testing.assert_frame_equal(AuditResult.load(tmp_path).per_image, new.per_image)
