"""``audit data import-utkface / import-fairface / import-celeba`` in-process, as a user runs them.

Each test writes a tiny data set in its public layout (8x8 JPEGs named as the data set names them,
its label files as it ships them) into the working folder, runs the command, and checks the exit
code, the printed lines and the manifest, read back with :func:`genfair.datasets.load_manifest`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cli_runner import invoke
from genfair.datasets import load_manifest

UTK_NAMES = [
    f"{age}_{gender}_{race}_2017011{n:02d}174525125.jpg.chip.jpg"
    for n, (age, gender, race) in enumerate([(25, 0, 0), (31, 1, 0), (8, 0, 1), (64, 1, 1), (40, 1, 1), (22, 0, 0)])
]


def jpeg(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 255 - value, 60)).save(path, format="JPEG")


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_import_utkface_then_load_by_gender_and_race(workdir: Path) -> None:
    for n, name in enumerate(UTK_NAMES):
        jpeg(workdir / "UTKFace" / name, 30 * n)
    code, stdout, stderr = invoke("data", "import-utkface", "UTKFace", "--out", "utk.csv")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "wrote utk.csv: 6 images of 6 subjects"
    assert lines[1].startswith("note: UTKFace has no identity labels: every image is its own subject")
    assert lines[2] == "audit it: audit run --model vae --manifest utk.csv --attributes gender,race"
    assert lines[3] == (
        "by age too (a number: bin it): audit run --model vae --manifest utk.csv --attributes gender,race,age "
        "--bins age=0,18,30,45,65,120"
    )
    manifest = load_manifest(workdir / "utk.csv", attributes=["gender", "race"])
    assert manifest.attribute_classes == {"gender": ("female", "male"), "race": ("black", "white")}
    groups = manifest.frame.groupby(["gender", "race"])["subject"].nunique().to_dict()
    assert groups == {("female", "black"): 2, ("female", "white"): 1, ("male", "black"): 1, ("male", "white"): 2}
    assert manifest.frame["age"].tolist() == ["22", "25", "31", "40", "64", "8"]  # sorted by file name


def test_import_utkface_malformed_names_stop_or_are_skipped(workdir: Path) -> None:
    for name in UTK_NAMES[:2]:
        jpeg(workdir / "UTKFace" / name)
    jpeg(workdir / "UTKFace" / "39_1_20170116174525125.jpg.chip.jpg")
    code, stdout, stderr = invoke("data", "import-utkface", "UTKFace", "--out", "out/utk.csv")
    assert code == 2 and stdout == ""
    assert "error: UTKFace: 1 file name(s) not in UTKFace's form" in stderr
    assert "first '39_1_20170116174525125.jpg.chip.jpg' (3 fields, expected 4" in stderr
    assert "--skip-malformed" in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert not (workdir / "out").exists()
    code, stdout, stderr = invoke("data", "import-utkface", "UTKFace", "--out", "out/utk.csv", "--skip-malformed")
    assert code == 0, stderr
    assert "wrote out/utk.csv: 2 images of 2 subjects" in stdout
    assert "note: UTKFace: skipped 1 file name(s) not in UTKFace's form [age]_[gender]_[race]_[date&time].jpg: " \
           "'39_1_20170116174525125.jpg.chip.jpg'\n" in stdout
    assert "--manifest out/utk.csv --allow-outside-root --attributes gender,race" in stdout
    assert files_in(workdir / "out") == ["utk.csv"]


def test_import_fairface_with_two_label_files(workdir: Path) -> None:
    for name in ("train/1", "train/2", "val/1", "val/2"):
        jpeg(workdir / "fairface" / f"{name}.jpg")
    (workdir / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\ntrain/1.jpg,20-29,Male,East Asian,True\n"
        "train/2.jpg,more than 70,Female,Black,False\n"
    )
    (workdir / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\nval/1.jpg,3-9,Female,East Asian,True\n"
    )
    code, stdout, stderr = invoke("data", "import-fairface", "fairface", "--labels", "fairface_label_train.csv",
                                  "--labels", "fairface_label_val.csv", "--out", "fairface.parquet")
    assert code == 0, stderr
    assert stdout.splitlines()[0] == "wrote fairface.parquet: 3 images of 3 subjects"
    assert "note: fairface: 1 image(s) are in no label file and are left out: 'val/2.jpg'" in stdout
    assert "note: FairFace has no identity labels: every image is its own subject" in stdout
    assert "audit it: audit run --model vae --manifest fairface.parquet --attributes gender,race\n" in stdout
    manifest = load_manifest(workdir / "fairface.parquet", attributes=["gender", "race", "age"])
    assert manifest.frame[["subject", "age", "gender", "race"]].values.tolist() == [
        ["train/1", "20-29", "male", "east_asian"],
        ["train/2", "more than 70", "female", "black"],
        ["val/1", "3-9", "female", "east_asian"],
    ]


def test_import_fairface_duplicate_is_exit_2_and_writes_nothing(workdir: Path) -> None:
    jpeg(workdir / "fairface" / "train" / "1.jpg")
    labels = workdir / "labels.csv"
    labels.write_text("file,age,gender,race,service_test\ntrain/1.jpg,20-29,Male,White,True\n"
                      "train/1.jpg,20-29,Male,White,True\n")
    code, stdout, stderr = invoke("data", "import-fairface", "fairface", "--labels", "labels.csv", "--out", "m.csv")
    assert code == 2 and stdout == ""
    assert f"error: {labels.name}: line 3: image listed twice 'train/1.jpg' (already at {labels.name}: line 2)" in stderr
    assert not (workdir / "m.csv").exists()


@pytest.fixture
def celeba(workdir: Path) -> Path:
    """Four CelebA images of three people, their attribute, identity and partition files."""
    for n in range(1, 5):
        jpeg(workdir / "img_align_celeba" / f"{n:06d}.jpg", 50 * n)
    (workdir / "list_attr_celeba.txt").write_text(
        "4\nMale Smiling Young \n000001.jpg  1 -1  1\n000002.jpg -1 -1  1\n000003.jpg -1  1 -1\n000004.jpg  1  1  1\n"
    )
    (workdir / "identity_CelebA.txt").write_text("000001.jpg 7\n000002.jpg 12\n000003.jpg 30\n000004.jpg 7\n")
    (workdir / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n000004.jpg 0\n")
    return workdir


def test_import_celeba_with_partition_and_keep(celeba: Path) -> None:
    code, stdout, stderr = invoke(
        "data", "import-celeba", "img_align_celeba", "--attributes", "list_attr_celeba.txt", "--identities",
        "identity_CelebA.txt", "--partition", "list_eval_partition.txt", "--keep", "Young", "--out", "celeba.csv",
    )
    assert code == 0, stderr
    assert stdout.splitlines() == [
        "wrote celeba.csv: 4 images of 3 subjects",
        "audit it: audit run --model vae --manifest celeba.csv --attributes gender,young",
    ]
    manifest = load_manifest(celeba / "celeba.csv", attributes=["gender", "young"])
    assert manifest.frame[["subject", "gender", "young", "split"]].values.tolist() == [
        ["7", "male", "yes", "train"], ["12", "female", "yes", "val"], ["30", "female", "no", "test"],
        ["7", "male", "yes", "train"],
    ]


def test_import_celeba_identity_in_two_splits_is_exit_2(celeba: Path) -> None:
    (celeba / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n000004.jpg 2\n")
    code, stdout, stderr = invoke(
        "data", "import-celeba", "img_align_celeba", "--attributes", "list_attr_celeba.txt", "--identities",
        "identity_CelebA.txt", "--partition", "list_eval_partition.txt", "--out", "celeba.csv",
    )
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: list_eval_partition.txt: identity in two splits: identity '7' is in train")
    assert "fix: drop --partition" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (celeba / "celeba.csv").exists()


def test_import_celeba_unknown_keep_lists_close_matches(celeba: Path) -> None:
    code, _, stderr = invoke(
        "data", "import-celeba", "img_align_celeba", "--attributes", "list_attr_celeba.txt", "--identities",
        "identity_CelebA.txt", "--keep", "Smilng", "--out", "celeba.csv",
    )
    assert code == 2
    assert "keep 'Smilng'; fix: did you mean 'Smiling'?" in stderr
