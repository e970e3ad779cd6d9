"""Does an attribute classifier see each person's group, in the originals and in model outputs?

Pure functions over the per-image frame. The frame carries, per sensitive attribute ``a``, the
classifier's label for the original image (``classified_<a>``) and, when the audit classified
the model's outputs too, for the output (``classified_<a>_output``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .grouping import group_table

__all__ = ["classified_column", "classifier_accuracy"]


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
