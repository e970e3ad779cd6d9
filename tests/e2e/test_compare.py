"""`audit compare` trains several models as children of one MLflow run and writes a report that
`audit report` rebuilds from MLflow alone; every number in it traces back to a child run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from genfair.audit.cli import app

TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--classifier-epochs",
        "0", "--scale", "2", "--perplexity", "5"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        code, output = invoke("compare", "--models", "pca,bicubic", "--experiment", "zoo", "--out", "report", *TINY)
    assert code == 0, output
    return folder, output


def test_compare_ranks_the_models_and_writes_the_report(compared: tuple[Path, str]) -> None:
    folder, output = compared
    assert "Which model suits the task?" in output and "comes first" in output
    for name in ("report.html", "report.md", "comparison.csv", "figures/samples.png", "figures/group_error.png"):
        assert (folder / "report" / name).is_file(), name
    curves = pd.read_csv(folder / "report" / "learning_curves.csv")  # pca and bicubic train nothing
    assert list(curves.columns) == ["model", "stage", "epoch", "loss"] and curves.empty
    assert not (folder / "report" / "figures" / "learning_curves.png").exists()
    page = (folder / "report" / "report.html").read_text()
    assert "<td>pca</td>" in page and "<td>bicubic</td>" in page
    for model in ("pca", "bicubic"):  # each group's worst images, linked to its statistic's row and back
        key = f"{model}-mse-error-female-darker"
        assert f'<tr id="stat-{key}">' in page and f'href="#worst-{key}"' in page
        assert f'<div class="worst" id="worst-{key}"><p><a href="#stat-{key}">' in page
    assert len(list((folder / "report" / "figures" / "worst_cases").glob("*-original.png"))) >= 2 * 4


def test_every_number_traces_to_a_child_of_one_parent_run(compared: tuple[Path, str]) -> None:
    folder, _ = compared
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("zoo")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "genfair.compare" in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    children = {run.data.tags["genfair.model"]: run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent}
    assert set(children) == {"pca", "bicubic"}
    assert {f.path for f in client.list_artifacts(parent, "report")} >= {"report/report.html", "report/report.md"}
    table = pd.read_csv(folder / "report" / "comparison.csv").set_index("model")
    # reconstruction and upsampling are different tasks: each model is first of its own
    assert table["task"].to_dict() == {"pca": "reconstruction", "bicubic": "upsampling x2"}
    assert table["rank"].to_dict() == {"pca": 1, "bicubic": 1}
    for model, run in children.items():
        row = table.loc[model]
        assert row["run_id"] == run.info.run_id
        assert row["error"] == pytest.approx(run.data.metrics["test/mse_error"], rel=1e-6)
        key = "disparity/gender_x_skin_tone/mse_error/ratio"
        assert row["ratio"] == pytest.approx(run.data.metrics[key], rel=1e-6)
        assert row["images_per_second"] == pytest.approx(run.data.metrics["model_facts/images_per_second"], rel=1e-6)
        assert "genfair.composition" in run.data.tags and run.data.tags["genfair.image_size"] == "16"


def test_report_rebuilds_the_same_table_from_mlflow_alone(compared: tuple[Path, str]) -> None:
    folder, _ = compared
    code, output = invoke("report", "--experiment", "zoo", "--out", str(folder / "again"), "--perplexity", "5",
                          "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}")
    assert code == 0, output
    first = pd.read_csv(folder / "report" / "comparison.csv").set_index("model").sort_index()
    again = pd.read_csv(folder / "again" / "comparison.csv").set_index("model").sort_index()
    pd.testing.assert_frame_equal(first, again)


def test_bad_compare_options_fail_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = invoke("compare", "--models", "pca,vea", *TINY)
    assert code == 2 and "vea" in output and "vae" in output
    code, output = invoke("compare", "--priority", "beauty", *TINY)
    assert code == 2 and "--priority must be" in output
    code, output = invoke("report", "--experiment", "nothing-here")
    assert code == 2 and "no MLflow experiment 'nothing-here'" in output
    assert not (tmp_path / "report").exists()


def test_the_report_opens_in_a_real_browser_without_errors(compared: tuple[Path, str], tmp_path: Path) -> None:
    from browser import open_page, require_chromium

    require_chromium()
    folder, _ = compared
    page = open_page(folder / "report" / "report.html", screenshot=tmp_path / "report.png")
    assert not page.problems, page.problems
    assert page.images and all(image.loaded for image in page.images)
    assert any(image.alt.startswith("original of") for image in page.images), "the worst cases are on the page"
    assert "pca" in page.text and "bicubic" in page.text and "comes first" in page.text
    assert page.screenshot.stat().st_size > 0


def test_compare_trains_until_early_stopping_by_default() -> None:
    from genfair.audit.cli import studies
    from genfair.audit.run.config import CONVERGENCE_MAX_EPOCHS, CONVERGENCE_PATIENCE

    assert (studies.COMPARE_MAX_EPOCHS, studies.COMPARE_PATIENCE) == (CONVERGENCE_MAX_EPOCHS, CONVERGENCE_PATIENCE)
    code, output = invoke("compare", "--help")
    assert code == 0 and "--patience" in output
