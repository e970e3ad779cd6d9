"""The comparison report: figures from the audits alone, a self-contained HTML page and its Markdown twin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genfair.audit.ranking import comparison_table, rank_models
from genfair.reports.comparison import FIGURE_TITLES, comparison_figures, display_table, effects_figure, write_report


@pytest.fixture(scope="module")
def results(make_audit):
    return {"cnn": make_audit(1.0), "vae": make_audit(2.0, seed=1), "bicubic": make_audit(1.5, latents=False)}


def test_every_figure_is_drawn_from_the_audits(results):
    figures = comparison_figures(results, perplexity=5.0, early_exaggeration=4.0)
    # effects belong to an attribution; the learning curves come from the runs' MLflow histories
    assert set(figures) == set(FIGURE_TITLES) - {"effects", "learning_curves"}
    latent_axes = [axes for axes in figures["latent_space"].axes if axes.get_title()]
    assert len(latent_axes) == 4, "PCA and t-SNE for each of the two models with latent codes"
    assert "t-SNE (perplexity 5, exaggeration 4)" in latent_axes[1].get_title()
    assert len(figures["samples"].axes) == 4 * 4, "originals + 3 models, one person of each of 4 groups"


def test_the_report_is_self_contained_and_lists_every_model(results, tmp_path: Path):
    ranked = rank_models(comparison_table(results, run_ids={"cnn": "c1", "vae": "v1", "bicubic": "b1"}),
                         {"fidelity": 1.0})
    table = display_table(ranked)
    assert table["model"].tolist() == ["cnn", "bicubic", "vae"]
    assert re.fullmatch(r"[\d.e-]+ \[[\d.e-]+, [\d.e-]+\]", table["mse_error (95% CI)"].iloc[0])
    figures = comparison_figures(results, perplexity=5.0)
    html_path, md_path = write_report(tmp_path / "out", title="Which model suits faces?", table=table,
                                      recommendation="**cnn** comes first <script>", figures=figures,
                                      notes=["numbers come from the runs"])
    page = html_path.read_text()
    assert "<strong>cnn</strong>" in page and "&lt;script&gt;" in page, "bold kept, markup escaped"
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page), "nothing is fetched from the network"
    assert "<script" not in page
    for model, run in (("cnn", "c1"), ("vae", "v1"), ("bicubic", "b1")):
        assert f"<td>{model}</td>" in page and run in page
    markdown = md_path.read_text()
    for name in figures:
        assert f"(figures/{name}.png)" in markdown and (tmp_path / "out" / "figures" / f"{name}.png").stat().st_size
    assert "| 1 | cnn |" in markdown
    assert not list((tmp_path / "out").rglob(".*.tmp")), "no temporary file left behind"


def test_the_effects_figure_has_a_panel_per_effect_and_marks_noise():
    import pandas as pd

    rows = []
    for effect in ("representation", "objective"):
        for group, noise in (("female / darker", False), ("male / lighter", True)):
            rows.append({"model": "cnn", "effect": effect, "contrast": f"{effect} contrast", "grouping": "g",
                         "group": group, "estimate": 0.01, "ci_low": 0.0, "ci_high": 0.02,
                         "within_seed_noise": noise})
    figure = effects_figure(pd.DataFrame(rows))
    assert [axes.get_title() for axes in figure.axes] == ["representation contrast", "objective contrast"]
    faces = {line.get_markerfacecolor() for line in figure.axes[0].lines if line.get_marker() == "o"}
    assert "white" in faces, "an effect within retraining noise is drawn open"


def test_the_learning_curve_figure_has_a_panel_per_trained_model():
    import pandas as pd

    from genfair.reports.comparison import learning_curve_figure

    curves = pd.DataFrame({"model": ["ae"] * 4 + ["vae"] * 2, "stage": ["train", "train", "val", "val", "val", "val"],
                           "epoch": [1, 2, 1, 2, 1, 2], "loss": [0.5, 0.3, 0.6, 0.4, 900.0, 800.0]})
    figure = learning_curve_figure(curves)
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert [axes.get_title() for axes in panels] == ["ae (2 epochs)", "vae (2 epochs)"]
    assert [len(axes.get_lines()) for axes in panels] == [3, 2]  # train, val, the best epoch's ring (vae: no train)
    assert list(panels[0].get_lines()[2].get_xdata()) == [2]
    assert learning_curve_figure(curves.iloc[0:0]) is None
    assert "learning_curves" in FIGURE_TITLES
