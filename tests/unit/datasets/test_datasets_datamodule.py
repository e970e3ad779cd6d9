"""Tensors from manifests: image loading, the subject-disjoint split, the DataModule's batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genfair.datasets import (
    FacesDataModule,
    ManifestImageDataset,
    load_image,
    load_manifest,
    subject_disjoint_split,
)
from genfair.datasets import datamodule as dm


def subjects_frame(n_per_group: dict[tuple[str, str], int], images: int = 2) -> pd.DataFrame:
    rows = []
    for (gender, tone), count in n_per_group.items():
        for k in range(count):
            subject = f"{gender[0]}{tone[0]}{k:02d}"
            rows += [{"path": f"{subject}.{n}.png", "subject": subject, "gender": gender, "skin_tone": tone} for n in range(images)]
    return pd.DataFrame(rows)


GROUPS = {("female", "darker"): 5, ("female", "lighter"): 10, ("male", "darker"): 10, ("male", "lighter"): 25}


# -- load_image ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "size"), [(3, 8), (1, 8), (3, 4), (1, 16)])
def test_load_image_shape_range_and_resize(tmp_path, write_image, channels, size):
    path = write_image(tmp_path / "x.png", size=(8, 8), value=200)
    image = load_image(path, image_size=size, channels=channels)
    assert image.shape == (channels, size, size) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    if channels == 3:
        assert torch.allclose(image[:, 0, 0], torch.tensor([200, 55, 100]) / 255.0)


def test_load_image_box_filter_averages(tmp_path):
    from PIL import Image

    path = tmp_path / "checker.png"
    Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8), "L").save(path)
    assert torch.allclose(load_image(path, image_size=1, channels=1), torch.tensor([[[0.5]]]), atol=1 / 255)


def test_load_image_rejects_other_channel_counts(tmp_path, write_image):
    with pytest.raises(ValueError, match=r"channels must be one of \[1, 3\], got 4"):
        load_image(write_image(tmp_path / "x.png"), image_size=8, channels=4)


# -- subject_disjoint_split ----------------------------------------------------------------------


def test_split_is_subject_disjoint_sized_and_stratified():
    frame = subjects_frame(GROUPS)
    split = subject_disjoint_split(frame, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert split.name == "split" and split.index.equals(frame.index)
    assert frame.assign(split=split).groupby("subject")["split"].nunique().eq(1).all()
    per_subject = frame.assign(split=split).drop_duplicates("subject")
    assert per_subject["split"].value_counts().to_dict() == {"train": 35, "test": 10, "val": 5}
    test_groups = per_subject[per_subject.split == "test"].groupby(["gender", "skin_tone"]).size()
    assert test_groups.to_dict() == {("female", "darker"): 1, ("female", "lighter"): 2, ("male", "darker"): 2, ("male", "lighter"): 5}


def test_split_is_deterministic_and_seeded():
    frame = subjects_frame(GROUPS)
    first = subject_disjoint_split(frame, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert first.equals(subject_disjoint_split(frame, seed=0, val_fraction=0.1, test_fraction=0.2))
    assert not first.equals(subject_disjoint_split(frame, seed=1, val_fraction=0.1, test_fraction=0.2))


def test_split_ignores_row_order():
    frame = subjects_frame(GROUPS)
    shuffled = frame.sample(frac=1.0, random_state=0)
    a = subject_disjoint_split(frame, seed=4, val_fraction=0.1, test_fraction=0.2)
    b = subject_disjoint_split(shuffled, seed=4, val_fraction=0.1, test_fraction=0.2)
    assert a.equals(b.loc[frame.index])


def test_split_can_skip_stratification_and_val():
    frame = subjects_frame({("female", "darker"): 3, ("male", "lighter"): 7})
    split = subject_disjoint_split(frame, seed=0, val_fraction=0.0, test_fraction=0.3, attributes=())
    assert set(split) == {"train", "test"}
    assert frame.assign(split=split).drop_duplicates("subject")["split"].value_counts()["test"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": -0.1}, r"val_fraction must be in \[0, 1\), got -0\.1"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\), got 1\.0"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"val_fraction \+ test_fraction must be below 1"),
        ({"attributes": ["age"]}, r"attributes \['age'\] are not columns of the frame"),
    ],
)
def test_split_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        subject_disjoint_split(subjects_frame(GROUPS), **{"seed": 0, **kwargs})


def test_split_needs_subjects():
    with pytest.raises(ValueError, match=r"frame needs a 'subject' column"):
        subject_disjoint_split(pd.DataFrame({"path": ["a"]}), seed=0)
    with pytest.raises(ValueError, match=r"cannot split an empty frame"):
        subject_disjoint_split(pd.DataFrame({"path": [], "subject": []}), seed=0)
    with pytest.raises(ValueError, match=rf"{dm.ERR_TOO_FEW_SUBJECTS}: 2 subject\(s\) cannot fill 1 test \+ 1 val"):
        subject_disjoint_split(subjects_frame({("female", "darker"): 2}), seed=0)


# -- the DataModule on generated faces (with a split column) -------------------------------------


@pytest.fixture
def faces_module(tiny_faces):
    manifest = load_manifest(tiny_faces, attributes=["gender", "skin_tone"])
    return FacesDataModule(manifest, image_size=16, batch_size=4, seed=0)


def test_batches_are_images_and_row_indices(faces_module):
    batch = next(iter(faces_module.train_dataloader()))
    assert set(batch) == {"image", "index"}
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (4,)
    for image, row in zip(batch["image"], batch["index"]):
        assert torch.equal(image, faces_module.load_image(int(row)))


def test_splits_follow_the_manifest(faces_module):
    frame = faces_module.manifest.frame
    for split in ("train", "val", "test"):
        part = faces_module.split_frame(split)
        assert (part["split"] == split).all()
        assert part.index.tolist() == np.flatnonzero(frame["split"] == split).tolist()
    subjects = [set(faces_module.split_frame(s)["subject"]) for s in ("train", "val", "test")]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])


def test_train_loader_shuffles_by_seed_and_covers_every_row(faces_module):
    order = torch.cat([b["index"] for b in faces_module.train_dataloader()])
    assert sorted(order.tolist()) == faces_module.split_rows("train").tolist()
    assert order.tolist() != sorted(order.tolist())
    again = FacesDataModule(faces_module.manifest, image_size=16, batch_size=4, seed=0)
    assert torch.equal(torch.cat([b["index"] for b in again.train_dataloader()]), order)
    other = FacesDataModule(faces_module.manifest, image_size=16, batch_size=4, seed=1)
    assert not torch.equal(torch.cat([b["index"] for b in other.train_dataloader()]), order)


def test_predict_serves_the_test_split_in_order(faces_module):
    indices = torch.cat([b["index"] for b in faces_module.predict_dataloader()]).tolist()
    assert indices == faces_module.split_frame("test").index.tolist()
    assert torch.cat([b["index"] for b in faces_module.test_dataloader()]).tolist() == indices
    assert len(torch.cat([b["index"] for b in faces_module.val_dataloader()])) == len(faces_module.split_frame("val"))


def test_greyscale_and_resized_batches(tiny_faces):
    manifest = load_manifest(tiny_faces)
    module = FacesDataModule(manifest, image_size=8, channels=1, batch_size=3)
    assert next(iter(module.val_dataloader()))["image"].shape == (3, 1, 8, 8)


def test_dataset_maps_items_to_rows(tiny_faces):
    manifest = load_manifest(tiny_faces)
    dataset = ManifestImageDataset(manifest, [5, 0, 3], image_size=16)
    assert len(dataset) == 3
    assert [dataset[i]["index"] for i in range(3)] == [5, 0, 3]
    assert torch.equal(dataset[0]["image"], load_image(manifest.image_path(5), image_size=16))
    with pytest.raises(ValueError, match=r"channels must be one of \[1, 3\], got 2"):
        ManifestImageDataset(manifest, [0], image_size=16, channels=2)


# -- the DataModule without a split column, and its errors ---------------------------------------


def test_seeded_split_when_the_manifest_has_none(make_manifest):
    rows = [
        {"path": f"img/{s}_{n}.png", "subject": s, "gender": "female" if k % 2 else "male"}
        for k, s in enumerate(f"s{k}" for k in range(10))
        for n in (1, 2)
    ]
    manifest = load_manifest(make_manifest(rows))
    module = FacesDataModule(manifest, image_size=8, seed=3)
    sizes = {s: module.split_frame(s)["subject"].nunique() for s in ("train", "val", "test")}
    assert sizes == {"train": 7, "val": 1, "test": 2}
    assert module.split_labels.equals(
        subject_disjoint_split(manifest.frame, seed=3, val_fraction=0.1, test_fraction=0.2, attributes=["gender"])
    )


def test_empty_train_split_from_the_manifest(make_manifest):
    rows = [{"path": f"img/{s}.png", "subject": s, "g": "x", "split": "test"} for s in "abc"]
    manifest = load_manifest(make_manifest(rows))
    with pytest.raises(ValueError, match=rf"manifest\.csv: the train {dm.ERR_EMPTY_SPLIT}: no row of its split column is 'train'"):
        FacesDataModule(manifest, image_size=8)


def test_empty_test_split_from_the_seed(make_manifest):
    rows = [{"path": f"img/{s}.png", "subject": s, "g": "x"} for s in "abcde"]
    manifest = load_manifest(make_manifest(rows))
    with pytest.raises(ValueError, match=rf"the test {dm.ERR_EMPTY_SPLIT}: the seeded split gave 'test' no subject"):
        FacesDataModule(manifest, image_size=8, test_fraction=0.0, val_fraction=0.2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 0}, r"image_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an int >= 1, got 2\.5"),
        ({"num_workers": -1}, r"num_workers must be an int >= 0, got -1"),
        ({"channels": 4}, r"channels must be one of \[1, 3\], got 4"),
    ],
)
def test_datamodule_rejects_bad_options(tiny_faces, kwargs, match):
    manifest = load_manifest(tiny_faces)
    with pytest.raises(ValueError, match=match):
        FacesDataModule(manifest, **{"image_size": 16, **kwargs})


def test_split_frame_rejects_unknown_split(faces_module):
    with pytest.raises(ValueError, match=r"split must be one of train, val, test, got 'validation'"):
        faces_module.split_frame("validation")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # inside pytorch_lightning, not ours
def test_lightning_trains_and_predicts_with_the_datamodule(faces_module):
    import pytorch_lightning as pl

    class Mean(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(3, 1, 1))

        def training_step(self, batch, batch_idx):
            return ((batch["image"] - self.bias) ** 2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", ((batch["image"] - self.bias) ** 2).mean())

        def predict_step(self, batch, batch_idx):
            return {"index": batch["index"], "output": self.bias.expand_as(batch["image"])}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Mean(), datamodule=faces_module)
    batches = trainer.predict(Mean(), datamodule=faces_module)
    assert torch.cat([b["index"] for b in batches]).tolist() == faces_module.split_rows("test").tolist()
