"""Does an attribute classifier see each person's group, in the originals and in model outputs?

Pure functions over the per-image frame. The frame carries, per sensitive attribute ``a``, the
classifier's label for the original image (``classified_<a>``) and, when the audit classified
the model's outputs too, for the output (``classified_<a>_output``).

:func:`classifier_accuracy` is the classifier's per-group accuracy (on originals) or attribute
preservation (on outputs); :func:`representation_tables` gathers the representation metrics of
:mod:`genfair.audit.compare` (RDP, PR, UCPR, drift toward the majority) for every grouping.

**The classifier is an instrument, and its validity is measured.** :func:`classifier_validity`
is its accuracy per group and attribute on held-out originals (people it never trained on),
with a subject-clustered interval, beside its accuracy on the audited people's own originals.
Where either is below ``min_accuracy`` for a group and attribute (default
:data:`~genfair.audit.label_noise.MIN_ACCURACY`, 0.8), every claim
that reads that attribute's labels for that group is withheld: its representation row and its
grouping's representation tests become NaN with ``evidence = "classifier unreliable"``
(:data:`CLASSIFIER_UNRELIABLE`, beside ``"insufficient"`` for too few people), and its flip rate
is NaN. A group the held-out originals do not have is not validated, and is withheld alike.
:func:`classifier_tables` builds all of these tables at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from .compare import (
    majority_rate,
    proportional_representation,
    representation_demographic_parity,
    uninformative_conditional_proportional_representation,
)
from .grouping import GROUP_SEPARATOR, GROUPING_SEPARATOR, SUBJECT_COLUMN, group_table
from .label_noise import (
    MIN_ACCURACY,
    corrected_representation,
    flip_column,
    label_flips,
)
from .stats import EVIDENCE_INSUFFICIENT, EVIDENCE_SUFFICIENT, group_intervals

__all__ = ["CLASSIFIER_UNRELIABLE", "CLASSIFIER_VALID", "REPRESENTATION_COLUMNS", "REPRESENTATION_TEST_COLUMNS",
           "VALIDITY_COLUMNS", "classified_column", "classifier_accuracy", "classifier_tables", "classifier_validity",
           "representation_tables", "withhold_flips"]

#: ``status`` of :func:`classifier_validity` (and ``evidence`` of a withheld representation row):
#: the classifier reads the group's originals right often enough, or it does not.
CLASSIFIER_VALID = "valid"
CLASSIFIER_UNRELIABLE = "classifier unreliable"
#: The columns of :func:`classifier_validity`, in order.
VALIDITY_COLUMNS = ("grouping", "group", "attribute", "n_images", "n_subjects", "evidence", "accuracy", "ci_low",
                    "ci_high", "audited_accuracy", "status")

#: The columns of the first table :func:`representation_tables` returns, in order.
REPRESENTATION_COLUMNS = (
    "grouping", "group", "n_images", "n_subjects", "evidence", "true_share", "output_share",
    "own_rate", "own_ci_low", "own_ci_high", "majority_group", "majority_rate", "majority_ci_low",
    "majority_ci_high", "uninformative_share", "output_share_corrected", "own_corrected", "own_corrected_ci_low",
    "own_corrected_ci_high",
)
#: The columns of the second table :func:`representation_tables` returns, in order.
REPRESENTATION_TEST_COLUMNS = (
    "grouping", "metric", "evidence", "statistic", "dof", "p_value", "divergence", "difference", "difference_ci_low",
    "difference_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high", "test", "design_effect", "n_units", "p_min",
)
#: What a withheld group loses: every column of its representation row that reads the classifier's labels.
_WITHHELD_COLUMNS = ("output_share", "own_rate", "own_ci_low", "own_ci_high", "majority_rate", "majority_ci_low",
                     "majority_ci_high", "uninformative_share", "output_share_corrected", "own_corrected",
                     "own_corrected_ci_low", "own_corrected_ci_high")
#: What a withheld grouping's representation tests lose (counts and the test's name stay).
_WITHHELD_TEST_COLUMNS = ("statistic", "p_value", "divergence", "difference", "difference_ci_low",
                          "difference_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high", "design_effect", "p_min")
_HIT_SUFFIX = "_correct_score"  # a per-image 0/1 column group_intervals reads as higher-is-better
BAD_MIN_ACCURACY_MSG = "min_accuracy must be a number in [0, 1]"
BAD_VALIDITY_MSG = "validity must be a classifier_validity table"


def classified_column(attribute: str, *, output: bool = False) -> str:
    """The per-image column holding the classifier's label of ``attribute`` (original or output)."""
    return f"classified_{attribute}{'_output' if output else ''}"


def classifier_accuracy(per_image: pd.DataFrame, *, attributes: Sequence[str], output: bool = False) -> pd.DataFrame:
    """Per-group rate at which the classifier labels each attribute as the person's own.

    On originals (``output=False``) this is the classifier's own accuracy; on a model's outputs
    it is attribute preservation: how often the output still looks like the person's group.

    Args:
        per_image: one row per image with ``subject``, the ``attributes`` and, for each, the
            column :func:`classified_column` names.
        attributes: sensitive attribute columns, e.g. ``["gender", "skin_tone"]``.
        output: read the labels of the model's outputs instead of the originals.

    Returns:
        :func:`genfair.audit.grouping.group_table` rows (overall, each attribute, the
        intersection) with one column per attribute, ``<attribute>_accuracy``: a rate in [0, 1].

    Raises:
        ValueError: a classified column is missing.

    Example:
        >>> frame = pd.DataFrame({"subject": ["a", "b"], "gender": ["f", "m"], "classified_gender": ["f", "f"]})
        >>> classifier_accuracy(frame, attributes=["gender"])[["group", "gender_accuracy"]].to_dict("list")
        {'group': ['all', 'f', 'm'], 'gender_accuracy': [0.5, 1.0, 0.0]}
    """
    hits = per_image[["subject", *attributes]].copy()
    for attribute in attributes:
        column = classified_column(attribute, output=output)
        if column not in per_image:
            raise ValueError(f"per-image frame has no {column!r} column; classify the images first")
        hits[f"{attribute}_accuracy"] = (per_image[column].astype(str) == per_image[attribute].astype(str)).astype(float)
    return group_table(hits, attributes=attributes, metrics=[f"{a}_accuracy" for a in attributes])


def _check_min_accuracy(min_accuracy: Any) -> float:
    if isinstance(min_accuracy, bool) or not isinstance(min_accuracy, (int, float)) or not 0 <= min_accuracy <= 1:
        raise ValueError(f"{BAD_MIN_ACCURACY_MSG} (a group read right less often than this is unreliable), "
                         f"got {min_accuracy!r}")
    return float(min_accuracy)


def classifier_validity(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    min_accuracy: float = MIN_ACCURACY,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
    audited: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The classifier's accuracy per group and attribute on originals, with subject-clustered intervals.

    Measure it on held-out originals: people the classifier never trained on. For each grouping
    (overall, each attribute, their intersection), group and attribute: the share of the group's
    originals whose label of the attribute is the person's own, the interval of
    :func:`genfair.audit.group_intervals` (people resampled within the group; NaN for a group
    with fewer than ``min_subjects`` people, ``evidence = "insufficient"``, clipped to [0, 1]),
    with ``audited`` the same share on the audited people's own originals (``audited_accuracy``;
    NaN without), and a ``status``: :data:`CLASSIFIER_VALID` when the accuracy, and the audited
    accuracy where there is one, are at least ``min_accuracy``, else :data:`CLASSIFIER_UNRELIABLE`.
    Both count: the held-out people say how the classifier reads faces it never saw (as it reads
    a model's outputs), the audited ones how wrong the claims about those very people start out.

    Why 0.8, whatever the number of classes ``K``: a classifier that reads a group's originals
    right a share ``a`` of the time puts about ``1 - a`` of a group's faithful outputs in
    another class, so ``1 - a`` is how much of a group's own-group rate (and of the gap between
    groups) can be the instrument's own doing; 0.8 caps that at 0.2 for every ``K``. Chance is
    ``1 / K <= 0.5`` for ``K >= 2`` (and a classifier that always answers the majority class
    reads every other group right never), so 0.8 is clearly above chance for any ``K``.

    Args:
        per_image: one row per original with ``subject``, the ``attributes`` and each
            attribute's :func:`classified_column` (the label of the original).
        attributes: the sensitive attribute columns.
        min_accuracy: the accuracy a group needs, in [0, 1] (0: nothing is unreliable).
        n_resamples, level, seed, min_subjects, interval: as in :func:`genfair.audit.group_intervals`.
        audited: the audit's per-image frame (the same columns), optional.

    Returns:
        Columns :data:`VALIDITY_COLUMNS`: one row per grouping, group and attribute
        (``n_images``, ``n_subjects`` and ``evidence`` are the group's).

    Raises:
        ValueError: a classified column is missing, or ``min_accuracy`` is not in [0, 1].

    Example:
        >>> frame = pd.DataFrame({"subject": list("abcdef"), "gender": ["f"] * 3 + ["m"] * 3,
        ...                       "classified_gender": ["f", "m", "m", "m", "m", "m"]})
        >>> table = classifier_validity(frame, attributes=["gender"], min_subjects=2, n_resamples=50)
        >>> table[["group", "accuracy", "status"]].round(2).values.tolist()
        [['all', 0.67, 'classifier unreliable'], ['f', 0.33, 'classifier unreliable'], ['m', 1.0, 'valid']]
    """
    import numpy as np

    threshold = _check_min_accuracy(min_accuracy)
    attrs = list(attributes)
    scores = [attribute + _HIT_SUFFIX for attribute in attrs]
    long = group_intervals(_hits(per_image, attrs), attributes=attrs, metrics=scores, n_resamples=n_resamples,
                           n_permutations=0, level=level, seed=seed, min_subjects=min_subjects, interval=interval)
    table = long.rename(columns={"estimate": "accuracy"}).assign(
        attribute=long["metric"].str.removesuffix(_HIT_SUFFIX),
        ci_low=long["ci_low"].clip(0.0, 1.0), ci_high=long["ci_high"].clip(0.0, 1.0), audited_accuracy=np.nan)
    if audited is not None:
        own = group_table(_hits(audited, attrs), attributes=attrs, metrics=scores).melt(
            id_vars=["grouping", "group"], value_vars=scores, var_name="metric", value_name="audited")
        table = table.drop(columns="audited_accuracy").merge(own, on=["grouping", "group", "metric"], how="left")
        table = table.rename(columns={"audited": "audited_accuracy"})
    read_well = (table["accuracy"] >= threshold) & ~(table["audited_accuracy"] < threshold)
    table["status"] = np.where(read_well, CLASSIFIER_VALID, CLASSIFIER_UNRELIABLE)
    return table[list(VALIDITY_COLUMNS)].astype({"attribute": "str", "status": "str"}).reset_index(drop=True)


def _hits(per_image: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """``subject``, the attributes and, per attribute, 1.0 where the original's label is the person's own."""
    hits = per_image[[SUBJECT_COLUMN, *attributes]].copy()
    for attribute in attributes:
        column = classified_column(attribute)
        if column not in per_image:
            raise ValueError(f"per-image frame has no {column!r} column; classify the originals first")
        hits[attribute + _HIT_SUFFIX] = (per_image[column].astype(str) == per_image[attribute].astype(str)).astype(float)
    return hits


def _valid(validity: pd.DataFrame) -> set[tuple[str, str, str]]:
    """The ``(grouping, group, attribute)`` cells of ``validity`` the classifier reads well enough.

    Raises:
        ValueError: ``validity`` lacks a column of :data:`VALIDITY_COLUMNS`.
    """
    missing = [column for column in ("grouping", "group", "attribute", "status") if column not in validity]
    if missing:
        raise ValueError(f"{BAD_VALIDITY_MSG} (columns {list(VALIDITY_COLUMNS)}), got one without {missing}")
    rows = validity[validity["status"] == CLASSIFIER_VALID]
    return set(zip(rows["grouping"].astype(str), rows["group"].astype(str), rows["attribute"].astype(str)))


def withhold_flips(flips: pd.DataFrame, validity: pd.DataFrame, *, attributes: Sequence[str]) -> pd.DataFrame:
    """:func:`~genfair.audit.label_noise.label_flips`' table with the rates of unreliable cells NaN.

    A row's ``<attribute>_flip_rate`` is kept where ``validity`` (:func:`classifier_validity`)
    marks that grouping, group and attribute :data:`CLASSIFIER_VALID`, and is NaN elsewhere
    (unreliable, or not validated).

    Raises:
        ValueError: ``validity`` is not a :func:`classifier_validity` table.

    Example:
        >>> flips = pd.DataFrame({"grouping": ["gender", "gender"], "group": ["f", "m"], "gender_flip_rate": [0.1, 0.2]})
        >>> validity = pd.DataFrame({"grouping": ["gender"] * 2, "group": ["f", "m"], "attribute": ["gender"] * 2,
        ...                          "status": ["classifier unreliable", "valid"]})
        >>> withhold_flips(flips, validity, attributes=["gender"])["gender_flip_rate"].tolist()
        [nan, 0.2]
    """
    valid = _valid(validity)
    flips = flips.copy()
    for attribute in attributes:
        kept = [(str(g), str(x), attribute) in valid for g, x in zip(flips["grouping"], flips["group"])]
        flips[flip_column(attribute)] = flips[flip_column(attribute)].where(kept)
    return flips


def classifier_tables(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    majority: Mapping[str, str],
    uninformative: pd.DataFrame | None = None,
    held_out: pd.DataFrame | None = None,
    min_accuracy: float | None = None,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Every table that reads the attribute classifier's labels, its validity applied.

    Args:
        per_image: the audit's per-image frame, with the labels of originals and outputs.
        attributes, majority, uninformative, seed: as in :func:`representation_tables`.
        held_out: the classifier's labels of held-out originals (``subject``, the attributes,
            :func:`classified_column` of each): :func:`classifier_validity` is measured on them,
            the audited originals' accuracy beside; None: measured on ``per_image``'s own
            originals alone (people the classifier never trained on when the audited images are
            a test split).
        min_accuracy: the accuracy a group needs (validity and the CLEAM correction); None:
            :data:`~genfair.audit.label_noise.MIN_ACCURACY`.

    Returns:
        ``classifier_accuracy`` (:func:`classifier_accuracy` on the audited originals),
        ``classifier_validity``, ``attribute_preservation`` (:func:`withhold_flips`),
        ``representation`` and ``representation_tests`` (:func:`representation_tables`).

    Raises:
        ValueError: a classified column is missing, or ``min_accuracy`` is not in [0, 1].
    """
    threshold = _check_min_accuracy(MIN_ACCURACY if min_accuracy is None else min_accuracy)
    attrs = list(attributes)
    validity = classifier_validity(per_image if held_out is None else held_out, attributes=attrs,
                                   min_accuracy=threshold, seed=seed, audited=per_image)
    flips = label_flips(per_image, attributes=attrs, original=[classified_column(a) for a in attrs],
                        output=[classified_column(a, output=True) for a in attrs])
    by_group, tests = representation_tables(per_image, attributes=attrs, majority=majority,
                                            uninformative=uninformative, validity=validity,
                                            min_accuracy=threshold, seed=seed)
    return {"classifier_accuracy": classifier_accuracy(per_image, attributes=attrs), "classifier_validity": validity,
            "attribute_preservation": withhold_flips(flips, validity, attributes=attrs),
            "representation": by_group, "representation_tests": tests}


def _labels(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string label per row: the column's value, or the columns' values joined like group_table."""
    labels = frame[columns[0]].astype(str)
    for column in columns[1:]:
        labels = labels + GROUP_SEPARATOR + frame[column].astype(str)
    return labels.reset_index(drop=True)


def representation_tables(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    majority: Mapping[str, str],
    uninformative: pd.DataFrame | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_subjects: int = 5,
    interval: Literal["expanded", "percentile"] = "expanded",
    validity: pd.DataFrame | None = None,
    min_accuracy: float = MIN_ACCURACY,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Representation metrics of a model's outputs for each grouping, as two tidy tables.

    Groupings: each attribute, then (with two or more) their intersection, whose predicted label
    joins the per-attribute predictions. For each grouping:
    :func:`~genfair.audit.compare.representation_demographic_parity` (each group's own-group
    rate, the gap ``max - min`` between groups with its interval, a test that permutes whole
    subjects between groups), :func:`~genfair.audit.compare.proportional_representation`
    (outputs' class shares against the people's, Stuart-Maxwell test corrected for each
    person's several photos), :func:`~genfair.audit.compare.majority_rate` (how
    often each group's outputs are classified as the majority group) and, when
    ``uninformative`` is given, :func:`~genfair.audit.compare.uninformative_conditional_proportional_representation`
    (outputs for inputs that carry no group information should be classified uniformly over
    the groups in ``per_image``).

    Claims rest on the classifier: a person's group whose originals it labels right less often
    than ``min_accuracy`` for an attribute of the grouping (per ``validity``) has its row's
    classifier-read values NaN and ``evidence = "classifier unreliable"``, and its grouping's
    tests are NaN with that ``evidence`` too (a gap or a test over groups is only as good as
    the worst-read group).

    Args:
        per_image: one row per image with ``subject``, the ``attributes`` and, per attribute,
            the output's classified label (:func:`classified_column` with ``output=True``).
        attributes: sensitive attribute columns.
        majority: the majority group of each grouping (most training people), keyed by
            grouping name (``"gender"``, ``"gender x skin_tone"``) with group labels as in
            :func:`~genfair.audit.grouping.group_table` (``"male / lighter"``).
        uninformative: optional frame of the classified labels (one column per attribute) of
            the outputs for uninformative inputs.
        n_resamples, level, seed, min_subjects, interval: as in
            :func:`genfair.audit.group_intervals`.
        validity: :func:`classifier_validity` on held-out originals; None: measured on
            ``per_image``'s originals when it has their labels (:func:`classified_column`), else
            nothing is withheld (the classifier's validity is unknown).
        min_accuracy: the accuracy a group needs: for ``validity`` measured here and for the
            CLEAM correction (:func:`~genfair.audit.label_noise.corrected_representation`).

    Returns:
        ``(by_group, tests)``: ``by_group`` has columns :data:`REPRESENTATION_COLUMNS`, one row
        per group that is a person's group or an output's class (shares in [0, 1]; rates and
        intervals NaN for a group with no image or too few subjects; ``uninformative_share``
        NaN without ``uninformative``; ``evidence``: ``"sufficient"``, ``"insufficient"`` or
        ``"classifier unreliable"``); ``tests`` has columns :data:`REPRESENTATION_TEST_COLUMNS`,
        one row per grouping and metric (``rdp``, ``pr``, ``ucpr``; ``evidence``: ``"sufficient"``,
        ``"insufficient"`` where no test could run, or ``"classifier unreliable"``); gap and ratio are RDP's only;
        ``test``, ``design_effect`` and ``n_units`` say which test gave ``p_value`` and on how
        many independent units (:class:`~genfair.audit.compare.RepresentationResult`).

    Raises:
        ValueError: a classified column is missing, ``validity`` is not a
            :func:`classifier_validity` table, or ``min_accuracy`` is not in [0, 1]. A grouping
            missing from ``majority`` has no majority (a balanced or tied composition): its
            ``majority_group`` is ``""`` and its majority rates NaN.

    Example:
        >>> frame = pd.DataFrame({"subject": list("abcd"), "gender": ["f", "f", "m", "m"],
        ...                       "classified_gender_output": ["f", "m", "m", "m"]})
        >>> by_group, tests = representation_tables(frame, attributes=["gender"], majority={"gender": "m"},
        ...                                         min_subjects=2, n_resamples=50)
        >>> by_group[["group", "own_rate", "majority_rate", "output_share"]].to_dict("list")
        {'group': ['f', 'm'], 'own_rate': [0.5, 1.0], 'majority_rate': [0.5, 1.0], 'output_share': [0.25, 0.75]}
        >>> tests["metric"].tolist()
        ['rdp', 'pr']
    """
    import numpy as np

    attrs = list(attributes)
    for attribute in attrs:
        if classified_column(attribute, output=True) not in per_image:
            raise ValueError(f"per-image frame has no {classified_column(attribute, output=True)!r} column; "
                             f"classify the outputs first")
    options = {"n_resamples": n_resamples, "level": level, "seed": seed, "min_subjects": min_subjects,
               "interval": interval}
    threshold = _check_min_accuracy(min_accuracy)
    if validity is None and all(classified_column(a) in per_image for a in attrs):
        validity = classifier_validity(per_image, attributes=attrs, min_accuracy=threshold, audited=per_image,
                                       **options)
    valid = None if validity is None else _valid(validity)
    sets = [[attribute] for attribute in attrs] + ([attrs] if len(attrs) > 1 else [])
    subjects = per_image[SUBJECT_COLUMN].astype(str).to_numpy()
    group_frames, test_rows = [], []
    for columns in sets:
        grouping = GROUPING_SEPARATOR.join(columns)
        true = _labels(per_image, columns)
        predicted = _labels(per_image, [classified_column(c, output=True) for c in columns])
        blank = uninformative is None
        guessed = None if blank else _labels(uninformative, columns)
        leader = majority.get(grouping)  # None: no majority (balanced or tied), no drift toward one
        names = sorted({*true, *predicted, *(() if leader is None else (str(leader),)), *(() if blank else guessed)})
        code = {name: i for i, name in enumerate(names)}
        true_codes, predicted_codes = true.map(code).to_numpy(), predicted.map(code).to_numpy()
        rdp = representation_demographic_parity(true_codes, predicted_codes, subjects=subjects, group_names=names,
                                                **options)
        pr = proportional_representation(true_codes, predicted_codes, subjects=subjects, group_names=names,
                                         seed=seed)
        frame = pr.by_group.rename(columns={"predicted_share": "output_share"})[["group", "true_share", "output_share"]]
        frame = frame.merge(rdp.by_group.rename(columns={"rate": "own_rate", "ci_low": "own_ci_low",
                                                         "ci_high": "own_ci_high"}), on="group", how="left")
        if leader is None:
            frame = frame.assign(majority_rate=np.nan, majority_ci_low=np.nan, majority_ci_high=np.nan)
        else:
            to_majority = majority_rate(true_codes, predicted_codes, majority=code[str(leader)],
                                        subjects=subjects, group_names=names, **options)
            frame = frame.merge(to_majority[["group", "rate", "ci_low", "ci_high"]].rename(
                columns={"rate": "majority_rate", "ci_low": "majority_ci_low", "ci_high": "majority_ci_high"}),
                on="group", how="left")
        frame["majority_group"] = "" if leader is None else str(leader)
        frame["uninformative_share"] = np.nan
        frame = frame.merge(_corrected(per_image, columns, code, true_codes, predicted_codes, subjects,
                                       {**options, "min_accuracy": threshold}), on="group", how="left")
        results = [rdp, pr]
        if not blank:
            present = set(true)
            ucpr = uninformative_conditional_proportional_representation(
                guessed.map(code).to_numpy(), group_names=names, expected=[float(n in present) for n in names]
            )
            frame["uninformative_share"] = ucpr.by_group["predicted_share"].to_numpy()
            results.append(ucpr)
        frame["grouping"] = grouping
        frame["n_images"] = frame["n_images"].fillna(0).astype("int64")
        frame["n_subjects"] = frame["n_subjects"].fillna(0).astype("int64")
        frame["evidence"] = frame["evidence"].fillna(EVIDENCE_INSUFFICIENT)
        unreliable = [] if valid is None else sorted(
            name for name in set(true) if not all((grouping, name, c) in valid for c in columns))
        withheld = frame["group"].isin(unreliable)
        frame.loc[withheld, list(_WITHHELD_COLUMNS)] = np.nan
        frame.loc[withheld, "evidence"] = CLASSIFIER_UNRELIABLE
        group_frames.append(frame)
        rows = [{"grouping": grouping, "metric": r.metric, "statistic": r.statistic, "dof": r.dof,
                 "p_value": r.p_value, "divergence": r.divergence, "difference": r.difference,
                 "difference_ci_low": r.difference_ci_low, "difference_ci_high": r.difference_ci_high,
                 "ratio": r.ratio, "ratio_ci_low": r.ratio_ci_low, "ratio_ci_high": r.ratio_ci_high,
                 "test": r.test, "design_effect": r.design_effect, "n_units": r.n_units, "p_min": r.p_min,
                 "evidence": EVIDENCE_SUFFICIENT if np.isfinite(r.p_value) else EVIDENCE_INSUFFICIENT}
                for r in results]
        if unreliable:
            rows = [{**row, **dict.fromkeys(_WITHHELD_TEST_COLUMNS, np.nan), "evidence": CLASSIFIER_UNRELIABLE}
                    for row in rows]
        test_rows += rows
    by_group = pd.concat(group_frames, ignore_index=True)[list(REPRESENTATION_COLUMNS)]
    tests = pd.DataFrame(test_rows, columns=list(REPRESENTATION_TEST_COLUMNS)).astype(
        {"dof": "int64", "test": "str", "n_units": "int64", "evidence": "str"})
    return by_group, tests


def _corrected(per_image: pd.DataFrame, columns: list[str], code: Mapping[str, int], true_codes: Any,
               output_codes: Any, subjects: Any, options: Mapping[str, Any]) -> pd.DataFrame:
    """The representation columns corrected for the classifier's errors (one row per group name);
    NaN when the originals were not classified."""
    import numpy as np

    names = list(code)
    originals = [classified_column(c) for c in columns]
    if not all(column in per_image for column in originals):
        return pd.DataFrame({"group": names, **dict.fromkeys(REPRESENTATION_COLUMNS[-4:], np.nan)})
    original_labels = _labels(per_image, originals)
    extra = sorted(set(original_labels) - set(code))  # labels of originals that no output or person has
    code = {**code, **{name: len(code) + i for i, name in enumerate(extra)}}
    original_codes = original_labels.map(code)
    found = corrected_representation(true_codes, original_codes.to_numpy(dtype=np.int64), output_codes, subjects,
                                     len(code), n_resamples=min(int(options["n_resamples"]), 200),
                                     level=options["level"], seed=options["seed"],
                                     min_accuracy=options["min_accuracy"])
    size = len(names)
    return pd.DataFrame({"group": names, "output_share_corrected": found["share"][:size],
                         "own_corrected": found["own"][:size], "own_corrected_ci_low": found["own_low"][:size],
                         "own_corrected_ci_high": found["own_high"][:size]})
