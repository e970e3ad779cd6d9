"""The attribute classifier's own data: balanced, and never the audited model's people or the audit panel."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genfair.audit.run import training
from genfair.audit.run.config import RunConfig
from genfair.datasets import FacesDataModule, load_manifest
from genfair.datasets.synthetic import (
    SyntheticFacesConfig,
    ensure_synthetic_faces,
    generate_new_people,
    synthetic_config_of,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    "ignore:.*but have no `val_dataloader`:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

TINY_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=2, train_lighter_male=4, train_lighter_female=1,
                                  train_darker_male=2, train_darker_female=1, val_subjects_per_group=1,
                                  test_subjects_per_group=1)


def _pixels(folder: Path, manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    return {row.subject + "/" + row.path: np.asarray(Image.open(folder / row.path).convert("RGB"), dtype=np.float64)
            for row in manifest.itertuples()}


def _digests(images: dict[str, np.ndarray]) -> set[str]:
    return {hashlib.sha256(array.tobytes()).hexdigest() for array in images.values()}


def test_new_people_are_balanced_and_share_no_person_or_image_with_the_dataset(tmp_path: Path) -> None:
    dataset = ensure_synthetic_faces(TINY_FACES, tmp_path / "cache")
    people = generate_new_people(TINY_FACES, tmp_path / "new", train_per_group=3, held_out_per_group=2,
                                 images_per_subject=3)
    old, new = pd.read_csv(dataset), pd.read_csv(people)
    assert set(old["subject"]).isdisjoint(new["subject"])
    persons = new.drop_duplicates("subject")
    assert persons.groupby(["split", "gender", "skin_tone"]).size().to_dict() == {
        (split, gender, tone): count for split, count in (("test", 2), ("train", 3))
        for gender in ("female", "male") for tone in ("darker", "lighter")}
    old_images, new_images = _pixels(dataset.parent, old), _pixels(people.parent, new)
    assert _digests(old_images).isdisjoint(_digests(new_images)), "a new image repeats one of the dataset's"
    # not the same person drawn again: every new face is far from every face of the dataset
    closest = min(np.abs(a - b).mean() for a in new_images.values() for b in old_images.values())
    assert closest > 5.0, f"a new image is {closest:.2f} grey levels (mean |difference|) from one of the dataset's"
    assert synthetic_config_of(dataset) == TINY_FACES
    assert new.groupby("subject").size().eq(3).all()  # images per person: the set's own, not the dataset's 2


def test_new_people_reject_bad_counts_and_a_full_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"generate_new_people: train_per_group must be an int in \[1, 10000\], got 0"):
        generate_new_people(TINY_FACES, tmp_path / "a", train_per_group=0, held_out_per_group=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="output folder for synthetic faces is not empty"):
        generate_new_people(TINY_FACES, tmp_path / "full", train_per_group=1, held_out_per_group=1)
    with pytest.raises(ValueError, match="not the config.json of generated synthetic faces"):
        synthetic_config_of(tmp_path / "full" / "manifest.csv")


def _faces_datamodule(tmp_path: Path) -> FacesDataModule:
    manifest = load_manifest(ensure_synthetic_faces(TINY_FACES, tmp_path / "cache"), attributes=["gender", "skin_tone"])
    return FacesDataModule(manifest, image_size=16, batch_size=8, cache_mb=0)


def test_the_classifier_of_synthetic_faces_learns_from_new_people_and_is_checked_on_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "CLASSIFIER_TRAIN_PEOPLE", 2)
    monkeypatch.setattr(training, "CLASSIFIER_HELD_OUT_PEOPLE", 1)
    monkeypatch.setattr(training, "CLASSIFIER_IMAGES_PER_PERSON", 3)
    datamodule = _faces_datamodule(tmp_path)
    config = RunConfig(dataset="faces", image_size=16, cache_dir=str(tmp_path / "cache"), cache_mb=0)
    data = training.classifier_data(config, datamodule)
    learned = data.loader.dataset.manifest.frame.iloc[data.loader.dataset.rows]
    (people, split), = data.held_out
    checked = people.split_frame(split)
    audited = set(datamodule.manifest.frame["subject"])  # training people, validation and audit panels
    assert set(learned["subject"]).isdisjoint(audited) and set(checked["subject"]).isdisjoint(audited)
    assert set(learned["subject"]).isdisjoint(checked["subject"])
    assert learned.drop_duplicates("subject").groupby(["gender", "skin_tone"]).size().tolist() == [2, 2, 2, 2]
    assert "8 new generated people (2 per group, 3 images each" in data.note
    assert "4 more new people it never saw" in data.note
    assert learned.groupby("subject").size().eq(3).all() and checked.groupby("subject").size().eq(3).all()

    classifier = training.train_classifier(dataclasses.replace(config, classifier_epochs=1), datamodule, tmp_path,
                                           data=data)
    labels = training.held_out_labels(classifier, data, datamodule.attribute_classes)
    assert len(labels) == len(checked) and list(labels["subject"]) == list(checked["subject"])
    assert set(labels["classified_gender"]) <= {"female", "male"}
    assert (tmp_path / "classifier.ckpt").is_file()


def _skewed_manifest(tmp_path: Path) -> Path:
    """Training people 20 / 3 / 6 / 1 (x 5 photos) as Faces95 is skewed; one person a group in val and test."""
    rows = []
    plan = {("male", "lighter"): 20, ("female", "lighter"): 3, ("male", "darker"): 6, ("female", "darker"): 1}
    (tmp_path / "img").mkdir()
    image = Image.new("RGB", (8, 8), (120, 90, 60))
    for split in ("train", "val", "test"):
        for (gender, tone), count in plan.items():
            for person in range(count if split == "train" else 1):
                subject = f"{split}-{gender}-{tone}-{person}"
                for photo in range(5):
                    path = f"img/{subject}-{photo}.png"
                    image.save(tmp_path / path)
                    rows.append({"path": path, "subject": subject, "split": split, "gender": gender,
                                 "skin_tone": tone})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def test_the_balanced_loader_draws_every_group_about_equally_often(tmp_path: Path) -> None:
    manifest = load_manifest(_skewed_manifest(tmp_path), attributes=["gender", "skin_tone"])
    datamodule = FacesDataModule(manifest, image_size=8, batch_size=16, cache_mb=0)
    groups = datamodule.group_codes("train")
    loader = training.balanced_loader(datamodule, "train", seed=3)
    codes = np.concatenate([(batch["labels"][:, 0] * 2 + batch["labels"][:, 1]).numpy() for batch in loader])
    drawn = np.bincount(codes, minlength=4)  # one epoch's groups, read from the drawn images' labels
    n, share = len(groups), 0.25
    bound = 4 * math.sqrt(n * share * (1 - share))  # 4 binomial sd: fails by chance about once in 16,000
    assert drawn.sum() == n == 150
    assert np.all(np.abs(drawn - n * share) < bound), f"drawn {drawn.tolist()}, expected {n * share} +- {bound:.1f}"
    as_given = np.bincount(groups, minlength=4)  # what one epoch of the training split shows without it
    assert np.any(np.abs(as_given - n * share) >= bound), "the skewed split itself would pass: the test cannot fail"
    assert np.array_equal(as_given, [5, 15, 30, 100])  # female/darker, female/lighter, male/darker, male/lighter


def test_a_manifest_classifier_trains_balanced_on_the_training_split_and_is_checked_on_val_and_test(
    tmp_path: Path,
) -> None:
    manifest_path = _skewed_manifest(tmp_path)
    manifest = load_manifest(manifest_path, attributes=["gender", "skin_tone"])
    datamodule = FacesDataModule(manifest, image_size=8, batch_size=16, cache_mb=0)
    data = training.classifier_data(RunConfig(manifest=str(manifest_path), image_size=8), datamodule)
    assert [split for _, split in data.held_out] == ["val", "test"]
    assert isinstance(data.loader.sampler, training.WeightedRandomSampler)
    assert "the 30 training people, every intersectional group drawn equally often" in data.note
    frame = pd.read_csv(manifest_path)
    frame[frame["split"] != "val"].to_csv(tmp_path / "no-val.csv", index=False)
    no_val = FacesDataModule(load_manifest(tmp_path / "no-val.csv", attributes=["gender", "skin_tone"]), image_size=8,
                             cache_mb=0)
    data = training.classifier_data(RunConfig(manifest=str(tmp_path / "no-val.csv"), image_size=8), no_val)
    assert [split for _, split in data.held_out] == ["test"] and "originals of the test split (" in data.note
    with pytest.raises(ValueError, match="the val split has no rows to train the attribute classifier on"):
        training.balanced_loader(no_val, "val")
