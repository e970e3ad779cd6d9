"""The Faces95 importer, on a tiny tree of JPEGs written by the test."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest

from genfair.datasets import ManifestError, import_faces95, load_manifest
from genfair.datasets import faces95 as f95


@pytest.fixture
def faces95_tree(tmp_path, write_image):
    """``faces95/<subject>/<subject>.<n>.jpg`` for two subjects, plus files the importer skips."""
    root = tmp_path / "faces95"
    for subject, numbers in (("adhast", (1, 2, 10)), ("bob", (2, 1))):
        for n in numbers:
            write_image(root / subject / f"{subject}.{n}.jpg", size=(18, 20), value=40 * n)
    (root / "adhast" / "Thumbs.db").write_bytes(b"x")
    (root / "adhast" / "bob.3.jpg").write_bytes(b"not this subject's")
    (root / "README").write_text("Faces95")
    annotations = tmp_path / "annotations.csv"
    pd.DataFrame(
        {"subject": ["bob", "adhast", "zed"], "gender": ["male", "female", "male"], "skin_tone": ["darker", "lighter", "lighter"]}
    ).to_csv(annotations, index=False)
    return root, annotations


def test_import_writes_a_sorted_valid_manifest(faces95_tree, tmp_path, caplog):
    root, annotations = faces95_tree
    out = tmp_path / "out" / "manifest.csv"
    with caplog.at_level(logging.WARNING, logger="genfair.datasets.faces95"):
        frame = import_faces95(root, annotations, out)
    assert frame["path"].tolist() == [
        "../faces95/adhast/adhast.1.jpg",
        "../faces95/adhast/adhast.2.jpg",
        "../faces95/adhast/adhast.10.jpg",
        "../faces95/bob/bob.1.jpg",
        "../faces95/bob/bob.2.jpg",
    ]
    assert list(frame.columns) == ["path", "subject", "gender", "skin_tone"]
    assert frame["gender"].tolist() == ["female"] * 3 + ["male"] * 2
    with pytest.raises(ManifestError, match=r"path leaves the manifest's folder .*--allow-outside-root"):
        load_manifest(out)  # the paths climb out of out/: auditing them is the user's explicit choice
    manifest = load_manifest(out, allow_outside_root=True)
    pd.testing.assert_frame_equal(manifest.frame, frame)
    assert manifest.attributes == ("gender", "skin_tone")
    assert "1 annotated subject(s) have no images" in caplog.text and "zed" in caplog.text
    assert [p.name for p in out.parent.iterdir()] == ["manifest.csv"]


def test_import_to_parquet_beside_the_images(faces95_tree, tmp_path):
    root, annotations = faces95_tree
    frame = import_faces95(root, annotations, root / "manifest.parquet")
    assert frame["path"].iloc[0] == "adhast/adhast.1.jpg"
    assert load_manifest(root / "manifest.parquet").frame["subject"].tolist() == frame["subject"].tolist()


def test_images_dir_missing(tmp_path, faces95_tree):
    _, annotations = faces95_tree
    with pytest.raises(ManifestError, match=rf"nowhere: {re.escape(f95.ERR_IMAGES_DIR)}.*fix: pass the folder"):
        import_faces95(tmp_path / "nowhere", annotations, tmp_path / "m.csv")


def test_annotations_without_subject_column(faces95_tree, tmp_path):
    root, _ = faces95_tree
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"name": ["bob"], "gender": ["male"]}).to_csv(bad, index=False)
    with pytest.raises(ManifestError, match=rf"bad\.csv: {re.escape(f95.ERR_NO_SUBJECT_COLUMN)}.*fix: name the column"):
        import_faces95(root, bad, tmp_path / "m.csv")


def test_annotations_missing(faces95_tree, tmp_path):
    root, _ = faces95_tree
    with pytest.raises(ManifestError, match=r"none\.csv: manifest not found \(annotations file does not exist"):
        import_faces95(root, tmp_path / "none.csv", tmp_path / "m.csv")


def test_annotations_with_a_reserved_column(faces95_tree, tmp_path):
    root, _ = faces95_tree
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"subject": ["bob"], "path": ["x"]}).to_csv(bad, index=False)
    with pytest.raises(ManifestError, match=rf"{re.escape(f95.ERR_RESERVED_IN_ANNOTATIONS)} 'path'"):
        import_faces95(root, bad, tmp_path / "m.csv")


def test_subject_annotated_twice(faces95_tree, tmp_path):
    root, _ = faces95_tree
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"subject": ["bob", "adhast", "bob"], "gender": ["male", "female", "female"]}).to_csv(bad, index=False)
    with pytest.raises(ManifestError, match=rf"data row 3, column 'subject': {re.escape(f95.ERR_DUPLICATE_SUBJECT)}: 'bob'"):
        import_faces95(root, bad, tmp_path / "m.csv")


def test_subjects_without_annotation_are_listed(faces95_tree, tmp_path, write_image):
    root, annotations = faces95_tree
    for name in ("carl", "dina"):
        write_image(root / name / f"{name}.1.jpg")
    pattern = rf"annotations\.csv: {re.escape(f95.ERR_UNANNOTATED)}: 2 subject\(s\) .* \('carl', 'dina'\); fix: add a row"
    with pytest.raises(ManifestError, match=pattern):
        import_faces95(root, annotations, tmp_path / "m.csv")


def test_no_images(tmp_path, faces95_tree):
    _, annotations = faces95_tree
    (tmp_path / "empty" / "adhast").mkdir(parents=True)
    with pytest.raises(ManifestError, match=rf"empty: {re.escape(f95.ERR_NO_IMAGES)} matching <subject>/<subject>\.<n>"):
        import_faces95(tmp_path / "empty", annotations, tmp_path / "m.csv")


def test_unsupported_output_suffix(faces95_tree, tmp_path):
    root, annotations = faces95_tree
    with pytest.raises(ManifestError, match=r"m\.txt: unsupported manifest format '\.txt' for the output manifest"):
        import_faces95(root, annotations, tmp_path / "m.txt")


def test_invalid_result_is_not_written(faces95_tree, tmp_path):
    root, _ = faces95_tree
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"subject": ["bob", "adhast"], "gender": ["male", ""]}).to_csv(blank, index=False)
    out = tmp_path / "out" / "m.csv"
    with pytest.raises(ManifestError, match=r"out/m\.csv: data row 1 .*column 'gender': blank value.*m\.csv was not written\)$"):
        import_faces95(root, blank, out)
    assert not out.exists() and list(out.parent.iterdir()) == []
