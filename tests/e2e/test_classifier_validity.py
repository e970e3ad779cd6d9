"""`audit run` measures its attribute classifier on held-out people and withholds what it cannot read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cli_runner import invoke
from london import london_frontal
from genfair.audit.label_noise import MIN_ACCURACY
from genfair.audit.run.training import CLASSIFIER_HELD_OUT_PEOPLE

TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--classifier-epochs", "1"]


def test_a_tiny_run_shows_the_classifier_validity_and_withholds_exactly_the_unreliable_groups(workdir: Path) -> None:
    code, stdout, stderr = invoke("run", "--model", "vae", "--dataset", "faces", *TINY, "--out", "saved")
    assert code == 0, stderr
    assert "Attribute classifier validity: accuracy on held-out originals (95% CI)" in stdout
    assert "note: the attribute classifier trained on 240 new generated people" in " ".join(stdout.split())
    validity = pd.read_parquet(workdir / "saved" / "classifier_validity.parquet")
    representation = pd.read_parquet(workdir / "saved" / "representation.parquet")
    tests = pd.read_parquet(workdir / "saved" / "representation_tests.parquet")
    # measured on the held-out new people (16 a group), not on the audit panel (5 a group)
    cells = validity[validity["grouping"] == "gender x skin_tone"]
    assert (cells["n_subjects"] == CLASSIFIER_HELD_OUT_PEOPLE).all()
    assert ((cells["status"] == "valid") == (cells["accuracy"] >= MIN_ACCURACY)).all()
    status = validity.set_index(["grouping", "group", "attribute"])["status"]
    for row in representation[representation["n_subjects"] > 0].itertuples(index=False):
        attributes = row.grouping.split(" x ")
        unreliable = any(status[(row.grouping, row.group, a)] != "valid" for a in attributes)
        assert (row.evidence == "classifier unreliable") == unreliable, (row.grouping, row.group)
        assert np.isnan(row.own_rate) == unreliable
    for grouping, rows in tests.groupby("grouping"):
        people = representation[(representation["grouping"] == grouping) & (representation["n_subjects"] > 0)]
        withheld = (people["evidence"] == "classifier unreliable").any()
        assert (rows["evidence"] == "classifier unreliable").all() == withheld
        assert rows["p_value"].isna().all() if withheld else rows["p_value"].notna().all()
    # recomputed from the held-out rows the result keeps: the share of each group's originals labelled right
    held_out = pd.read_parquet(workdir / "saved" / "classifier_held_out.parquet")
    assert set(held_out["subject"]).isdisjoint(pd.read_parquet(workdir / "saved" / "per_image.parquet")["subject"])
    for attribute in ("gender", "skin_tone"):
        right = (held_out[f"classified_{attribute}"] == held_out[attribute]).groupby(
            [held_out["gender"], held_out["skin_tone"]]).mean()
        for (gender, tone), share in right.items():
            assert status.index.isin([("gender x skin_tone", f"{gender} / {tone}", attribute)]).sum() == 1
            found = cells.set_index(["group", "attribute"]).loc[(f"{gender} / {tone}", attribute), "accuracy"]
            assert found == pytest.approx(share)
    run_id = next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]
    metrics = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id).data.metrics
    darker = cells.set_index(["group", "attribute"]).loc[("female / darker", "skin_tone")]
    assert metrics["classifier_validity/gender_x_skin_tone/female_darker/skin_tone/accuracy"] == pytest.approx(
        darker["accuracy"])
    female = status.index.get_loc(("gender", "female", "gender"))
    assert metrics["classifier_validity/gender/female/gender/accuracy"] == pytest.approx(validity["accuracy"].iloc[female])


def test_the_threshold_is_an_option_with_one_default(workdir: Path) -> None:
    code, stdout, _ = invoke("run", "--help")
    assert code == 0 and "--classifier-min-accuracy" in stdout
    assert f"Default {MIN_ACCURACY}" in " ".join(stdout.replace("│", " ").split())
    code, _, stderr = invoke("run", "--model", "pca", "--dataset", "faces", *TINY, "--classifier-min-accuracy", "1.5")
    assert code == 2
    assert "--classifier-min-accuracy must be a number in [0, 1] (0: withhold nothing), got 1.5" in stderr
    assert not (workdir / "mlflow.db").exists()


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="the faces extra is not installed")
def test_the_embedding_classifier_reads_real_photos_and_is_measured_like_the_cnn(workdir: Path,
                                                                                 london_faces: Path) -> None:
    manifest = london_frontal(workdir / "london", london_faces, train=24, test=12)
    code, stdout, stderr = invoke("run", "--manifest", str(manifest), "--model", "pca", "--image-size", "32",
                                  "--batch-size", "64", "--accelerator", "cpu", "--allow-outside-root",
                                  "--classifier", "embedding", "--out", "saved")
    assert code == 0, stderr
    notes = " ".join(stdout.split())
    # 2 of the 24 training people validate the training (no val rows), so 22 train the classifier
    assert "the attribute classifier trained on the 22 training people" in notes
    assert "it reads dlib's face embeddings with a logistic regression per attribute" in notes
    assert "dlib found a face in 100% of them" in notes  # frontal real photos
    validity = pd.read_parquet(workdir / "saved" / "classifier_validity.parquet")
    gender = validity[validity["grouping"] == "gender"].set_index("group")
    assert (gender["n_subjects"] == 7).all()  # measured on the 12 test and 2 validation people
    # a logistic regression on dlib's embeddings reads gender from 48 photos of 24 other people
    assert (gender["accuracy"] >= MIN_ACCURACY).all() and (gender["status"] == "valid").all()
    per_image = pd.read_parquet(workdir / "saved" / "per_image.parquet")
    held_out = pd.read_parquet(workdir / "saved" / "classifier_held_out.parquet")
    tested = held_out[held_out["subject"].isin(per_image["subject"])]
    assert len(tested) == len(per_image)  # the held-out people hold the test split
    assert (per_image["classified_gender"] == per_image["gender"]).mean() == pytest.approx(
        (tested["classified_gender"] == tested["gender"]).mean())
    run_id = next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(run_id).data.params["run.classifier"] == "embedding"
    assert [a.path for a in client.list_artifacts(run_id, "classifier")] == ["classifier/classifier.pkl"]


def test_an_unknown_classifier_is_refused_in_one_line(workdir: Path) -> None:
    code, _, stderr = invoke("run", "--model", "pca", "--dataset", "faces", *TINY, "--classifier", "vit")
    assert code == 2
    assert "--classifier must be one of cnn, embedding, got 'vit'" in stderr
    assert not (workdir / "mlflow.db").exists()
