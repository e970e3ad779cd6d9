"""The UTKFace importer, on a tiny tree of JPEGs named as UTKFace names them, written by the test."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest

from genfair.datasets import ManifestError, import_utkface, load_manifest
from genfair.datasets import _importing
from genfair.datasets import utkface as utk

LOGGER = "genfair.datasets.utkface"
GOOD = (
    "26_0_1_20170116220224657.jpg.chip.jpg",  # aligned-and-cropped release: .chip.jpg
    "1_1_4_20161221193014592.jpg.chip.jpg",
    "part1/045_1_3_20170109150557335.jpg",  # in-the-wild release, in a part folder; age with a leading 0
    "part1/70_0_2_20170111182452832.jpg",
    "8_1_0_20170109204617530.jpg",
)


@pytest.fixture
def utk_tree(tmp_path, write_image):
    """``UTKFace/`` with five well-named JPEGs, plus files the importer passes over."""
    root = tmp_path / "UTKFace"
    for n, name in enumerate(GOOD):
        write_image(root / name, value=30 * n)
    (root / "README.txt").write_text("UTKFace")
    write_image(root / "._26_0_1_20170116220224657.jpg.chip.jpg")  # macOS metadata: hidden, left out
    return root


def test_labels_come_from_the_names(utk_tree, tmp_path, caplog):
    out = tmp_path / "out" / "utk.csv"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        frame = import_utkface(utk_tree, out)
    assert out.read_text().splitlines() == [
        "path,subject,age,gender,race",
        "../UTKFace/1_1_4_20161221193014592.jpg.chip.jpg,1_1_4_20161221193014592,1,female,others",
        "../UTKFace/26_0_1_20170116220224657.jpg.chip.jpg,26_0_1_20170116220224657,26,male,black",
        "../UTKFace/8_1_0_20170109204617530.jpg,8_1_0_20170109204617530,8,female,white",
        "../UTKFace/part1/045_1_3_20170109150557335.jpg,045_1_3_20170109150557335,45,female,indian",
        "../UTKFace/part1/70_0_2_20170111182452832.jpg,70_0_2_20170111182452832,70,male,asian",
    ]
    manifest = load_manifest(out, attributes=["gender", "race"], allow_outside_root=True)
    pd.testing.assert_frame_equal(manifest.frame, frame)
    assert manifest.frame["subject"].nunique() == 5  # every image its own subject
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [utk.NO_IDENTITIES]
    assert "UTKFace has no identity labels: every image is its own subject" in utk.NO_IDENTITIES
    assert [p.name for p in out.parent.iterdir()] == ["utk.csv"]  # no temporary file left


def test_parquet_beside_the_images(utk_tree):
    frame = import_utkface(utk_tree, utk_tree / "utk.parquet")
    written = pd.read_parquet(utk_tree / "utk.parquet")
    assert written["path"].tolist()[:2] == [
        "1_1_4_20161221193014592.jpg.chip.jpg",
        "26_0_1_20170116220224657.jpg.chip.jpg",
    ]
    assert written["race"].tolist() == frame["race"].tolist() == ["others", "black", "white", "indian", "asian"]
    assert load_manifest(utk_tree / "utk.parquet", attributes=["gender"]).attribute_classes == {
        "gender": ("female", "male")
    }


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("39_1_20170116174525125.jpg.chip.jpg", "3 fields, expected 4"),
        ("24_0_1_20170116220224657 .jpg.chip.jpg", "a space in the name"),
        ("x_0_1_20170116220224657.jpg", "age 'x' is not a number"),
        ("53__0_20170116184028385.jpg.chip.jpg", "gender '' is not a number"),
        ("30_2_0_20170116220224657.jpg", "gender code 2 is not 0 (male) or 1 (female)"),
        ("30_0_5_20170116220224657.jpg", "race code 5 is not one of 0 white, 1 black, 2 asian, 3 indian, 4 others"),
    ],
)
def test_a_malformed_name_is_an_error_naming_it(utk_tree, tmp_path, write_image, name, problem):
    write_image(utk_tree / name)
    out = tmp_path / "out" / "utk.csv"
    pattern = (
        rf"UTKFace: 1 {re.escape(utk.ERR_MALFORMED_NAME)}, first {re.escape(repr(name))} \({re.escape(problem)}"
        rf".*\); fix: rename or remove them, or leave them out \(audit data import-utkface --skip-malformed; "
        rf"skip_malformed=True\)$"
    )
    with pytest.raises(ManifestError, match=pattern):
        import_utkface(utk_tree, out)
    assert not out.parent.exists()


def test_malformed_names_are_counted(utk_tree, tmp_path, write_image):
    for name in ("9_9_9_1.jpg", "1_1.jpg", "a_b_c_d.jpg"):
        write_image(utk_tree / name)
    with pytest.raises(ManifestError, match=r"UTKFace: 3 file name\(s\) .*, first '1_1\.jpg' \(2 fields"):
        import_utkface(utk_tree, tmp_path / "utk.csv")


def test_skip_malformed_lists_them_in_one_line(utk_tree, tmp_path, write_image, caplog):
    bad = ["1_1.jpg", "20_0_0_x.jpg", "30_0_9_1.jpg", "40_5_0_1.jpg"]
    for name in bad:
        write_image(utk_tree / name)
    out = tmp_path / "utk.csv"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frame = import_utkface(utk_tree, out, skip_malformed=True)
    assert len(frame) == len(GOOD) and not set(bad) & {p.rsplit("/", 1)[-1] for p in frame["path"]}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [
        f"{utk_tree}: skipped 4 {utk.ERR_MALFORMED_NAME}: '1_1.jpg', '20_0_0_x.jpg', '30_0_9_1.jpg' and 1 more"
    ]


def test_only_malformed_names_leave_no_images(tmp_path, write_image):
    write_image(tmp_path / "faces" / "1_1.jpg")
    with pytest.raises(ManifestError, match=rf"faces: {re.escape(_importing.ERR_NO_IMAGES)} named .*fix: point at"):
        import_utkface(tmp_path / "faces", tmp_path / "utk.csv", skip_malformed=True)
    assert not (tmp_path / "utk.csv").exists()


def test_one_image_under_two_names(utk_tree, tmp_path, write_image):
    write_image(utk_tree / "26_0_1_20170116220224657.jpg")  # also there as .jpg.chip.jpg
    pattern = (
        rf"{re.escape(utk.ERR_SAME_IMAGE_TWICE)}: '26_0_1_20170116220224657' is "
        rf"'26_0_1_20170116220224657\.jpg' and '26_0_1_20170116220224657\.jpg\.chip\.jpg'; fix: keep one copy"
    )
    with pytest.raises(ManifestError, match=pattern):
        import_utkface(utk_tree, tmp_path / "utk.csv")


def test_images_folder_missing(tmp_path):
    with pytest.raises(ManifestError, match=rf"nowhere: {re.escape(_importing.ERR_IMAGES_DIR)} .*fix: pass the folder"):
        import_utkface(tmp_path / "nowhere", tmp_path / "utk.csv")


def test_unsupported_output_suffix(utk_tree, tmp_path):
    with pytest.raises(ManifestError, match=r"utk\.txt: unsupported manifest format '\.txt' .*fix: name it"):
        import_utkface(utk_tree, tmp_path / "utk.txt")


def test_an_unreadable_image_leaves_no_manifest(utk_tree, tmp_path):
    (utk_tree / "30_0_0_20170116220224657.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out" / "utk.csv"
    with pytest.raises(ManifestError, match=r"out/utk\.csv: .*unreadable image file.*\(.*utk\.csv was not written\)$"):
        import_utkface(utk_tree, out)
    assert list(out.parent.iterdir()) == []
