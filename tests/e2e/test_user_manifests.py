"""Manifests as people write them, through ``audit run`` as a user types it: a numeric age binned
from the real London photos' own manifest, train and test without val, only test rows with a
checkpoint, and images that are not square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from cli_runner import invoke
from genfair.audit.result import AuditResult

FAST = ["--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--devices", "1"]


def test_the_london_photos_audit_by_binned_age_from_their_own_manifest(workdir: Path, london_faces: Path) -> None:
    code, stdout, stderr = invoke(
        "run", "--model", "pca", "--manifest", str(london_faces), "--attributes", "gender,age",
        "--bins", "age=18,25,35,55", "--missing", "drop", "--classifier-epochs", "0", "--out", "result", *FAST,
    )
    assert code == 0, stderr
    assert "note: left out 20 image(s) of 2 subject(s) with a blank age (--missing drop)" in stdout
    assert "note: age binned by --bins age=18,25,35,55 into age 18-24, age 25-34, age 35-55" in stdout
    result = AuditResult.load(workdir / "result")
    # the oracle: pandas' own interval cut of each person's age, on the manifest as shipped
    people = pd.read_csv(london_faces, dtype=str, keep_default_na=False).drop_duplicates("subject")
    people = people[people["age"] != ""]
    cut = pd.cut(people["age"].astype(float), [18, 25, 35, 55], right=False, include_lowest=True)
    cut = cut.cat.rename_categories(["age 18-24", "age 25-34", "age 35-55"])
    audited = result.per_image.drop_duplicates("subject").set_index("subject")["age"]
    expected = pd.Series(cut.astype(str).to_numpy(), index=people["subject"]).loc[audited.index]
    assert (audited == expected).all()
    assert set(result.per_group.loc[result.per_group["grouping"] == "age", "group"]) == {
        "age 18-24", "age 25-34", "age 35-55"}
    assert result.metadata["run"]["bins"] == [["age", "18,25,35,55"]]


def london_subset(folder: Path, london: Path, *, train: int, test: int, val: int = 0) -> Path:
    """A manifest of the first ``train + val + test`` London people (in the file's order), with a split column."""
    frame = pd.read_csv(london, dtype=str, keep_default_na=False)
    subjects = frame["subject"].drop_duplicates().tolist()[: train + val + test]
    split = {s: "train" for s in subjects[:train]} | {s: "val" for s in subjects[train:train + val]} | \
            {s: "test" for s in subjects[train + val:]}
    rows = frame[frame["subject"].isin(split)].assign(
        split=lambda f: f["subject"].map(split), path=lambda f: [str(london.parent / p) for p in f["path"]]
    )[["path", "subject", "gender", "split"]]
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_train_and_test_without_val_train_with_validation_carved_out(workdir: Path, london_faces: Path) -> None:
    manifest = london_subset(workdir / "tt", london_faces, train=10, test=6)
    code, stdout, stderr = invoke(
        "run", "--model", "ae", "--epochs", "2", "--manifest", str(manifest), "--allow-outside-root",
        "--classifier-epochs", "0", *FAST,
    )
    assert code == 0, stderr
    assert "note: the manifest has no validation rows: 10 image(s) of 1 of its 10 training subjects" in stdout
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("genfair").experiment_id)
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2  # validated every epoch

    # a trained checkpoint audits a manifest that has only test rows
    checkpoint = Path(client.download_artifacts(run.info.run_id, "model", str(workdir / "artifacts")))
    (best,) = [p for p in checkpoint.iterdir() if p.name.startswith("best")]
    only_test = london_subset(workdir / "test-only", london_faces, train=0, test=6)
    code, stdout, stderr = invoke(
        "run", "--model", "ae", "--checkpoint", str(best), "--manifest", str(only_test), "--allow-outside-root",
        "--classifier-epochs", "1", "--out", "checked", *FAST,
    )
    assert code == 0, stderr
    assert "note: no training rows (split=train): the attribute classifier" in stdout
    result = AuditResult.load(workdir / "checked")
    assert result.per_image["subject"].nunique() == 6


def one_photo_each(folder: Path, genders: list[str], *, size: tuple[int, int], seed: int) -> Path:
    """A manifest of one random ``size`` (width, height) photo per person, person ``i`` of ``genders[i]``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(genders)):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    pd.DataFrame({"path": [f"p{i}.png" for i in range(len(genders))], "subject": [f"p{i}" for i in range(len(genders))],
                  "gender": genders}).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_images_that_are_not_square_audit_under_each_fit(workdir: Path) -> None:
    manifest = one_photo_each(workdir / "wide", ["male", "female"] * 6, size=(24, 16), seed=0)
    errors = {}
    for fit in ("crop", "pad", "stretch"):
        code, _, stderr = invoke("run", "--model", "pca", "--manifest", str(manifest),
                                 "--fit", fit, "--classifier-epochs", "0", "--out", fit, *FAST)
        assert code == 0, stderr
        result = AuditResult.load(workdir / fit)
        assert result.metadata["run"]["fit"] == fit
        errors[fit] = result.per_image["mse_error"].to_numpy()
    # the black borders of pad are reconstructed almost exactly: its errors differ from crop's and stretch's
    assert not np.allclose(errors["pad"], errors["crop"]) and not np.allclose(errors["crop"], errors["stretch"])


@pytest.mark.parametrize("rule, groups", [("group", {"female", "male", "unknown"}), ("drop", {"female", "male"})])
def test_blank_genders_are_dropped_or_grouped(workdir: Path, rule: str, groups: set[str]) -> None:
    manifest = one_photo_each(workdir / "blank", ["", "female", "male"] * 6, size=(16, 16), seed=1)
    code, stdout, stderr = invoke("run", "--model", "pca", "--manifest", str(manifest),
                                  "--missing", rule, "--classifier-epochs", "0", "--out", rule, *FAST)
    assert code == 0, stderr
    assert f"(--missing {rule})" in stdout
    result = AuditResult.load(workdir / rule)
    assert set(result.per_group.loc[result.per_group["grouping"] == "gender", "group"]) == groups
