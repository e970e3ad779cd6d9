"""The generated-dataset cache: written under a temporary name, checksummed, verified before reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from genfair.datasets import _cache as cache

CONFIG = json.dumps({"generator_version": 1, "seed": 0}, sort_keys=True)
ROWS = 3


class Generator:
    """A tiny dataset writer that counts its calls (and can crash half-way)."""

    def __init__(self, *, crash: bool = False) -> None:
        self.calls = 0
        self.crash = crash

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        (folder / "images").mkdir()
        for row in range(ROWS):
            (folder / "images" / f"{row}.png").write_bytes(bytes([row]) * 100)
        if self.crash:
            raise RuntimeError("generator crashed")
        rows = "".join(f"images/{row}.png,s{row}\n" for row in range(ROWS))
        (folder / cache.MANIFEST_NAME).write_text("path,subject\n" + rows)
        (folder / cache.CONFIG_NAME).write_text(CONFIG + "\n")


def ensure(root: Path, generate: Generator) -> Path:
    return cache.ensure_cached(root / "set-abc", config_json=CONFIG, n_rows=ROWS, generate=generate, what="test set")


def test_a_new_folder_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    manifest = ensure(tmp_path, Generator())
    folder = manifest.parent
    lines = (folder / cache.CHECKSUMS_NAME).read_text().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    assert sorted(listed) == ["config.json", "images/0.png", "images/1.png", "images/2.png", "manifest.csv"]
    for relative, digest in listed.items():
        assert hashlib.sha256((folder / relative).read_bytes()).hexdigest() == digest
    assert [path.name for path in tmp_path.iterdir()] == ["set-abc"], "no temporary folder is left behind"


def test_a_verified_folder_is_reused(tmp_path: Path) -> None:
    generate = Generator()
    first = ensure(tmp_path, generate)
    assert ensure(tmp_path, generate) == first
    assert generate.calls == 1


@pytest.mark.parametrize(
    "damage",
    ["truncate_image", "flip_image_bytes", "delete_image", "no_checksums", "checksum_outside_folder", "edit_manifest"],
)
def test_a_damaged_folder_is_detected_and_regenerated(tmp_path: Path, damage: str) -> None:
    generate = Generator()
    folder = ensure(tmp_path, generate).parent
    expected = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    image = folder / "images" / "1.png"
    if damage == "truncate_image":  # what a crash half-way through a copy leaves
        image.write_bytes(image.read_bytes()[:10])
    elif damage == "flip_image_bytes":  # same size, other content
        image.write_bytes(bytes([255]) * 100)
    elif damage == "delete_image":
        image.unlink()
    elif damage == "no_checksums":  # a folder cached before checksums existed
        (folder / cache.CHECKSUMS_NAME).unlink()
    elif damage == "checksum_outside_folder":
        sums = folder / cache.CHECKSUMS_NAME
        sums.write_text(sums.read_text() + f"{'0' * 64}  ../elsewhere.png\n")
    else:  # same number of rows, so only the checksum tells
        manifest = folder / cache.MANIFEST_NAME
        manifest.write_text(manifest.read_text().replace("s1", "s9"))
    assert not cache.is_complete(folder, config_json=CONFIG, n_rows=ROWS)

    assert ensure(tmp_path, generate) == folder / cache.MANIFEST_NAME
    assert generate.calls == 2
    assert {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()} == expected
    assert [path.name for path in tmp_path.iterdir()] == ["set-abc"]


def test_a_crash_while_generating_leaves_nothing_a_later_run_trusts(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="generator crashed"):
        ensure(tmp_path, Generator(crash=True))
    assert list(tmp_path.iterdir()) == [], "the half-written temporary folder is removed"
    generate = Generator()
    assert ensure(tmp_path, generate).is_file()
    assert generate.calls == 1


def test_another_config_is_not_reused(tmp_path: Path) -> None:
    folder = ensure(tmp_path, Generator()).parent
    other = json.dumps({"generator_version": 1, "seed": 1}, sort_keys=True)
    assert cache.is_complete(folder, config_json=CONFIG, n_rows=ROWS)
    assert not cache.is_complete(folder, config_json=other, n_rows=ROWS)
    assert not cache.is_complete(folder, config_json=CONFIG, n_rows=ROWS + 1)
