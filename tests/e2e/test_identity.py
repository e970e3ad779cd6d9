"""``audit run --identity`` end to end on a few real London photos: identity drift per image and
per group, landmark skin masks, the policy's ``[identity]`` rules, the run's ``identity`` time,
and the one-line error when the ``faces`` extra is missing."""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from cli_runner import invoke
from london import london_frontal
from genfair.audit.result import AuditResult

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
FAST = ["--model", "pca", "--image-size", "32", "--batch-size", "64", "--accelerator", "cpu", "--devices", "1",
        "--classifier-epochs", "0", "--allow-outside-root"]


def dlib_distance(original: np.ndarray, output: np.ndarray) -> float:
    """dlib's own pipeline on two RGB arrays: PIL to 150 px, the original's face and 5 points, two embeddings."""
    import dlib

    folder = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]) / "models"
    detector = dlib.get_frontal_face_detector()
    five = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    recogniser = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    big = [np.asarray(Image.fromarray(a).resize((150, 150), Image.Resampling.BICUBIC)) for a in (original, output)]
    found = detector(big[0], 0)
    shape = five(big[0], found[0] if len(found) else dlib.rectangle(0, 0, 149, 149))
    a, b = (np.asarray(recogniser.compute_face_descriptor(image, shape)) for image in big)
    return float(np.linalg.norm(a - b))


@pytest.mark.skipif(not HAS_DLIB, reason="the faces extra is not installed: pip install 'genfair[faces]'")
def test_identity_drift_per_image_and_per_group_on_london_photos(workdir: Path, london_faces: Path) -> None:
    manifest = london_frontal(workdir / "london", london_faces, train=10, test=10)
    policy = workdir / "identity.toml"
    policy.write_text("[identity]\nmax_drift = 10.0\nmax_lost_share = 1.0\n\n[statistics]\nn_resamples = 200\n"
                      "n_permutations = 200\n", encoding="utf-8")
    code, stdout, stderr = invoke("run", "--manifest", str(manifest), "--identity", "--out", "result",
                                  "--policy", str(policy), *FAST)
    assert code == 0, stderr
    assert "Identity drift per group" in stdout and "face found" in stdout
    (line,) = [line for line in stdout.splitlines() if line.startswith("time: ")]
    printed = dict(re.findall(r"(\w+) ([\d.]+) s", line.removeprefix("time: ").split(" (total")[0]))
    assert float(printed["identity"]) > 0

    result = AuditResult.load(workdir / "result")
    per_image = result.per_image
    assert len(per_image) == 20 and per_image["face_found"].dtype == bool
    np.testing.assert_array_equal(per_image["identity_lost"], (per_image["identity_drift"] >= 0.6).astype(float))
    expected_mask = np.where(per_image["face_found"], "landmarks", "central")
    assert (per_image["skin_mask"].to_numpy() == expected_mask).all()
    assert per_image["face_found"].mean() >= 0.9  # frontal real photos: the detector finds the faces

    # the group table is the plain mean of the per-image columns
    table = result.tables["identity"].set_index(["grouping", "group"])
    means = per_image.groupby("gender")[["identity_drift", "identity_lost", "face_found"]].mean()
    for gender in ("female", "male"):
        for column in means.columns:
            assert table.at[("gender", gender), column] == pytest.approx(means.at[gender, column])
    assert set(result.tables["identity_disparities"]["grouping"]) == {"gender"}

    # an independent oracle: dlib's own pipeline on the original and output PNGs the run kept
    samples = result.tables["samples"]
    def decode(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    for row in samples.itertuples(index=False):
        drift = per_image.set_index("path").at[row.path, "identity_drift"]
        assert drift == pytest.approx(dlib_distance(decode(row.original_png), decode(row.output_png)), abs=0.08)

    run_id = next(line.split()[2] for line in stdout.splitlines() if line.startswith("MLflow run "))
    metrics = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id).data.metrics
    assert metrics["time/identity"] == pytest.approx(float(printed["identity"]), abs=0.051)
    assert metrics["identity/identity_drift"] == pytest.approx(per_image["identity_drift"].mean())
    assert metrics["identity/gender/female/identity_lost"] == pytest.approx(means.at["female", "identity_lost"])
    assert result.metadata["versions"]["dlib-bin"] != "not installed"
    assert "identity.max_lost_share" in stdout  # the policy's rules were judged


@pytest.mark.parametrize("option", [["--identity"], ["--classifier", "embedding", "--classifier-epochs", "1"]],
                         ids=["identity", "embedding-classifier"])
def test_face_tools_without_the_faces_extra_are_one_line_and_exit_2(workdir: Path, london_faces: Path, option: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    manifest = london_frontal(workdir / "london", london_faces, train=2, test=10)
    code, _, stderr = invoke("run", "--manifest", str(manifest), *FAST, *option)
    assert code == 2
    named = " ".join(option[:2]) if option[0] == "--classifier" else option[0]
    assert f"{named}: genfair's face tools need dlib" in stderr and "pip install 'genfair[faces]'" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    if (workdir / "mlflow.db").exists():  # refused before a run was opened
        client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
