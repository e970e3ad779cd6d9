"""Under DDP only global rank 0 opens and writes a study's runs: one parent, every run closed.

``audit compare --devices 2 --strategy ddp`` on the CPU: Lightning's launcher starts the second
process from the first child's trainer by running the same command again with ``LOCAL_RANK=1``;
that process must open no run and train every child alongside rank 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from genfair.datasets.synthetic import SyntheticFacesConfig, ensure_synthetic_faces

SMALL_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=16, train_lighter_male=8, train_lighter_female=3,
                                   train_darker_male=4, train_darker_female=2, test_subjects_per_group=2)


@pytest.fixture
def manifest(cache_dir: Path) -> Path:
    return ensure_synthetic_faces(SMALL_FACES, cache_dir)


def test_a_ddp_comparison_on_two_cpu_processes_leaves_one_parent_and_no_running_run(
    manifest: Path, tmp_path: Path
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    audit = Path(sys.executable).parent / "audit"  # DDP relaunches sys.argv: the real command, not pytest
    done = subprocess.run([str(audit), "compare", "--manifest", str(manifest), "--models", "ae,cnn", "--epochs", "1",
                           "--image-size", "16", "--batch-size", "16", "--classifier-epochs", "0",
                           "--attributes", "gender,skin_tone", "--accelerator", "cpu", "--devices", "2",
                           "--strategy", "ddp", "--tracking-uri", tracking_uri, "--experiment", "ddp-study",
                           "--out", str(tmp_path / "out"), "--perplexity", "5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent_id,) = [line.split()[3] for line in done.stdout.splitlines() if line.startswith("MLflow parent run ")]

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ddp-study")
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    parents = [run for run in runs if "genfair.compare" in run.data.tags]
    assert [run.info.run_id for run in parents] == [parent_id], "exactly one parent, rank 0's"
    assert parents[0].info.status == "FINISHED"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(run.data.tags["genfair.model"] for run in children) == ["ae", "cnn"]
    assert len(runs) == 3, "no run besides the parent and its two children"
    assert [run.info.status for run in runs] == ["FINISHED"] * 3, "no RUNNING run left"
