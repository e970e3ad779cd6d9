"""The FairFace importer, on a tiny train/val tree of JPEGs and label CSVs written by the test."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest

from genfair.datasets import ManifestError, import_fairface, load_manifest
from genfair.datasets import _importing
from genfair.datasets import fairface as ff

LOGGER = "genfair.datasets.fairface"
HEADER = "file,age,gender,race,service_test"
TRAIN = [
    "train/1.jpg,50-59,Male,East Asian,True",
    "train/2.jpg,more than 70,Female,Latino_Hispanic,False",
    "train/3.jpg,3-9,Female,Middle Eastern,True",
    "train/10.jpg,20-29,Male,Southeast Asian,False",
]
VAL = [
    "val/1.jpg,0-2,Male,White,False",
    "val/2.jpg,40-49,Female,Black,True",
]


def write_labels(path, lines, header=HEADER):
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def refused(root, labels, tmp_path, pattern):
    """Import into ``tmp_path/m.csv``, expecting a ManifestError that matches ``pattern``, and no manifest."""
    with pytest.raises(ManifestError, match=pattern):
        import_fairface(root, labels, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


@pytest.fixture
def fairface_tree(tmp_path, write_image):
    """``fairface/train/{1,2,3,10}.jpg``, ``fairface/val/{1,2,3}.jpg`` and the two label files (val/3 unlabelled)."""
    root = tmp_path / "fairface"
    for n, name in enumerate(["train/1", "train/2", "train/3", "train/10", "val/1", "val/2", "val/3"]):
        write_image(root / f"{name}.jpg", value=20 * n)
    return root, write_labels(tmp_path / "train.csv", TRAIN), write_labels(tmp_path / "val.csv", VAL)


def test_two_label_files_make_one_normalised_manifest(fairface_tree, tmp_path, caplog):
    root, train, val = fairface_tree
    out = tmp_path / "out" / "fairface.csv"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frame = import_fairface(root, [train, val], out)
    assert out.read_text().splitlines() == [
        "path,subject,age,gender,race,service_test",
        "../fairface/train/1.jpg,train/1,50-59,male,east_asian,yes",
        "../fairface/train/2.jpg,train/2,more than 70,female,latino_hispanic,no",
        "../fairface/train/3.jpg,train/3,3-9,female,middle_eastern,yes",
        "../fairface/train/10.jpg,train/10,20-29,male,southeast_asian,no",
        "../fairface/val/1.jpg,val/1,0-2,male,white,no",
        "../fairface/val/2.jpg,val/2,40-49,female,black,yes",
    ]
    manifest = load_manifest(out, attributes=["gender", "race"], allow_outside_root=True)
    pd.testing.assert_frame_equal(manifest.frame, frame)
    assert not manifest.has_split  # audit run splits by subject
    assert [r.getMessage() for r in caplog.records] == [
        f"{root}: 1 image(s) are in no label file and are left out: 'val/3.jpg'",
        ff.NO_IDENTITIES,
    ]
    assert [p.name for p in out.parent.iterdir()] == ["fairface.csv"]


def test_one_label_file_without_service_test(fairface_tree, tmp_path):
    root, _, _ = fairface_tree
    labels = write_labels(tmp_path / "old.csv", ["val/1.jpg,60-69,Female,Indian"], header="file,age,gender,race")
    import_fairface(root, str(labels), root / "fairface.parquet")  # a single path, beside the images
    written = pd.read_parquet(root / "fairface.parquet")
    assert written.to_dict("records") == [
        {"path": "val/1.jpg", "subject": "val/1", "age": "60-69", "gender": "female", "race": "indian"}
    ]


def test_values_in_other_spellings_normalise_alike(fairface_tree, tmp_path):
    root, _, _ = fairface_tree
    labels = write_labels(tmp_path / "l.csv", ["train/1.jpg,More  than 70,MALE,east_asian,true",
                                               "train/2.jpg, 0-2 ,female,Latino Hispanic,FALSE"])
    frame = import_fairface(root, labels, tmp_path / "m.csv")
    assert frame[["age", "gender", "race", "service_test"]].values.tolist() == [
        ["more than 70", "male", "east_asian", "yes"],
        ["0-2", "female", "latino_hispanic", "no"],
    ]


WRONG_HEADER = (
    rf"bad\.csv: line 1: {re.escape(ff.ERR_WRONG_HEADER)} '%s', expected 'file,age,gender,race,service_test' "
    rf"\(service_test optional\); fix: pass FairFace's fairface_label_train"
)
BAD_VALUE = rf"bad\.csv: line 3: {re.escape(ff.ERR_BAD_VALUE)}: %s.*; fix: "


@pytest.mark.parametrize(
    ("header", "lines", "pattern"),
    [
        ("image,age,gender,race,service_test", VAL, WRONG_HEADER % "image,age,gender,race,service_test"),
        ("file,age,gender", VAL, WRONG_HEADER % "file,age,gender"),
        (VAL[0], VAL[1:], WRONG_HEADER % re.escape(VAL[0])),  # no header line
        (HEADER, [VAL[0], "val/2.jpg,0-2,Male", "", "val/3.jpg,0-2,Male,White,False,extra"],
         rf"bad\.csv: line 3: {re.escape(ff.ERR_FIELD_COUNT)}: 3, expected 5 .*; 1 more bad line; fix: write one"),
        (HEADER, [VAL[1], "val/1.jpg,0-2,Male,Latino,False"], BAD_VALUE % r"race 'Latino' \(FairFace's: White, Black, "),
        (HEADER, [VAL[1], "val/1.jpg,21-30,Male,White,False"], BAD_VALUE % r"age '21-30' \(FairFace's: 0-2, 3-9, 10-19"),
        (HEADER, [VAL[1], "val/1.jpg,0-2,M,White,False"], BAD_VALUE % r"gender 'M' \(FairFace's: Male, Female\)"),
        (HEADER, [VAL[1], "val/1.jpg,0-2,Male,White,yes"], BAD_VALUE % r"service_test 'yes' \(FairFace's: True, False\)"),
        (HEADER, [VAL[1], ",0-2,Male,White,False"], BAD_VALUE % "blank file"),
        (HEADER, [VAL[0], VAL[1], VAL[0]],  # listed twice
         rf"bad\.csv: line 4: {re.escape(_importing.ERR_DUPLICATE_IMAGE)} 'val/1\.jpg' \(already at .*bad\.csv: line 2\); "
         rf"fix: list each image once"),
        (HEADER, [], rf"bad\.csv: {re.escape(ff.ERR_NO_LABELS)} \(a header but no lines\)"),
    ],
)
def test_a_bad_label_file(fairface_tree, tmp_path, header, lines, pattern):
    root, _, _ = fairface_tree
    refused(root, write_labels(tmp_path / "bad.csv", lines, header=header), tmp_path, pattern)


def test_label_files_with_different_headers(fairface_tree, tmp_path):
    root, train, _ = fairface_tree
    old = write_labels(tmp_path / "old.csv", ["val/1.jpg,0-2,Male,White"], header="file,age,gender,race")
    refused(root, [train, old], tmp_path, rf"old\.csv: {re.escape(ff.ERR_HEADERS_DIFFER)}: file,age,gender,race here")


def test_one_label_file_passed_twice(fairface_tree, tmp_path):
    root, train, val = fairface_tree
    pattern = r"val\.csv: line 2: image listed twice 'val/1\.jpg' \(already at .*val\.csv: line 2\); 1 more repeated"
    refused(root, [train, val, val], tmp_path, pattern)


def test_listed_images_missing_on_disk(fairface_tree, tmp_path):
    root, train, _ = fairface_tree
    (root / "train" / "2.jpg").unlink()
    (root / "train" / "10.jpg").unlink()
    pattern = (
        rf"train\.csv: line 3: image file not found: {re.escape(str(root / 'train' / '2.jpg'))}; 1 more like this "
        rf"\(2 of 4\); fix: pass the folder that holds train/ and val/"
    )
    refused(root, train, tmp_path, pattern)


def test_images_folder_missing(fairface_tree, tmp_path):
    _, train, _ = fairface_tree
    refused(tmp_path / "nowhere", train, tmp_path, rf"nowhere: {re.escape(_importing.ERR_IMAGES_DIR)} .*train/ and val/")


def test_label_file_missing(fairface_tree, tmp_path):
    root, _, _ = fairface_tree
    pattern = (
        rf"none\.csv: {re.escape(_importing.ERR_INPUT_NOT_FOUND)} \(FairFace label file does not exist\); "
        rf"fix: pass FairFace's fairface_label_train\.csv"
    )
    refused(root, [tmp_path / "none.csv"], tmp_path, pattern)


def test_no_label_files(fairface_tree, tmp_path):
    root, _, _ = fairface_tree
    with pytest.raises(ValueError, match=r"labels is empty: pass at least one FairFace label file"):
        import_fairface(root, [], tmp_path / "m.csv")
