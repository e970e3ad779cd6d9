"""The CelebA importer, on a tiny tree of JPEGs and CelebA-style annotation files written by the test."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest

from genfair.datasets import ManifestError, import_celeba, load_manifest
from genfair.datasets import _importing
from genfair.datasets import celeba as cel

LOGGER = "genfair.datasets.celeba"
HEADER = "5_o_Clock_Shadow Eyeglasses Male Young "  # CelebA's header line ends with a space
# image, 5_o_Clock_Shadow, Eyeglasses, Male, Young; identity; partition
IMAGES = [
    ("000001.jpg", "-1", " 1", "-1", " 1", "2880", "0"),
    ("000002.jpg", " 1", "-1", " 1", "-1", "2937", "0"),
    ("000003.jpg", "-1", "-1", " 1", "-1", "2937", "0"),
    ("000004.jpg", "-1", "-1", "-1", "-1", "2880", "0"),
    ("000005.jpg", "-1", "-1", "-1", " 1", "2880", "0"),
    ("000006.jpg", "-1", " 1", "-1", " 1", "  17", "2"),
]


def attribute_lines(rows=IMAGES, count=None):
    lines = [str(len(rows) if count is None else count), HEADER]
    return lines + [f"{name} {'  '.join(values[:4])}" for name, *values in rows]


def refused(root, attributes, identities, tmp_path, pattern, **options):
    """Import into ``tmp_path/m.csv``, expecting a ManifestError that matches ``pattern``, and no manifest."""
    with pytest.raises(ManifestError, match=pattern):
        import_celeba(root, attributes, identities, tmp_path / "m.csv", **options)
    assert not (tmp_path / "m.csv").exists()


@pytest.fixture
def celeba_tree(tmp_path, write_image):
    """``img_align_celeba/00000{1..6}.jpg`` plus one image no file lists, and the three annotation files."""
    root = tmp_path / "img_align_celeba"
    for n, (name, *_) in enumerate(IMAGES):
        write_image(root / name, size=(8, 10), value=30 * n)
    write_image(root / "000007.jpg")
    attributes = tmp_path / "list_attr_celeba.txt"
    attributes.write_text("\n".join(attribute_lines()) + "\n")
    identities = tmp_path / "identity_CelebA.txt"
    identities.write_text("".join(f"{name} {row[4].strip()}\n" for name, *row in IMAGES) + "000007.jpg 5\n")
    partition = tmp_path / "list_eval_partition.txt"
    partition.write_text("".join(f"{name} {row[5]}\n" for name, *row in IMAGES))
    return root, attributes, identities, partition


def test_import_with_partition_and_kept_attributes(celeba_tree, tmp_path, caplog):
    root, attributes, identities, partition = celeba_tree
    out = tmp_path / "out" / "celeba.csv"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        frame = import_celeba(root, attributes, identities, out, partition=partition, keep=["young", "Eyeglasses"])
    # 2880: Male -1 x3, Young 1, -1, 1, Eyeglasses 1, -1, -1 -> female, young, no glasses; 2937: Male 1 x2,
    # Young -1 x2, Eyeglasses -1 x2 -> male, not young, no glasses; 17: one image
    assert out.read_text().splitlines() == [
        "path,subject,gender,young,eyeglasses,split",
        "../img_align_celeba/000001.jpg,2880,female,yes,no,train",
        "../img_align_celeba/000002.jpg,2937,male,no,no,train",
        "../img_align_celeba/000003.jpg,2937,male,no,no,train",
        "../img_align_celeba/000004.jpg,2880,female,yes,no,train",
        "../img_align_celeba/000005.jpg,2880,female,yes,no,train",
        "../img_align_celeba/000006.jpg,17,female,yes,yes,test",
    ]
    manifest = load_manifest(out, attributes=["gender", "young"], allow_outside_root=True)
    pd.testing.assert_frame_equal(manifest.frame, frame)
    assert manifest.has_split and manifest.frame.groupby("subject").size().to_dict() == {"17": 1, "2880": 3, "2937": 2}
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"{root}: 1 image(s) are in no attribute file and are left out: '000007.jpg'"
    assert messages[1] == (
        f"{attributes}: 1 identity has images with mixed Young labels: each takes the value most of its images have "
        f"(a tie: its first image's), 1 image(s) changed, since a person has one value of an attribute; "
        f"first: identity '2880' (2 yes, 1 no)"
    )
    assert "mixed Eyeglasses labels" in messages[2] and "first: identity '2880' (1 yes, 2 no)" in messages[2]
    assert len(messages) == 3  # Male agrees within every identity: no note


def test_without_partition_there_is_no_split(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    frame = import_celeba(root, attributes, identities, root / "celeba.parquet")
    written = pd.read_parquet(root / "celeba.parquet")
    assert list(written.columns) == ["path", "subject", "gender"]
    assert written["path"].tolist() == [name for name, *_ in IMAGES]
    assert frame["gender"].tolist() == ["female", "male", "male", "female", "female", "female"]


def test_a_tie_takes_the_first_images_value(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    rows = [IMAGES[0][:3] + (" 1",) + IMAGES[0][4:], IMAGES[3]]  # identity 2880: Male 1, then -1
    attributes.write_text("\n".join(attribute_lines(rows)) + "\n")
    frame = import_celeba(root, attributes, identities, tmp_path / "m.csv")
    assert frame["gender"].tolist() == ["male", "male"]


@pytest.mark.parametrize(
    ("first_line", "shown"),
    [("two hundred", "'two hundred'"), ("image_id,5_o_Clock_Shadow,Male", "'image_id,5_o_Clock_Shadow,Male'")],
)
def test_bad_count_line(celeba_tree, tmp_path, first_line, shown):
    root, attributes, identities, _ = celeba_tree
    attributes.write_text("\n".join([first_line, *attribute_lines()[1:]]) + "\n")
    pattern = rf"list_attr_celeba\.txt: line 1: {re.escape(cel.ERR_COUNT_LINE)} {re.escape(shown)}: expected the number"
    refused(root, attributes, identities, tmp_path, pattern + r".*; fix: pass CelebA's list_attr_celeba\.txt")
    if "," in first_line:
        refused(root, attributes, identities, tmp_path, r"this looks like a CSV, such as Kaggle's list_attr_celeba\.csv")


def test_count_line_that_does_not_match(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    attributes.write_text("\n".join(attribute_lines(count=202599)) + "\n")
    pattern = rf"line 1: {re.escape(cel.ERR_COUNT_MISMATCH)}: it says 202599 images, the file has 6 image lines; fix:"
    refused(root, attributes, identities, tmp_path, pattern)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("000001.jpg -1 1 -1 1", "'000001.jpg' is not an attribute name"),  # the header line is missing
        ("5_o_Clock_Shadow Eyeglasses Gender Young", "no 'Male' attribute"),
        ("Male Eyeglasses Male Young", "'Male' is named twice"),
    ],
)
def test_wrong_header(celeba_tree, tmp_path, header, problem):
    root, attributes, identities, _ = celeba_tree
    attributes.write_text("\n".join(["6", header, *attribute_lines()[2:]]) + "\n")
    pattern = rf"list_attr_celeba\.txt: line 2: {re.escape(cel.ERR_WRONG_HEADER)} \({re.escape(problem)};.*fix: pass"
    refused(root, attributes, identities, tmp_path, pattern)


def test_malformed_attribute_lines(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    lines = attribute_lines()
    lines[4] = "000003.jpg -1 -1 1"  # a value short
    lines[6] = "000005.jpg -1 0 -1 1"  # 0 is not a CelebA value
    attributes.write_text("\n".join(lines) + "\n")
    pattern = (
        rf"list_attr_celeba\.txt: line 5: {re.escape(cel.ERR_FIELD_COUNT)}: 4, expected 5 \(an image name and 4 "
        rf"values\); 1 more bad line; fix: give every image one value"
    )
    refused(root, attributes, identities, tmp_path, pattern)
    lines[4] = attribute_lines()[4]
    attributes.write_text("\n".join(lines) + "\n")
    refused(root, attributes, identities, tmp_path, rf"line 7: {re.escape(cel.ERR_BAD_VALUE)}: Eyeglasses '0'; fix: write 1")


def test_an_image_listed_twice(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    lines = attribute_lines()
    lines[7] = lines[3]  # 000002.jpg again at line 8, in place of 000006.jpg
    attributes.write_text("\n".join(lines) + "\n")
    pattern = (
        rf"list_attr_celeba\.txt: line 8: {re.escape(_importing.ERR_DUPLICATE_IMAGE)} '000002\.jpg' "
        rf"\(already at .*list_attr_celeba\.txt: line 4\); fix: keep one line per image"
    )
    refused(root, attributes, identities, tmp_path, pattern)


def test_an_image_with_two_identity_lines(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    identities.write_text(identities.read_text() + "000001.jpg 2880\n")
    pattern = r"identity_CelebA\.txt: line 8: image listed twice '000001\.jpg' \(already at .*identity_CelebA\.txt: line 1\)"
    refused(root, attributes, identities, tmp_path, pattern)


@pytest.mark.parametrize(
    ("which", "line", "problem"),
    [
        ("identities", "000002.jpg", "wrong number of fields: 1, expected 2 (<image> <identity>)"),
        ("identities", "000002.jpg Bob", f"{cel.ERR_BAD_IDENTITY}: 'Bob'"),
        ("partition", "000002.jpg 3", f"{cel.ERR_BAD_PARTITION}: '3'"),
    ],
)
def test_malformed_identity_and_partition_lines(celeba_tree, tmp_path, which, line, problem):
    root, attributes, identities, partition = celeba_tree
    source = identities if which == "identities" else partition
    lines = source.read_text().splitlines()
    lines[1] = line
    source.write_text("\n".join(lines) + "\n")
    pattern = rf"{re.escape(source.name)}: line 2: {re.escape(problem)}; fix: "
    refused(root, attributes, identities, tmp_path, pattern, partition=partition)


def test_images_without_identity_or_partition(celeba_tree, tmp_path):
    root, attributes, identities, partition = celeba_tree
    identities.write_text("000001.jpg 1\n000002.jpg 2\n000003.jpg 3\n")
    pattern = (
        rf"list_attr_celeba\.txt: line 6: {re.escape(cel.ERR_NO_IDENTITY)}: '000004\.jpg' is not in .*identity_CelebA"
        rf"\.txt; 2 more like this \(3 of 6\); fix: pass the identity_CelebA\.txt that goes with list_attr_celeba\.txt"
    )
    refused(root, attributes, identities, tmp_path, pattern, partition=partition)
    identities.write_text("".join(f"{name} 1\n" for name, *_ in IMAGES))
    partition.write_text("000001.jpg 0\n")
    pattern = rf"line 4: {re.escape(cel.ERR_NO_PARTITION)}: '000002\.jpg' .*or drop --partition"
    refused(root, attributes, identities, tmp_path, pattern, partition=partition)


def test_an_identity_in_two_splits(celeba_tree, tmp_path):
    root, attributes, identities, partition = celeba_tree
    partition.write_text(partition.read_text().replace("000004.jpg 0", "000004.jpg 1").replace("000003.jpg 0",
                                                                                               "000003.jpg 2"))
    pattern = (
        rf"list_eval_partition\.txt: {re.escape(cel.ERR_IDENTITY_IN_TWO_SPLITS)}: identity '2880' is in train "
        rf"\(000001\.jpg, .*list_eval_partition\.txt: line 1\) and val \(000004\.jpg, .*line 4\); 1 more identity is "
        rf"in two or three splits; fix: drop --partition \(partition=None\) and genfair splits by identity"
    )
    refused(root, attributes, identities, tmp_path, pattern, partition=partition)


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (["Yung"], rf"{re.escape(cel.ERR_UNKNOWN_ATTRIBUTE)}: keep 'Yung'; fix: did you mean 'Young'\?"),
        (["Smiling"], r"not an attribute of the header: keep 'Smiling'; fix: name some of 5_o_Clock_Shadow, "
                      r"Eyeglasses, Male, Young$"),
        (["male"], r"keep 'male': 'Male' is already the gender column; fix: leave it out of keep"),
        (["Young", "YOUNG"], r"keep 'YOUNG': 'Young' is named twice"),
    ],
)
def test_bad_keep_names(celeba_tree, tmp_path, keep, message):
    root, attributes, identities, _ = celeba_tree
    refused(root, attributes, identities, tmp_path, rf"list_attr_celeba\.txt: {message}", keep=keep)


def test_keep_as_a_comma_separated_string(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    frame = import_celeba(root, attributes, identities, tmp_path / "m.csv", keep="Young, 5_o_clock_shadow")
    assert list(frame.columns) == ["path", "subject", "gender", "young", "5_o_clock_shadow"]


def test_listed_images_missing_on_disk(celeba_tree, tmp_path):
    root, attributes, identities, _ = celeba_tree
    for name in ("000003.jpg", "000005.jpg", "000006.jpg"):
        (root / name).unlink()
    pattern = (
        rf"list_attr_celeba\.txt: line 5: image file not found: {re.escape(str(root / '000003.jpg'))}; 2 more like "
        rf"this \(3 of 6\); fix: pass the folder that holds CelebA's images"
    )
    refused(root, attributes, identities, tmp_path, pattern)


@pytest.mark.parametrize("missing", ["images", "attributes", "identities", "partition"])
def test_missing_inputs(celeba_tree, tmp_path, missing):
    root, attributes, identities, partition = celeba_tree
    nowhere = tmp_path / "nowhere"
    args = {"images": root, "attributes": attributes, "identities": identities, "partition": partition}
    args[missing] = nowhere
    expected = {
        "images": rf"nowhere: {re.escape(_importing.ERR_IMAGES_DIR)} .*fix: pass the folder that holds CelebA's images",
        "attributes": r"nowhere: file not found \(CelebA attribute file does not exist\); fix: pass CelebA's list_attr",
        "identities": r"nowhere: file not found \(CelebA's identity_CelebA\.txt does not exist\); fix: pass CelebA's",
        "partition": r"nowhere: file not found \(CelebA's list_eval_partition\.txt does not exist\)",
    }[missing]
    refused(args["images"], args["attributes"], args["identities"], tmp_path, expected, partition=args["partition"])
