"""Does an attribute classifier see each person's group, in the originals and in model outputs?

Pure functions over the per-image frame. The frame carries, per sensitive attribute ``a``, the
classifier's label for the original image (``classified_<a>``) and, when the audit classified
the model's outputs too, for the output (``classified_<a>_output``).

:func:`classifier_accuracy` is the classifier's per-group accuracy (on originals) or attribute
preservation (on outputs); :func:`representation_tables` gathers the representation metrics of
:mod:`genfair.audit.compare` (RDP, PR, UCPR, drift toward the majority) for every grouping.
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
from .label_noise import corrected_representation

__all__ = ["REPRESENTATION_COLUMNS", "REPRESENTATION_TEST_COLUMNS", "classified_column", "classifier_accuracy",
           "representation_tables"]

#: The columns of the first table :func:`representation_tables` returns, in order.
REPRESENTATION_COLUMNS = (
    "grouping", "group", "n_images", "n_subjects", "evidence", "true_share", "output_share",
    "own_rate", "own_ci_low", "own_ci_high", "majority_group", "majority_rate", "majority_ci_low",
    "majority_ci_high", "uninformative_share", "output_share_corrected", "own_corrected", "own_corrected_ci_low",
    "own_corrected_ci_high",
)
#: The columns of the second table :func:`representation_tables` returns, in order.
REPRESENTATION_TEST_COLUMNS = (
    "grouping", "metric", "statistic", "dof", "p_value", "divergence", "difference", "difference_ci_low",
    "difference_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high", "test", "design_effect", "n_units", "p_min",
)


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

    Returns:
        ``(by_group, tests)``: ``by_group`` has columns :data:`REPRESENTATION_COLUMNS`, one row
        per group that is a person's group or an output's class (shares in [0, 1]; rates and
        intervals NaN for a group with no image or too few subjects; ``uninformative_share``
        NaN without ``uninformative``); ``tests`` has columns :data:`REPRESENTATION_TEST_COLUMNS`,
        one row per grouping and metric (``rdp``, ``pr``, ``ucpr``); gap and ratio are RDP's only;
        ``test``, ``design_effect`` and ``n_units`` say which test gave ``p_value`` and on how
        many independent units (:class:`~genfair.audit.compare.RepresentationResult`).

    Raises:
        ValueError: a classified column is missing. A grouping missing from ``majority`` has
            no majority (a balanced or tied composition): its ``majority_group`` is ``""`` and its
            majority rates NaN.

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
        pr = proportional_representation(true_codes, predicted_codes, subjects=subjects, group_names=names)
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
        frame = frame.merge(_corrected(per_image, columns, code, true_codes, predicted_codes, subjects, options),
                            on="group", how="left")
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
        frame["evidence"] = frame["evidence"].fillna("insufficient")
        group_frames.append(frame)
        test_rows += [{"grouping": grouping, "metric": r.metric, "statistic": r.statistic, "dof": r.dof,
                       "p_value": r.p_value, "divergence": r.divergence, "difference": r.difference,
                       "difference_ci_low": r.difference_ci_low, "difference_ci_high": r.difference_ci_high,
                       "ratio": r.ratio, "ratio_ci_low": r.ratio_ci_low, "ratio_ci_high": r.ratio_ci_high,
                       "test": r.test, "design_effect": r.design_effect, "n_units": r.n_units, "p_min": r.p_min}
                      for r in results]
    by_group = pd.concat(group_frames, ignore_index=True)[list(REPRESENTATION_COLUMNS)]
    tests = pd.DataFrame(test_rows, columns=list(REPRESENTATION_TEST_COLUMNS)).astype(
        {"dof": "int64", "test": "str", "n_units": "int64"})
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
                                     level=options["level"], seed=options["seed"])
    size = len(names)
    return pd.DataFrame({"group": names, "output_share_corrected": found["share"][:size],
                         "own_corrected": found["own"][:size], "own_corrected_ci_low": found["own_low"][:size],
                         "own_corrected_ci_high": found["own_high"][:size]})
