"""`audit` end to end, in-process with typer's CliRunner, on tiny configurations.

Each run trains for one epoch on small images, so the whole module takes well under a minute.
"""

from __future__ import annotations

import dataclasses
import re

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from cli_runner import invoke

TINY_RUN = ["--epochs", "1", "--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--devices", "1",
            "--classifier-epochs", "1"]


def run_id_from(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("MLflow run "))
    return line.split()[2]


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, str, str]:
    """One tiny `audit run --model vae --dataset faces`, shared by the checks below."""
    folder = tmp_path_factory.mktemp("faces-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        code, stdout, stderr = invoke("run", "--model", "vae", "--dataset", "faces", *TINY_RUN)
    assert code == 0, stderr
    return folder, stdout, run_id_from(stdout)


def test_run_prints_the_per_group_table_and_the_run(faces_run: tuple[Path, str, str]) -> None:
    folder, stdout, run_id = faces_run
    assert "vae on faces: per-image error by group" in stdout
    for group in ("female / darker", "male / lighter", "gender x skin_tone", "Disparities"):
        assert group in stdout
    assert "audit ui" in stdout
    assert "Attribute classifier" in stdout
    assert "ΔITA°" in stdout and "95% CI" in stdout
    assert "Representation" in stdout and "RDP" in stdout and "as majority" in stdout
    assert "Whom the model generates: 1000 samples" in stdout and "Whom the model finds least likely" in stdout
    assert (folder / "mlflow.db").exists(), "the embedded default store is a SQLite file in the working folder"
    # one line of time per stage, the same numbers as the run's time/<stage> metrics
    (line,) = [line for line in stdout.splitlines() if line.startswith("time: ")]
    printed = dict(re.findall(r"(\w+) ([\d.]+) s", line.removeprefix("time: ").split(" (total")[0]))
    assert list(printed) == ["data", "training", "prediction", "classifier", "audit", "samples", "likelihood", "logging"]
    logged = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_run(run_id).data.metrics
    for stage, seconds in printed.items():
        assert logged[f"time/{stage}"] == pytest.approx(float(seconds), abs=0.051)


def test_run_is_in_mlflow_with_metrics_params_and_artifacts(faces_run: tuple[Path, str, str]) -> None:
    folder, _, run_id = faces_run
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["genfair.model"] == "vae"
    assert run.data.params["dataset"] == "faces"
    assert len(run.data.params["manifest_sha256"]) == 64
    assert run.data.params["splits.train.composition.male_lighter"] == "43"
    metrics = run.data.metrics
    assert "group/gender_x_skin_tone/female_darker/mse_error" in metrics
    assert "train/loss" in metrics and "val/loss" in metrics
    assert 0 <= metrics["classifier_accuracy/gender_accuracy"] <= 1  # overall: no grouping in the key
    assert "attribute_preservation/skin_tone_flip_rate" in metrics
    assert "skin_tone_shift/gender_x_skin_tone/female_darker/ita_shift" in metrics
    assert 0 <= metrics["skin_tone_disparities/skin_tone/ita_shift/p_holm"] <= 1
    assert metrics["likelihood/gender_x_skin_tone/female_darker/estimate"] > 0  # the VAE's -ELBO, bits per dimension
    assert 0 <= metrics["sample_composition/gender/female/sample_share"] <= 1  # whom the VAE generates
    disparity = "disparity/gender_x_skin_tone/mse_error"
    assert 0 < metrics[f"{disparity}/p_holm"] <= 1
    assert metrics[f"{disparity}/ratio_ci_low"] <= metrics[f"{disparity}/ratio"] <= metrics[f"{disparity}/ratio_ci_high"]
    assert 0 <= metrics["representation_tests/skin_tone/rdp/p_value"] <= 1
    # the full tables are tables, not hundreds of metrics
    assert not any(key.startswith(("group_intervals/", "disparity_intervals/", "representation/")) for key in metrics)
    assert len(metrics) < 250  # headline numbers only: three skin shifts, the classifier's validity (897 before)
    tables = {f.path for f in client.list_artifacts(run_id, "tables")}
    for name in ("per_group", "disparities", "group_intervals", "disparity_intervals", "classifier_accuracy",
                 "representation", "skin_tone_intervals", "samples"):
        assert f"tables/{name}.json" in tables, name
    loaded = client.load_table(run.info.experiment_id, "tables/group_intervals.json", run_ids=[run_id])
    saved = pd.read_parquet(client.download_artifacts(run_id, "audit/group_intervals.parquet", str(folder)))
    pd.testing.assert_frame_equal(loaded, saved, check_dtype=False)
    row = loaded.set_index(["grouping", "group", "metric"]).loc[("gender", "female", "mse_error")]
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    artifacts = {f.path for top in ("audit", "figures", "model") for f in client.list_artifacts(run_id, top)}
    artifacts |= {f.path for f in client.list_artifacts(run_id, "classifier")}
    for expected in ("audit/per_image.parquet", "audit/per_group.parquet", "audit/classifier_accuracy.parquet",
                     "figures/error_by_group.png", "figures/reconstructions.png", "model/best.ckpt",
                     "classifier/classifier.ckpt"):
        assert expected in artifacts


def test_compare_runs_pairs_two_audits_by_run_id_or_folder(faces_run: tuple[Path, str, str], tmp_path: Path) -> None:
    folder, _, run_id = faces_run
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    saved = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="audit", dst_path=str(tmp_path),
                                                      tracking_uri=uri))
    code, stdout, stderr = invoke("compare-runs", run_id, str(saved), "--tracking-uri", uri, "--resamples", "100",
                                  "--permutations", "99")
    assert code == 0, stderr
    assert "vae (B) against vae (A)" in stdout and "female / darker" in stdout
    assert "+0 " in stdout and "p (vae (B) fairer)" in stdout, "an audit against itself changes nothing"
    code, _, stderr = invoke("compare-runs", run_id, "0" * 32, "--tracking-uri", uri)
    assert code == 2 and f"no MLflow run {'0' * 32} in {uri}" in stderr
    code, _, stderr = invoke("compare-runs", run_id, str(saved), "--metric", "lpips_error", "--tracking-uri", uri)
    assert code == 2 and "--metric 'lpips_error' is not in both audits" in stderr
    # other images under the same names (another manifest), or fewer images: no pairing
    from genfair.audit.result import AuditResult

    audit = AuditResult.load(saved)
    other = dataclasses.replace(audit, metadata={**audit.metadata, "manifest_sha256": "f" * 64})
    code, _, stderr = invoke("compare-runs", run_id, str(other.save(tmp_path / "other")), "--tracking-uri", uri)
    assert code == 2 and "the two audits read different manifests" in stderr and "fix: audit both models" in stderr
    fewer = dataclasses.replace(audit, per_image=audit.per_image.iloc[1:].reset_index(drop=True))
    code, _, stderr = invoke("compare-runs", run_id, str(fewer.save(tmp_path / "fewer")), "--tracking-uri", uri)
    assert code == 2 and "the two audits saw different images (1 only in the first, 0 only in the second" in stderr


LOOSE_POLICY = """
[statistics]
n_resamples = 200
n_permutations = 199
[metrics.mse_error]
max_ratio = 100.0
"""
STRICT_POLICY = """
judge = "estimate"
[statistics]
n_resamples = 200
n_permutations = 199
[metrics.mse_error]
max_ratio = 1.0001
"""


def test_check_exit_codes_junit_and_verdicts_logged_to_the_run(faces_run: tuple[Path, str, str], tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    folder, _, run_id = faces_run
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    (tmp_path / "loose.toml").write_text(LOOSE_POLICY)
    (tmp_path / "strict.toml").write_text(STRICT_POLICY)
    junit = tmp_path / "reports" / "fairness.xml"

    code, stdout, stderr = invoke("check", "--run", run_id, "--policy", str(tmp_path / "loose.toml"),
                                  "--baseline", run_id, "--junit", str(junit), "--tracking-uri", uri)
    assert code == 0, stderr
    assert "metrics.mse_error.max_ratio" in stdout and "regression.tolerance.mse_error" in stdout
    assert "PASS: 0 failed" in stdout, "an audit checked against itself never regresses"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 6  # 3 groupings x (absolute, regression)

    code, stdout, _ = invoke("check", "--run", run_id, "--policy", str(tmp_path / "strict.toml"), "--junit",
                             str(junit), "--tracking-uri", uri)
    assert code == 1, "a fairness failure exits 1"
    assert "FAIL: 3 failed" in stdout
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "3"
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["genfair.check.verdict"] == "fail" and run.data.metrics["check/fail"] == 3
    assert {f.path for f in MlflowClient(uri).list_artifacts(run_id, "check")} == {"check/rules.csv",
                                                                                   "check/junit.xml"}

    (tmp_path / "typo.toml").write_text("[metrics.mse_error]\nmax_ratoi = 1.5\n")
    code, _, stderr = invoke("check", "--run", run_id, "--policy", str(tmp_path / "typo.toml"), "--tracking-uri", uri)
    assert code == 2 and "metrics.mse_error.max_ratoi" in stderr and "max_ratio" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_run_with_a_bad_policy_fails_before_training(workdir: Path) -> None:
    (workdir / "typo.toml").write_text("judge = 'sometimes'\n")
    code, stdout, stderr = invoke("run", "--model", "vae", "--policy", str(workdir / "typo.toml"), *TINY_RUN)
    assert code == 2 and "judge" in stderr
    assert not (workdir / "mlflow.db").exists(), "nothing was trained or logged"
    code, _, stderr = invoke("run", "--model", "vae", "--junit", "x.xml", *TINY_RUN)
    assert code == 2 and "--junit need --policy" in stderr


def test_every_per_group_number_is_recomputable_from_the_per_image_parquet(
    faces_run: tuple[Path, str, str], tmp_path: Path
) -> None:
    folder, _, run_id = faces_run
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="audit", dst_path=str(tmp_path)))
    per_image = pd.read_parquet(local / "per_image.parquet")
    per_group = pd.read_parquet(local / "per_group.parquet").set_index(["grouping", "group"])
    metrics = ["mse_error", "mae_error", "psnr_score", "ssim_score"]

    assert per_image["subject"].nunique() == 20, "the audit panel: 5 subjects in each of 4 groups"
    by_cell = per_image.groupby(["gender", "skin_tone"])
    for (gender, tone), rows in by_cell:
        recorded = per_group.loc[("gender x skin_tone", f"{gender} / {tone}")]
        np.testing.assert_allclose(recorded[metrics].to_numpy(float), rows[metrics].mean().to_numpy(), rtol=1e-9)
        assert recorded["n_images"] == len(rows) and recorded["n_subjects"] == rows["subject"].nunique()
    for gender, rows in per_image.groupby("gender"):
        recorded = per_group.loc[("gender", gender)]
        np.testing.assert_allclose(recorded[metrics].to_numpy(float), rows[metrics].mean().to_numpy(), rtol=1e-9)
    logged = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_run(run_id).data.metrics
    assert logged["test/mse_error"] == pytest.approx(per_image["mse_error"].mean(), rel=1e-6)


def test_run_on_real_photos_through_a_manifest(workdir: Path, london_faces: Path) -> None:
    code, stdout, stderr = invoke(
        "run", "--model", "vae", "--manifest", str(london_faces), "--attributes", "gender,race_binary", *TINY_RUN
    )
    assert code == 0, stderr
    assert "female / non_white" in stdout


def test_a_blank_attribute_in_a_real_manifest_is_one_clear_line(workdir: Path, london_faces: Path) -> None:
    # london-faces leaves `age` blank for two people; every non-reserved column is an attribute by default.
    code, _, stderr = invoke("run", "--manifest", str(london_faces), *TINY_RUN)
    assert code == 2
    assert "age" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "vea"], "did you mean 'vae'"),
        (["--dataset", "face"], "did you mean 'faces'"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--manifest", "no/such/manifest.csv"], "no/such/manifest.csv"),
    ],
)
def test_usage_errors_exit_2_with_one_line(workdir: Path, args: list[str], expected: str) -> None:
    code, _, stderr = invoke("run", *args)
    assert code == 2
    assert expected in stderr
    assert "Traceback" not in stderr
    assert not (workdir / "mlflow.db").exists(), "a usage error must not leave an empty run behind"


def test_import_faces95_writes_a_manifest_that_audits(workdir: Path) -> None:
    for subject in ("ab", "cd"):
        (workdir / "faces95" / subject).mkdir(parents=True)
        for n in (1, 2):
            Image.new("RGB", (18, 20), (40 * n, 90, 120)).save(workdir / "faces95" / subject / f"{subject}.{n}.jpg")
    (workdir / "subjects.csv").write_text("subject,gender\nab,female\ncd,male\n")
    code, stdout, stderr = invoke(
        "data", "import-faces95", "faces95", "--annotations", "subjects.csv", "--out", "manifest.csv"
    )
    assert code == 0, stderr
    assert "4 images of 2 subjects" in stdout
    manifest = pd.read_csv(workdir / "manifest.csv")
    assert set(manifest["path"]) == {f"faces95/{s}/{s}.{n}.jpg" for s in ("ab", "cd") for n in (1, 2)}


def test_help_lists_the_commands() -> None:
    code, stdout, _ = invoke("--help")
    assert code == 0
    for command in ("run", "ui", "data"):
        assert command in stdout


def test_installed_genfair_does_not_claim_the_global_names(tmp_path: Path) -> None:
    probe = (
        "import importlib.util as u, genfair.datasets, genfair.models;"
        "print(u.find_spec('datasets') is None or 'genfair' not in str(u.find_spec('datasets').origin),"
        " u.find_spec('models') is None, genfair.datasets.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "genfair.datasets"]


def test_ui_serves_the_local_store(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    audit = Path(sys.executable).with_name("audit")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(
        [str(audit), "ui", "--port", str(port)], cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(240):  # the server needs a few seconds to start; poll, never assert on time
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                time.sleep(0.5)
        else:
            pytest.fail("audit ui did not answer /health")
        assert (tmp_path / "mlflow.db").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
