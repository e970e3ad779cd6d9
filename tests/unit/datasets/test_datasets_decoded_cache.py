"""The store of decoded images (``cache_mb``): each file decoded once a run, served bit-identically.

Every expected tensor here comes from PIL directly or from a fresh :func:`load_image` /
:func:`load_mask` of the file, never from the store itself; file opens are counted by wrapping
``PIL.Image.open``.
"""

from __future__ import annotations

import collections
import multiprocessing
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from genfair.datasets import (
    DecodedImages,
    FacesDataModule,
    ManifestError,
    ManifestImageDataset,
    load_image,
    load_manifest,
    load_mask,
)
from genfair.datasets import datamodule as dm
from genfair.datasets import decoded as decoded_module
from PIL import Image

SIDE = 16
SPLIT = {"a": "train", "b": "train", "c": "val", "d": "val", "e": "test", "f": "test"}
GENDER = {"a": "f", "b": "m", "c": "f", "d": "m", "e": "f", "f": "m"}


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    """12 rows (6 people x 2 images, a split column) of 24x24 noise PNGs with 0/255 masks; row 0 is
    16x16 and holds every 8-bit value once per channel (it is stored without a resize)."""
    rng = np.random.default_rng(7)
    rows = []
    for subject, split in SPLIT.items():
        for n in (1, 2):
            image, mask = f"img/{subject}{n}.png", f"mask/{subject}{n}.png"
            rows.append({"path": image, "mask_path": mask, "subject": subject, "split": split,
                         "gender": GENDER[subject]})
    for folder in ("img", "mask"):
        (tmp_path / folder).mkdir()
    for position, row in enumerate(rows):
        if position == 0:
            values = np.arange(256, dtype=np.uint8).reshape(SIDE, SIDE)
            pixels = np.stack([values, values[::-1], values.T], axis=-1)
        else:
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / row["path"])
        shape = pixels.shape[:2]
        Image.fromarray(np.where(rng.random(shape) < 0.5, 255, 0).astype(np.uint8)).save(tmp_path / row["mask_path"])
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """How often each file was opened by ``PIL.Image.open`` in this process."""
    counter: collections.Counter = collections.Counter()
    real = Image.open

    def counting(path, *args, **kwargs):
        counter[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return counter


def pil_image(path: Path, channels: int = 3) -> torch.Tensor:
    """The image as PIL gives it, resized with a box filter: ``(C, 16, 16)`` float32 ``value / 255``."""
    with Image.open(path) as opened:
        image = opened.convert("RGB" if channels == 3 else "L")
    if image.size != (SIDE, SIDE):
        image = image.resize((SIDE, SIDE), Image.Resampling.BOX)
    pixels = np.asarray(image, dtype=np.uint8).reshape(SIDE, SIDE, channels)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


def pil_mask(path: Path) -> torch.Tensor:
    with Image.open(path) as opened:
        mask = opened.convert("L")
    if mask.size != (SIDE, SIDE):
        mask = mask.resize((SIDE, SIDE), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(mask) >= 128).float().unsqueeze(0)


def every_batch(loader) -> list[dict]:
    return list(loader)


# -- what is served ------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_served_images_and_masks_equal_a_fresh_decode(faces: Path, channels: int) -> None:
    manifest = load_manifest(faces)
    module = FacesDataModule(manifest, image_size=SIDE, channels=channels, batch_size=4, lowres_scale=2)
    assert module.decoded is not None
    first = [module.load_item(row) for row in range(len(manifest.frame))]  # decoded and stored
    assert module.decoded.filled == len(manifest.frame)
    for row, decoded_first in enumerate(first):
        item = module.load_item(row)  # from the store
        path, mask_path = manifest.image_path(row), manifest.mask_path(row)
        fresh = load_image(path, image_size=SIDE, channels=channels)
        assert item["image"].dtype == torch.float32 and torch.equal(item["image"], fresh)
        assert item["image"].stride() == fresh.stride()  # the same tensor, layout included
        assert torch.equal(item["image"], pil_image(path, channels))
        assert torch.equal(item["image"], decoded_first["image"])
        assert torch.equal(item["lowres"], F.avg_pool2d(fresh, 2))
        assert torch.equal(item["mask"], load_mask(mask_path, image_size=SIDE))
        assert torch.equal(item["mask"], pil_mask(mask_path))
        assert torch.equal(module.load_image(row), fresh)


def test_every_8bit_value_survives_the_store(faces: Path) -> None:
    module = FacesDataModule(load_manifest(faces), image_size=SIDE)
    module.load_image(0)
    served = module.load_image(0)  # row 0 holds 0..255 in every channel
    assert torch.equal((served * 255).round().to(torch.int64)[0].flatten(), torch.arange(256))
    assert torch.equal(served[0].flatten(), torch.arange(256, dtype=torch.float32) / 255)


def test_served_tensors_are_copies(faces: Path) -> None:
    module = FacesDataModule(load_manifest(faces), image_size=SIDE)
    module.load_image(3)
    module.load_image(3).zero_()
    module.load_item(3)["mask"].fill_(7)
    assert torch.equal(module.load_image(3), pil_image(load_manifest(faces).image_path(3)))
    assert set(module.load_item(3)["mask"].unique().tolist()) <= {0.0, 1.0}


# -- each file once ------------------------------------------------------------------------------


def read_like_a_run(module: FacesDataModule) -> None:
    """What a run reads: 2 training epochs with validation, the classifier's epoch, prediction, the audit."""
    for _ in range(2):
        every_batch(module.train_dataloader())
        every_batch(module.val_dataloader())
    every_batch(module.train_dataloader())  # the attribute classifier trains on the same datamodule
    every_batch(module.val_dataloader())
    every_batch(module.predict_dataloader())
    for row in module.split_rows("test"):  # the audit: its items and, for UCPR, its images
        module.load_item(int(row))
        module.load_image(int(row))


def test_each_file_is_opened_once_across_epochs_and_stages(faces: Path, opens: collections.Counter) -> None:
    manifest = load_manifest(faces)
    opens.clear()  # the manifest's own check of the headers
    module = FacesDataModule(manifest, image_size=SIDE, batch_size=4)
    read_like_a_run(module)
    files = [str(p) for row in range(len(manifest.frame)) for p in (manifest.image_path(row), manifest.mask_path(row))]
    assert {name: opens[name] for name in files} == dict.fromkeys(files, 1)
    assert sum(opens.values()) == len(files)


def test_without_the_store_every_read_opens_the_file(faces: Path, opens: collections.Counter) -> None:
    manifest = load_manifest(faces)
    opens.clear()
    module = FacesDataModule(manifest, image_size=SIDE, batch_size=4, cache_mb=0)
    assert module.decoded is None and module.notes == []  # turned off on purpose: nothing to say
    read_like_a_run(module)
    assert opens[str(manifest.image_path(0))] == 3  # train: three epochs
    assert opens[str(manifest.image_path(8))] == 3  # test: prediction, then the audit's item and image
    assert opens[str(manifest.mask_path(4))] == 3  # val: three validations


def test_a_budget_too_small_streams_and_the_note_says_so(faces: Path, opens: collections.Counter) -> None:
    manifest = load_manifest(faces)
    opens.clear()
    side = 256  # 12 rows x (256 * 256 * 3 + 256 * 256) bytes = 3 MiB
    small = FacesDataModule(manifest, image_size=side, batch_size=4, cache_mb=2)
    assert small.decoded is None
    note = ("the decoded images of the 12 rows to read take 3 MiB, more than --cache-mb 2: every epoch decodes "
            "them from their files again; --cache-mb 3 would decode each file once")
    assert small.notes == [note]
    for _ in range(2):
        every_batch(small.train_dataloader())
    assert opens[str(manifest.image_path(0))] == 2
    exact = FacesDataModule(manifest, image_size=side, batch_size=4, cache_mb=3)  # 3 MiB fit in 3 MiB
    assert exact.decoded is not None and exact.decoded.nbytes == 3 * 2**20 and exact.notes == []


def test_rows_outside_every_split_are_not_held(faces: Path, opens: collections.Counter) -> None:
    frame = pd.read_csv(faces)
    extra = frame[frame["subject"] == "a"].assign(subject="g")  # a second training woman, for balance_training
    extra["path"] = ["img/g1.png", "img/g2.png"]
    extra["mask_path"] = ["mask/g1.png", "mask/g2.png"]
    for old, new in zip(frame.loc[extra.index, "path"].tolist() + frame.loc[extra.index, "mask_path"].tolist(),
                        extra["path"].tolist() + extra["mask_path"].tolist()):
        (faces.parent / new).write_bytes((faces.parent / old).read_bytes())
    pd.concat([frame, extra], ignore_index=True).to_csv(faces, index=False)
    manifest = load_manifest(faces)
    opens.clear()
    module = FacesDataModule(manifest, image_size=SIDE, balance_training=True)  # one woman of a, g is left out
    unused = np.flatnonzero((module.split_labels == dm.UNUSED).to_numpy())
    assert len(unused) == 2
    assert len(module.decoded) == 12 and module.decoded.nbytes == 12 * (SIDE * SIDE * 4)
    held = int(module.split_rows("train")[0])
    for _ in range(2):
        module.load_item(int(unused[0]))  # decoded afresh each time
        module.load_item(held)
    assert opens[str(manifest.image_path(int(unused[0])))] == 2 and opens[str(manifest.image_path(held))] == 1


# -- worker processes ----------------------------------------------------------------------------


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="counts opens in forked workers")
def test_workers_serve_the_store_filled_before_they_start(faces: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "opens.log"  # appended to by every process, workers included
    real = Image.open

    def logging_open(path, *args, **kwargs):
        with log.open("a") as handle:
            handle.write(f"{path}\n")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", logging_open)
    manifest = load_manifest(faces)
    module = FacesDataModule(manifest, image_size=SIDE, batch_size=2, num_workers=2)
    log.unlink()  # the manifest's own check of the headers
    loader = module.train_dataloader()  # decodes the training rows here, before the workers fork
    epochs = [every_batch(loader) for _ in range(2)]
    train = [int(row) for row in module.split_rows("train")]
    opened = collections.Counter(log.read_text().splitlines())  # before the checks below open the files
    for batches in epochs:
        assert sorted(int(i) for batch in batches for i in batch["index"]) == train
        for batch in batches:
            for position, row in enumerate(batch["index"].tolist()):
                assert torch.equal(batch["image"][position], pil_image(manifest.image_path(row)))
                assert torch.equal(batch["mask"][position], pil_mask(manifest.mask_path(row)))
    expected = {str(p): 1 for row in train for p in (manifest.image_path(row), manifest.mask_path(row))}
    assert dict(opened) == expected


def test_a_worker_decodes_what_is_not_stored_without_storing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    store = DecodedImages([0, 1], total_rows=2, image_size=2, channels=1, masks=False)
    image = torch.tensor([[[0.0, 1.0], [10 / 255, 254 / 255]]])
    monkeypatch.setattr(decoded_module, "get_worker_info", lambda: object())  # as in a DataLoader worker
    assert torch.equal(store.image(0, lambda: image), image) and store.filled == 0
    monkeypatch.setattr(decoded_module, "get_worker_info", lambda: None)
    assert torch.equal(store.image(0, lambda: image), image) and store.filled == 1
    assert torch.equal(store.image(0, lambda: pytest.fail("decoded again")), image)
    assert store.missing([1, 0]).tolist() == [1] and store.decoded == 2


# -- errors --------------------------------------------------------------------------------------


def break_file(path: Path) -> None:
    """Keep the header, drop the pixels: the manifest's check passes, decoding fails."""
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize(("column", "row"), [("path", 2), ("mask_path", 3)])
def test_an_undecodable_file_names_its_row_and_column_as_without_the_store(faces: Path, column: str, row: int) -> None:
    manifest = load_manifest(faces)
    break_file(faces.parent / manifest.frame[column].iat[row])
    messages = []
    for cache_mb in (0, 1024, 1024):  # streamed, stored, and a store (no workers) that must not keep the failure
        module = FacesDataModule(manifest, image_size=SIDE, batch_size=4, cache_mb=cache_mb)
        pattern = rf"manifest\.csv: data row {row + 1}, column '{column}': unreadable image file: .*"
        with pytest.raises(ManifestError, match=pattern) as caught:
            every_batch(module.train_dataloader())
        messages.append(str(caught.value))
        with pytest.raises(ManifestError, match=pattern):  # not stored: it fails again
            module.load_item(row)
    assert messages[0] == messages[1] == messages[2]


def test_with_workers_an_undecodable_file_fails_in_this_process(faces: Path) -> None:
    manifest = load_manifest(faces)
    break_file(faces.parent / manifest.frame["path"].iat[1])
    module = FacesDataModule(manifest, image_size=SIDE, batch_size=4, num_workers=1)
    with pytest.raises(ManifestError, match=r"data row 2, column 'path': unreadable image file: .*img/a2\.png"):
        module.train_dataloader()


@pytest.mark.parametrize("cache_mb", [-1, 1.5, True, "1024"])
def test_cache_mb_must_be_a_whole_number_of_mib(faces: Path, cache_mb: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"cache_mb must be an int >= 0, got {cache_mb!r}")):
        FacesDataModule(load_manifest(faces), image_size=SIDE, cache_mb=cache_mb)


def test_a_dataset_refuses_the_store_of_another(faces: Path) -> None:
    manifest = load_manifest(faces)
    store = DecodedImages(range(12), total_rows=12, image_size=SIDE, channels=3, masks=True)
    ManifestImageDataset(manifest, [0], image_size=SIDE, decoded=store)  # its own: accepted
    with pytest.raises(ValueError, match=re.escape(f"{dm.ERR_OTHER_STORE}: built for (image_size, channels, rows, "
                                                   "masks) (16, 3, 12, True), this dataset is (32, 3, 12, True)")):
        ManifestImageDataset(manifest, [0], image_size=32, decoded=store)


def test_the_store_checks_its_rows_and_sizes() -> None:
    with pytest.raises(ValueError, match=r"rows must be positions in 0\.\.3 of the manifest, got 0 to 4"):
        DecodedImages([0, 4], total_rows=4, image_size=8, channels=3, masks=False)
    with pytest.raises(ValueError, match=r"image_size must be >= 1 and channels 1 or 3, got 8 and 2"):
        DecodedImages([0], total_rows=4, image_size=8, channels=2, masks=False)
    store = DecodedImages([0, 2], total_rows=4, image_size=8, channels=3, masks=True)
    assert (store.bytes_per_row, store.nbytes, len(store)) == (8 * 8 * 3 + 8 * 8, 2 * 256, 2)
    assert store.missing([3, 2, 1, 0]).tolist() == [2, 0]  # rows 1 and 3 are not held at all


def test_the_run_option_is_checked(tmp_path: Path) -> None:
    from genfair.audit.cli import app
    from genfair.audit.run import RunConfig
    from typer.testing import CliRunner

    assert RunConfig().cache_mb == 1024 and RunConfig(cache_mb=0).cache_mb == 0
    with pytest.raises(ValueError, match=r"^--cache-mb must be 0 \(decode every file in every epoch\) or a positive "
                                         r"number of MiB, got -1$"):
        RunConfig(cache_mb=-1)
    result = CliRunner().invoke(app, ["run", "--cache-mb", "-1", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2 and "--cache-mb must be 0" in result.output
