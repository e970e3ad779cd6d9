"""Tests of genfair.audit.run.generative: the samples audit and the per-group likelihood, on known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genfair.audit.run.generative import LIKELIHOOD_METRIC, can_sample, likelihood_tables, sample_tables

GROUPS = ["female / darker", "female / lighter", "male / darker", "male / lighter"]


def _image(group: int, n: int = 1) -> torch.Tensor:
    """(n, 3, 8, 8) images whose red channel encodes the group: 0.1, 0.35, 0.6, 0.85."""
    images = torch.zeros(n, 3, 8, 8)
    images[:, 0] = 0.1 + 0.25 * group
    return images


def _read(images: torch.Tensor) -> pd.DataFrame:
    """A perfect instrument: the group from the red channel."""
    groups = ((images[:, 0].mean(dim=(1, 2)) - 0.1) / 0.25).round().long().tolist()
    return pd.DataFrame({"gender": [GROUPS[g].split(" / ")[0] for g in groups],
                         "skin_tone": [GROUPS[g].split(" / ")[1] for g in groups]})


class _OneGroupGenerator:
    """A generator that only ever produces people of one group."""

    def __init__(self, group: int) -> None:
        self.group = group

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return _image(self.group, n)


def _frame(counts: dict[int, int], images: int = 2) -> pd.DataFrame:
    rows = [{"subject": f"p{g}-{i}", "gender": GROUPS[g].split(" / ")[0], "skin_tone": GROUPS[g].split(" / ")[1],
             "path": f"p{g}-{i}-{k}.png", "group": g}
            for g, n in counts.items() for i in range(n) for k in range(images)]
    return pd.DataFrame(rows)


def test_a_generator_of_one_group_is_reported_as_that_group_only() -> None:
    training = _frame({0: 1, 1: 6, 2: 12, 3: 43})
    held_out = _frame({g: 5 for g in range(4)})
    held_out = pd.concat([held_out, _read(torch.cat([_image(g) for g in held_out["group"]])).add_prefix("classified_")],
                         axis=1)
    tables, shown = sample_tables(_OneGroupGenerator(0), _read, n=300, attributes=["gender", "skin_tone"],
                                  training=training, panel=held_out, held_out=held_out, seed=0, min_accuracy=0.8)
    composition = tables["sample_composition"].set_index(["grouping", "group"])
    row = composition.loc[("gender x skin_tone", "female / darker")]
    assert row["n_samples"] == 300 and row["sample_share"] == 1.0 and row["corrected_share"] == pytest.approx(1.0)
    assert composition.loc[("gender", "female"), "sample_share"] == 1.0
    assert composition.loc[("gender x skin_tone", "female / darker"), "training_share"] == pytest.approx(1 / 62)
    amplification = tables["sample_amplification"].set_index("grouping")
    assert amplification.loc["gender x skin_tone", "majority_amplification"] == pytest.approx(-43 / 62, abs=1e-6)
    assert shown.shape == (32, 3, 8, 8)
    assert can_sample(_OneGroupGenerator(0)) and not can_sample(torch.nn.Identity())


class _Data:
    """The three methods of FacesDataModule that likelihood_tables reads, over an in-memory test split."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.set_index(np.arange(100, 100 + len(frame)))

    def split_rows(self, split: str) -> np.ndarray:
        return self.frame.index.to_numpy()

    def split_frame(self, split: str) -> pd.DataFrame:
        return self.frame

    def load_image(self, row: int) -> torch.Tensor:
        return _image(int(self.frame.at[row, "group"]))[0]


class _RedLikelihood(torch.nn.Module):
    """bits per dimension = 1 + the red channel's mean: known per group."""

    def bits_per_dim(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 + images[:, 0].mean(dim=(1, 2))


def test_likelihood_per_group_equals_the_known_values() -> None:
    panel = _frame({g: 5 for g in range(4)})
    tables = likelihood_tables(_RedLikelihood(), _Data(panel), attributes=["gender", "skin_tone"], seed=0)
    by_group = tables["likelihood"].set_index(["grouping", "group"])
    for g, name in enumerate(GROUPS):
        assert by_group.loc[("gender x skin_tone", name), "estimate"] == pytest.approx(1.1 + 0.25 * g, abs=1e-6)
    assert tables["likelihood_per_image"][LIKELIHOOD_METRIC].shape == (40,)
    gap = tables["likelihood_disparities"].set_index("grouping").loc["gender x skin_tone"]
    assert gap["worst_group"] == "male / lighter" and gap["difference"] == pytest.approx(0.75, abs=1e-6)
