"""AuditResult: summarize, the save/load round trip, atomic writes and every refusal."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genfair.audit
from genfair.audit import disparity_table, group_table
from genfair.audit import result as r

METRICS = ["mse_error", "psnr_score"]


@pytest.fixture
def per_image() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"faces/{i}.png" for i in range(6)],
            "subject": ["s1", "s1", "s2", "s3", "s4", "s4"],
            "gender": ["female", "female", "female", "male", "male", "male"],
            "skin_tone": ["darker", "lighter", "darker", "lighter", "darker", "lighter"],
            "mse_error": [0.1, 0.2, 0.3, 0.01, 0.02, 0.03],
            "psnr_score": [10.0, 7.0, 5.2, 20.0, np.inf, 15.2],
        },
        index=pd.Index([3, 5, 8, 13, 21, 34]),
    )


@pytest.fixture
def result(per_image) -> r.AuditResult:
    metadata = {"model": "vae", "seed": 0, "attributes": ["gender", "skin_tone"], "versions": {"torch": "2.13.0"}}
    return r.summarize(per_image, attributes=["gender", "skin_tone"], metrics=METRICS, metadata=metadata)


def test_summarize_composes_group_and_disparity_tables(per_image, result):
    expected_groups = group_table(per_image, attributes=["gender", "skin_tone"], metrics=METRICS)
    pd.testing.assert_frame_equal(result.per_group, expected_groups)
    pd.testing.assert_frame_equal(result.disparities, disparity_table(expected_groups, metrics=METRICS, min_subjects=5))
    pd.testing.assert_frame_equal(result.per_image, per_image)
    assert result.per_image is not per_image
    assert result.metadata["model"] == "vae"


def test_summarize_without_metadata_gives_an_empty_dict(per_image):
    assert r.summarize(per_image, attributes=["gender"], metrics=METRICS).metadata == {}


def test_result_is_frozen(result):
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.metadata = {}  # type: ignore[misc]


def test_save_load_round_trip(result, tmp_path):
    folder = result.save(tmp_path / "run" / "audit")
    assert folder == tmp_path / "run" / "audit"
    assert sorted(p.name for p in folder.iterdir()) == sorted(r.RESULT_FILES)  # no temp files left
    loaded = r.AuditResult.load(str(folder))
    for field in ("per_image", "per_group", "disparities"):
        pd.testing.assert_frame_equal(getattr(loaded, field), getattr(result, field))
    assert loaded.metadata == result.metadata
    assert json.loads((folder / r.METADATA_FILE).read_text()) == result.metadata


def test_save_replaces_an_existing_result(result, per_image, tmp_path):
    result.save(tmp_path)
    smaller = r.summarize(per_image.iloc[:3], attributes=["skin_tone"], metrics=["mse_error"], metadata={"n": 3})
    smaller.save(tmp_path)
    loaded = r.AuditResult.load(tmp_path)
    pd.testing.assert_frame_equal(loaded.per_group, smaller.per_group)
    assert loaded.metadata == {"n": 3}


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(result, tmp_path, monkeypatch):
    result.save(tmp_path)
    before = (tmp_path / r.PER_IMAGE_FILE).read_bytes()

    def crash_midway(frame, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        result.save(tmp_path)
    assert (tmp_path / r.PER_IMAGE_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(r.RESULT_FILES)


def test_metadata_is_kept_in_json_form(result):
    tupled = dataclasses.replace(result, metadata={"attributes": ("gender", "skin_tone"), "nested": {"k": (1, 2)}})
    assert tupled.metadata == {"attributes": ["gender", "skin_tone"], "nested": {"k": [1, 2]}}


@pytest.mark.parametrize("metadata", [{"root": Path("/data")}, {"score": float("nan")}, {"x": {1, 2}}])
def test_rejects_metadata_that_is_not_json(result, metadata):
    with pytest.raises(ValueError, match=re.escape(r.METADATA_NOT_JSON_MSG)):
        dataclasses.replace(result, metadata=metadata)


@pytest.mark.parametrize("metadata", [["model", "vae"], {1: "one"}, None])
def test_rejects_metadata_that_is_not_a_str_keyed_mapping(result, metadata):
    with pytest.raises(TypeError, match=re.escape(r.METADATA_NOT_MAPPING_MSG)):
        dataclasses.replace(result, metadata=metadata)


@pytest.mark.parametrize("field", ["per_image", "per_group", "disparities"])
def test_rejects_frames_that_are_not_dataframes(result, field):
    with pytest.raises(TypeError, match=re.escape(f"AuditResult.{field} {r.NOT_FRAME_MSG}")):
        dataclasses.replace(result, **{field: {"a": [1]}})


def test_rejects_frames_with_non_string_column_names(result):
    with pytest.raises(ValueError, match=re.escape(f"AuditResult.per_image {r.COLUMN_NAMES_MSG}, got [0]")):
        dataclasses.replace(result, per_image=pd.DataFrame({0: [1.0]}))


def test_load_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(r.NO_FOLDER_MSG) + ".*nowhere"):
        r.AuditResult.load(tmp_path / "nowhere")


def test_load_names_the_missing_files(result, tmp_path):
    result.save(tmp_path)
    (tmp_path / r.PER_GROUP_FILE).unlink()
    (tmp_path / r.METADATA_FILE).unlink()
    pattern = re.escape(f"{r.MISSING_FILES_MSG} ['per_group.parquet', 'metadata.json'] in {str(tmp_path)!r}")
    with pytest.raises(FileNotFoundError, match=pattern):
        r.AuditResult.load(tmp_path)


def test_load_rejects_broken_metadata(result, tmp_path):
    result.save(tmp_path)
    (tmp_path / r.METADATA_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(r.BAD_METADATA_FILE_MSG)):
        r.AuditResult.load(tmp_path)


def test_summarize_passes_on_grouping_errors(per_image):
    with pytest.raises(ValueError, match="missing column 'age'"):
        r.summarize(per_image, attributes=["age"], metrics=METRICS, metadata={})


# --- the package ---------------------------------------------------------------------------------


def test_public_api_is_exported():
    for name in genfair.audit.__all__:
        assert hasattr(genfair.audit, name), name
    for name in ("summarize", "AuditResult", "group_table", "disparity_table", "per_sample_metrics", "METRICS"):
        assert name in genfair.audit.__all__


def test_importing_the_package_skips_heavy_libraries():
    heavy = ["torch", "torchmetrics", "pandas", "fairlearn", "pytorch_lightning", "lightning", "mlflow"]
    code = f"import sys, genfair.audit; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
