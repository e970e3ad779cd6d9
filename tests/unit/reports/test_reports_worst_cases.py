"""The worst cases in the reports: the comparison report's linked section, the figures, and MLflow."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import mlflow.tracking._tracking_service.utils as tracking_utils
import pytest
from mlflow.tracking import MlflowClient, fluent
from PIL import Image

from genfair.audit.worst_cases import worst_cases
from genfair.reports.comparison import write_report
from genfair.reports.figures import worst_case_figures, worst_cases_figure
from genfair.reports.tracking import log_audit


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _colours(path: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A colour per image, told apart by the test: (original, output)."""
    n = sum(map(ord, path)) % 250
    return (n, 10, 20), (n, 200, 40)


@pytest.fixture(scope="module")
def audit(make_audit):
    result = make_audit(2.0)
    picked = worst_cases(result.per_image, attributes=["gender", "skin_tone"], k=2).reset_index(drop=True)
    picked["original_png"] = [_png(_colours(p)[0]) for p in picked["path"]]
    picked["output_png"] = [_png(_colours(p)[1]) for p in picked["path"]]
    return dataclasses.replace(result, tables={**result.tables, "worst_cases": picked})


class _Page(HTMLParser):
    """Every element id, every in-page link, and each figure's images and caption."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.links: list[tuple[str, str | None]] = []  # (href, id of the enclosing row/block)
        self.figures: list[dict] = []
        self._open: list[str | None] = []
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = tag
        if tag in ("tr", "div"):
            self._open.append(attrs.get("id"))
        if tag == "a" and attrs.get("href", "").startswith("#"):
            owner = next((i for i in reversed(self._open) if i), None)
            self.links.append((attrs["href"][1:], owner))
        if tag == "figure" and attrs.get("class") == "pair":
            self.figures.append({"images": [], "caption": ""})
        if tag == "img" and self.figures and len(self.figures[-1]["images"]) < 2:
            self.figures[-1]["images"].append(attrs["src"])
        self._caption = self._caption or tag == "figcaption"

    def handle_endtag(self, tag):
        if tag in ("tr", "div") and self._open:
            self._open.pop()
        if tag == "figcaption":
            self._caption = False

    def handle_data(self, data):
        if self._caption:
            self.figures[-1]["caption"] += data


def _pixel(src: str) -> tuple[int, int, int]:
    data = base64.b64decode(src.removeprefix("data:image/png;base64,"))
    return Image.open(io.BytesIO(data)).convert("RGB").getpixel((1, 1))


def test_the_report_links_each_statistic_to_its_worst_images_and_back(audit, tmp_path: Path) -> None:
    import pandas as pd

    html_path, md_path = write_report(tmp_path / "out", title="t", table=pd.DataFrame({"model": ["cnn"]}),
                                      recommendation="r", figures={}, audits={"cnn": audit})
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    worst = audit.tables["worst_cases"]

    # one figure per pick, each original beside its own output, captioned path, person, value
    captions = {figure["caption"]: figure["images"] for figure in page.figures}
    assert len(captions) == len(page.figures) == len(worst)
    for pick in worst.itertuples(index=False):
        images = captions[f"#{pick.rank} {pick.path}, {pick.subject}: {pick.measure} = {pick.value:.3g}"]
        assert [_pixel(src) for src in images] == list(_colours(pick.path))

    # each (measure, group) row links to its block of images, and the block links back to the row
    rows = {i for i, tag in page.ids.items() if tag == "tr"}
    blocks = {i for i, tag in page.ids.items() if tag == "div" and i.startswith("worst-")}
    assert len(rows) == len(blocks) == worst.groupby(["measure", "group"]).ngroups == 3 * 4
    links = set(page.links)
    for row in rows:
        block = "worst-" + row.removeprefix("stat-")
        assert (block, row) in links and (row, block) in links
    assert all(target in page.ids for target, _ in page.links), "no link points nowhere"

    # the row's statistic is the group's mean, recomputed here from the per-image frame
    per_image = audit.per_image
    women = per_image[(per_image["gender"] == "female") & (per_image["skin_tone"] == "darker")]
    text = html_path.read_text(encoding="utf-8")
    row = re.search(r'<tr id="stat-cnn-mse-error-female-darker">(.*?)</tr>', text).group(1)
    assert f"<td>{women['mse_error'].mean():.3g} [" in row and f"<td>{women['subject'].nunique()}</td>" in row

    markdown = md_path.read_text(encoding="utf-8")
    images = re.findall(r"\]\((figures/worst_cases/[^)]+\.png)\)", markdown)
    assert len(images) == 2 * len(worst) and all((tmp_path / "out" / path).is_file() for path in images)
    assert '<a id="stat-cnn-ita-shift-male-lighter"></a>' in markdown
    assert "(#worst-cnn-ita-shift-male-lighter)" in markdown and '<a id="worst-cnn-ita-shift-male-lighter"></a>' in markdown


def test_a_report_without_worst_cases_has_no_section(make_audit, tmp_path: Path) -> None:
    import pandas as pd

    html_path, _ = write_report(tmp_path, title="t", table=pd.DataFrame({"model": ["a"]}), recommendation="r",
                                figures={}, audits={"a": make_audit(1.0)})
    assert "worst-cases" not in html_path.read_text(encoding="utf-8")


def test_the_figure_shows_every_pick_beside_its_output_with_the_groups_statistic(audit) -> None:
    figures = worst_case_figures(audit.tables)
    assert set(figures) == {"worst_cases_mse_error", "worst_cases_ita_shift", "worst_cases_lightness_shift"}
    figure = figures["worst_cases_ita_shift"]
    assert len(figure.axes) == 4, "one strip per group"
    worst = audit.tables["worst_cases"]
    first = worst[worst["measure"] == "ita_shift"].iloc[0]
    strip = figure.axes[0].images[0].get_array()
    side = strip.shape[0]
    gap = max(1, side // 8)
    assert strip.shape[1] == 4 * side + 3 * gap, "2 picks x (original, output), white gaps between"
    assert tuple(strip[1, 1]) == _colours(first["path"])[0]
    assert tuple(strip[1, side + gap + 1]) == _colours(first["path"])[1]
    assert (strip[:, side:side + gap] == 255).all()
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert first["path"] in labels[0] and labels[1] == "output"
    stats = audit.tables["skin_tone_intervals"]
    row = stats[(stats["group"] == first["group"]) & (stats["metric"] == "ita_shift")].iloc[0]
    assert f"mean {row['estimate']:.3g} [" in figure.axes[0].get_ylabel()


def test_the_figure_refuses_a_table_it_cannot_draw(audit) -> None:
    worst = audit.tables["worst_cases"]
    with pytest.raises(ValueError, match=r"worst cases lack column\(s\) \['original_png'\]"):
        worst_cases_figure(worst.drop(columns=["original_png"]), measure="mse_error")
    with pytest.raises(ValueError, match="no worst case of 'identity_drift'"):
        worst_cases_figure(worst, measure="identity_drift")


def test_log_audit_logs_the_worst_case_figures(audit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # log_audit(experiment=...) sets MLflow's tracking URI and active experiment: restored after
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    worst = audit.tables["worst_cases"]
    small = dataclasses.replace(audit, tables={"worst_cases": worst[worst["measure"] != "lightness_shift"]})
    run_id = log_audit(small, experiment="worst", tracking_uri=uri)
    logged = {info.path for info in MlflowClient(uri).list_artifacts(run_id, "figures")}
    assert logged == {"figures/worst_cases_mse_error.png", "figures/worst_cases_ita_shift.png"}
    local = MlflowClient(uri).download_artifacts(run_id, "figures/worst_cases_mse_error.png", str(tmp_path))
    with Image.open(local) as image:
        assert image.format == "PNG" and image.width > 100
