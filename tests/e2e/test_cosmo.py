"""`audit run --dataset cosmo` end to end: super-resolution audited by cosmic-web environment."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from cli_runner import invoke

COSMO_RUN = ["--dataset", "cosmo", "--image-size", "16", "--scale", "4", "--batch-size", "64", "--accelerator", "cpu",
             "--devices", "1", "--classifier-epochs", "0"]


def _run_id(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]


def test_cosmo_run_has_environment_tables_in_terminal_and_mlflow(workdir: Path) -> None:
    # sr only (bicubic reads the same tables, and sr's run also sets its outputs against bicubic's)
    model = "sr"
    code, stdout, stderr = invoke("run", "--model", model, *COSMO_RUN, "--epochs", "1")
    assert code == 0, stderr
    assert f"{model} on cosmo: per-image error by group" in stdout
    assert "Per-pixel error by cosmic-web environment" in stdout and "Power-spectrum fidelity" in stdout
    for environment in ("void", "filament", "knot"):
        assert environment in stdout
    assert "2–4*" in stdout  # 16 px from 4 px inputs: k >= 2 is beyond the input's Nyquist
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    run_id = _run_id(stdout)
    metrics = client.get_run(run_id).data.metrics
    assert 0 < metrics["environment_errors/pixel_environment/void/mse_error"] < 1
    assert metrics["environment_errors/pixel_environment/void/ci_low"] <= metrics[
        "environment_errors/pixel_environment/void/mse_error"]
    assert metrics["power_spectrum/k_2_4/power_ratio"] > 0  # overall row: no grouping in the key
    table = json.loads(Path(client.download_artifacts(run_id, "tables/power_spectrum.json", str(workdir))).read_text())
    assert {"grouping", "group", "power_ratio", "ci_low", "beyond_input"} <= set(table["columns"])
    assert "figures/power_spectrum.png" in {entry.path for entry in client.list_artifacts(run_id, "figures")}


def test_cosmo_rejects_a_patch_size_it_cannot_cut(workdir: Path) -> None:
    code, _, stderr = invoke("run", "--model", "bicubic", *COSMO_RUN[:2], "--image-size", "4", "--scale", "2")
    assert code == 2
    assert "--image-size" in stderr and "must be in [8, 256] for the cosmo dataset, got 4" in stderr
    assert len(stderr.strip().splitlines()) == 1
