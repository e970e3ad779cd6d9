"""Identity drift (the pure core of ``audit run --identity``): the distances, the "no longer
recognised" rule, the per-group tables, the per-image columns of a batch and the ``[identity]``
policy rules, checked against numpy, pandas and hand-worked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genfair.audit import identity as ident
from genfair.audit import policy as p
from genfair.audit import summarize
from genfair.audit.multiplicity import adjust_disparity_family
from genfair.audit.panel import SKIN_MASK, audit_frame, score_batch


def test_the_drift_is_the_euclidean_distance_numpy_computes() -> None:
    generator = torch.Generator().manual_seed(0)
    out, orig = torch.randn(16, 128, generator=generator), torch.randn(16, 128, generator=generator)
    expected = np.sqrt(((out.numpy().astype(np.float64) - orig.numpy()) ** 2).sum(axis=1))
    np.testing.assert_allclose(ident.per_sample_identity_drift(out, orig).numpy(), expected, rtol=1e-6)
    assert ident.per_sample_identity_drift(out, orig).shape == (16,)


def test_an_identity_model_drifts_nowhere_and_loses_no_one() -> None:
    embeddings = torch.randn(8, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(ident.per_sample_identity_drift(embeddings, embeddings.clone()), torch.zeros(8, dtype=torch.float64))
    assert ident.per_sample_identity_lost(embeddings, embeddings.clone()).sum() == 0


def test_lost_means_a_distance_at_or_above_dlibs_documented_threshold() -> None:
    assert ident.SAME_PERSON_DISTANCE == 0.6
    distances = np.array([0.0, 0.3, 0.5999, 0.6, 0.61, 1.4])
    orig = torch.zeros(6, 2, dtype=torch.float64)
    out = torch.tensor(np.stack([distances, np.zeros(6)], axis=1))  # each row `distance` away along x
    np.testing.assert_array_equal(ident.per_sample_identity_lost(out, orig).numpy(), (distances >= 0.6).astype(float))
    np.testing.assert_array_equal(ident.per_sample_identity_lost(out, orig, threshold=1.0).numpy(),
                                  (distances >= 1.0).astype(float))


def test_bad_embeddings_and_thresholds_are_refused() -> None:
    good = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"floating point torch.Tensor of shape \(N, D\), got \(3,\)"):
        ident.per_sample_identity_drift(torch.zeros(3), good)
    with pytest.raises(ValueError, match=r"floating point torch.Tensor of shape \(N, D\), got ndarray"):
        ident.per_sample_identity_drift(good, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"the same shape, got \(3, 4\) and \(2, 4\)"):
        ident.per_sample_identity_drift(good, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="on the same device, got cpu and meta"):
        ident.per_sample_identity_drift(good, torch.zeros(3, 4, device="meta"))
    for threshold in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="threshold must be a positive finite number"):
            ident.per_sample_identity_lost(good, good, threshold=threshold)


def _frame(*, drift_female: float = 0.8, drift_male: float = 0.2, people: int = 6, seed: int = 0) -> pd.DataFrame:
    """Two genders of ``people`` people with 3 images each; drifts about the given means."""
    rng = np.random.default_rng(seed)
    rows = []
    for gender, mean in (("female", drift_female), ("male", drift_male)):
        for person in range(people):
            for photo in range(3):
                drift = mean + rng.normal(0.0, 0.02)
                rows.append({"path": f"{gender}{person}-{photo}.png", "subject": f"{gender}{person}", "gender": gender,
                             "mse_error": 0.01 + rng.normal(0.0, 0.001), "identity_drift": drift,
                             "identity_lost": float(drift >= 0.6), "face_found": bool(photo != 2 or gender == "male")})
    return pd.DataFrame(rows)


def test_the_identity_tables_hold_the_group_means_pandas_computes() -> None:
    frame = _frame()
    tables = ident.identity_tables(frame, attributes=["gender"], seed=0)
    table = tables["identity"].set_index("group")
    by_gender = frame.groupby("gender")
    for gender in ("female", "male"):
        assert table.at[gender, "identity_drift"] == pytest.approx(by_gender["identity_drift"].mean()[gender])
        assert table.at[gender, "identity_lost"] == pytest.approx(by_gender["identity_lost"].mean()[gender])
        assert table.at[gender, "face_found"] == pytest.approx(by_gender["face_found"].mean()[gender])
    assert table.at["female", "face_found"] == pytest.approx(2 / 3)  # a third of their photos had no face found
    gaps = tables["identity_disparities"].set_index("metric")
    assert gaps.at["identity_drift", "worst_group"] == "female"
    assert gaps.at["identity_drift", "difference"] == pytest.approx(
        by_gender["identity_drift"].mean()["female"] - by_gender["identity_drift"].mean()["male"])
    assert gaps.at["identity_lost", "difference"] == pytest.approx(1.0)
    assert set(tables["identity_intervals"]["metric"]) == {"identity_drift", "identity_lost"}


def test_the_identity_tables_need_the_identity_columns() -> None:
    with pytest.raises(ValueError, match="per_image lacks the identity column 'identity_lost'"):
        ident.identity_tables(_frame().drop(columns="identity_lost"), attributes=["gender"])
    without = ident.identity_tables(_frame().drop(columns="face_found"), attributes=["gender"])["identity"]
    assert without["face_found"].isna().all()


def test_a_batch_scored_with_embeddings_gets_the_identity_columns() -> None:
    originals = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    orig_embeddings = torch.zeros(4, 128, dtype=torch.float64)
    out_embeddings = orig_embeddings.clone()
    out_embeddings[:, 0] = torch.tensor([0.0, 0.2, 0.6, 1.0], dtype=torch.float64)
    scores = score_batch(originals, originals, embeddings=(out_embeddings, orig_embeddings),
                         face_found=torch.tensor([True, False, True, True]),
                         mask_kinds=["landmarks", "central", "landmarks", "landmarks"])
    np.testing.assert_allclose(scores["identity_drift"], [0.0, 0.2, 0.6, 1.0])
    np.testing.assert_array_equal(scores["identity_lost"], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(scores["face_found"], [True, False, True, True])
    assert list(scores[SKIN_MASK]) == ["landmarks", "central", "landmarks", "landmarks"]
    # without face tools the mask is the central ellipse, or the manifest's when the batch has masks
    assert set(score_batch(originals, originals)[SKIN_MASK]) == {"central"}
    assert set(score_batch(originals, originals, masks=torch.ones(4, 1, 8, 8))[SKIN_MASK]) == {"manifest"}
    assert "identity_drift" not in score_batch(originals, originals)


def test_bad_face_columns_of_a_batch_are_refused() -> None:
    originals = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=r"mask_kinds must give one of \['landmarks', 'central', 'manifest'\] per "
                                         r"image, got 1 entries for 2 images"):
        score_batch(originals, originals, mask_kinds=["central"])
    with pytest.raises(ValueError, match=r"got 2 entries for 2 images with \['ellipse'\]"):
        score_batch(originals, originals, mask_kinds=["central", "ellipse"])
    with pytest.raises(ValueError, match="face_found must have one entry per image, got 3 for 2"):
        score_batch(originals, originals, face_found=torch.ones(3, dtype=torch.bool))


def test_the_identity_gaps_join_the_runs_family_of_tests() -> None:
    frame = _frame()
    result = audit_frame(frame, attributes=["gender"], seed=0)
    assert {"identity", "identity_intervals", "identity_disparities"} <= set(result.tables)
    family = result.tables["identity_disparities"]["family"].iloc[0]
    assert family == result.tables["disparity_intervals"]["family"].iloc[0]
    # Holm over both tables at once: recompute the family from the raw p-values alone
    tables = {name: result.tables[name] for name in ("disparity_intervals", "identity_disparities")}
    adjusted = adjust_disparity_family(tables)
    np.testing.assert_allclose(adjusted["identity_disparities"]["p_holm"], result.tables["identity_disparities"]["p_holm"])
    primary = adjust_disparity_family(tables, primary_metric="identity_lost")["identity_disparities"]
    assert primary.set_index("metric").at["identity_drift", "family"] == "exploratory"


# --- the [identity] policy rules ---------------------------------------------------------------------

FAST = {"n_resamples": 200, "n_permutations": 500}


def _result(frame: pd.DataFrame):
    return summarize(frame, attributes=["gender"], metrics=["mse_error"], metadata={"attributes": ["gender"]})


def test_identity_rules_parse_and_name_their_keys() -> None:
    policy = p.parse_policy({"identity": {"max_drift": 0.5, "max_lost_share": 0.25, "max_difference": 0.1}})
    assert (policy.identity.max_drift, policy.identity.max_lost_share, policy.identity.max_difference) == (0.5, 0.25, 0.1)
    assert policy.quantities() == ["identity_drift", "identity_lost"]
    with pytest.raises(p.PolicyError, match=r"f.toml: unknown key 'identity.max_drfit'.*did you mean 'max_drift'"):
        p.parse_policy({"identity": {"max_drfit": 0.5}}, source="f.toml")
    with pytest.raises(p.PolicyError, match=r"'identity.max_lost_share' is invalid: expected a share in \[0, 1\], got 1.5"):
        p.parse_policy({"identity": {"max_lost_share": 1.5}})
    with pytest.raises(p.PolicyError, match=r"'identity.max_drift' is invalid: expected a distance >= 0, got -0.1"):
        p.parse_policy({"identity": {"max_drift": -0.1}})
    with pytest.raises(p.PolicyError, match=r"'metrics.identity_drift': identity_drift is not a reconstruction metric; "
                                            r"limit it under \[identity\]"):
        p.parse_policy({"metrics": {"identity_drift": {"max_ratio": 1.2}}})
    with pytest.raises(p.PolicyError, match=r"the policy checks nothing.*\[identity\]"):
        p.parse_policy({"min_subjects": 5})


def test_identity_rules_judge_each_group_and_the_gap() -> None:
    frame = _frame(drift_female=0.8, drift_male=0.2)
    policy = p.parse_policy({"identity": {"max_drift": 0.5, "max_lost_share": 0.5, "max_difference": 0.3},
                             "statistics": FAST})
    rules = p.check(_result(frame), policy).rules
    drift = rules[rules["rule"] == "identity.max_drift"].set_index("group")
    means = frame.groupby("gender")["identity_drift"].mean()
    assert drift.at["female", "value"] == pytest.approx(means["female"])
    assert (drift.at["female", "verdict"], drift.at["male", "verdict"]) == ("fail", "pass")
    assert drift.at["all", "value"] == pytest.approx(frame["identity_drift"].mean())
    lost = rules[rules["rule"] == "identity.max_lost_share"].set_index("group")
    assert (lost.at["female", "value"], lost.at["male", "value"]) == (1.0, 0.0)
    assert (lost.at["female", "verdict"], lost.at["male", "verdict"]) == ("fail", "pass")
    (gap,) = rules[rules["rule"] == "identity.max_difference"].to_dict("records")
    assert gap["value"] == pytest.approx(means["female"] - means["male"]) and gap["verdict"] == "fail"
    assert "mean identity drift" in drift.at["female", "reason"]


def test_a_model_that_drifts_no_one_passes_and_does_not_regress() -> None:
    frame = _frame(drift_female=0.1, drift_male=0.1)
    policy = p.parse_policy({"identity": {"max_drift": 0.5, "max_lost_share": 0.1, "max_difference": 0.2},
                             "statistics": FAST})
    report = p.check(_result(frame), policy, baseline=_result(frame))
    assert report.verdict == "pass"
    regression = report.rules[report.rules["check"] == "regression"]
    assert set(regression["rule"]) == {"regression.tolerance.identity_drift", "regression.tolerance.identity_lost"}
    assert (regression["value"] == 0).all()


def test_identity_rules_on_an_audit_without_identity_say_how_to_get_it() -> None:
    policy = p.parse_policy({"identity": {"max_drift": 0.5}})
    with pytest.raises(p.PolicyError, match=r"no 'identity_drift' column; audit with --identity "
                                            r"\(pip install 'genfair\[faces\]'\)"):
        p.check(_result(_frame().drop(columns=["identity_drift", "identity_lost"])), policy)
