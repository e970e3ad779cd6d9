"""`audit run` measures its attribute classifier on held-out people and withholds what it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cli_runner import invoke
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
