"""The balanced counterfactual of the synthetic faces keeps the audit panel and moves only the training mix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from genfair import datasets


def test_balanced_faces_change_the_training_mix_and_keep_the_panel(tmp_path: Path) -> None:
    given = datasets.get("faces")(cache_dir=tmp_path, image_size=16, seed=0)
    balanced = datasets.get("faces")(cache_dir=tmp_path, image_size=16, seed=0, composition="balanced")
    assert (given.composition, balanced.composition) == ("as-given", "balanced")
    frames = [pd.read_csv(spec.manifest_path) for spec in (given, balanced)]
    people = [f[f["split"] == "train"].drop_duplicates("subject").groupby(["gender", "skin_tone"]).size().to_dict()
              for f in frames]
    assert people[0] == {("female", "darker"): 1, ("female", "lighter"): 6, ("male", "darker"): 12,
                         ("male", "lighter"): 43}
    assert people[1] == {("female", "darker"): 16, ("female", "lighter"): 16, ("male", "darker"): 15,
                         ("male", "lighter"): 15}
    assert sum(people[0].values()) == sum(people[1].values()), "the same number of training people"
    panels = [f[f["split"].isin(["val", "test"])].reset_index(drop=True) for f in frames]
    pd.testing.assert_frame_equal(panels[0], panels[1])
    digest = lambda spec, path: hashlib.sha256((spec.manifest_path.parent / path).read_bytes()).hexdigest()  # noqa: E731
    assert all(digest(given, p) == digest(balanced, p) for p in panels[0]["path"][:60]), "the same images"


def test_unknown_compositions_are_refused(tmp_path: Path) -> None:
    for name in ("faces", "digits"):
        with pytest.raises(ValueError, match="composition must be one of"):
            datasets.get(name)(cache_dir=tmp_path, image_size=16, seed=0, composition="fair")
