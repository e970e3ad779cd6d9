"""genfair.reports.figures: per-group distributions and reconstruction grids."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from genfair.reports import error_by_group_figure, higher_is_better_from_name, reconstruction_grid_figure

ATTRIBUTES = ["gender", "skin_tone"]


def _tick_labels(figure: Figure) -> list[str]:
    return [label.get_text() for label in figure.axes[0].get_yticklabels()]


def test_error_by_group_figure_draws_one_box_per_intersectional_group(per_image: pd.DataFrame) -> None:
    before = plt.get_fignums()
    figure = error_by_group_figure(per_image, metric="mse_error", attributes=ATTRIBUTES)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    assert plt.get_fignums() == before  # not registered with pyplot
    labels = _tick_labels(figure)
    # Worst (largest mean error) group on top: female / darker has mean 0.025.
    assert labels[0] == "female / darker\n2 images, 2 subjects"
    assert sorted(label.split("\n")[0] for label in labels) == [
        "female / darker", "female / lighter", "male / darker", "male / lighter"
    ]
    assert "male / lighter\n2 images, 1 subject" in labels
    ax = figure.axes[0]
    assert "lower is better" in ax.get_xlabel() and "mse_error" in ax.get_xlabel()
    [reference] = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert reference.get_xdata()[0] == pytest.approx(per_image["mse_error"].mean())
    assert sum(len(c.get_offsets()) for c in ax.collections if c.get_offsets().shape[0]) >= len(per_image)
    figure.canvas.draw()  # renders on its own Agg canvas


def test_error_by_group_figure_reads_direction_from_the_name_or_the_keyword(per_image: pd.DataFrame) -> None:
    score = error_by_group_figure(per_image, metric="psnr_score", attributes=ATTRIBUTES)
    assert "higher is better" in score.axes[0].get_xlabel()
    assert _tick_labels(score)[0].startswith("female / darker")  # lowest PSNR on top
    per_image = per_image.assign(error_rate=per_image["mse_error"])
    flipped = error_by_group_figure(per_image, metric="error_rate", attributes=ATTRIBUTES, higher_is_better=True)
    assert "higher is better" in flipped.axes[0].get_xlabel()
    assert _tick_labels(flipped)[0].startswith("male / lighter")


def test_error_by_group_figure_with_one_attribute(per_image: pd.DataFrame) -> None:
    figure = error_by_group_figure(per_image, metric="mse_error", attributes=["skin_tone"])
    assert _tick_labels(figure) == ["darker\n4 images, 4 subjects", "lighter\n4 images, 2 subjects"]


def test_error_by_group_figure_leaves_out_non_finite_values(per_image: pd.DataFrame) -> None:
    per_image.loc[0, "psnr_score"] = np.inf
    figure = error_by_group_figure(per_image, metric="psnr_score", attributes=ATTRIBUTES)
    ax = figure.axes[0]
    assert "1 non-finite value left out" in ax.get_title()
    [reference] = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert reference.get_xdata()[0] == pytest.approx(per_image["psnr_score"].iloc[1:].mean())


def test_error_by_group_figure_jitter_is_seeded(per_image: pd.DataFrame) -> None:
    def offsets(seed: int) -> np.ndarray:
        figure = error_by_group_figure(per_image, metric="mse_error", attributes=ATTRIBUTES, seed=seed)
        return np.concatenate([c.get_offsets() for c in figure.axes[0].collections if len(c.get_offsets())])

    np.testing.assert_array_equal(offsets(3), offsets(3))
    assert not np.array_equal(offsets(3), offsets(4))


@pytest.mark.parametrize(
    ("change", "kwargs", "match"),
    [
        (None, {"attributes": []}, "at least one column"),
        (None, {"attributes": ["race"]}, r"lacks column\(s\) \['race'\]"),
        (None, {"metric": "lpips_error"}, r"lacks column\(s\) \['lpips_error'\]"),
        (lambda f: f.iloc[:0], {}, "has no rows"),
        (lambda f: f.assign(mse_error="high"), {}, "must be numeric"),
        (lambda f: f.assign(mse_error=np.inf), {}, "has no finite value"),
        (lambda f: f.assign(quality=1.0), {"metric": "quality"}, "pass higher_is_better"),
    ],
)
def test_error_by_group_figure_rejects_bad_input(per_image, change, kwargs, match) -> None:
    frame = change(per_image) if change else per_image
    arguments = {"metric": "mse_error", "attributes": ATTRIBUTES, **kwargs}
    with pytest.raises(ValueError, match=match):
        error_by_group_figure(frame, **arguments)


@pytest.mark.parametrize(
    ("name", "expected"), [("psnr_score", True), ("mse_error", False), ("kl_loss", False)]
)
def test_higher_is_better_from_name(name: str, expected: bool) -> None:
    assert higher_is_better_from_name(name) is expected


def _images(n: int = 3, channels: int = 3, size: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, channels))


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstruction_grid_figure_puts_originals_above_outputs(channels: int) -> None:
    originals, outputs = _images(channels=channels), _images(channels=channels, seed=1)
    labels = ["female / darker", "male / lighter", "male / darker"]
    figure = reconstruction_grid_figure(originals, outputs, labels)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 6
    grid = np.array(figure.axes).reshape(2, 3)  # row-major: originals, then outputs
    assert [ax.get_title() for ax in grid[0]] == labels
    assert grid[0, 0].get_ylabel() == "original" and grid[1, 0].get_ylabel() == "output"
    assert all(len(ax.get_images()) == 1 for ax in figure.axes)
    expected = originals[1] if channels == 3 else originals[1, :, :, 0]
    np.testing.assert_array_equal(grid[0, 1].get_images()[0].get_array(), expected)
    expected = outputs[2] if channels == 3 else outputs[2, :, :, 0]
    np.testing.assert_array_equal(grid[1, 2].get_images()[0].get_array(), expected)


@pytest.mark.parametrize(
    ("originals", "outputs", "labels", "match"),
    [
        (_images()[0], _images()[0], ["a"], r"originals must be a \(N, H, W, C\) array, got 3 dimension"),
        (_images(n=0), _images(n=0), [], "originals holds no image"),
        (_images().transpose(0, 3, 1, 2), _images().transpose(0, 3, 1, 2), list("abc"), "channels-last"),
        (_images(channels=2), _images(channels=2), list("abc"), r"C in \(1, 3\)"),
        ((_images() * 255).astype(np.uint8), _images(), list("abc"), "dtype uint8"),
        (_images(), np.full((3, 4, 4, 3), np.nan), list("abc"), "outputs contains NaN"),
        (_images(), _images() + 1.0, list("abc"), r"outputs must lie in \[0, 1\]"),
        (_images(), _images(n=2), list("ab"), "the same .* shape"),
        (_images(), _images(), ["a", "b"], "got 2 labels for 3 images"),
        (_images(), _images(), "abc", "labels must be a sequence of 3 strings"),
    ],
)
def test_reconstruction_grid_figure_rejects_bad_input(originals, outputs, labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        reconstruction_grid_figure(originals, outputs, labels)


def test_samples_grid_figure_shows_each_sample_once_and_blanks_the_rest() -> None:
    from genfair.reports.figures import samples_grid_figure

    samples = np.random.default_rng(0).random((10, 8, 8, 3))
    figure = samples_grid_figure(samples, columns=4, title="samples")
    shown = [ax for ax in figure.axes if ax.images]
    assert len(figure.axes) == 12 and len(shown) == 10
    np.testing.assert_allclose(shown[3].images[0].get_array(), samples[3])
    assert figure._suptitle.get_text() == "samples"
    with pytest.raises(ValueError, match=r"columns must be a positive int, got 0"):
        samples_grid_figure(samples, columns=0)
    with pytest.raises(ValueError, match=r"samples"):
        samples_grid_figure(samples[0])
