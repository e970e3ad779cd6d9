"""Manifests as users have them: train and test but no val (validation is carved from the training
people), and images that are not square (--fit crop, pad or stretch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genfair.datasets import FITS, FacesDataModule, load_image, load_manifest, load_mask


def split_rows(train: int, test: int, *, val: int = 0, images: int = 2):
    """``train + val + test`` people, alternately female and male, with their split."""
    people = [("train", i) for i in range(train)] + [("val", train + i) for i in range(val)] + \
             [("test", train + val + i) for i in range(test)]
    return [
        {"path": f"img/s{i}_{n}.png", "subject": f"s{i}", "gender": "female" if i % 2 else "male", "split": split}
        for split, i in people for n in range(images)
    ]


def test_validation_is_carved_from_the_training_people_when_the_manifest_has_none(make_manifest):
    manifest = load_manifest(make_manifest(split_rows(train=20, test=4)))
    module = FacesDataModule(manifest, image_size=8, require_val=True, seed=3)
    val, train = module.split_frame("val"), module.split_frame("train")
    assert val["subject"].nunique() == 2  # 10% of 20 people
    assert set(val["subject"]).isdisjoint(train["subject"])
    assert set(val["subject"]) | set(train["subject"]) == {f"s{i}" for i in range(20)}
    assert sorted(val["gender"].unique()) == ["female", "male"]  # stratified
    assert module.split_frame("test")["subject"].tolist() == manifest.frame.loc[
        manifest.frame["split"] == "test", "subject"].tolist()  # test untouched
    assert module.notes == ["the manifest has no validation rows: 4 image(s) of 2 of its 20 training subjects "
                            "(seeded, stratified, subject-disjoint) validate the training instead"]
    again = FacesDataModule(manifest, image_size=8, require_val=True, seed=3)
    other = FacesDataModule(manifest, image_size=8, require_val=True, seed=4)
    assert again.split_frame("val")["subject"].tolist() == val["subject"].tolist()
    assert {tuple(FacesDataModule(manifest, image_size=8, require_val=True, seed=s).split_frame("val")["subject"])
            for s in range(6)} != {tuple(other.split_frame("val")["subject"])}  # the seed chooses


def test_a_given_val_split_and_runs_without_training_are_left_alone(make_manifest):
    with_val = load_manifest(make_manifest(split_rows(train=6, val=2, test=2), name="with_val"))
    module = FacesDataModule(with_val, image_size=8, require_val=True)
    assert module.split_frame("val")["subject"].nunique() == 2 and module.notes == []
    without = load_manifest(make_manifest(split_rows(train=6, test=2), name="without"))
    assert len(FacesDataModule(without, image_size=8).split_rows("val")) == 0  # nothing trains: no carving


def test_one_training_person_cannot_be_split_and_says_how_to_fix_it(make_manifest):
    manifest = load_manifest(make_manifest(split_rows(train=1, test=2)))
    with pytest.raises(ValueError, match=r"split is empty: no row of its split column is 'val' and its 1 training "
                                         r"subject\(s\) cannot be split into training and validation; fix: assign"):
        FacesDataModule(manifest, image_size=8, require_val=True)


def test_only_test_rows_are_accepted_when_nothing_trains(make_manifest):
    manifest = load_manifest(make_manifest(split_rows(train=0, test=4)))
    module = FacesDataModule(manifest, image_size=8, require_train=False)
    assert len(module.split_rows("train")) == 0 and module.split_frame("test")["subject"].nunique() == 4
    with pytest.raises(ValueError, match="the train split is empty"):
        FacesDataModule(manifest, image_size=8)


# -- --fit ------------------------------------------------------------------------------------
def striped(path, size=(12, 6)):
    """A wide image: columns 0-2 red, 3-8 green, 9-11 blue (so the centred square is all green)."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, :3, 0] = 255
    pixels[:, 3:9, 1] = 255
    pixels[:, 9:, 2] = 255
    Image.fromarray(pixels).save(path)
    return path


def test_crop_keeps_the_centred_square(tmp_path):
    image = load_image(striped(tmp_path / "wide.png"), image_size=6, fit="crop")
    assert image.shape == (3, 6, 6)
    assert torch.equal(image[1], torch.ones(6, 6)) and image[0].sum() == 0 and image[2].sum() == 0


def test_pad_keeps_everything_on_black_borders(tmp_path):
    image = load_image(striped(tmp_path / "wide.png"), image_size=12, fit="pad")
    assert image.shape == (3, 12, 12)
    assert image[:, :3].sum() == 0 and image[:, 9:].sum() == 0  # 3 black rows above and below
    assert torch.equal(image[0, 3:9, :3], torch.ones(6, 3)) and torch.equal(image[2, 3:9, 9:], torch.ones(6, 3))


def test_stretch_squeezes_the_whole_image(tmp_path):
    image = load_image(striped(tmp_path / "wide.png"), image_size=6, fit="stretch")
    expected = Image.open(tmp_path / "wide.png").convert("RGB").resize((6, 6), Image.Resampling.BOX)
    assert torch.allclose(image, torch.from_numpy(np.array(expected)).permute(2, 0, 1).float() / 255)
    assert image[0, :, 0].min() > 0.5 and image[2, :, -1].min() > 0.5  # red and blue edges still there


@pytest.mark.parametrize("fit", FITS)
def test_masks_follow_their_images(tmp_path, fit):
    pixels = np.zeros((6, 12), dtype=np.uint8)
    pixels[:, 3:9] = 255  # the mask covers exactly the green band
    Image.fromarray(pixels, mode="L").save(tmp_path / "mask.png")
    mask = load_mask(tmp_path / "mask.png", image_size=12, fit=fit)[0]
    image = load_image(striped(tmp_path / "wide.png"), image_size=12, fit=fit)
    green = (image[1] > 0.5) & (image[0] < 0.5) & (image[2] < 0.5)
    if fit == "stretch":  # resampled edges blur: compare away from them
        assert torch.equal(mask[:, 7:11], green[:, 7:11])
    else:
        assert torch.equal(mask.bool(), green)


def test_square_images_are_the_same_under_every_fit(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "sq.png")
    images = [load_image(tmp_path / "sq.png", image_size=5, fit=fit) for fit in FITS]
    assert all(torch.equal(images[0], other) for other in images[1:])


def test_a_bad_fit_names_the_option(tmp_path):
    with pytest.raises(ValueError, match=r"fit must be one of crop, pad, stretch \(--fit\), got 'zoom'"):
        load_image(striped(tmp_path / "wide.png"), image_size=6, fit="zoom")
