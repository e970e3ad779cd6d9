"""The comparison report: which generative model suits the task, as one HTML file and a Markdown twin.

:func:`comparison_figures` draws the figures from the audits alone (their tables: no model is
re-run); :func:`display_table` formats :func:`genfair.audit.ranking.comparison_table` for
people; :func:`write_report` writes ``report.html`` (self-contained: figures embedded as
base64 PNG, inline CSS, no script, no network) and ``report.md`` (figures as PNG files in
``figures/`` beside it), with each group's worst images linked to their statistics after the figures
(:mod:`genfair.reports.worst_cases`). Figures are built on their own Agg canvas like
:mod:`genfair.reports.figures`; no global matplotlib or seaborn state is touched.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genfair.audit.grouping import GROUPING_SEPARATOR, group_labels

if TYPE_CHECKING:
    from genfair.audit.result import AuditResult

__all__ = ["comparison_figures", "display_table", "effects_figure", "learning_curve_figure", "write_report"]

FIGURE_TITLES = {
    "group_error": "Error per group, every model (95% intervals resample people)",
    "error_distribution": "Per-image error distribution per group",
    "samples": "The same people: originals (top) and each model's output",
    "skin_tone_shift": "Skin-tone shift ΔITA per group (positive: output lighter; 95% intervals)",
    "lightness_shift": "Skin lightness shift ΔL* per group (positive: output lighter; 95% intervals)",
    "hue_shift": "Skin hue shift Δh* per group (positive: output yellower, negative: redder; 95% intervals)",
    "latent_space": "Latent space of each autoencoder in 2-D (PCA, t-SNE), coloured by group",
    "learning_curves": "Learning curves: each trained model's training and validation loss per epoch (ring: best validation epoch, the weights audited)",
    "effects": "Where the excess error comes from: each effect per group (95% intervals; open: within retraining noise)",
}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _interval_axes(axes: Any, rows: pd.DataFrame, *, value_label: str, reference: float | None = None,
                   legend: bool = True) -> None:
    """Points with error bars on ``axes``: groups on the y axis, models side by side.

    ``rows``: columns ``model, group, estimate, ci_low, ci_high`` (and optionally ``hollow``:
    drawn as open markers, e.g. an effect within retraining noise).
    """
    models = list(dict.fromkeys(rows["model"]))
    groups = list(dict.fromkeys(rows["group"]))
    palette = sns.color_palette("colorblind", len(models))
    step = 0.8 / max(1, len(models))
    for position, model in enumerate(models):
        part = rows[rows["model"] == model].set_index("group").reindex(groups)
        y = np.arange(len(groups)) - 0.4 + step * (position + 0.5)
        low = (part["estimate"] - part["ci_low"]).clip(lower=0).to_numpy(dtype=float)
        high = (part["ci_high"] - part["estimate"]).clip(lower=0).to_numpy(dtype=float)
        hollow = part["hollow"].fillna(False).to_numpy(dtype=bool) if "hollow" in part else np.zeros(len(groups), bool)
        for open_marker in (False, True):
            keep = hollow == open_marker
            if not keep.any():
                continue
            axes.errorbar(part["estimate"].to_numpy(dtype=float)[keep], y[keep],
                          xerr=np.nan_to_num(np.vstack([low, high]))[:, keep], fmt="o", color=palette[position],
                          label=model if not open_marker else None, capsize=2, markersize=4,
                          markerfacecolor="white" if open_marker else palette[position])
    if reference is not None:
        axes.axvline(reference, color="0.6", linewidth=0.8)
    axes.set_yticks(np.arange(len(groups)), groups)
    axes.invert_yaxis()
    axes.set_xlabel(value_label)
    if legend:
        axes.legend(loc="best", fontsize="small", frameon=False)


def _interval_figure(rows: pd.DataFrame, *, value_label: str, reference: float | None = None) -> Figure:
    """One axes of :func:`_interval_axes`, sized to the number of groups and models."""
    groups, models = rows["group"].nunique(), rows["model"].nunique()
    figure = _figure(7.5, 0.45 * groups * max(1, models) ** 0.5 + 1.5)
    _interval_axes(figure.add_subplot(), rows, value_label=value_label, reference=reference)
    return figure


def effects_figure(effects: pd.DataFrame, *, grouping: str | None = None) -> Figure:
    """Each attribution effect per group (one panel per effect), models side by side, 95% intervals.

    Args:
        effects: :func:`genfair.audit.attribution.attribution_effects`' table.
        grouping: the grouping to draw (default: the finest, the last in the table).

    Open markers: effects within retraining noise.
    """
    grouping = grouping or effects["grouping"].iloc[-1]
    rows = effects[effects["grouping"] == grouping].assign(hollow=lambda f: f["within_seed_noise"])
    names = list(dict.fromkeys(rows["effect"]))
    figure = _figure(4.0 * len(names) + 1.0, 0.5 * rows["group"].nunique() + 1.8)
    for position, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), position + 1)
        part = rows[rows["effect"] == name]
        _interval_axes(axes, part, value_label=f"{name} effect (error)", reference=0.0, legend=position == 0)
        axes.set_title(part["contrast"].iloc[0], fontsize="small")
        if position:
            axes.set_yticklabels([])
    return figure


def _group_rows(results: Mapping[str, AuditResult], table: str, metric: str, grouping: str) -> pd.DataFrame:
    frames = []
    for name, result in results.items():
        found = result.tables.get(table)
        if found is None:
            continue
        part = found[(found["grouping"] == grouping) & (found["metric"] == metric)]
        frames.append(part[["group", "estimate", "ci_low", "ci_high"]].assign(model=name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _distribution_figure(results: Mapping[str, AuditResult], metric: str, attributes: Sequence[str]) -> Figure:
    frames = []
    for name, result in results.items():
        per_image = result.per_image
        label = group_labels(per_image, attributes)
        frames.append(pd.DataFrame({"model": name, "group": label, metric: per_image[metric].to_numpy()}))
    data = pd.concat(frames, ignore_index=True)
    groups = sorted(data["group"].unique())
    figure = _figure(7.5, 0.5 * len(groups) * max(1, len(results)) ** 0.5 + 1.5)
    axes = figure.add_subplot()
    sns.boxplot(data=data, x=metric, y="group", hue="model", order=groups, orient="h", ax=axes, fliersize=1.5,
                linewidth=0.8, palette="colorblind")
    axes.set_xlabel(metric)
    axes.set_ylabel("")
    axes.legend(loc="best", fontsize="small", frameon=False)
    return figure


def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _samples_figure(results: Mapping[str, AuditResult], attributes: Sequence[str]) -> Figure | None:
    with_samples = {name: r.tables["samples"] for name, r in results.items() if "samples" in r.tables}
    if not with_samples:
        return None
    first = next(iter(with_samples.values()))
    paths = list(first["path"])
    rows = [("original", first.set_index("path")["original_png"])]
    rows += [(name, frame.set_index("path")["output_png"]) for name, frame in with_samples.items()]
    figure = _figure(1.0 * len(paths) + 1.2, 1.0 * len(rows) + 0.6)
    grid = figure.subplots(len(rows), len(paths), squeeze=False)
    labels = group_labels(first, attributes).tolist()
    for r, (name, images) in enumerate(rows):
        for c, path in enumerate(paths):
            axes = grid[r][c]
            axes.set_xticks([])
            axes.set_yticks([])
            if path in images.index:
                axes.imshow(_decode(images[path]))
            if c == 0:
                axes.set_ylabel(name, fontsize="small")
            if r == 0:
                axes.set_title(labels[c], fontsize="x-small")
    return figure


def _latent_figure(
    results: Mapping[str, AuditResult], attributes: Sequence[str], *, perplexity: float, early_exaggeration: float,
    seed: int,
) -> Figure | None:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    with_latents = {name: r for name, r in results.items() if "latents" in r.tables}
    if not with_latents:
        return None
    figure = _figure(8.0, 3.2 * len(with_latents))
    grid = figure.subplots(len(with_latents), 2, squeeze=False)
    for row, (name, result) in enumerate(with_latents.items()):
        latents = result.tables["latents"]
        codes = latents.drop(columns=["path"]).to_numpy(dtype=float)
        groups = result.per_image.set_index("path").loc[latents["path"], list(attributes)]
        labels = group_labels(groups, attributes)
        projections = {
            "PCA": PCA(n_components=2, random_state=seed).fit_transform(codes),
            f"t-SNE (perplexity {perplexity:g}, exaggeration {early_exaggeration:g})": TSNE(
                n_components=2, perplexity=min(perplexity, max(1.0, (len(codes) - 1) / 3)),
                early_exaggeration=early_exaggeration, init="pca", random_state=seed,
            ).fit_transform(codes),
        }
        for column, (method, points) in enumerate(projections.items()):
            axes = grid[row][column]
            sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=labels, hue_order=sorted(set(labels)), s=10,
                            ax=axes, palette="colorblind", legend=row == 0 and column == 1, linewidth=0)
            axes.set_title(f"{name}: {method}", fontsize="small")
            axes.set_xticks([])
            axes.set_yticks([])
        if row == 0 and grid[0][1].get_legend() is not None:
            sns.move_legend(grid[0][1], "upper left", bbox_to_anchor=(1, 1), fontsize="x-small", frameon=False)
    return figure


def comparison_figures(
    results: Mapping[str, AuditResult],
    *,
    metric: str = "mse_error",
    perplexity: float = 30.0,
    early_exaggeration: float = 12.0,
    seed: int = 0,
) -> dict[str, Figure]:
    """Every figure of the report, by name (see ``FIGURE_TITLES``); a figure with no data is left out.

    Args:
        results: ``{model: audit}``.
        metric: the error metric of the per-group and distribution figures.
        perplexity, early_exaggeration: t-SNE options of the latent-space figure.
        seed: seeds PCA and t-SNE.
    """
    first = next(iter(results.values()))
    attributes = list(first.metadata.get("attributes", []))
    grouping = GROUPING_SEPARATOR.join(attributes)
    figures: dict[str, Figure | None] = {}
    rows = _group_rows(results, "group_intervals", metric, grouping)
    figures["group_error"] = _interval_figure(rows, value_label=metric) if len(rows) else None
    figures["error_distribution"] = _distribution_figure(results, metric, attributes)
    figures["samples"] = _samples_figure(results, attributes)
    for name, measure, label in (("skin_tone_shift", "ita_shift", "ΔITA (degrees)"),
                                 ("lightness_shift", "lightness_shift", "ΔL* (L* units)"),
                                 ("hue_shift", "hue_shift", "Δh* (degrees)")):
        shifts = _group_rows(results, "skin_tone_intervals", measure, grouping)
        figures[name] = _interval_figure(shifts, value_label=label, reference=0.0) if len(shifts) else None
    figures["latent_space"] = _latent_figure(results, attributes, perplexity=perplexity,
                                             early_exaggeration=early_exaggeration, seed=seed)
    return {name: figure for name, figure in figures.items() if figure is not None}


def learning_curve_figure(curves: pd.DataFrame) -> Figure | None:
    """One panel per trained model: training and validation loss per epoch, the best validation epoch ringed.

    Args:
        curves: :func:`genfair.reports.tracking.learning_curves`' frame (model, stage, epoch, loss).

    Returns:
        The figure, or None when no model trained. Each panel has its own y scale (log): the
        models' losses are not on one scale (the VAE's is summed over pixels, the others' averaged).
    """
    trained = list(dict.fromkeys(curves["model"]))
    if not trained:
        return None
    columns = min(4, len(trained))
    rows = math.ceil(len(trained) / columns)
    figure = _figure(3.2 * columns, 2.6 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat[len(trained):]:
        axes.set_visible(False)
    for axes, model in zip(grid.flat, trained):
        for stage, style in (("train", "-"), ("val", "--")):
            line = curves[(curves["model"] == model) & (curves["stage"] == stage)]
            if len(line):
                axes.plot(line["epoch"], line["loss"], style, label=stage)
        val = curves[(curves["model"] == model) & (curves["stage"] == "val")]
        if len(val):
            best = val.loc[val["loss"].idxmin()]
            axes.plot([best["epoch"]], [best["loss"]], "o", fillstyle="none", color="black")
        axes.set_yscale("log")
        axes.set_title(f"{model} ({int(curves.loc[curves['model'] == model, 'epoch'].max())} epochs)")
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss")
        axes.legend(fontsize="small")
    return figure


def _with_interval(value: Any, low: Any, high: Any, fmt: str = ".3g") -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return ""
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and math.isfinite(low) and math.isfinite(high):
        return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
    return f"{value:{fmt}}"


def display_table(ranked: pd.DataFrame) -> pd.DataFrame:
    """The comparison table as text for people: one row per model, intervals in brackets."""
    number = lambda value, fmt: f"{value:{fmt}}" if isinstance(value, (int, float)) and math.isfinite(value) else ""  # noqa: E731
    rows = []
    for position, row in enumerate(ranked.to_dict("records"), start=1):
        rows.append({
            "rank": str(row.get("rank", position)),  # within the model's task
            "model": row["model"],
            "task": row["task"],
            f"{row['metric']} (95% CI)": _with_interval(row["error"], row["error_ci_low"], row["error_ci_high"]),
            "PSNR dB": _with_interval(row["psnr"], row["psnr_ci_low"], row["psnr_ci_high"]),
            "SSIM": _with_interval(row["ssim"], row["ssim_ci_low"], row["ssim_ci_high"]),
            "worst group": str(row["worst_group"] or ""),
            "worst error": number(row["worst_error"], ".3g"),
            "ratio worst/best": _with_interval(row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"]),
            "difference": _with_interval(row["difference"], row["difference_ci_low"], row["difference_ci_high"]),
            "p (Holm)": number(row["p_holm"], ".3g"),
            "ΔITA° most lightened": (f"{row['ita_worst_group']}: " if row["ita_worst_group"] else "")
            + _with_interval(row["ita_worst"], row["ita_worst_ci_low"], row["ita_worst_ci_high"], "+.2f"),
            "ΔL* most lightened": (f"{row['lightness_worst_group']}: " if row["lightness_worst_group"] else "")
            + _with_interval(row["lightness_worst"], row["lightness_worst_ci_low"], row["lightness_worst_ci_high"],
                             "+.2f"),
            "Δh° gap": _with_interval(row["hue_gap"], row["hue_gap_ci_low"], row["hue_gap_ci_high"], ".2f"),
            "preservation gap": _with_interval(row["preservation_gap"], row["preservation_gap_ci_low"],
                                               row["preservation_gap_ci_high"], ".2f"),
            "parameters": number(row["parameters"], ",.0f"),
            "s to predictions": number(row["seconds_to_predictions"], ".0f"),
            "images/s": number(row["images_per_second"], ",.0f"),
            "run": str(row["run_id"] or ""),
        })
    return pd.DataFrame(rows)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _markdown_table(frame: pd.DataFrame) -> str:
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _bold_html(text: str) -> str:
    """Escape ``text`` for HTML, then turn Markdown ``**bold**`` into ``<strong>``."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:nth-child(2), td:nth-child(3), th:nth-child(2), th:nth-child(3) { text-align: left; }
.table { overflow-x: auto; } figure { margin: 1.5rem 0; } img { max-width: 100%; }
.recommendation { background: #f3f7ff; border-left: 4px solid #3a6fd8; padding: 0.8rem 1rem; }
.notes { color: #555; font-size: 0.85rem; }
"""


def write_report(
    folder: str | Path,
    *,
    title: str,
    table: pd.DataFrame,
    recommendation: str,
    figures: Mapping[str, Figure],
    notes: Sequence[str] = (),
    audits: Mapping[str, AuditResult] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/*.png``) into ``folder``.

    Args:
        folder: created if missing; existing report files are replaced atomically.
        title: the page title and first heading.
        table: :func:`display_table`'s output.
        recommendation: the paragraph (Markdown ``**bold**`` allowed).
        figures: ``{name: figure}`` (:func:`comparison_figures`).
        notes: further paragraphs (plain text): how the numbers were made, where they come from.
        audits: ``{model: audit}``; those with a ``worst_cases`` table add the worst-case section
            after the figures (:func:`genfair.reports.worst_cases.worst_case_section`; its Markdown
            images go to ``figures/worst_cases/``); those with cosmology tables (``--dataset cosmo``)
            add the cosmic-web section (:func:`genfair.reports.cosmology.cosmology_section`).

    Returns:
        ``(html_path, markdown_path)``.
    """
    from genfair.audit.result import write_atomic

    from .cosmology import cosmology_section
    from .worst_cases import CSS as WORST_CASE_CSS
    from .worst_cases import IMAGE_FOLDER, worst_case_section

    out = Path(folder)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    images = {name: _png(figure) for name, figure in figures.items()}
    for name, data in images.items():
        write_atomic(out / "figures" / f"{name}.png", lambda temp, data=data: Path(temp).write_bytes(data))
    worst = worst_case_section(audits) if audits else None
    if worst is not None:
        (out / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
        for name, data in worst.images.items():
            write_atomic(out / IMAGE_FOLDER / name, lambda temp, data=data: Path(temp).write_bytes(data))

    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="recommendation">{_bold_html(recommendation)}</p>',
            '<div class="table">' + table.to_html(index=False, escape=True, border=0) + "</div>"]
    body += [f'<p class="notes">{html.escape(note)}</p>' for note in notes]
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        caption = html.escape(FIGURE_TITLES.get(name, name))
        body.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{encoded}">'
                    f"<figcaption>{caption}</figcaption></figure>")
    body += [worst.html] if worst is not None else []
    cosmic = cosmology_section(audits) if audits else None
    body += [cosmic[0]] if cosmic is not None else []
    css = _CSS + (WORST_CASE_CSS if worst is not None else "")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{css}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    markdown = [f"# {title}", "", recommendation, "", _markdown_table(table), ""]
    markdown += [note + "\n" for note in notes]
    markdown += [f"![{FIGURE_TITLES.get(name, name)}](figures/{name}.png)\n" for name in images]
    markdown += [worst.markdown] if worst is not None else []
    markdown += [cosmic[1]] if cosmic is not None else []

    html_path, markdown_path = out / "report.html", out / "report.md"
    write_atomic(html_path, lambda temp: Path(temp).write_text(page, encoding="utf-8"))
    write_atomic(markdown_path, lambda temp: Path(temp).write_text("\n".join(markdown), encoding="utf-8"))
    return html_path, markdown_path
