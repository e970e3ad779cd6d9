"""`audit run` and `audit check` against a real MLflow tracking server (issue #7).

The module starts one `mlflow server` on 127.0.0.1 (a free port) with a SQLite backend store
and a temporary artifact destination, served through the server (`--artifacts-destination`: the
client uploads and downloads artifacts over HTTP, as a team's clients would, instead of writing
into the server's folder): a light server, one worker and the job runner off (``servers.py``).
One tiny `audit run --tracking-uri http://127.0.0.1:PORT` runs through the command's entry point
in this process (``in_process.audit_here``, which gives MLflow's process-wide tracking URI back
afterwards, so the server never leaks into later tests). The run is read back through
`MlflowClient`, and `audit check` logs its verdict to it through the server.
The finaliser stops the server's whole process group and fails if any process of it survives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from genfair.audit.cli import app
from in_process import audit_here
from servers import TrackingServer, mlflow_server

TINY_RUN = ["--model", "vae", "--dataset", "faces", "--epochs", "1", "--image-size", "16", "--batch-size", "64",
            "--accelerator", "cpu", "--devices", "1", "--classifier-epochs", "0"]
LOOSE_POLICY = "[statistics]\nn_resamples = 100\nn_permutations = 99\n[metrics.mse_error]\nmax_ratio = 100.0\n"


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A real `mlflow server` (SQLite backend, proxied artifact store) on a free 127.0.0.1 port."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder) as server:
        yield server


@pytest.fixture(scope="module")
def server_run(tracking_server: TrackingServer, tmp_path_factory: pytest.TempPathFactory,
               cache_dir: Path) -> tuple[str, str]:
    """One tiny `audit run` logged to the server: (run id, stdout)."""
    folder = tmp_path_factory.mktemp("server-run")
    code, stdout, stderr = audit_here(["run", *TINY_RUN, "--tracking-uri", tracking_server.url], cwd=folder,
                                      cache_dir=cache_dir)
    assert code == 0, f"audit run failed ({code}):\n{stderr[-4000:]}"
    assert not (folder / "mlflow.db").exists() and not (folder / "mlruns").exists(), "nothing is logged locally"
    line = next(line for line in stdout.splitlines() if line.startswith("MLflow run "))
    return line.split()[2], stdout


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
    assert 0 < metrics["disparity/gender_x_skin_tone/mse_error/p_holm"] <= 1
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
