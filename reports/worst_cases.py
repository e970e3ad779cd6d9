"""The report's worst-case section: every group's worst images, linked to the statistic they illustrate.

For each model, each measure of its ``worst_cases`` table (largest error, identity drift, skin
shift) gets a table of the groups' statistics (mean and 95% interval, from the model's own
per-group interval table) whose rows link to the group's worst images, each shown original
beside output, captioned with its path, person and value, and linking back to its row. The HTML
embeds the images (data URIs: the page stays self-contained); the Markdown twin points at PNG
files written beside it.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from genfair.audit.result import AuditResult

__all__ = ["IMAGE_FOLDER", "WorstCaseSection", "worst_case_section"]

#: Where the Markdown report's worst-case images go, relative to the report.
IMAGE_FOLDER = "figures/worst_cases"
TITLE = "Worst cases: each group's images that fare worst"
MEASURE_NAMES = {"mse_error": "error (MSE)", "identity_drift": "identity drift", "ita_shift": "skin-tone shift ΔITA",
                 "lightness_shift": "skin lightness shift ΔL*"}


@dataclass(frozen=True)
class WorstCaseSection:
    """The section, ready to append to a report.

    Attributes:
        html: the section's HTML (one ``<section id="worst-cases">``).
        markdown: its Markdown twin.
        images: relative path (under :data:`IMAGE_FOLDER`) -> PNG bytes the Markdown shows.
    """

    html: str
    markdown: str
    images: dict[str, bytes] = field(default_factory=dict)


def worst_case_section(audits: Mapping[str, AuditResult]) -> WorstCaseSection | None:
    """The worst-case section of the audits that carry a ``worst_cases`` table; None if none does.

    Element ids: a statistic's row is ``stat-<model>-<measure>-<group>``, its images
    ``worst-<model>-<measure>-<group>`` (lowercase, runs of other characters as ``-``; a clash
    gets a numeric suffix); each links to the other.

    Args:
        audits: ``{model: audit}``.
    """
    from genfair.audit.worst_cases import measure_statistics

    used: set[str] = set()
    parts_html: list[str] = []
    parts_md: list[str] = []
    images: dict[str, bytes] = {}
    shown: dict[str, None] = {}  # the measures, in order of appearance
    k = 0
    for model, audit in audits.items():
        worst = audit.tables.get("worst_cases")
        if worst is None or worst.empty:
            continue
        k = max(k, int(worst["rank"].max()))
        parts_html.append(f"<h3>{html.escape(model)}</h3>")
        parts_md += [f"### {model}", ""]
        for measure in dict.fromkeys(worst["measure"]):
            rows = worst[worst["measure"] == measure]
            statistics = measure_statistics(audit.tables, measure)
            shown.setdefault(measure, None)
            source = f"; statistics from {statistics['table'].iloc[0]}" if len(statistics) else ""
            heading = f"{model}: {MEASURE_NAMES.get(measure, measure)} ({measure}{source})"
            table_html, table_md, blocks_html, blocks_md = [], [], [], []
            for (grouping, group), picks in rows.groupby(["grouping", "group"], sort=False):
                key = _unique(_slug(model, measure, group), used)
                stat_id, worst_id = f"stat-{key}", f"worst-{key}"
                people, estimate = _statistic(statistics, grouping, group)
                label = f"{len(picks)} worst image{'s' if len(picks) != 1 else ''}"
                table_html.append(
                    f'<tr id="{stat_id}"><td>{html.escape(group)}</td><td>{people}</td><td>{estimate}</td>'
                    f'<td><a href="#{worst_id}">{label} ↓</a></td></tr>')
                table_md.append(f'| <a id="{stat_id}"></a>{_cell(group)} | {people} | {estimate} | '
                                f"[{label}](#{worst_id}) |")
                figures_html, lines_md = [], []
                for pick in picks.sort_values("rank").itertuples(index=False):
                    caption = f"#{pick.rank} {pick.path}, {pick.subject}: {measure} = {_value(pick.value)}"
                    original, output = _data_uri(pick.original_png), _data_uri(pick.output_png)
                    figures_html.append(
                        f'<figure class="pair"><img alt="original of {html.escape(str(pick.path))}" src="{original}">'
                        f'<img alt="{html.escape(model)} output of {html.escape(str(pick.path))}" src="{output}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
                    stem = f"{key}-{pick.rank}"
                    images[f"{stem}-original.png"], images[f"{stem}-output.png"] = pick.original_png, pick.output_png
                    lines_md.append(f"- {_cell(caption)}: ![original]({IMAGE_FOLDER}/{stem}-original.png) "
                                    f"![output]({IMAGE_FOLDER}/{stem}-output.png)")
                back = f"{model} · {measure} · {group}" + (f": {estimate}" if estimate else "")
                blocks_html.append(f'<div class="worst" id="{worst_id}"><p><a href="#{stat_id}">↑ '
                                   f'{html.escape(back)}</a></p><div class="pairs">{"".join(figures_html)}</div></div>')
                blocks_md += [f'<a id="{worst_id}"></a>**{_cell(group)}** ([↑ {_cell(back)}](#{stat_id}))', "",
                              *lines_md, ""]
            parts_html.append(f"<h4>{html.escape(heading)}</h4>")
            parts_html.append('<div class="table"><table><thead><tr><th>group</th><th>people</th>'
                              "<th>mean (95% CI)</th><th>worst cases</th></tr></thead><tbody>"
                              + "".join(table_html) + "</tbody></table></div>")
            parts_html += blocks_html
            parts_md += [f"#### {heading}", "", "| group | people | mean (95% CI) | worst cases |", "|---|---|---|---|",
                         *table_md, "", *blocks_md]
    if not parts_html:
        return None
    measures = ", ".join(MEASURE_NAMES.get(measure, measure) for measure in shown)
    intro = (f"For every group, the {k} images with the largest magnitude of each measure ({measures}), each "
             f"original beside the model's output. Each row of a table is the "
             f"group's statistic (its mean with the 95% interval that resamples people, from the model's run) "
             f"and links to the images behind it; each image links back to its row.")
    section_html = (f'<section id="worst-cases"><h2>{html.escape(TITLE)}</h2><p class="notes">{html.escape(intro)}</p>'
                    + "\n".join(parts_html) + "</section>")
    section_md = "\n".join([f"## {TITLE}", "", intro, "", *parts_md])
    return WorstCaseSection(html=section_html, markdown=section_md, images=images)


#: Styles of the section, appended to the report's.
CSS = """
.pairs { display: flex; flex-wrap: wrap; gap: 0.8rem; }
figure.pair { margin: 0.2rem 0; max-width: 220px; font-size: 0.75rem; color: #444; }
figure.pair img { width: 96px; height: 96px; image-rendering: pixelated; margin-right: 2px; }
tr:target, .worst:target { background: #fff6d5; }
"""


def _slug(*parts: object) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", str(part).lower()).strip("-") or "x" for part in parts)


def _unique(key: str, used: set[str]) -> str:
    candidate, n = key, 2
    while candidate in used:
        candidate, n = f"{key}-{n}", n + 1
    used.add(candidate)
    return candidate


def _statistic(statistics: pd.DataFrame, grouping: str, group: str) -> tuple[str, str]:
    """``(people, "estimate [low, high]")`` of one group, empty strings when the table lacks it."""
    if statistics.empty:
        return "", ""
    found = statistics[(statistics["grouping"] == grouping) & (statistics["group"] == group)]
    if found.empty:
        return "", ""
    row = found.iloc[0]
    interval = (f" [{_value(row['ci_low'])}, {_value(row['ci_high'])}]"
                if all(_finite(row[c]) for c in ("ci_low", "ci_high")) else "")
    return str(int(row["n_subjects"])), (_value(row["estimate"]) + interval if _finite(row["estimate"]) else "")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _value(value: float) -> str:
    return f"{value:.3g}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
