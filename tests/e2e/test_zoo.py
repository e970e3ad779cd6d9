"""Every registered model through `audit run`, on `faces` and on `digits`, at a tiny size.

Also: a seed makes a CPU run repeatable, and a two-process DDP run audits exactly the images a
one-process run does, with the same per-image numbers for the same checkpoint. Those two need no
particular dataset, so they run on the 464 small synthetic faces (``test_faults.py``'s set, a
quarter of ``faces``'s 1,720 images) through a manifest.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from genfair.audit.cli import app
from genfair.audit.run import RunConfig, run_audit
from genfair.audit.skin import SKIN_SHIFTS
from genfair.datasets.synthetic import SyntheticFacesConfig, ensure_synthetic_faces

TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--classifier-epochs", "0"]
SUPER_RESOLUTION = {"sr", "bicubic"}
SMALL_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=16, train_lighter_male=8, train_lighter_female=3,
                                   train_darker_male=4, train_darker_female=2, test_subjects_per_group=2)
ATTRIBUTES = ("gender", "skin_tone")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """One MLflow store for the module (a fresh SQLite store costs seconds to set up)."""
    folder = tmp_path_factory.mktemp("zoo")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield folder


def per_image_of(store: Path, run_id: str, dst: Path) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="audit/per_image.parquet", dst_path=str(dst))
    return pd.read_parquet(local)


def run_id_from(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]


@pytest.mark.parametrize("dataset", ["faces", "digits"])
@pytest.mark.parametrize("model", ["ae", "vae", "cnn", "sr", "pca", "bicubic"])
def test_every_model_runs_end_to_end(store: Path, model: str, dataset: str, tmp_path: Path) -> None:
    extra = ["--scale", "2"] if model in SUPER_RESOLUTION else []
    classify = model == "sr" and dataset == "faces"  # the one case that exercises UCPR (needs the classifier)
    if classify:  # a 1-epoch classifier is unreliable for some groups: withhold nothing, to see UCPR's every share
        extra += ["--classifier-epochs", "1", "--classifier-min-accuracy", "0"]
    result = CliRunner().invoke(app, ["run", "--model", model, "--dataset", dataset, *TINY, *extra])
    assert result.exit_code == 0, result.stderr or result.stdout
    run_id = run_id_from(result.stdout)
    per_image = per_image_of(store, run_id, tmp_path)
    attribute = "digit" if dataset == "digits" else "skin_tone"
    assert attribute in per_image.columns
    assert per_image["mse_error"].between(0, 1).all()
    assert per_image["path"].is_unique
    assert ("sr against bicubic" in result.stdout) == (model == "sr"), "sr is compared with bicubic per group"
    metrics = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(run_id).data.metrics
    if model == "sr":
        assert 0 <= metrics[f"vs_bicubic_groups/{attribute}/{per_image[attribute].iloc[0]}/mse_error/p_value"] <= 1
    if classify:
        assert "UCPR" in result.stdout
        assert 0 <= metrics["representation_tests/skin_tone/ucpr/p_value"] <= 1
        client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
        representation = client.load_table(client.get_run(run_id).info.experiment_id, "tables/representation.json",
                                           run_ids=[run_id]).set_index(["grouping", "group"])
        assert 0 <= representation.loc[("gender x skin_tone", "female / darker"), "uninformative_share"] <= 1


def test_scale_is_refused_for_a_model_without_one(store: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--model", "vae", "--scale", "2", *TINY])
    assert result.exit_code == 2
    assert "--scale applies to super-resolution models" in result.stderr


def test_unknown_model_option_lists_the_valid_ones(store: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--model", "ae", "-o", "bottlenek=16", *TINY])
    assert result.exit_code == 2
    assert "has no option 'bottlenek'" in result.stderr and "bottleneck" in result.stderr


@pytest.fixture(scope="module")
def small_faces(cache_dir: Path) -> Path:
    """The manifest of the small synthetic faces (generated once into the session's cache)."""
    return ensure_synthetic_faces(SMALL_FACES, cache_dir)


def test_same_seed_same_metrics_on_cpu(store: Path, small_faces: Path) -> None:
    config = RunConfig(model="cnn", manifest=str(small_faces), attributes=ATTRIBUTES, epochs=1, image_size=16,
                       batch_size=64, seed=3, accelerator="cpu", classifier_epochs=1)
    first = run_audit(config, progress_bar=False)
    second = run_audit(config, progress_bar=False)
    assert first is not None and second is not None
    pd.testing.assert_frame_equal(first.result.per_image, second.result.per_image)
    other = run_audit(dataclasses.replace(config, seed=4), progress_bar=False)
    assert other is not None
    assert not other.result.per_image["mse_error"].equals(first.result.per_image["mse_error"])


def test_ddp_on_two_cpu_processes_audits_every_image_once(store: Path, small_faces: Path, tmp_path: Path) -> None:
    common = ["run", "--model", "cnn", *TINY, "--manifest", str(small_faces), "--attributes", ",".join(ATTRIBUTES),
              "--classifier-epochs", "1"]
    # the one-process run in this process: it trains the checkpoint both runs audit
    result = CliRunner().invoke(app, [*common, "--devices", "1"])
    assert result.exit_code == 0, result.stderr or result.stdout
    single = run_id_from(result.stdout)
    checkpoint = mlflow.artifacts.download_artifacts(run_id=single, artifact_path="model", dst_path=str(tmp_path))
    (trained,) = Path(checkpoint).glob("*.ckpt")
    # DDP relaunches sys.argv (inside pytest it would re-run the session), so it runs the installed CLI in a subprocess;
    # with the attribute classifier: rank 0 trains it and hands it to rank 1, which labels its own outputs
    audit = str(Path(sys.executable).with_name("audit"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    done = subprocess.run([audit, *common, "--checkpoint", str(trained), "--devices", "2", "--strategy", "ddp"],
                          cwd=store, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = run_id_from(done.stdout)

    one = per_image_of(store, single, tmp_path / "one")
    two = per_image_of(store, ddp, tmp_path / "two")
    assert len(two) == len(one) == two["path"].nunique(), "every test image exactly once"
    assert {"classified_gender", "classified_gender_output"} <= set(two.columns)
    # the skin shifts are differences of float32 means of L*, a* and b* (0-100 units), which resolve to ~1e-5:
    # a batch made of other images (a rank's shard) may move them in that last place
    skin = [column for column in SKIN_SHIFTS if column in one.columns]
    pd.testing.assert_frame_equal(one.drop(columns=skin), two.drop(columns=skin), rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(one[skin], two[skin], rtol=1e-5, atol=1e-4)
