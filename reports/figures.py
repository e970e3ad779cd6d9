"""Figures of an audit: per-group error distributions, original-vs-output image grids and each group's worst cases.

Every figure is a :class:`matplotlib.figure.Figure` built directly (never through
``pyplot``) on its own Agg canvas, so drawing here neither selects a global backend nor
registers figures with pyplot's figure manager: nothing leaks between calls, and a figure is
freed when its last reference goes. Seaborn draws onto the axes created here; no seaborn
theme or global ``rcParams`` is changed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genfair.audit.grouping import group_labels

__all__ = ["error_by_group_figure", "higher_is_better_from_name", "reconstruction_grid_figure",
           "samples_grid_figure", "worst_case_figures", "worst_cases_figure"]

logger = logging.getLogger(__name__)

HIGHER_IS_BETTER_SUFFIXES = ("_score",)
LOWER_IS_BETTER_SUFFIXES = ("_error", "_loss")
ALLOWED_CHANNELS = (1, 3)


def higher_is_better_from_name(metric: str) -> bool:
    """Whether a higher value of ``metric`` is better, read from its name's suffix.

    ``*_score`` means higher is better; ``*_error`` and ``*_loss`` mean lower is better
    (the project's naming convention).

    Args:
        metric: a metric column name such as ``"psnr_score"`` or ``"mse_error"``.

    Returns:
        True for ``*_score``, False for ``*_error`` / ``*_loss``.

    Raises:
        ValueError: the name has none of these suffixes.

    Example:
        >>> higher_is_better_from_name("psnr_score"), higher_is_better_from_name("mse_error")
        (True, False)
    """
    if metric.endswith(HIGHER_IS_BETTER_SUFFIXES):
        return True
    if metric.endswith(LOWER_IS_BETTER_SUFFIXES):
        return False
    raise ValueError(
        f"cannot tell whether higher or lower {metric!r} is better: its name ends in none of "
        f"{HIGHER_IS_BETTER_SUFFIXES + LOWER_IS_BETTER_SUFFIXES}; pass higher_is_better=True or False"
    )


def error_by_group_figure(
    per_image: pd.DataFrame,
    *,
    metric: str,
    attributes: Sequence[str],
    higher_is_better: bool | None = None,
    seed: int = 0,
) -> Figure:
    """The distribution of a per-image metric in every intersectional group, as box + strip plots.

    One horizontal box per group of the intersection of ``attributes`` (e.g. "female / darker"),
    worst group on top, each image drawn as a point over its box (jittered vertically with a
    generator seeded by ``seed``). Group labels carry their image and subject counts. A dashed
    line marks the overall mean. Non-finite values (an ``inf`` PSNR of a perfect reconstruction)
    cannot be placed on the axis: they are left out of the boxes, points and mean, and the title
    says how many were left out.

    Args:
        per_image: one row per evaluated image, with columns ``subject``, every one of
            ``attributes`` and ``metric``.
        metric: the per-image metric column to draw, e.g. ``"mse_error"``.
        attributes: the sensitive attribute columns whose intersection defines the groups
            (one or more).
        higher_is_better: whether higher ``metric`` values are better; None infers it from the
            name's suffix (``_score`` -> True, ``_error``/``_loss`` -> False).
        seed: seeds the vertical jitter of the points.

    Returns:
        A figure with one axes.

    Raises:
        ValueError: ``attributes`` is empty, a needed column is missing, ``per_image`` has no
            rows, ``metric`` is not numeric or has no finite value, or ``higher_is_better`` is
            None and the metric's name does not say.
    """
    attributes = [attributes] if isinstance(attributes, str) else list(attributes)
    if not attributes:
        raise ValueError("attributes must name at least one column of per_image, got an empty list")
    needed = ["subject", *attributes, metric]
    missing = [column for column in needed if column not in per_image.columns]
    if missing:
        raise ValueError(
            f"per_image lacks column(s) {missing}; it has {list(per_image.columns)}: pass a per-image "
            f"frame with 'subject', the attributes and the metric column"
        )
    if per_image.empty:
        raise ValueError(f"per_image has no rows: there is nothing to draw for {metric!r}")
    if not pd.api.types.is_numeric_dtype(per_image[metric]) or pd.api.types.is_bool_dtype(per_image[metric]):
        raise ValueError(f"per_image column {metric!r} must be numeric, got dtype {per_image[metric].dtype}")
    if higher_is_better is None:
        higher_is_better = higher_is_better_from_name(metric)

    values = per_image[metric].to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"per_image column {metric!r} has no finite value: there is nothing to draw")
    n_left_out = int((~finite).sum())

    frame = pd.DataFrame(
        {
            "group": _group_labels(per_image, attributes),
            "subject": per_image["subject"].to_numpy(),
            "value": values,
            "finite": finite,
        }
    )
    stats = frame.groupby("group", sort=True).agg(
        n_images=("value", "size"),
        n_subjects=("subject", "nunique"),
        mean=("value", lambda v: float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else np.nan),
    )
    # Worst group first (on top): the largest mean error or the smallest mean score.
    stats = stats.sort_values("mean", ascending=higher_is_better, kind="stable", na_position="last")
    labels = {
        group: f"{group}\n{_count(n_images, 'image')}, {_count(n_subjects, 'subject')}"
        for group, n_images, n_subjects in zip(stats.index, stats["n_images"], stats["n_subjects"], strict=True)
    }
    order = [labels[group] for group in stats.index]
    plotted = frame.loc[frame["finite"]].assign(label=lambda f: f["group"].map(labels))

    figure = Figure(figsize=(8.0, 1.5 + 0.75 * len(order)), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    sns.boxplot(
        data=plotted, x="value", y="label", order=order, ax=ax, color="C0", width=0.6, showfliers=False,
        boxprops={"alpha": 0.45},
    )
    rng = np.random.default_rng(seed)
    for position, label in enumerate(order):
        points = plotted.loc[plotted["label"] == label, "value"].to_numpy()
        jitter = rng.uniform(-0.18, 0.18, size=len(points))
        ax.scatter(points, position + jitter, s=12, color="black", alpha=0.55, linewidths=0, zorder=3)
    overall_mean = float(values[finite].mean())
    ax.axvline(overall_mean, color="C3", linestyle="--", linewidth=1.5, label=f"overall mean = {overall_mean:.4g}")
    ax.legend(loc="lower right" if higher_is_better else "upper right", fontsize=8, framealpha=0.9)
    ax.set_ylabel(" x ".join(attributes))
    direction = "higher is better \u2192" if higher_is_better else "\u2190 lower is better"
    ax.set_xlabel(f"{metric} per image ({direction})")
    ax.grid(axis="x", alpha=0.3)
    title = f"{metric} by {' x '.join(attributes)} (worst group on top)"
    if n_left_out:
        title += f"\n{_count(n_left_out, 'non-finite value')} left out"
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=8)
    return figure


def reconstruction_grid_figure(originals: np.ndarray, outputs: np.ndarray, labels: Sequence[str]) -> Figure:
    """Originals above the model's outputs: one column per image, titled by its label.

    Args:
        originals: ``(N, H, W, C)`` float in [0, 1], C in {1, 3}: the input images.
        outputs: ``(N, H, W, C)`` float in [0, 1], same shape: the model's outputs for them.
        labels: N strings, one title per column (e.g. the image's group "female / darker").

    Returns:
        A figure with ``2 * N`` axes (row 0: originals, row 1: outputs), each holding one image.

    Raises:
        ValueError: an array is not 4-D, the shapes differ, N is 0, C is not 1 or 3, the
            dtype is not floating point, a value is NaN or outside [0, 1], or ``labels`` is not
            a sequence of N strings.
    """
    originals = _checked_images(originals, "originals")
    outputs = _checked_images(outputs, "outputs")
    if originals.shape != outputs.shape:
        raise ValueError(
            f"originals and outputs must have the same (N, H, W, C) shape, got {originals.shape} and "
            f"{outputs.shape}"
        )
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError(f"labels must be a sequence of {len(originals)} strings, got {type(labels).__name__}")
    if len(labels) != len(originals):
        raise ValueError(f"labels must hold one string per image: got {len(labels)} labels for {len(originals)} images")

    n, _, _, channels = originals.shape
    figure = Figure(figsize=(max(1.5 * n, 3.0), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, n, squeeze=False)
    for column in range(n):
        for row, images in enumerate((originals, outputs)):
            ax = axes[row, column]
            image = images[column, :, :, 0] if channels == 1 else images[column]
            ax.imshow(image, cmap="gray" if channels == 1 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(str(labels[column]), fontsize=8)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("output")
    return figure


def samples_grid_figure(samples: np.ndarray, *, columns: int = 8, title: str = "") -> Figure:
    """A grid of a generative model's samples, ``columns`` to a row.

    Args:
        samples: ``(N, H, W, C)`` float in [0, 1], C in {1, 3}, N >= 1.
        columns: images per row, >= 1.
        title: the figure's title (e.g. who the classifier says was generated).

    Returns:
        A figure with ``ceil(N / columns) * columns`` axes (the unused ones blank).

    Raises:
        ValueError: as :func:`reconstruction_grid_figure` for ``samples``; ``columns`` < 1.
    """
    samples = _checked_images(samples, "samples")
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive int, got {columns!r}")
    n, channels = samples.shape[0], samples.shape[-1]
    rows = -(-n // columns)
    figure = Figure(figsize=(1.2 * columns, 1.2 * rows + (0.4 if title else 0.0)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for position, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if position < n:
            image = samples[position, :, :, 0] if channels == 1 else samples[position]
            ax.imshow(image, cmap="gray" if channels == 1 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


#: The per-pick columns a worst-case figure reads (the ``worst_cases`` table of a run).
WORST_CASE_FIGURE_COLUMNS = ("grouping", "group", "measure", "rank", "value", "path", "subject", "original_png",
                             "output_png")


def worst_cases_figure(worst: pd.DataFrame, *, measure: str, statistics: pd.DataFrame | None = None) -> Figure:
    """The worst images of every group for one measure: each original beside its output.

    One row per group, in the table's order; per pick two tiles (original, output), the original
    labelled ``#rank path``, ``subject`` and ``measure = value``. A group's label carries its
    statistic from ``statistics`` (``estimate [ci_low, ci_high]``, n people), the number the images
    illustrate.

    Args:
        worst: picks with :data:`WORST_CASE_FIGURE_COLUMNS` (:func:`genfair.audit.worst_cases.worst_cases`
            with ``original_png`` and ``output_png``: PNG bytes).
        measure: the measure to draw, e.g. ``"mse_error"``.
        statistics: :func:`genfair.audit.worst_cases.measure_statistics`' rows for ``measure``, or None.

    Returns:
        A figure with one axes per group: its ``k`` picks as one image, each original then its
        output (the tiles left to right, a white gap between), each pick's label above it.

    Raises:
        ValueError: a needed column is missing, or ``worst`` has no pick of ``measure``.
    """
    missing = [column for column in WORST_CASE_FIGURE_COLUMNS if column not in worst.columns]
    if missing:
        raise ValueError(f"worst cases lack column(s) {missing}; pass the audit's worst_cases table")
    rows = worst[worst["measure"] == measure]
    if rows.empty:
        raise ValueError(f"no worst case of {measure!r}; the table has {sorted(set(worst['measure']))}")
    groups = list(dict.fromkeys(zip(rows["grouping"], rows["group"], strict=True)))
    k = int(rows["rank"].max())
    # One axes per group showing a strip of tiles (a mosaic): one axes per image made the layout
    # engine the run's slowest step (seconds per run for a dozen groups).
    figure = Figure(figsize=(2.0 * k * 1.1 + 1.6, 1.9 * len(groups) + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (grouping, group) in zip(axes, groups, strict=True):
        picks = rows[(rows["grouping"] == grouping) & (rows["group"] == group)]
        tiles = {(int(pick.rank) - 1) * 2 + offset: _decoded(data)
                 for pick in picks.itertuples(index=False)
                 for offset, data in enumerate((pick.original_png, pick.output_png))}
        height, width = next(iter(tiles.values())).shape[:2]
        gap = max(1, width // 8)
        strip = np.full((height, 2 * k * width + (2 * k - 1) * gap, 3), 255, dtype=np.uint8)
        for slot, tile in tiles.items():
            left = slot * (width + gap)
            strip[:, left:left + width] = tile[:height, :width]
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        ax.set_ylabel(f"{group}\n{_statistic_text(statistics, grouping, group)}", fontsize=7)
        for pick in picks.itertuples(index=False):
            left = (int(pick.rank) - 1) * 2 * (width + gap)
            ax.text(left, -0.5, f"#{pick.rank} {pick.path}\n{pick.subject}\n{measure} = {pick.value:.3g}",
                    fontsize=6, ha="left", va="bottom")
            ax.text(left + width + gap, -0.5, "output", fontsize=6, ha="left", va="bottom")
    figure.suptitle(f"Worst {measure} per group (largest |value|): original, then output", fontsize=9)
    return figure


def worst_case_figures(tables: Mapping[str, pd.DataFrame]) -> dict[str, Figure]:
    """``{"worst_cases_<measure>": figure}`` for every measure of a result's ``worst_cases`` table.

    Args:
        tables: an :class:`~genfair.audit.result.AuditResult`'s ``tables``; without ``worst_cases``
            (an audit made before there were any, or held in memory) the answer is empty.
    """
    from genfair.audit.worst_cases import measure_statistics

    worst = tables.get("worst_cases")
    if worst is None or worst.empty:
        return {}
    return {f"worst_cases_{measure}": worst_cases_figure(worst, measure=measure,
                                                        statistics=measure_statistics(tables, measure))
            for measure in dict.fromkeys(worst["measure"])}


def _statistic_text(statistics: pd.DataFrame | None, grouping: str, group: str) -> str:
    """``"mean 0.012 [0.010, 0.014], 6 people"`` for one group, or ``""`` when ``statistics`` lacks it."""
    if statistics is None or statistics.empty:
        return ""
    found = statistics[(statistics["grouping"] == grouping) & (statistics["group"] == group)]
    if found.empty:
        return ""
    row = found.iloc[0]
    people = int(row["n_subjects"])
    return (f"mean {row['estimate']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]\n"
            f"{people} {'person' if people == 1 else 'people'}")


def _decoded(png: bytes) -> np.ndarray:
    """PNG bytes as an ``(H, W, 3)`` uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _count(n: int, noun: str) -> str:
    """``"1 image"``, ``"3 images"``."""
    n = int(n)
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _group_labels(per_image: pd.DataFrame, attributes: Sequence[str]) -> np.ndarray:
    """The intersectional group of every row, e.g. "female / darker": ``(N,)`` strings."""
    return group_labels(per_image, attributes)


def _checked_images(images: np.ndarray, name: str) -> np.ndarray:
    """``images`` as a float array after checking it is ``(N, H, W, C)``, C in {1, 3}, in [0, 1]."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"{name} must be a (N, H, W, C) array, got {array.ndim} dimension(s) with shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} holds no image (shape {array.shape}): pass at least one")
    if array.shape[-1] not in ALLOWED_CHANNELS:
        raise ValueError(
            f"{name} must be channels-last with C in {ALLOWED_CHANNELS}, got shape {array.shape}; "
            f"a (N, C, H, W) array needs .transpose(0, 2, 3, 1)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be floats in [0, 1], got dtype {array.dtype}; divide 8-bit images by 255")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN values: pass images in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; clip or rescale them first"
        )
    return array
