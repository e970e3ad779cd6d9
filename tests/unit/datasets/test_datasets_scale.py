"""Resource bounds: a 100,000-row manifest validates and splits without touching an image.

No wall-clock limits here (``benchmarks/manifest_scale.py`` times it): the bounds are that no image
file is opened or even looked up while the table is validated and split, and that the memory
traced meanwhile stays proportional to the rows, far below what the images would take.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genfair.datasets import FacesDataModule, load_manifest

ROWS = 100_000
IMAGES_PER_SUBJECT = 10
BYTES_PER_ROW = 2_000  # measured: about 110 (load and split) to 210 (with the DataModule) traced bytes per row
"""Generous: a 64x64 RGB image alone is 12 KB as uint8, 49 KB as float32."""


def write_big_manifest(folder: Path, rows: int) -> Path:
    """``rows`` rows of ``rows / 10`` subjects in four (gender, skin_tone) groups, no split column, no images."""
    row = pd.Series(np.arange(rows))
    subject = row // IMAGES_PER_SUBJECT
    names = "s" + subject.astype("str").str.zfill(6)
    frame = pd.DataFrame(
        {
            "path": "img/" + (subject // 1000).astype("str").str.zfill(3) + "/" + names + "_"
            + (row % IMAGES_PER_SUBJECT).astype("str") + ".png",
            "subject": names,
            "gender": np.where(subject % 2 == 0, "female", "male"),
            "skin_tone": np.where(subject // 2 % 2 == 0, "darker", "lighter"),
        }
    )
    path = folder / "big.csv"
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


@pytest.fixture
def file_touches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image open and file lookup the manifest code makes (PIL.Image.open, isfile, scandir)."""
    touched: list[str] = []

    def counting(name: str, real):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            touched.append(f"{name}({args[0] if args else ''})")
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Image, "open", counting("Image.open", Image.open))
    monkeypatch.setattr(os.path, "isfile", counting("os.path.isfile", os.path.isfile))
    monkeypatch.setattr(os, "scandir", counting("os.scandir", os.scandir))
    return touched


def test_100k_rows_validate_and_split_without_touching_an_image(tmp_path: Path, file_touches: list[str]) -> None:
    path = write_big_manifest(tmp_path, ROWS)
    tracemalloc.start()
    try:
        manifest = load_manifest(path, images="skip")
        module = FacesDataModule(manifest, image_size=64, seed=0)  # the run's seeded split, datasets over every row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert file_touches == [], f"validation and splitting touched image files: {file_touches[:3]}"
    assert peak < ROWS * BYTES_PER_ROW, f"{peak / ROWS:.0f} traced bytes per row"
    assert len(manifest.frame) == ROWS and manifest.attributes == ("gender", "skin_tone")
    per_subject = manifest.frame.assign(split=module.split_labels).drop_duplicates("subject")
    assert per_subject["split"].value_counts().to_dict() == {"train": 7_000, "test": 2_000, "val": 1_000}
    assert manifest.frame["path"].iat[12_345] == "img/001/s001234_5.png"
    assert len(module.dataset("train")) == 70_000


def test_images_are_read_only_when_a_batch_needs_them(tmp_path: Path, file_touches: list[str]) -> None:
    rows = [{"path": f"img/{s}_{k}.png", "subject": s, "gender": g}
            for s, g in (("a", "f"), ("b", "f"), ("c", "m"), ("d", "m"), ("e", "f"), ("f", "m")) for k in (1, 2)]
    (tmp_path / "img").mkdir()
    for row in rows:
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / row["path"])
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    file_touches.clear()

    module = FacesDataModule(load_manifest(tmp_path / "m.csv", images="exist"), image_size=8, batch_size=2)
    assert not [t for t in file_touches if t.startswith("Image.open")], "the existence check opens no image"
    file_touches.clear()
    batch = next(iter(module.test_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8)
    assert [t for t in file_touches if t.startswith("Image.open")] == [
        f"Image.open({module.manifest.image_path(int(row))})" for row in batch["index"]
    ], "one file opened per image of the batch, and no other"
