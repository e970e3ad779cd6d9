"""Tests of genfair.audit.samples: the composition of a generator's samples, corrected, and bias amplification."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.samples import sample_composition

FACES95 = {("male", "lighter"): 43, ("female", "lighter"): 6, ("male", "darker"): 12, ("female", "darker"): 1}


def _people(counts: dict[tuple[str, str], int], images: int = 2) -> pd.DataFrame:
    rows = [{"subject": f"{g}-{s}-{i}", "gender": g, "skin_tone": s}
            for (g, s), n in counts.items() for i in range(n) for _ in range(images)]
    return pd.DataFrame(rows)


def _perfect_held_out() -> pd.DataFrame:
    frame = _people({key: 5 for key in FACES95})
    return frame.assign(classified_gender=frame["gender"], classified_skin_tone=frame["skin_tone"])


def _row(table: pd.DataFrame, grouping: str, group: str) -> pd.Series:
    return table[(table["grouping"] == grouping) & (table["group"] == group)].iloc[0]


def test_a_generator_of_one_group_has_that_groups_share_one() -> None:
    samples = pd.DataFrame({"gender": ["female"] * 50, "skin_tone": ["darker"] * 50})
    composition, amplification = sample_composition(
        samples, attributes=["gender", "skin_tone"], training=_people(FACES95), panel=_people({k: 5 for k in FACES95}),
        held_out=_perfect_held_out(), n_resamples=50)
    row = _row(composition, "gender x skin_tone", "female / darker")
    assert (row["sample_share"], row["sample_ci_low"], row["sample_ci_high"]) == (1.0, 1.0, 1.0)
    assert row["corrected_share"] == pytest.approx(1.0) and row["corrected_ci_low"] == pytest.approx(1.0)
    assert row["training_share"] == pytest.approx(1 / 62) and row["panel_share"] == pytest.approx(0.25)
    assert _row(composition, "gender x skin_tone", "male / lighter")["sample_share"] == 0.0
    top = amplification.set_index("grouping").loc["gender x skin_tone"]
    assert top["majority_group"] == "male / lighter" and top["basis"] == "corrected"
    assert top["majority_amplification"] == pytest.approx(-43 / 62, abs=1e-6)


def test_amplification_by_hand() -> None:
    # training 43/6/12/1 people (2 images each); samples 50 / 2 / 8 / 0 of 60
    samples = pd.DataFrame([{"gender": g, "skin_tone": s} for (g, s), n in
                            {("male", "lighter"): 50, ("female", "lighter"): 2, ("male", "darker"): 8}.items()
                            for _ in range(n)])
    composition, amplification = sample_composition(samples, attributes=["gender", "skin_tone"],
                                                    training=_people(FACES95), panel=_people(FACES95), n_resamples=200)
    train = np.array([1, 6, 12, 43]) / 62   # female/darker, female/lighter, male/darker, male/lighter
    got = np.array([0, 2, 8, 50]) / 60
    over = train > 0.25                     # only male / lighter is over-represented
    directional = np.mean(np.where(over, got - train, train - got))
    top = amplification.set_index("grouping").loc["gender x skin_tone"]
    assert top["basis"] == "raw"  # no held-out labels: nothing to correct with
    assert top["majority_amplification"] == pytest.approx(50 / 60 - 43 / 62)
    assert top["directional_amplification"] == pytest.approx(directional)
    assert top["directional_amplification_ci_low"] <= directional <= top["directional_amplification_ci_high"]
    gender = amplification.set_index("grouping").loc["gender"]
    assert gender["majority_group"] == "male" and gender["majority_amplification"] == pytest.approx(58 / 60 - 55 / 62)
    assert composition["corrected_share"].isna().all()


def test_correction_takes_the_classifiers_errors_out() -> None:
    held_out = _people({("f", "x"): 4, ("m", "x"): 4}, images=1)
    # the classifier calls one of four women a man
    held_out = held_out.assign(classified_gender=["f", "f", "f", "m", "m", "m", "m", "m"], classified_skin_tone="x")
    # truly 400 women and 400 men: it reads 300 women and 500 men
    samples = pd.DataFrame({"gender": ["f"] * 300 + ["m"] * 500, "skin_tone": "x"})
    training = _people({("f", "x"): 1, ("m", "x"): 3}, images=1)
    composition, _ = sample_composition(samples, attributes=["gender"], training=training, panel=training,
                                        held_out=held_out, n_resamples=100, min_accuracy=0.7)
    women = _row(composition, "gender", "f")
    assert women["sample_share"] == pytest.approx(300 / 800)
    assert women["corrected_share"] == pytest.approx(0.5, abs=1e-6)  # C^T q = p with C = [[.75, .25], [0, 1]]
    assert women["corrected_ci_low"] <= 0.5 <= women["corrected_ci_high"]


def test_an_unreliable_classifier_withholds_the_correction() -> None:
    held_out = _people({("f", "x"): 4, ("m", "x"): 4}, images=1)
    held_out = held_out.assign(classified_gender=["f", "m", "m", "m", "m", "m", "m", "m"], classified_skin_tone="x")
    samples = pd.DataFrame({"gender": ["f", "m"], "skin_tone": "x"})
    composition, amplification = sample_composition(samples, attributes=["gender"], training=held_out,
                                                    panel=held_out, held_out=held_out, n_resamples=20)
    assert composition["corrected_share"].isna().all()
    assert amplification["basis"].tolist() == ["raw"]


def test_rejects_bad_input() -> None:
    frame = pd.DataFrame({"gender": ["f"]})
    with pytest.raises(ValueError, match=r"sample_labels has no rows: draw at least one sample \(--samples N"):
        sample_composition(frame.iloc[:0], attributes=["gender"], training=frame, panel=frame)
    with pytest.raises(ValueError, match=r"training lacks the attribute column\(s\) \['gender'\]"):
        sample_composition(frame, attributes=["gender"], training=pd.DataFrame({"x": [1]}), panel=frame)
    with pytest.raises(ValueError, match=r"n_resamples must be an int >= 1, got 0"):
        sample_composition(frame, attributes=["gender"], training=frame, panel=frame, n_resamples=0)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1.5"):
        sample_composition(frame, attributes=["gender"], training=frame, panel=frame, level=1.5)


def test_a_balanced_training_set_has_no_majority_to_amplify() -> None:
    training = pd.DataFrame({"skin_tone": ["darker", "lighter"] * 10})
    samples = pd.DataFrame({"skin_tone": ["darker"] * 99 + ["lighter"]})  # a collapsed generator
    composition, amplification = sample_composition(samples, attributes=["skin_tone"], training=training,
                                                    panel=training, n_resamples=20)
    row = amplification.iloc[0]
    assert row["majority_group"] == "" and np.isnan(row["majority_amplification"])
    assert row["directional_amplification"] == pytest.approx(0.0)  # degenerate on a balanced set, as documented
    assert _row(composition, "skin_tone", "darker")["sample_share"] == pytest.approx(0.99)
