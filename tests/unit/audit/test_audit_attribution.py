"""Attribution effects: a planted representation effect is found, none planted is covered, seeds are a noise floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genfair.audit.attribution import EFFECT_COLUMNS, attribution_effects, attribution_summary, excess_cuts

ATTRS = ["gender", "skin_tone"]
FAST = {"n_resamples": 300}


def cells(representation: float, *, mitigation: float = 0.0, seeds: int = 3, seed_noise: float = 0.0002,
          models: tuple[str, ...] = ("cnn",)) -> pd.DataFrame:
    """Every cell's per-image errors on one panel (4 groups x 6 people x 4 photos).

    Darker-skinned women get ``+representation`` error when trained on the as-given mix, and a
    mitigation (group-dro) removes the fraction ``mitigation`` of it while costing the
    majority ``0.0005``.
    """
    rng = np.random.default_rng(0)
    panel = []
    for gender in ("female", "male"):
        for tone in ("darker", "lighter"):
            for person in range(6):
                effect = rng.normal(0, 0.002)
                panel += [(f"{gender}-{tone}-{person}-{k}.png", f"{gender}-{tone}-{person}", gender, tone,
                           0.02 + effect + rng.normal(0, 0.001)) for k in range(4)]
    base = pd.DataFrame(panel, columns=["path", "subject", *ATTRS, "clean"])
    minority = (base["gender"] == "female") & (base["skin_tone"] == "darker")
    majority = (base["gender"] == "male") & (base["skin_tone"] == "lighter")
    frames = []
    for model in models:
        for composition in ("as-given", "balanced"):
            for objective in ("erm", "group-dro"):
                for seed in range(seeds):
                    # retraining moves every image a little, and the whole cell a little
                    error = base["clean"] + rng.normal(0, seed_noise, len(base)) + rng.normal(0, seed_noise)
                    if composition == "as-given":
                        kept = 1 - mitigation if objective == "group-dro" else 1.0
                        error = error + minority * representation * kept
                    if objective == "group-dro":
                        error = error + majority * 0.0005
                    frames.append(base.drop(columns="clean").assign(model=model, composition=composition,
                                                                    objective=objective, seed=seed,
                                                                    mse_error=error.to_numpy()))
    return pd.concat(frames, ignore_index=True)


def effect(table: pd.DataFrame, name: str, group: str) -> pd.Series:
    rows = table[(table["effect"] == name) & (table["group"] == group)]
    return rows.iloc[0]


def test_a_planted_representation_effect_is_found_with_an_interval_excluding_zero():
    table = attribution_effects(cells(0.006), attributes=ATTRS, **FAST)
    assert list(table.columns) == list(EFFECT_COLUMNS)
    row = effect(table, "representation", "female / darker")
    assert row["estimate"] == pytest.approx(0.006, abs=1e-3) and row["ci_low"] > 0
    assert not row["within_seed_noise"] and row["n_seeds"] == 3
    other = effect(table, "representation", "male / lighter")
    assert other["ci_low"] <= 0 <= other["ci_high"]


def test_no_planted_effect_gives_intervals_that_cover_zero():
    table = attribution_effects(cells(0.0), attributes=ATTRS, **FAST)
    representation = table[(table["effect"] == "representation") & (table["evidence"] == "sufficient")]
    covered = (representation["ci_low"] <= 0) & (representation["ci_high"] >= 0)
    assert covered.mean() >= 0.85  # 9 groups; an occasional miss is what 95% means


def test_an_effect_smaller_than_retraining_noise_is_reported_as_such():
    table = attribution_effects(cells(0.0003, seed_noise=0.004), attributes=ATTRS, **FAST)
    assert effect(table, "representation", "female / darker")["within_seed_noise"]


def test_the_objective_effect_and_its_cost_for_the_majority():
    table = attribution_effects(cells(0.006, mitigation=0.5), attributes=ATTRS, **FAST)
    assert effect(table, "objective", "female / darker")["estimate"] == pytest.approx(0.003, abs=1e-3)
    assert effect(table, "objective", "male / lighter")["estimate"] == pytest.approx(-0.0005, abs=3e-4)
    cuts = excess_cuts(cells(0.006, mitigation=0.5), attributes=ATTRS, reference="male / lighter", **FAST)
    dro = cuts[(cuts["objective"] == "group-dro") & (cuts["composition"] == "as-given")].set_index("group")
    assert 0.3 < dro.loc["female / darker", "cut"] < 0.8
    assert dro.loc["female / darker", "cut_ci_low"] > 0
    assert dro.loc["female / darker", "quality_cost"] == pytest.approx(0.0005, abs=3e-4)
    balanced = cuts[(cuts["composition"] == "balanced") & (cuts["objective"] == "erm")].set_index("group")
    assert balanced.loc["female / darker", "cut"] > 0.8, "balanced data removes the planted excess"


def test_a_second_model_gets_a_model_effect():
    table = attribution_effects(cells(0.006, models=("cnn", "vae")), attributes=ATTRS, **FAST)
    model = table[table["effect"] == "model"]
    assert set(model["model"]) == {"vae"} and (model["contrast"] == "vae - cnn (as-given, erm)").all()


def test_cells_that_score_different_images_are_refused():
    frame = cells(0.0)
    frame = frame.drop(frame.index[(frame["seed"] == 1) & (frame["path"] == frame["path"].iloc[0])])
    with pytest.raises(ValueError, match="every cell must score the same images"):
        attribution_effects(frame, attributes=ATTRS, **FAST)


def test_the_summary_names_the_group_the_levers_and_the_cost():
    frame = cells(0.006, mitigation=0.5)
    effects = attribution_effects(frame, attributes=ATTRS, **FAST)
    cuts = excess_cuts(frame, attributes=ATTRS, reference="male / lighter", **FAST)
    text = attribution_summary(effects, cuts, reference="male / lighter")
    assert text.startswith("cnn: **female / darker** has the largest excess error over male / lighter")
    assert "Retraining on balanced data cuts it by" in text and "Group-dro on as-given data cuts it by" in text
    assert "male / lighter's error changes by" in text
    assert "Balanced data may remove all of it" in text


def test_the_summary_says_when_there_is_no_excess_to_attribute():
    frame = cells(0.0)
    effects = attribution_effects(frame, attributes=ATTRS, **FAST)
    cuts = excess_cuts(frame, attributes=ATTRS, reference="male / lighter", **FAST)
    assert {"excess_before_ci_low", "excess_before_ci_high"} <= set(cuts.columns)
    text = attribution_summary(effects, cuts, reference="male / lighter")
    assert "not told apart from no excess at this sample size" in text
    assert "explain" not in text, "no excess: nothing for representation to explain"
