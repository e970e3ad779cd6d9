"""`audit attribute`: a factorial study (composition x objective x seeds) on one audit panel, end to end;
and the training levers it pulls, through `audit run`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from cli_runner import invoke

TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "64", "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("attribute")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        code, stdout, stderr = invoke("attribute", "--models", "ae", "--seeds", "2", *TINY)
    assert code == 0, stderr
    return folder, stdout


def test_the_study_reports_every_effect_per_group(study: tuple[Path, str]) -> None:
    folder, stdout = study
    assert "Effects per group" in stdout and "has the largest excess error over male / lighter" in stdout
    effects = pd.read_csv(folder / "attribution" / "effects.csv")
    finest = effects[effects["grouping"] == "gender x skin_tone"]
    assert set(finest["effect"]) == {"representation", "objective"}
    assert set(finest["group"]) == {"female / darker", "female / lighter", "male / darker", "male / lighter"}
    assert (finest["n_seeds"] == 2).all() and finest["ci_low"].le(finest["ci_high"]).all()
    assert (folder / "attribution" / "report.html").is_file() and (folder / "attribution" / "cuts.csv").is_file()


def test_every_cell_is_a_child_run_on_the_same_panel(study: tuple[Path, str]) -> None:
    folder, _ = study
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("genfair").experiment_id])
    parent = next(run for run in runs if "genfair.attribute" in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    cells = {(r.data.tags["genfair.training_composition"], r.data.tags["genfair.objective"], r.data.tags["genfair.seed"])
             for r in children}
    assert cells == {(c, o, s) for c in ("as-given", "balanced") for o in ("erm", "group-dro") for s in ("0", "1")}
    dro = next(r for r in children if r.data.tags["genfair.objective"] == "group-dro")
    assert any(key.startswith("train/dro_weight/") for key in dro.data.metrics), "group DRO logs its weights"
    key = "attribution/ae/representation/gender_x_skin_tone/female_darker/estimate"
    assert key in parent.data.metrics
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "attribution")} >= {
        "attribution/effects.csv", "attribution/report.html"}


def test_run_balances_data_without_a_generator_by_subsampling(workdir: Path) -> None:
    code, _, stderr = invoke("run", "--model", "ae", "--dataset", "digits", "--composition", "balanced",
                             "--sampler", "balanced", "--objective", "reweighted", "--classifier-epochs", "0",
                             "--out", "result", *TINY)
    assert code == 0, stderr
    metadata = json.loads((workdir / "result" / "metadata.json").read_text())
    people = metadata["splits"]["train"]["composition"]
    assert len(set(people.values())) == 1, f"every digit as often: {people}"
    assert metadata["run"]["objective"] == "reweighted" and metadata["run"]["sampler"] == "balanced"


def test_bad_levers_are_refused_before_training(workdir: Path) -> None:
    for args, message in ((["--objective", "dro"], "--objective must be one of erm, reweighted, group-dro"),
                          (["--sampler", "fair"], "--sampler must be one of shuffle, balanced"),
                          (["--composition", "equal"], "--composition must be one of as-given, balanced")):
        code, _, stderr = invoke("run", "--model", "ae", *args, *TINY)
        assert code == 2 and message in stderr
    code, _, stderr = invoke("run", "--model", "pca", "--objective", "group-dro", *TINY)
    assert code == 2 and "pca" in stderr
    code, _, stderr = invoke("attribute", "--mitigation", "erm", *TINY)
    assert code == 2 and "--mitigation must be reweighted or group-dro" in stderr
    assert not (workdir / "mlflow.db").exists()


def test_a_named_reference_group_is_used_or_refused_before_training(workdir: Path) -> None:
    code, _, stderr = invoke("run", "--model", "pca", "--reference", "male / lighter", "--classifier-epochs", "0",
                             "--out", "result", *TINY)
    assert code == 0, stderr
    intervals = pd.read_parquet(workdir / "result" / "group_intervals.parquet")
    crossed = intervals[intervals["grouping"] == "gender x skin_tone"]
    assert set(crossed["reference_group"]) == {"male / lighter"}
    code, _, stderr = invoke("run", "--model", "pca", "--reference", "men", *TINY)
    assert code == 2 and "--reference 'men' is no group" in stderr
