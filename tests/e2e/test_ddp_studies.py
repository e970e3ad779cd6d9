"""Under DDP only global rank 0 opens and writes a study's runs: one parent, every run closed.

``audit compare`` has no ``--devices`` or ``--strategy`` options, so the study runs as a script
that calls :func:`~genfair.audit.run.studies.run_comparison` with ``devices=2, strategy=ddp`` on
the CPU. Lightning's launcher starts the second process from the first child's trainer by
running the same script again with ``LOCAL_RANK=1``; that process must open no run and train
every child alongside rank 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from genfair.datasets.synthetic import SyntheticFacesConfig, ensure_synthetic_faces

SMALL_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=16, train_lighter_male=8, train_lighter_female=3,
                                   train_darker_male=4, train_darker_female=2, test_subjects_per_group=2)
STUDY = """
import sys
from pathlib import Path

from genfair.audit.ranking import parse_priority
from genfair.audit.run import RunConfig
from genfair.audit.run.studies import run_comparison

manifest, tracking_uri, out = sys.argv[1:4]
base = RunConfig(manifest=manifest, epochs=1, image_size=16, batch_size=16, classifier_epochs=0, patience=0,
                 attributes=("gender", "skin_tone"), accelerator="cpu", devices="2", strategy="ddp", tracking_uri=tracking_uri, experiment="ddp-study")
outcome = run_comparison(base, ["ae", "cnn"], priority=parse_priority("fidelity"), out=Path(out), perplexity=5.0,
                         progress_bar=False)
print(f"rank-zero-outcome {outcome.parent_run_id}" if outcome is not None else "no outcome on this rank")
"""


@pytest.fixture
def manifest(cache_dir: Path) -> Path:
    return ensure_synthetic_faces(SMALL_FACES, cache_dir)


def test_a_ddp_comparison_on_two_cpu_processes_leaves_one_parent_and_no_running_run(
    manifest: Path, tmp_path: Path
) -> None:
    script = tmp_path / "study.py"  # DDP relaunches sys.argv: a script, not pytest or `python -c`
    script.write_text(textwrap.dedent(STUDY))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    done = subprocess.run([sys.executable, str(script), str(manifest), tracking_uri, str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent_id,) = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("rank-zero-outcome ")]

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
