"""genfair.reports.tracking: metric keys, params and logging an AuditResult into MLflow (SQLite in tmp)."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

import mlflow
import mlflow.tracking._tracking_service.utils as tracking_utils
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from genfair.reports import audit_metrics, flatten_params, log_audit, metric_key
from genfair.reports.tracking import MAX_PARAM_VALUE_LENGTH, NO_ACTIVE_RUN_MESSAGE

# --- metric_key ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("test", "mse_error"), "test/mse_error"),
        (
            ("group", "gender x skin_tone", "female / darker", "mse_error"),
            "group/gender_x_skin_tone/female_darker/mse_error",
        ),
        (("disparity", "skin_tone", "psnr_score", "ratio"), "disparity/skin_tone/psnr_score/ratio"),
        (("group", "tone", 7, "n_images"), "group/tone/7/n_images"),
        (("group", "age: 20-30", "Monk 1.5 (lighter)"), "group/age_20-30/Monk_1.5_lighter"),
        (("group", "  a//b  ", "_x_"), "group/a_b/x"),
        (("group", "café"), "group/caf"),
    ],
)
def test_metric_key_sanitises_each_part(parts: tuple, expected: str) -> None:
    key = metric_key(*parts)
    assert key == expected
    assert mlflow.utils.validation.validate_param_and_metric_name(key)


@pytest.mark.parametrize(
    ("parts", "match"),
    [
        ((), "at least one part"),
        (("group", " / "), r"key part ' / ' .* is empty once sanitised"),
        (("group", ".."), r"key part '\.\.' .* is empty once sanitised"),
        (("group", "x" * 260), "is 266 characters long; MLflow allows 250"),
    ],
)
def test_metric_key_rejects_unusable_parts(parts: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metric_key(*parts)


# --- flatten_params -----------------------------------------------------------------------


def test_flatten_params_joins_nested_keys_with_dots_and_stringifies() -> None:
    params = flatten_params(
        {
            "model": "vae",
            "model_config": {"latent_dim": 8, "beta": 1.0},
            "attributes": ("gender", "skin_tone"),
            "splits": {"test": {"composition": {"female / darker": 2}}},
            "manifest": None,
            "empty": {},
            "long": "x" * (MAX_PARAM_VALUE_LENGTH + 10),
        }
    )
    assert params == {
        "model": "vae",
        "model_config.latent_dim": "8",
        "model_config.beta": "1.0",
        "attributes": '["gender", "skin_tone"]',
        "splits.test.composition.female_darker": "2",
        "manifest": "None",
        "long": "x" * (MAX_PARAM_VALUE_LENGTH - 3) + "...",
    }


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"a b": 1, "a_b": 2}, r"metadata keys \('a b',\) and \('a_b',\) both become the MLflow param 'a_b'"),
        ({"run": {"": 1}}, r"key part '' in \('run', ''\) is empty once sanitised"),
        ({"k" * 251: 1}, "is 251 characters long"),
    ],
)
def test_flatten_params_rejects_unusable_keys(metadata: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        flatten_params(metadata)


# --- audit_metrics (pure) -----------------------------------------------------------------


def test_audit_metrics_keys_and_values(result_factory) -> None:
    result = result_factory()
    metrics = audit_metrics(result.per_group, result.disparities)
    per_group = result.per_group.set_index(["grouping", "group"])
    assert metrics["test/mse_error"] == pytest.approx(per_group.loc[("overall", "all"), "mse_error"])
    assert metrics["test/n_images"] == 8
    assert metrics["group/gender_x_skin_tone/female_darker/psnr_score"] == pytest.approx(
        per_group.loc[("gender x skin_tone", "female / darker"), "psnr_score"]
    )
    assert metrics["test/n_subjects"] == 6
    assert "group/skin_tone/lighter/n_images" not in metrics, "group counts are in the tables only"
    disparity = result.disparities.set_index(["grouping", "metric"]).loc[("gender x skin_tone", "mse_error")]
    assert metrics["disparity/gender_x_skin_tone/mse_error/ratio"] == pytest.approx(disparity["ratio"])
    assert metrics["disparity/gender_x_skin_tone/mse_error/difference"] == pytest.approx(disparity["difference"])
    # 4 columns for the overall row, the 2 means for each of the 8 groups, 2 statistics per disparity row.
    assert len(metrics) == 4 + 2 * (len(result.per_group) - 1) + 2 * len(result.disparities)
    assert not any(key.startswith("group/overall") for key in metrics)


def test_audit_metrics_skips_non_finite_values_and_says_so(result_factory, caplog) -> None:
    # Expected (a small group has no interval), so an INFO line with the count and examples, not a warning.
    result = result_factory(with_inf=True)
    with caplog.at_level(logging.INFO, logger="genfair.reports.tracking"):
        metrics = audit_metrics(result.per_group, result.disparities)
    assert "test/psnr_score" not in metrics
    assert "group/gender_x_skin_tone/male_lighter/psnr_score" not in metrics
    assert metrics["group/gender_x_skin_tone/male_lighter/mse_error"] == pytest.approx(0.003)
    assert metrics["test/mse_error"] == pytest.approx(result.per_image["mse_error"].mean())
    assert all(math.isfinite(value) for value in metrics.values())
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "not logging 7 non-finite" in record.getMessage() and "test/psnr_score" in record.getMessage()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda g, d: (g.drop(columns="n_subjects"), d), r"per_group lacks column\(s\) \['n_subjects'\]"),
        (lambda g, d: (g, d.drop(columns="ratio")), r"disparities lacks column\(s\) \['ratio'\]"),
        (lambda g, d: (g[g["grouping"] != "overall"], d), "per_group has no overall row"),
        (
            lambda g, d: (pd.concat([g, g.iloc[[1]].assign(group="female ")]), d),
            "two audit rows give the MLflow metric 'group/gender/female/mse_error'",
        ),
    ],
)
def test_audit_metrics_rejects_bad_frames(result_factory, edit, match) -> None:
    result = result_factory()
    per_group, disparities = edit(result.per_group, result.disparities)
    with pytest.raises(ValueError, match=match):
        audit_metrics(per_group, disparities)


# --- log_audit against a SQLite store -----------------------------------------------------


def _migrated_database(request: pytest.FixtureRequest, database: Path) -> None:
    """Put an empty, fully migrated MLflow SQLite database at ``database``.

    Creating one runs MLflow's ~50 alembic migrations (several seconds), so the first one made
    is kept in pytest's cache, keyed by the MLflow version, and later runs copy it (as MLflow's
    own test suite does with its ``cached_db``).
    """
    cache = getattr(request.config, "cache", None)
    template = cache.mkdir(f"genfair-mlflow-{mlflow.__version__}") / "mlflow.db" if cache else None
    if template is not None and template.is_file():
        shutil.copyfile(template, database)
        return
    MlflowClient(tracking_uri=f"sqlite:///{database}").search_experiments()  # creates and migrates
    if template is not None:
        partial = template.with_name(f"mlflow.db.{os.getpid()}.tmp")
        shutil.copyfile(database, partial)
        os.replace(partial, template)


@pytest.fixture(scope="module")
def experiment_id(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One SQLite store for the module; MLflow's tracking URI (global and env) restored after."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        _migrated_database(request, root / "mlflow.db")
        patch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield MlflowClient().create_experiment("reports", artifact_location=(root / "artifacts").as_uri())


@pytest.fixture
def run_in(experiment_id: str):
    """Start a run in the test experiment; every run still active ends after the test."""
    yield lambda: mlflow.start_run(experiment_id=experiment_id)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _small_figure() -> Figure:
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1], [0, 1])
    return figure


def test_log_audit_logs_params_metrics_tags_and_artifacts(run_in, result_factory) -> None:
    result = result_factory()
    with run_in() as run:
        log_audit(result, figures={"error by group": _small_figure(), "reconstructions": _small_figure()})

    client = MlflowClient()
    logged = client.get_run(run.info.run_id)
    assert logged.data.params == flatten_params(result.metadata)
    assert logged.data.params["model_config.latent_dim"] == "8"
    assert logged.data.params["splits.test.composition.female_darker"] == "2"
    assert logged.data.tags["genfair.model"] == "vae"
    assert logged.data.tags["genfair.dataset"] == "faces"

    expected = audit_metrics(result.per_group, result.disparities)
    assert logged.data.metrics == pytest.approx(expected)
    per_group = result.per_group.set_index(["grouping", "group"])
    assert logged.data.metrics["group/gender_x_skin_tone/female_darker/mse_error"] == pytest.approx(
        per_group.loc[("gender x skin_tone", "female / darker"), "mse_error"]
    )
    disparities = result.disparities.set_index(["grouping", "metric"])
    assert logged.data.metrics["disparity/skin_tone/psnr_score/ratio"] == pytest.approx(
        disparities.loc[("skin_tone", "psnr_score"), "ratio"]
    )

    artifacts = {info.path for info in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"audit", "figures", "tables"}
    table_files = {info.path for info in client.list_artifacts(run.info.run_id, "tables")}
    assert table_files == {"tables/per_group.json", "tables/disparities.json"}
    audit_files = {Path(info.path).name for info in client.list_artifacts(run.info.run_id, "audit")}
    assert audit_files >= {"per_image.parquet", "per_group.parquet", "disparities.parquet", "metadata.json"}
    assert "per_group.csv" in audit_files
    figure_files = {info.path for info in client.list_artifacts(run.info.run_id, "figures")}
    assert figure_files == {"figures/error_by_group.png", "figures/reconstructions.png"}

    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="audit"))
    pd.testing.assert_frame_equal(pd.read_csv(local / "per_group.csv"), result.per_group, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(local / "per_image.parquet"), result.per_image)
    loaded = type(result).load(local)
    pd.testing.assert_frame_equal(loaded.per_group, result.per_group)
    assert loaded.metadata == result.metadata


def test_log_audit_skips_inf_and_logs_the_rest(run_in, result_factory, caplog) -> None:
    result = result_factory(with_inf=True, metadata={"seed": 0})
    with caplog.at_level(logging.INFO, logger="genfair.reports.tracking"), run_in() as run:
        log_audit(result)
    logged = MlflowClient().get_run(run.info.run_id).data
    assert "test/psnr_score" not in logged.metrics
    assert logged.metrics["test/mse_error"] == pytest.approx(result.per_image["mse_error"].mean())
    assert all(np.isfinite(list(logged.metrics.values())))
    assert logged.params == {"seed": "0"}
    assert "genfair.model" not in logged.tags
    assert any("non-finite" in record.getMessage() for record in caplog.records)


def test_log_audit_needs_an_active_run(experiment_id, result_factory) -> None:
    assert mlflow.active_run() is None
    with pytest.raises(RuntimeError, match="needs an active MLflow run") as error:
        log_audit(result_factory())
    assert str(error.value) == NO_ACTIVE_RUN_MESSAGE
    assert mlflow.active_run() is None  # and it did not start one


def test_log_audit_checks_everything_before_logging_anything(run_in, result_factory) -> None:
    result = result_factory(metadata={"seed": 0})
    with run_in() as run:
        with pytest.raises(ValueError, match="two figure names give the artifact 'figures/a_b.png'"):
            log_audit(result, figures={"a b": _small_figure(), "a/b": _small_figure()})
    logged = MlflowClient().get_run(run.info.run_id)
    assert logged.data.params == {} and logged.data.metrics == {}
    assert MlflowClient().list_artifacts(run.info.run_id) == []


def test_log_audit_logs_a_summarized_result(run_in, per_image) -> None:
    from genfair.audit.result import summarize

    result = summarize(
        per_image, attributes=["gender", "skin_tone"], metrics=["mse_error", "psnr_score"], metadata={"model": "vae"}
    )
    with run_in() as run:
        log_audit(result)
    logged = MlflowClient().get_run(run.info.run_id).data
    assert logged.metrics == pytest.approx(audit_metrics(result.per_group, result.disparities))
    assert logged.metrics["test/n_images"] == 8
    assert logged.metrics["group/gender_x_skin_tone/male_lighter/mse_error"] == pytest.approx(
        per_image.loc[(per_image["gender"] == "male") & (per_image["skin_tone"] == "lighter"), "mse_error"].mean()
    )
    assert logged.tags["genfair.model"] == "vae"


def _extra_tables() -> dict[str, pd.DataFrame]:
    """One table of each kind :func:`audit_metrics` reads, with values to find again by key."""
    return {
        # by group, every value column, every row
        "skin_tone_shift": pd.DataFrame({"grouping": ["overall", "gender"], "group": ["all", "female"],
                                         "n_images": [8, 4], "ita_shift": [1.5, 2.5]}),
        # by group, overall row only
        "classifier_accuracy": pd.DataFrame({"grouping": ["overall", "gender"], "group": ["all", "female"],
                                             "gender_accuracy": [0.9, 0.8]}),
        # by grouping and metric, chosen columns only
        "representation_tests": pd.DataFrame({"grouping": ["gender"], "metric": ["rdp"], "statistic": [13.2],
                                              "p_value": [0.01], "difference": [0.3]}),
        # by group and metric
        "vs_bicubic_groups": pd.DataFrame({"grouping": ["overall", "gender", "gender"],
                                           "group": ["all", "female", "female"],
                                           "metric": ["mse_error", "mse_error", "psnr_score"],
                                           "difference": [-0.1, -0.2, 1.0], "p_value": [0.2, 0.03, 0.5],
                                           "mean_a": [0.01, 0.02, 20.0]}),
        # the disparities' intervals: merged into disparity/...
        "disparity_intervals": pd.DataFrame({"grouping": ["gender", "skin_tone"], "metric": ["mse_error"] * 2,
                                             "ratio": [1.25, np.nan], "ratio_ci_low": [1.0, np.nan],
                                             "ratio_ci_high": [1.6, np.nan], "p_holm": [0.04, np.nan],
                                             "worst_ci_low": [0.01, 0.02]}),
        # not chosen: a table only, however it is keyed
        "group_intervals": pd.DataFrame({"grouping": ["gender"], "group": ["female"], "metric": ["mse_error"],
                                         "ci_low": [0.1]}),
        "notes": pd.DataFrame({"grouping": ["gender"], "group": ["female"], "score": [1.0]}),
    }


def test_audit_metrics_keeps_the_chosen_columns_of_the_extra_tables(result_factory) -> None:
    result = result_factory()
    metrics = audit_metrics(result.per_group, result.disparities, tables=_extra_tables())
    assert metrics["skin_tone_shift/ita_shift"] == 1.5
    assert metrics["skin_tone_shift/gender/female/ita_shift"] == 2.5
    assert "skin_tone_shift/gender/female/n_images" not in metrics, "counts repeat per_group's"
    assert metrics["classifier_accuracy/gender_accuracy"] == 0.9
    assert not any(key.startswith("classifier_accuracy/gender/") for key in metrics), "overall only"
    assert metrics["representation_tests/gender/rdp/p_value"] == 0.01
    assert metrics["representation_tests/gender/rdp/difference"] == 0.3
    assert "representation_tests/gender/rdp/statistic" not in metrics
    assert metrics["vs_bicubic_groups/mse_error/p_value"] == 0.2
    assert metrics["vs_bicubic_groups/gender/female/mse_error/difference"] == -0.2
    assert "vs_bicubic_groups/gender/female/mse_error/mean_a" not in metrics
    # the intervals' row replaces the summary's ratio and brings its interval and p
    assert metrics["disparity/gender/mse_error/ratio"] == 1.25
    assert metrics["disparity/gender/mse_error/ratio_ci_high"] == 1.6
    assert metrics["disparity/gender/mse_error/p_holm"] == 0.04
    summary = result.disparities.set_index(["grouping", "metric"])
    assert metrics["disparity/gender/mse_error/difference"] == pytest.approx(
        summary.loc[("gender", "mse_error"), "difference"])
    assert metrics["disparity/gender/psnr_score/ratio"] == pytest.approx(summary.loc[("gender", "psnr_score"), "ratio"])
    # no interval (too few people): the summary's ratio stays, alone
    assert metrics["disparity/skin_tone/mse_error/ratio"] == pytest.approx(
        summary.loc[("skin_tone", "mse_error"), "ratio"])
    assert "disparity/skin_tone/mse_error/ratio_ci_low" not in metrics
    assert not any(key.startswith(("disparity_intervals/", "group_intervals/", "notes/")) for key in metrics)
    assert "disparity/gender/mse_error/worst_ci_low" not in metrics
    # nothing else: per_group's, the disparities' and the 14 new values above
    plain = audit_metrics(result.per_group, result.disparities)
    assert len(metrics) == len(plain) + 14


def test_log_audit_logs_every_table_for_load_table(experiment_id, run_in, result_factory, tmp_path: Path) -> None:
    import dataclasses

    from PIL import Image

    png = tmp_path / "face.png"
    Image.new("RGB", (4, 4), (200, 10, 10)).save(png)
    samples = pd.DataFrame({"path": ["img/0.png"], "output_png": [png.read_bytes()]})
    result = dataclasses.replace(result_factory(), tables={**_extra_tables(), "samples": samples})
    with run_in() as run:
        log_audit(result)
    run_id = run.info.run_id

    client = MlflowClient()
    names = ["per_group", "disparities", *result.tables]
    assert {info.path for info in client.list_artifacts(run_id, "tables")} >= {f"tables/{n}.json" for n in names}
    assert MlflowClient().get_run(run_id).data.metrics == pytest.approx(
        audit_metrics(result.per_group, result.disparities, tables=result.tables))
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="audit"))
    for name in ("per_group", "group_intervals", "notes"):  # each table as the Parquet file the run holds
        parquet = pd.read_parquet(local / f"{name}.parquet")
        loaded = client.load_table(experiment_id, f"tables/{name}.json", run_ids=[run_id])
        pd.testing.assert_frame_equal(loaded, parquet, check_dtype=False)
    # the bytes of a PNG column become an image the UI shows; load_table names its file
    (cell,) = client.load_table(experiment_id, "tables/samples.json", run_ids=[run_id])["output_png"]
    assert cell["type"] == "image"
    image = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=cell["filepath"]))
    assert Image.open(image).getpixel((0, 0)) == (200, 10, 10)
    # logged again into the same run (a resumed run stopped while logging): each table holds one audit
    with mlflow.start_run(run_id=run_id):
        log_audit(result)
    again = client.load_table(experiment_id, "tables/per_group.json", run_ids=[run_id])
    assert len(again) == len(result.per_group)
    # across runs: one frame with the run id of each row
    with run_in() as other:
        log_audit(result_factory())
    both = client.load_table(experiment_id, "tables/per_group.json", run_ids=[run_id, other.info.run_id],
                             extra_columns=["run_id"])
    assert both["run_id"].value_counts().to_dict() == {run_id: len(result.per_group),
                                                       other.info.run_id: len(result.per_group)}


def test_log_audit_stores_each_table_as_log_table_does(run_in, result_factory) -> None:
    import dataclasses
    import json

    result = dataclasses.replace(result_factory(), tables=_extra_tables())
    with run_in() as ours:
        log_audit(result)
    client = MlflowClient()
    with run_in() as theirs:  # MLflow's own way, table by table
        for name, frame in {"per_group": result.per_group, "disparities": result.disparities, **result.tables}.items():
            client.log_table(theirs.info.run_id, data=frame, artifact_file=f"tables/{name}.json")

    def stored(run_id: str) -> dict[str, bytes]:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables"))
        return {file.name: file.read_bytes() for file in local.iterdir()}

    assert stored(ours.info.run_id) == stored(theirs.info.run_id)

    def listed(run_id: str) -> list[dict]:
        return sorted(json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"]), key=str)

    assert listed(ours.info.run_id) == listed(theirs.info.run_id)


def test_activate_experiment_holds_when_another_process_creates_it_meanwhile(
    experiment_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookup finds nothing, another process creates the experiment, our create is refused:
    the run still opens in that experiment (``mlflow.set_experiment`` alone would open it in "0")."""
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from genfair.reports.tracking import activate_experiment

    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    real_lookup = TrackingServiceClient.get_experiment_by_name
    created = []

    def lookup_then_lose_the_race(self, name):
        monkeypatch.setattr(TrackingServiceClient, "get_experiment_by_name", real_lookup)
        created.append(self.create_experiment(name))  # the other process, between our lookup and our create

    monkeypatch.setattr(TrackingServiceClient, "get_experiment_by_name", lookup_then_lose_the_race)
    experiment = activate_experiment("created-meanwhile")
    with mlflow.start_run() as run:
        pass
    assert created and experiment.experiment_id == created[0] != "0"
    assert run.info.experiment_id == created[0]


def test_learning_curves_read_each_runs_epoch_losses_back(tmp_path: Path) -> None:
    from genfair.reports.tracking import learning_curves

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("curves")
    trained, untrained = (client.create_run(experiment).info.run_id for _ in range(2))
    for epoch, (train, val) in enumerate([(0.5, 0.6), (0.3, 0.4), (0.2, 0.45)]):
        client.log_metric(trained, "train/loss", train, step=epoch)
        client.log_metric(trained, "val/loss", val, step=epoch)
    client.log_metric(trained, "val/loss", 0.35, step=1)  # epoch 2 logged again (a resumed run): the last value stays
    client.log_metric(untrained, "val/loss", 0.1, step=0)  # pca: one validation pass, no training epochs
    curves = learning_curves({"ae": trained, "pca": untrained}, tracking_uri=uri)
    expected = pd.DataFrame({"model": ["ae"] * 6, "stage": ["train"] * 3 + ["val"] * 3, "epoch": [1, 2, 3] * 2,
                             "loss": [0.5, 0.3, 0.2, 0.6, 0.35, 0.45]})
    pd.testing.assert_frame_equal(curves, expected)
