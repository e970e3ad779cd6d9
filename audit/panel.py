"""The audit of one model's outputs on a panel of images: per-image scores, then every per-group table.

This is the pure middle stage of a run. It knows nothing of where the outputs came from (a model
trained here, the user's own model, or files on disk), of Lightning or of MLflow: images and
labels go in, a per-image frame and an :class:`~genfair.audit.result.AuditResult` come out.

Two steps, so that images can stream in batches while only per-image rows are kept:

1. :func:`score_batch` turns one batch of originals and outputs into per-image columns (errors,
   skin-colour shifts, the classifier's labels, the baseline's errors);
2. :func:`audit_frame` turns the concatenated per-image frame into every table.

:func:`audit_outputs` does both for tensors held in memory (the notebook case).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .grouping import GROUPING_SEPARATOR, group_labels
from .skin import HUE_SHIFT, LIGHTNESS_SHIFT, SKIN_SHIFTS

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from .result import AuditResult

__all__ = [
    "BASELINE_PREFIX",
    "HUE_SHIFT",
    "LIGHTNESS_SHIFT",
    "SKIN_MASK",
    "SKIN_MASK_KINDS",
    "SKIN_MEASURES",
    "SKIN_TONE_SHIFT",
    "audit_frame",
    "audit_outputs",
    "majority_groups",
    "majority_notes",
    "score_batch",
]

SKIN_TONE_SHIFT = "ita_shift"
"""Per-image column: ITA(output) - ITA(original), in degrees (positive: the output's skin is lighter)."""
# LIGHTNESS_SHIFT ("lightness_shift"): mean L*(output) - L*(original) over the skin, L* units (positive: lighter);
# HUE_SHIFT ("hue_shift"): h*(output) - h*(original), degrees (positive: yellower). From genfair.audit.skin.
SKIN_MEASURES: tuple[str, ...] = SKIN_SHIFTS
"""The per-image skin-colour columns (ΔITA, ΔL*, Δh*), analysed together into the ``skin_tone_*`` tables."""
SKIN_MASK = "skin_mask"
"""Per-image column (colour images): where the skin region of the skin measures came from, one of
:data:`SKIN_MASK_KINDS`: the face's 68 landmarks, the central ellipse, or the manifest's own mask."""
SKIN_MASK_KINDS = ("landmarks", "central", "manifest")
BASELINE_PREFIX = "baseline/"
"""Per-image columns ``baseline/<metric>``: the same metric for the baseline's output (bicubic for upsampling)."""

#: ``classify(images (N, C, H, W) in [0, 1]) -> frame`` with one column of labels per attribute.
Classify = Callable[["torch.Tensor"], "pd.DataFrame"]


def score_batch(
    originals: torch.Tensor,
    outputs: torch.Tensor,
    *,
    masks: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    classify: Classify | None = None,
    embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    face_found: torch.Tensor | None = None,
    mask_kinds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-image columns of one batch.

    Args:
        originals: ``(N, C, H, W)`` float in [0, 1], the images the outputs should reproduce.
        outputs: ``(N, C, H, W)`` float in [0, 1], the model's outputs, same shape.
        masks: ``(N, 1, H, W)`` float in {0, 1}, the skin region for the skin-colour shifts; None:
            :func:`genfair.audit.skin.central_face_mask`.
        baseline: ``(N, C, H, W)`` float in [0, 1], a baseline's outputs for the same inputs
            (bicubic upsampling for super-resolution); its errors become ``baseline/<metric>``.
        classify: the attribute classifier; its labels of originals and outputs become the
            columns :func:`genfair.audit.attributes.classified_column` names.
        embeddings: ``((N, D), (N, D))`` float face embeddings of the outputs and of the originals
            (a face recogniser's); they become ``identity_drift`` and ``identity_lost``
            (:mod:`genfair.audit.identity`).
        face_found: ``(N,)`` bool, whether a face detector found the original's face (``face_found``).
        mask_kinds: per image, where its mask came from (:data:`SKIN_MASK_KINDS`), recorded as
            ``skin_mask`` with the skin measures; None: ``manifest`` with ``masks``, else ``central``.

    Returns:
        Column name -> ``(N,)`` numpy array: every metric of :func:`genfair.audit.metrics.per_sample_metrics`,
        the skin-colour shifts ``ita_shift``, ``lightness_shift``, ``hue_shift`` (RGB only,
        :func:`genfair.audit.skin.per_sample_skin_shifts`) with ``skin_mask``, ``baseline/<metric>``,
        ``classified_<attribute>[_output]``, and with ``embeddings`` / ``face_found`` the identity
        columns ``identity_drift``, ``identity_lost`` / ``face_found``.

    Raises:
        ValueError: originals and outputs differ in shape, ``mask_kinds`` or ``face_found`` has
            not one entry per image or an unknown kind, or the embeddings are invalid.

    Example:
        >>> import torch
        >>> originals = torch.zeros(2, 3, 8, 8)
        >>> scores = score_batch(originals, originals + 0.5)
        >>> [round(float(v), 3) for v in scores["mse_error"]]
        [0.25, 0.25]
    """
    from .attributes import classified_column
    from .metrics import per_sample_metrics
    from .skin import per_sample_skin_shifts

    if originals.shape != outputs.shape:
        raise ValueError(
            f"originals and outputs must have the same shape, got {tuple(originals.shape)} and {tuple(outputs.shape)}"
        )
    # Every column is copied off torch's storage: a run keeps these small arrays for its whole length,
    # and arrays that pin torch's blocks keep the allocator from reusing the batch's freed images
    # (RSS then grows ~2 MiB per 32 images; benchmarks/outputs_throughput.py).
    def column(values: torch.Tensor) -> Any:
        return values.detach().double().cpu().numpy().copy()

    scores: dict[str, Any] = {name: column(values) for name, values in per_sample_metrics(outputs, originals).items()}
    if classify is not None:
        for images, output in ((originals, False), (outputs, True)):
            for attribute, labels in classify(images).items():
                scores[classified_column(str(attribute), output=output)] = labels.to_numpy().copy()
    if originals.shape[1] == 3:  # the skin's colour needs colour
        for name, values in per_sample_skin_shifts(outputs, originals, masks).items():
            scores[name] = column(values)
        scores[SKIN_MASK] = _mask_kinds(mask_kinds, masks, len(originals))
    if embeddings is not None:
        from .identity import IDENTITY_DRIFT, IDENTITY_LOST, per_sample_identity_drift, per_sample_identity_lost

        scores[IDENTITY_DRIFT] = column(per_sample_identity_drift(*embeddings))
        scores[IDENTITY_LOST] = column(per_sample_identity_lost(*embeddings))
    if face_found is not None:
        from .identity import FACE_FOUND

        if len(face_found) != len(originals):
            raise ValueError(f"face_found must have one entry per image, got {len(face_found)} for {len(originals)}")
        scores[FACE_FOUND] = face_found.detach().cpu().numpy().astype(bool)
    if baseline is not None:
        for name, values in per_sample_metrics(baseline, originals).items():
            scores[BASELINE_PREFIX + name] = column(values)
    return scores


def _mask_kinds(kinds: Sequence[str] | None, masks: torch.Tensor | None, n: int) -> Any:
    """The ``skin_mask`` column: ``kinds`` checked, or the default (``manifest`` with masks, else ``central``)."""
    import numpy as np

    if kinds is None:
        return np.full(n, "manifest" if masks is not None else "central", dtype=object)
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(SKIN_MASK_KINDS))
    if len(kinds) != n or unknown:
        raise ValueError(f"mask_kinds must give one of {list(SKIN_MASK_KINDS)} per image, got {len(kinds)} "
                         f"entries for {n} images{f' with {unknown}' if unknown else ''}")
    return np.array(kinds, dtype=object)


def audit_frame(
    per_image: pd.DataFrame,
    *,
    attributes: Sequence[str],
    metadata: Mapping[str, Any] | None = None,
    majority: Mapping[str, str] | None = None,
    uninformative: pd.DataFrame | None = None,
    seed: int = 0,
    reference: str = "best",
    primary_metric: str | None = None,
    classifier_held_out: pd.DataFrame | None = None,
    min_accuracy: float | None = None,
) -> AuditResult:
    """Every per-group table of an audit, from the per-image frame alone.

    Args:
        per_image: one row per audited image: ``path, subject, <attributes>`` and the columns of
            :func:`score_batch`.
        attributes: the sensitive attribute columns to group by.
        metadata: plain facts saved with the result (model, dataset, seed, ...).
        majority: the majority group of each grouping (most training people: :func:`majority_groups`;
            the representation tables measure drift toward it, and groupings without one get
            none); None: the majority of ``per_image``'s own people.
        uninformative: the classifier's labels of outputs from inputs that carry no group
            information (UCPR, upsamplers only), one column per attribute.
        seed: seeds every resampling.
        reference: the group each group is compared with: ``best``, ``largest`` or a label.
        primary_metric: the one metric whose disparity tests are the run's family of tests
            (the others exploratory); None: every disparity row is Holm-adjusted together
            (:mod:`genfair.audit.multiplicity`).
        classifier_held_out, min_accuracy: the attribute classifier's labels of held-out originals,
            and the accuracy a group needs for representation claims; see
            :func:`genfair.audit.attributes.classifier_tables` (None: its validity is measured on
            ``per_image``'s own originals, and :data:`genfair.audit.label_noise.MIN_ACCURACY`).

    Returns:
        The :class:`AuditResult`: ``per_image`` without the baseline's columns, the group and
        disparity frames, and ``tables``: ``group_intervals``, ``disparity_intervals``; with
        the skin-colour shifts (:data:`SKIN_MEASURES` present in ``per_image``: ΔITA, ΔL*, Δh*)
        ``skin_tone_shift`` (one column per measure), ``skin_tone_intervals``,
        ``skin_tone_disparities`` (rows per measure in its ``metric`` column);
        with classifier labels ``classifier_accuracy``, ``classifier_validity``,
        ``attribute_preservation``, ``representation``, ``representation_tests``; with baseline columns
        ``vs_bicubic_groups``, ``vs_bicubic_disparities``; with ``identity_drift``
        (:func:`genfair.audit.identity.identity_tables`) ``identity``, ``identity_intervals``,
        ``identity_disparities``.
    """
    import numpy as np

    from .attributes import classified_column, classifier_tables
    from .compare import compare_models
    from .grouping import group_table
    from .metrics import names as metric_names
    from .multiplicity import adjust_disparity_family
    from .result import summarize
    from .stats import interval_tables

    attributes = list(attributes)
    baseline_columns = [column for column in per_image.columns if str(column).startswith(BASELINE_PREFIX)]
    own = per_image.drop(columns=baseline_columns)
    metrics = [name for name in metric_names() if name in own.columns]
    tables: dict[str, pd.DataFrame] = {}
    if all(classified_column(attribute) in own.columns for attribute in attributes) and attributes:
        tables.update(classifier_tables(
            own, attributes=attributes, majority=majority if majority is not None else majority_groups(own, attributes),
            uninformative=uninformative, held_out=classifier_held_out, min_accuracy=min_accuracy, seed=seed))
    skin_measures = [name for name in SKIN_MEASURES if name in own.columns]
    if skin_measures:
        tables["skin_tone_shift"] = group_table(own, attributes=attributes, metrics=skin_measures)
        per_group, disparities = interval_tables(own, attributes=attributes, metrics=skin_measures, seed=seed,
                                                 reference=reference)
        # a ratio of signed shifts means nothing: the signed measures keep only their differences
        ratios = lambda frame: [c for c in frame.columns if str(c).startswith("ratio")]  # noqa: E731
        tables["skin_tone_intervals"] = per_group.assign(**dict.fromkeys(ratios(per_group), np.nan))
        tables["skin_tone_disparities"] = disparities.assign(**dict.fromkeys(ratios(disparities), np.nan))
    from .identity import IDENTITY_DRIFT, identity_tables

    if IDENTITY_DRIFT in own.columns:
        tables.update(identity_tables(own, attributes=attributes, seed=seed, reference=reference))
    tables["group_intervals"], tables["disparity_intervals"] = interval_tables(
        own, attributes=attributes, metrics=metrics, seed=seed, reference=reference
    )
    if baseline_columns:
        baseline = own[["path", "subject", *attributes]].assign(
            **{column.removeprefix(BASELINE_PREFIX): per_image[column].to_numpy() for column in baseline_columns}
        )
        versus = compare_models(baseline, own, attributes=attributes, metrics=metrics, seed=seed)
        tables["vs_bicubic_groups"], tables["vs_bicubic_disparities"] = versus.per_group, versus.disparities
    tables = adjust_disparity_family(tables, primary_metric=primary_metric)
    summary = summarize(own, attributes=attributes, metrics=metrics, metadata=dict(metadata or {}))
    return dataclasses.replace(summary, tables=tables)


def majority_groups(frame: pd.DataFrame, attributes: Sequence[str]) -> dict[str, str]:
    """The majority group of each grouping: the one with most people (not images).

    A grouping has a majority only when one group has strictly more people than every other:
    a balanced composition has none, and neither has a tie at the top (:func:`majority_notes`
    says which and why). The representation tables measure drift toward it only where it exists.

    Args:
        frame: one row per image with ``subject`` and the ``attributes`` columns (a training split).
        attributes: the sensitive attribute columns.

    Returns:
        Grouping name (``"gender"``, ``"gender x skin_tone"``) -> group label (``"male / lighter"``),
        for the groupings that have a majority.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"subject": ["a", "a", "a", "b", "c"], "gender": ["f", "f", "f", "m", "m"]})
        >>> majority_groups(frame, ["gender"])  # f has more images, m more people
        {'gender': 'm'}
    """
    return {grouping: tied[0] for grouping, (tied, _, balanced) in _most_people(frame, attributes).items()
            if len(tied) == 1 and not balanced}


def majority_notes(frame: pd.DataFrame, attributes: Sequence[str]) -> list[str]:
    """One sentence per grouping without a majority group (see :func:`majority_groups`): tied or balanced."""
    notes = []
    for grouping, (tied, people, balanced) in _most_people(frame, attributes).items():
        if balanced:
            notes.append(f"{grouping} has no majority group: the training split is balanced ({people} people per "
                         f"group), so no drift toward a majority is measured")
        elif len(tied) > 1:
            notes.append(f"{grouping} has no majority group: {', '.join(tied)} tie with {people} training people "
                         f"each, so no drift toward a majority is measured")
    return notes


def _most_people(frame: pd.DataFrame, attributes: Sequence[str]) -> dict[str, tuple[list[str], int, bool]]:
    """Per grouping: the groups with most people (sorted), that count, and whether every group has it."""
    attributes = list(attributes)
    sets = [[attribute] for attribute in attributes] + ([attributes] if len(attributes) > 1 else [])
    found = {}
    for columns in sets:
        people = frame.assign(_label=group_labels(frame, columns)).groupby("_label")["subject"].nunique()
        top = int(people.max())
        found[GROUPING_SEPARATOR.join(columns)] = (sorted(people.index[people == top]), top,
                                                   bool((people == top).all()) and len(people) > 1)
    return found


def audit_outputs(
    originals: torch.Tensor,
    outputs: torch.Tensor,
    frame: pd.DataFrame,
    *,
    attributes: Sequence[str],
    masks: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    classify: Classify | None = None,
    majority: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    seed: int = 0,
    reference: str = "best",
    batch_size: int = 256,
    primary_metric: str | None = None,
) -> AuditResult:
    """Audit a model's outputs held in memory: the Python way in for a notebook.

    Args:
        originals: ``(N, C, H, W)`` float in [0, 1].
        outputs: ``(N, C, H, W)`` float in [0, 1], the model's output for each original.
        frame: ``N`` rows in the images' order with ``path`` (any unique id), ``subject`` (the
            person: intervals resample people) and the ``attributes``.
        attributes: the sensitive attribute columns of ``frame``.
        masks: ``(N, 1, H, W)`` skin masks, optional.
        baseline: ``(N, C, H, W)`` a baseline's outputs, optional (see :func:`score_batch`).
        classify: an attribute classifier (see :func:`score_batch`), optional.
        majority: see :func:`audit_frame`.
        metadata: facts saved with the result, e.g. ``{"model": "my-sr"}``.
        seed: seeds every resampling.
        reference: see :func:`audit_frame`.
        batch_size: images scored at once.
        primary_metric: see :func:`audit_frame`.

    Returns:
        The :class:`AuditResult`.

    Raises:
        ValueError: a missing column, or tensors whose lengths differ from the frame's.

    Example:
        >>> import pandas as pd, torch
        >>> generator = torch.Generator().manual_seed(0)
        >>> originals = torch.rand(40, 3, 8, 8, generator=generator)
        >>> frame = pd.DataFrame({"path": [f"{i}.png" for i in range(40)], "subject": [i // 2 for i in range(40)],
        ...                       "gender": ["f", "m"] * 20})
        >>> result = audit_outputs(originals, (originals * 0.9).clamp(0, 1), frame, attributes=["gender"])
        >>> sorted(result.per_group["group"])
        ['all', 'f', 'm']
    """
    import pandas as pd

    missing = [column for column in ("path", "subject", *attributes) if column not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the column(s) {missing}; it has {list(frame.columns)}")
    for name, tensor in (("outputs", outputs), ("masks", masks), ("baseline", baseline)):
        if tensor is not None and len(tensor) != len(originals):
            raise ValueError(f"{name} must have one entry per original, got {len(tensor)} for {len(originals)}")
    if len(frame) != len(originals):
        raise ValueError(f"frame must have one row per image, got {len(frame)} rows for {len(originals)} images")
    parts = []
    for start in range(0, len(originals), batch_size):
        window = slice(start, start + batch_size)
        parts.append(pd.DataFrame(score_batch(
            originals[window], outputs[window], masks=None if masks is None else masks[window],
            baseline=None if baseline is None else baseline[window], classify=classify,
        )))
    rows = frame[["path", "subject", *attributes]].reset_index(drop=True)
    for column in attributes:
        rows[column] = rows[column].astype(str)
    per_image = pd.concat([rows, pd.concat(parts, ignore_index=True)], axis=1)
    return audit_frame(per_image, attributes=attributes, metadata=metadata, majority=majority, seed=seed,
                       reference=reference, primary_metric=primary_metric)
