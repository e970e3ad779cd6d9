"""The run's cosmology scorer: environment maps read per manifest row, the tables it adds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from genfair import datasets
from genfair.audit.run.cosmology import cosmology_scorer


@pytest.fixture
def manifest(tmp_path):
    spec = datasets.get("cosmo")(cache_dir=tmp_path, image_size=8, seed=0)
    return datasets.load_manifest(spec.manifest_path, attributes=spec.attributes)


def test_scorer_reads_each_rows_map_and_scores_by_environment(manifest) -> None:
    scorer = cosmology_scorer(manifest, scale=2)
    rows = [0, 5]
    images = torch.stack([datasets.load_image(manifest.image_path(r), image_size=8, channels=1) for r in rows])
    maps = scorer.environment_maps(rows)
    for position, row in enumerate(rows):  # the PNG as written, read independently
        expected = np.asarray(Image.open(manifest.root / manifest.frame["environment_path"].iat[row]))
        assert (maps[position].numpy() == expected).all()
    scores = scorer.score({"image": images, "output": images, "index": torch.tensor(rows)})
    assert scores["cosmo_sse_void"].tolist() == [0.0, 0.0]  # output == target
    assert (scores["cosmo_pixels_void"] + scores["cosmo_pixels_filament"] + scores["cosmo_pixels_knot"] == 64).all()


def test_scorer_refuses_images_of_another_size(manifest) -> None:
    scorer = cosmology_scorer(manifest, scale=2)
    batch = {"image": torch.zeros(1, 1, 16, 16), "output": torch.zeros(1, 1, 16, 16), "index": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"--image-size 16: the environment maps are 8x8; fix: pass --image-size 8"):
        scorer.score(batch)


def test_no_scorer_without_environment_maps(manifest) -> None:
    plain = dataclasses.replace(manifest, frame=manifest.frame.drop(columns=["environment_path"]))
    assert cosmology_scorer(plain, scale=2) is None
