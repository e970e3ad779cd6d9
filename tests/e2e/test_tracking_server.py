"""`audit run` and `audit check` against a real MLflow tracking server (issue #7).

The module starts one `mlflow server` on 127.0.0.1 (a free port) with a SQLite backend store
and a temporary artifact destination, served through the server (`--artifacts-destination`: the
client uploads and downloads artifacts over HTTP, as a team's clients would, instead of writing
into the server's folder). It is the light server of STACK.md: one worker, the job runner off.
One tiny `audit run --tracking-uri http://127.0.0.1:PORT` runs as a subprocess, as a user would
run it (it also keeps MLflow's process-wide tracking URI out of this test session). The run is
read back through `MlflowClient`, and `audit check` logs its verdict to it through the server.
The finaliser stops the server's whole process group and fails if any process of it survives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from genfair.audit.cli import app

HEALTH_TIMEOUT_S = 120.0  # ~6-15 s on a quiet 2-core machine; generous for a busy one
STOP_TIMEOUT_S = 20.0
TINY_RUN = ["--model", "vae", "--dataset", "faces", "--epochs", "1", "--image-size", "16", "--batch-size", "64",
            "--accelerator", "cpu", "--devices", "1", "--classifier-epochs", "0"]
LOOSE_POLICY = "[statistics]\nn_resamples = 100\nn_permutations = 99\n[metrics.mse_error]\nmax_ratio = 100.0\n"


@dataclass(frozen=True)
class TrackingServer:
    url: str
    folder: Path  # holds mlflow.db, the artifact destination and server.log
    artifacts: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with code {process.returncode} before answering /health:\n"
                        f"{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer {url}/health within {HEALTH_TIMEOUT_S:.0f} s:\n{_log_tail(log)}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> list[str]:
    """SIGTERM the server's process group, SIGKILL what is left after a while; the problems seen."""
    problems: list[str] = []
    pgid = process.pid  # start_new_session=True: the server leads its own process group
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        problems.append(f"mlflow server {process.pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        problems.append(f"processes of group {pgid} outlived SIGTERM by {STOP_TIMEOUT_S:.0f} s; killed")
        os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT_S)
    return problems


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A real `mlflow server` (SQLite backend, proxied artifact store) on a free 127.0.0.1 port."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    artifacts = folder / "artifacts"
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # the job runner would start many more processes
    log = folder / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(url, process, log)
        yield TrackingServer(url=url, folder=folder, artifacts=artifacts)
    finally:
        problems = _stop(process)
    if problems:
        pytest.fail("; ".join(problems) + f"\n{_log_tail(log)}")


@pytest.fixture(scope="module")
def server_run(tracking_server: TrackingServer, tmp_path_factory: pytest.TempPathFactory,
               cache_dir: Path) -> tuple[str, str]:
    """One tiny `audit run` logged to the server, as a subprocess: (run id, stdout)."""
    folder = tmp_path_factory.mktemp("server-run")
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["GENFAIR_CACHE_DIR"] = str(cache_dir)
    audit = Path(sys.executable).with_name("audit")
    done = subprocess.run([str(audit), "run", *TINY_RUN, "--tracking-uri", tracking_server.url], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"audit run failed ({done.returncode}):\n{done.stderr[-4000:]}"
    assert not (folder / "mlflow.db").exists() and not (folder / "mlruns").exists(), "nothing is logged locally"
    line = next(line for line in done.stdout.splitlines() if line.startswith("MLflow run "))
    return line.split()[2], done.stdout


def test_run_is_logged_to_the_server_and_reads_back(tracking_server: TrackingServer, server_run: tuple[str, str],
                                                    tmp_path: Path) -> None:
    run_id, stdout = server_run
    assert f"in {tracking_server.url}" in stdout
    assert f"open it: {tracking_server.url}/#/experiments/" in stdout

    client = MlflowClient(tracking_uri=tracking_server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["genfair.model"] == "vae" and run.data.params["dataset"] == "faces"
    metrics = run.data.metrics
    assert "test/mse_error" in metrics
    assert "group/gender_x_skin_tone/female_darker/mse_error" in metrics
    assert 0 < metrics["disparity_intervals/gender_x_skin_tone/mse_error/p_holm"] <= 1
    assert "train/loss" in metrics and "val/loss" in metrics

    # Artifacts went through the server's proxy into its own destination folder.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    listed = {f.path for top in ("audit", "figures", "model") for f in client.list_artifacts(run_id, top)}
    for expected in ("audit/per_image.parquet", "audit/per_group.parquet", "figures/error_by_group.png",
                     "model/best.ckpt"):
        assert expected in listed
    assert list(tracking_server.artifacts.rglob("per_image.parquet")), "stored under --artifacts-destination"

    local = Path(client.download_artifacts(run_id, "audit/per_image.parquet", str(tmp_path)))
    per_image = pd.read_parquet(local)
    assert per_image["subject"].nunique() == 20 and {"gender", "skin_tone", "mse_error"} <= set(per_image.columns)
    assert metrics["test/mse_error"] == pytest.approx(per_image["mse_error"].mean(), rel=1e-6)


def test_check_reads_the_run_from_the_server_and_logs_its_verdict(
    tracking_server: TrackingServer, server_run: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _ = server_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "loose.toml").write_text(LOOSE_POLICY)
    result = CliRunner().invoke(app, ["check", "--run", run_id, "--policy", "loose.toml",
                                      "--tracking-uri", tracking_server.url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.stderr
    assert "PASS: 0 failed" in result.stdout

    client = MlflowClient(tracking_uri=tracking_server.url)
    run = client.get_run(run_id)
    assert run.data.tags["genfair.check.verdict"] == "pass"
    assert run.data.metrics["check/fail"] == 0
    assert "check/rules.csv" in {f.path for f in client.list_artifacts(run_id, "check")}
    assert not (tmp_path / "mlflow.db").exists(), "the check wrote nothing locally"
