"""Tensors from manifests: image loading, the subject-disjoint split, the DataModule's batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import torch.nn.functional as F
from PIL import Image

from genfair.datasets import (
    LOWRES_SCALES,
    FacesDataModule,
    ManifestError,
    ManifestImageDataset,
    load_image,
    load_manifest,
    load_mask,
    subject_disjoint_split,
)
from genfair.datasets import datamodule as dm
from genfair.datasets import splits


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
    with pytest.raises(ValueError, match=rf"{splits.ERR_TOO_FEW_SUBJECTS}: 2 subject\(s\) cannot fill 1 test \+ 1 val"):
        subject_disjoint_split(subjects_frame({("female", "darker"): 2}), seed=0)


# -- the DataModule on generated faces (with a split column) -------------------------------------


@pytest.fixture
def faces_module(tiny_faces):
    manifest = load_manifest(tiny_faces, attributes=["gender", "skin_tone"])
    return FacesDataModule(manifest, image_size=16, batch_size=4, seed=0)


def test_batches_are_images_and_row_indices(faces_module):
    batch = next(iter(faces_module.train_dataloader()))
    assert set(batch) == {"image", "index", "labels", "mask"}  # the generated faces have masks
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
    manifest = load_manifest(tiny_faces, attributes=["gender", "skin_tone"])
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


# -- the extended batch: labels, lowres, mask ----------------------------------------------------


def test_labels_are_codes_of_the_sorted_values(faces_module):
    assert faces_module.attribute_classes == {"gender": ("female", "male"), "skin_tone": ("darker", "lighter")}
    classes = faces_module.attribute_classes
    frame = faces_module.manifest.frame
    for batch in faces_module.val_dataloader():
        assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (len(batch["index"]), 2)
        for row, codes in zip(batch["index"].tolist(), batch["labels"].tolist()):
            assert [classes[name][code] for name, code in zip(("gender", "skin_tone"), codes)] == [
                frame["gender"].iat[row],
                frame["skin_tone"].iat[row],
            ]


def test_labels_use_every_value_of_the_whole_manifest(make_manifest):
    # subject c (the only 'z' of skin_tone) is in test, yet train batches code 'lighter' as 1 of 3 values
    rows = [
        {"path": f"img/{s}_{n}.png", "subject": s, "skin_tone": t, "split": sp}
        for s, t, sp in (("a", "darker", "train"), ("b", "lighter", "train"), ("c", "z", "test"),
                         ("d", "darker", "test"), ("e", "lighter", "test"))
        for n in (1, 2)
    ]
    module = FacesDataModule(load_manifest(make_manifest(rows)), image_size=8, batch_size=8)
    assert module.attribute_classes == {"skin_tone": ("darker", "lighter", "z")}
    batch = next(iter(module.test_dataloader()))
    assert batch["labels"].tolist() == [[2], [2], [0], [0], [1], [1]]
    assert sorted(next(iter(module.train_dataloader()))["labels"][:, 0].tolist()) == [0, 0, 1, 1]
    module.attribute_classes["skin_tone"] = ()  # a copy: the module's classes are unchanged
    assert module.attribute_classes["skin_tone"] == ("darker", "lighter", "z")


def test_masks_are_binary_and_match_the_files(faces_module):
    batch = next(iter(faces_module.test_dataloader()))
    mask = batch["mask"]
    assert mask.shape == (4, 1, 16, 16) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    for one, row in zip(mask, batch["index"].tolist()):
        stored = np.asarray(Image.open(faces_module.manifest.mask_path(row))) == 255
        assert torch.equal(one[0], torch.from_numpy(stored).float())


def test_masks_resize_with_nearest(tiny_faces):
    module = FacesDataModule(load_manifest(tiny_faces, attributes=["gender"]), image_size=8, batch_size=2)
    item = module.load_item(0)
    assert item["image"].shape == (3, 8, 8) and item["mask"].shape == (1, 8, 8)
    stored = Image.open(module.manifest.mask_path(0)).resize((8, 8), Image.Resampling.NEAREST)
    assert torch.equal(item["mask"][0], torch.from_numpy(np.asarray(stored) >= 128).float())


def test_no_mask_without_a_mask_column(make_manifest):
    manifest = load_manifest(make_manifest(), attributes=[])  # three subjects, each a group of its own otherwise
    module = FacesDataModule(manifest, image_size=8, batch_size=2, test_fraction=0.34, val_fraction=0.0)
    assert set(next(iter(module.train_dataloader()))) == {"image", "index", "labels"}


@pytest.mark.parametrize("scale", LOWRES_SCALES)
def test_lowres_is_the_area_average_of_the_image(tiny_faces, scale):
    module = FacesDataModule(load_manifest(tiny_faces, attributes=["gender"]), image_size=16, batch_size=3, lowres_scale=scale)
    batch = next(iter(module.predict_dataloader()))
    assert batch["lowres"].shape == (3, 3, 16 // scale, 16 // scale) and batch["lowres"].dtype == torch.float32
    assert torch.allclose(batch["lowres"], F.avg_pool2d(batch["image"], scale))
    assert 0.0 <= float(batch["lowres"].min()) and float(batch["lowres"].max()) <= 1.0


def test_no_lowres_by_default(faces_module):
    assert "lowres" not in next(iter(faces_module.val_dataloader()))
    assert faces_module.lowres_scale is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lowres_scale": 3}, r"^lowres_scale must be one of \[2, 4, 8\] or None, got 3$"),
        ({"lowres_scale": True}, r"^lowres_scale must be one of \[2, 4, 8\] or None, got True$"),
        ({"lowres_scale": 2.0}, r"^lowres_scale must be one of \[2, 4, 8\] or None, got 2\.0$"),
        ({"lowres_scale": 8, "image_size": 12}, r"^image_size 12 is not divisible by lowres_scale 8; fix: use an image_size that is a multiple of 8 \(e\.g\. 8 or 16\)"),
        ({"lowres_scale": 8, "image_size": 4}, r"^image_size 4 is not divisible by lowres_scale 8; fix: .*\(e\.g\. 8\) or a smaller lowres_scale$"),
    ],
)
def test_bad_lowres_scale(tiny_faces, kwargs, match):
    manifest = load_manifest(tiny_faces)
    with pytest.raises(ValueError, match=match):
        FacesDataModule(manifest, **{"image_size": 16, **kwargs})
    with pytest.raises(ValueError, match=match):
        ManifestImageDataset(manifest, [0], **{"image_size": 16, **kwargs})


def test_load_item_is_the_dataset_item_of_any_row(tiny_faces):
    module = FacesDataModule(load_manifest(tiny_faces, attributes=["gender"]), image_size=16, batch_size=2, lowres_scale=2)
    test_row = int(module.split_rows("test")[0])
    dataset = module.dataset("test")
    item, expected = module.load_item(test_row), dataset[0]
    assert set(item) == {"image", "index", "labels", "lowres", "mask"} and item["index"] == test_row
    for key in ("image", "labels", "lowres", "mask"):
        assert torch.equal(item[key], expected[key])
    assert torch.equal(item["image"], module.load_image(test_row))
    train_row = module.split_rows("train")[0]  # a numpy int is fine
    assert module.load_item(train_row)["index"] == train_row and type(module.load_item(train_row)["index"]) is int


@pytest.mark.parametrize("row", [-1, 26])
def test_load_item_rejects_rows_outside_the_manifest(tiny_faces, row):
    module = FacesDataModule(load_manifest(tiny_faces, attributes=["gender"]), image_size=16)
    with pytest.raises(IndexError, match=rf"row must be a position in 0\.\.25 of the manifest, got {row}"):
        module.load_item(row)


def test_load_mask_thresholds_and_resizes(tmp_path):
    values = np.array([[0, 127], [128, 255]], dtype=np.uint8)
    Image.fromarray(values, "L").save(tmp_path / "m.png")
    assert torch.equal(load_mask(tmp_path / "m.png", image_size=2), torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))
    big = load_mask(tmp_path / "m.png", image_size=4)
    assert big.shape == (1, 4, 4) and torch.equal(big[0, 2:, :2], torch.ones(2, 2)) and big[0, :2].sum() == 0
    Image.fromarray(values, "L").convert("RGB").save(tmp_path / "rgb.png")
    assert torch.equal(load_mask(tmp_path / "rgb.png", image_size=2), load_mask(tmp_path / "m.png", image_size=2))


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


# -- every group is audited ----------------------------------------------------------------------


def test_split_gives_every_group_a_test_subject():
    frame = subjects_frame({("female", "darker"): 2, ("male", "lighter"): 18})  # round(20 * 0.2) = 4 test
    split = subject_disjoint_split(frame, seed=0, val_fraction=0.1, test_fraction=0.2)
    per_subject = frame.assign(split=split).drop_duplicates("subject")
    test_groups = per_subject[per_subject.split == "test"].groupby("gender").size().to_dict()
    assert test_groups == {"female": 1, "male": 4}, "largest remainder alone would give the 2-subject group none"


def test_split_refuses_a_group_of_one_subject():
    frame = subjects_frame({("female", "darker"): 1, ("female", "lighter"): 1, ("male", "lighter"): 8})
    pattern = (
        rf"^{splits.ERR_SINGLE_SUBJECT_GROUP}: gender='female', skin_tone='darker' has only subject 'fd00', who "
        r"cannot be both trained on and audited; 1 more group like this; fix: .*split column \(e\.g\. 'fd00' in test\)$"
    )
    with pytest.raises(ValueError, match=pattern):
        subject_disjoint_split(frame, seed=0)
    no_test = subject_disjoint_split(frame, seed=0, val_fraction=0.2, test_fraction=0.0)
    assert set(no_test) == {"train", "val"}, "without a test split a lone subject is fine"


def test_split_with_many_small_groups_can_run_out_of_training_subjects():
    frame = subjects_frame({("female", "darker"): 2, ("female", "lighter"): 2, ("male", "darker"): 2})
    with pytest.raises(ValueError, match=rf"{splits.ERR_TOO_FEW_SUBJECTS}: 6 subject\(s\) in 3 group\(s\) cannot give every group a test subject, fill 3 val"):
        subject_disjoint_split(frame, seed=0, val_fraction=0.5, test_fraction=0.2)


def test_datamodule_names_the_manifest_when_the_split_fails(make_manifest):
    rows = [{"path": f"img/{s}.png", "subject": s, "g": "x" if s != "e" else "y"} for s in "abcde"]
    with pytest.raises(ValueError, match=rf"manifest\.csv: {splits.ERR_SINGLE_SUBJECT_GROUP}: g='y' has only subject 'e'"):
        FacesDataModule(load_manifest(make_manifest(rows)), image_size=8)


def test_a_group_missing_from_the_test_split_fails(make_manifest):
    placement = {"a": "train", "b": "val", "c": "test", "d": "train", "e": "test", "f": "train", "g": "train"}
    groups = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z", "f": "w", "g": "w"}
    rows = [{"path": f"img/{s}.png", "subject": s, "g": groups[s], "split": sp} for s, sp in placement.items()]
    pattern = (
        rf"manifest\.csv: {dm.ERR_GROUP_NOT_IN_TEST} g='w' \(its 2 subjects are in train\), so the audit could not report "
        r"it; 1 more group like this; fix: set split to 'test' for at least one of them \(e\.g\. subject 'f'\)"
    )
    with pytest.raises(ValueError, match=pattern):
        FacesDataModule(load_manifest(make_manifest(rows)), image_size=8)
    rows = [row for row in rows if row["g"] in ("y", "z")]
    assert FacesDataModule(load_manifest(make_manifest(rows, name="kept")), image_size=8).split_rows("test").tolist() == [0, 2]


def test_an_image_that_fails_to_decode_names_its_row(make_manifest, tmp_path):
    rows = [{"path": f"img/{s}.jpg", "subject": s, "split": "test" if s in "ab" else "train"} for s in "abcd"]
    (tmp_path / "img").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for row in rows:
        Image.fromarray(noise).save(tmp_path / row["path"])
    broken = tmp_path / "img/b.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # the header survives: the check cannot see it
    module = FacesDataModule(load_manifest(make_manifest(rows, images=False)), image_size=8, batch_size=4)
    with pytest.raises(ManifestError, match=r"manifest\.csv: data row 2, column 'path': unreadable image file: .*b\.jpg \(OSError: .*truncated"):
        next(iter(module.test_dataloader()))
