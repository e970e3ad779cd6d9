"""The comparison table, the priorities, and the recommendation's honesty about uncertainty."""

from __future__ import annotations

import pytest

from genfair.audit.ranking import COMPARISON_COLUMNS, comparison_table, parse_priority, rank_models, recommendation


def test_the_table_reads_every_number_from_each_models_own_tables(make_audit):
    fair, harmed = make_audit(1.0), make_audit(2.0)
    table = comparison_table({"fair": fair, "harmed": harmed}, run_ids={"fair": "r1", "harmed": "r2"})
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    row = table.set_index("model").loc["harmed"]
    disparity = harmed.tables["disparity_intervals"]
    expected = disparity[(disparity["grouping"] == "gender x skin_tone") & (disparity["metric"] == "mse_error")].iloc[0]
    assert row["worst_group"] == "female / darker" == expected["worst_group"]
    assert row["ratio"] == expected["ratio"] and row["ratio_ci_low"] == expected["ratio_ci_low"]
    assert row["error"] == pytest.approx(harmed.per_image["mse_error"].mean())
    assert row["run_id"] == "r2" and row["task"] == "reconstruction" and row["images_per_second"] == 1000.0
    assert row["ita_worst_group"] in {"female / darker", "female / lighter", "male / darker", "male / lighter"}


@pytest.mark.parametrize(("priority", "first"), [("fidelity", "fair"), ("fairness", "fair"), ("speed", "fast")])
def test_priorities_order_the_models(make_audit, priority, first):
    results = {"fair": make_audit(1.0), "fast": make_audit(2.0, speed=5000.0)}
    ranked = rank_models(comparison_table(results), parse_priority(priority))
    assert ranked["model"].iloc[0] == first


def test_weights_trade_criteria_off(make_audit):
    results = {"fair": make_audit(1.0), "fast": make_audit(2.0, speed=5000.0)}
    table = comparison_table(results)
    assert rank_models(table, parse_priority("speed=3,fidelity=1"))["model"].iloc[0] == "fast"
    assert rank_models(table, parse_priority("speed=1,fidelity=1,fairness=1"))["model"].iloc[0] == "fair"


@pytest.mark.parametrize("bad", ["", "beauty", "fairness=0", "fairness=-1", "speed=fast"])
def test_bad_priorities_are_refused(bad):
    with pytest.raises(ValueError, match="--priority must be fidelity, fairness, speed"):
        parse_priority(bad)


def test_the_recommendation_says_when_two_models_cannot_be_told_apart(make_audit):
    twins = {"a": make_audit(1.0, seed=1), "b": make_audit(1.0, seed=1)}
    ranked = rank_models(comparison_table(twins), {"fairness": 1.0})
    text = recommendation(ranked, twins, {"fairness": 1.0}, n_resamples=200, n_permutations=199)
    assert "indistinguishable on fairness at this sample size" in text
    assert "overall error is indistinguishable" in text
    assert "6 people in the smallest group" in text


def test_the_recommendation_names_a_clear_winner_with_its_interval(make_audit):
    results = {"harmed": make_audit(3.0), "fair": make_audit(1.0)}
    ranked = rank_models(comparison_table(results), {"fairness": 1.0})
    text = recommendation(ranked, results, {"fairness": 1.0}, n_resamples=200, n_permutations=199)
    assert text.startswith("Ranked by fairness, **fair** (reconstruction) comes first")
    assert "it is fairer" in text and "lower than **harmed**'s" in text


def _as_task(result, *, scale=None, task=None):
    import dataclasses

    metadata = {**result.metadata, "model_config": {**result.metadata.get("model_config", {}),
                                                    **({"scale": scale} if scale else {})}}
    if task is not None:
        metadata["task"] = task
    return dataclasses.replace(result, metadata=metadata)


def test_models_are_ranked_within_their_task_only(make_audit):
    # pca reconstructs far better than bicubic upsamples; they must never be ranked against each other
    results = {"bicubic": _as_task(make_audit(3.0), scale=4), "pca": make_audit(1.0), "vae": make_audit(2.0),
               "sr": _as_task(make_audit(2.5), scale=4), "sr8": _as_task(make_audit(0.5), scale=8),
               "gan": _as_task(make_audit(4.0), task="generation")}
    ranked = rank_models(comparison_table(results), parse_priority("fidelity"))
    by_model = ranked.set_index("model")
    assert by_model.loc["bicubic", "task"] == "upsampling x4" and by_model.loc["gan", "task"] == "generation"
    assert by_model["rank"].to_dict() == {"bicubic": 2, "pca": 1, "vae": 2, "sr": 1, "sr8": 1, "gan": 1}
    assert ranked["task"].tolist() == ["upsampling x4", "upsampling x4", "reconstruction", "reconstruction",
                                       "upsampling x8", "generation"]
    text = recommendation(ranked, results, parse_priority("fidelity"), n_resamples=50, n_permutations=50)
    paragraphs = text.split("\n\n")
    assert len(paragraphs) == 5 and "**sr** (upsampling x4) comes first" in paragraphs[0]
    assert "**pca** (reconstruction) comes first" in paragraphs[1] and "ranked within their task" in paragraphs[-1]
