"""The simulated density fields: spectrum, T-web labels, files. Checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genfair import datasets
from genfair.datasets.cosmo import (
    ENVIRONMENTS,
    CosmoConfig,
    gaussian_random_field,
    generate_cosmo,
    lognormal_field,
    power_law_spectrum,
    tweb_environments,
)


def _binned_power(field: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference estimator written with loops: mean |F_k|^2 / n^2 over modes with edges[i] <= |k| < edges[i+1]."""
    n = field.shape[0]
    transform = np.fft.fft2(field)
    sums, counts = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for i in range(n):
        for j in range(n):
            ky, kx = (i if i < n // 2 else i - n), (j if j < n // 2 else j - n)
            k = math.hypot(ky, kx)
            for b in range(len(edges) - 1):
                if edges[b] <= k < edges[b + 1]:
                    sums[b] += abs(transform[i, j]) ** 2 / n**2
                    counts[b] += 1
    return sums / counts, counts


def _grid_k(n: int) -> np.ndarray:
    k = np.array([i if i < n // 2 else i - n for i in range(n)], dtype=float)
    return np.hypot(k[:, None], k[None, :])


EDGES = np.array([2.0, 4.0, 8.0, 16.0])


@pytest.mark.parametrize("make", [gaussian_random_field, lognormal_field], ids=["gaussian", "lognormal"])
def test_field_power_spectrum_follows_the_input_power_law(make) -> None:
    # P ~ k^-2, var(delta) = 0.5, 4 boxes of 32x32: each bin's estimate averages M = modes * boxes
    # |F_k|^2 values; half of them are independent (F_-k = conj F_k), each exponential, so the
    # relative standard error is sqrt(2 / M). Tolerance: 4 standard errors (Gaussian field);
    # the log-normal field's modes are coupled, so it gets 4 standard errors plus 10%.
    n, boxes = 32, 4
    k = _grid_k(n)
    spectrum = power_law_spectrum(k, index=-2.0)
    spectrum *= 0.5 / spectrum.mean()
    measured = np.zeros(len(EDGES) - 1)
    for box in range(boxes):
        power, counts = _binned_power(make(spectrum, np.random.default_rng([7, box])), EDGES)
        measured += power / boxes
    expected, _ = _binned_power_of_spectrum(spectrum, k)
    tolerance = 4 * np.sqrt(2 / (counts * boxes)) + (0.1 if make is lognormal_field else 0.0)
    assert np.all(np.abs(measured / expected - 1) < tolerance), (measured / expected, tolerance)


def _binned_power_of_spectrum(spectrum: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inside = [(k >= lo) & (k < hi) for lo, hi in zip(EDGES[:-1], EDGES[1:])]
    return np.array([spectrum[m].mean() for m in inside]), np.array([m.sum() for m in inside])


def test_power_law_is_zero_at_k_zero_and_a_power_elsewhere() -> None:
    assert power_law_spectrum(np.array([0.0, 2.0, 4.0]), index=-1.5).tolist() == [0.0, 2**-1.5, 4**-1.5]


def test_lognormal_density_is_positive_with_unit_mean() -> None:
    k = _grid_k(64)
    spectrum = power_law_spectrum(k, index=-1.5)
    spectrum *= 1.0 / spectrum.mean()
    delta = np.stack([lognormal_field(spectrum, np.random.default_rng(s)) for s in range(4)])
    assert delta.min() > -1.0
    assert abs(delta.mean()) < 0.05  # E[rho / rho_mean] = 1 (sample mean over 4 boxes)


def test_tweb_of_a_single_cosine_wave_by_hand() -> None:
    # delta = A cos(2 pi x / n): phi = -A (n / 2 pi)^2 cos(...), T_xx = delta, T_yy = T_xy = 0.
    # Eigenvalues {delta, 0}: with lambda_th = -0.5 A every cell has the 0 eigenvalue above the
    # threshold, and delta above it where cos > -0.5; no smoothing.
    n, amplitude = 16, 0.8
    x = np.arange(n)
    delta = np.tile(amplitude * np.cos(2 * np.pi * x / n), (n, 1))
    labels = tweb_environments(delta, smoothing=0.0, threshold=-0.5 * amplitude)
    expected = np.where(np.cos(2 * np.pi * x / n) > -0.5 + 1e-9, 2, 1)
    assert (labels == expected[None, :]).all()
    # a threshold above both eigenvalues' maximum labels everything void
    assert (tweb_environments(delta, smoothing=0.0, threshold=amplitude + 0.1) == 0).all()


def test_tweb_of_a_2x2_hessian_by_eigvalsh() -> None:
    # delta = a cos(kx x) + b cos(ky y) + c sin(kx x) sin(ky y) at k = 2 pi / 8 in both axes:
    # the tidal tensor, worked by hand, is [[a cos x' + c/2 s, -c/2 c'], [-c/2 c', b cos y' + c/2 s]]
    # (s = sin x' sin y', c' = cos x' cos y'); the labels are compared with numpy's eigvalsh per cell.
    n, a, b, c, threshold = 8, 0.7, -0.4, 0.6, 0.1
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ax, ay = 2 * np.pi * x / n, 2 * np.pi * y / n
    delta = a * np.cos(ax) + b * np.cos(ay) + c * np.sin(ax) * np.sin(ay)
    labels = tweb_environments(delta, smoothing=0.0, threshold=threshold)
    for i in range(n):
        for j in range(n):
            s, cc = np.sin(ax[i, j]) * np.sin(ay[i, j]), np.cos(ax[i, j]) * np.cos(ay[i, j])
            tensor = np.array([[a * np.cos(ax[i, j]) + c / 2 * s, -c / 2 * cc], [-c / 2 * cc, b * np.cos(ay[i, j]) + c / 2 * s]])
            assert labels[i, j] == int((np.linalg.eigvalsh(tensor) > threshold).sum()), (i, j)


def test_tweb_fractions_of_a_gaussian_field_at_zero_threshold() -> None:
    # 2-D analogue of Doroshkevich (1970): for an isotropic Gaussian field the Hessian's
    # eigenvalues are u +- r, u ~ N(0, s^2 / 4), r Rayleigh with parameter s^2 / 8, so
    # P(both > 0) = 1/2 - 1/sqrt(12) = 0.2113 = P(both < 0) and P(one) = 0.5774.
    n = 256
    spectrum = power_law_spectrum(_grid_k(n), index=-1.0)
    labels = np.stack([tweb_environments(gaussian_random_field(spectrum, np.random.default_rng([3, s])),
                                         smoothing=2.0, threshold=0.0) for s in range(4)])
    fractions = np.bincount(labels.ravel(), minlength=3) / labels.size
    knot = 0.5 - 1 / math.sqrt(12)
    assert np.allclose(fractions, [knot, 1 - 2 * knot, knot], atol=0.02), fractions


def test_default_lognormal_fractions() -> None:
    # Default smoothing (2 cells) and lambda_th = 0.2, inside the 0.2-0.4 range where Forero-Romero
    # et al. (2009) find percolating voids beside a net of filaments: voids fill the most area and
    # knots the least. The range is this 2-D model's, not a 3-D measurement.
    config = CosmoConfig(image_size=64, patches_per_side=4)
    from genfair.datasets.cosmo import _spectrum

    labels = np.stack([tweb_environments(lognormal_field(_spectrum(config), np.random.default_rng([0, s])),
                                         smoothing=config.smoothing, threshold=config.threshold) for s in range(2)])
    void, filament, knot = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert 0.4 < void < 0.7 and 0.25 < filament < 0.5 and 0.01 < knot < 0.15, (void, filament, knot)


def test_generate_writes_patches_boxes_and_environments(tmp_path) -> None:
    config = CosmoConfig(image_size=16, patches_per_side=2, boxes=4, val_boxes=1, test_boxes=1, seed=3)
    manifest = generate_cosmo(config, tmp_path / "out")
    frame = pd.read_csv(manifest)
    assert len(frame) == 16
    assert frame.groupby("box")["split"].nunique().eq(1).all()  # a box is in one split
    assert (frame["subject"] == frame["box"] + "-" + frame["environment"]).all()
    assert frame["split"].value_counts().to_dict() == {"train": 8, "val": 4, "test": 4}
    first = frame.iloc[0]
    pixels = np.asarray(Image.open(tmp_path / "out" / first["path"]))
    codes = np.asarray(Image.open(tmp_path / "out" / first["environment_path"]))
    assert pixels.shape == codes.shape == (16, 16) and pixels.dtype == np.uint8
    assert set(np.unique(codes)) <= {0, 1, 2}
    assert first["environment"] == ENVIRONMENTS[np.bincount(codes.ravel(), minlength=3).argmax()]


def test_patches_tile_their_box(tmp_path) -> None:
    # the 4 patches of a box, put back together, are the box's density: continuous across the cut
    config = CosmoConfig(image_size=16, patches_per_side=2, boxes=3, val_boxes=1, test_boxes=1, seed=1)
    out = tmp_path / "out"
    frame = pd.read_csv(generate_cosmo(config, out))
    tiles = [np.asarray(Image.open(out / p)) for p in frame["path"][:4]]
    box = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]]).astype(float)
    from genfair.datasets.cosmo import _spectrum

    delta = lognormal_field(_spectrum(config), np.random.default_rng([1, 0]))
    assert np.abs(box - np.rint(np.clip((1 + delta) / config.density_max, 0, 1) * 255)).max() == 0


def test_registry_builds_cosmo(tmp_path) -> None:
    spec = datasets.get("cosmo")(cache_dir=tmp_path, image_size=16, seed=0)
    assert spec.attributes == ("environment",)
    manifest = datasets.load_manifest(spec.manifest_path, attributes=spec.attributes)
    assert manifest.attributes == ("environment",)


def test_registry_refuses_a_patch_size_out_of_range(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"side in pixels \(--image-size\) must be in \[8, 256\] for the cosmo dataset, got 300"):
        datasets.get("cosmo")(cache_dir=tmp_path, image_size=300, seed=0)


@pytest.mark.parametrize(("changes", "match"), [
    ({"boxes": 4, "val_boxes": 2, "test_boxes": 2}, r"val_boxes \+ test_boxes \(2 \+ 2\) must leave training boxes"),
    ({"spectrum": "bbks"}, r"spectrum must be one of \['power_law', 'lcdm'\], got 'bbks'"),
    ({"sigma": 0.0}, r"sigma must be > 0.0, got 0.0"),
    ({"smoothing": -1.0}, r"smoothing must be >= 0 cells, got -1.0"),
    ({"image_size": 4}, r"image_size must be in \[8, 256\], got 4"),
    ({"boxes": 2.5}, r"boxes must be an int, got 2.5"),
])
def test_config_rejects_bad_values(changes, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        CosmoConfig(**changes)


def test_generate_refuses_a_full_folder(tmp_path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(FileExistsError, match="output folder for cosmo is not empty"):
        generate_cosmo(CosmoConfig(image_size=8, patches_per_side=1, boxes=3, val_boxes=1, test_boxes=1), tmp_path)


def test_lcdm_shape_has_the_primordial_slope_on_large_scales_and_falls_on_small() -> None:
    from genfair.datasets.cosmo import lcdm_spectrum

    # T(q) -> 1 as q -> 0, so P ~ k^n_s there; for q >> 1, T ~ ln(q) / q^2 and P falls
    # like k^(n_s - 4) ln(k)^2: local slopes about 1 and between -3 and -2 (n_s = 1).
    k = np.array([1e-4, 2e-4, 400.0, 800.0])
    p = lcdm_spectrum(k, box_mpc=500.0)
    assert math.log(p[1] / p[0], 2) == pytest.approx(1.0, abs=0.01)
    assert -3.0 < math.log(p[3] / p[2], 2) < -2.0
    assert lcdm_spectrum(np.array([0.0]), box_mpc=500.0)[0] == 0.0


def test_lcdm_boxes_generate(tmp_path) -> None:
    config = CosmoConfig(image_size=8, patches_per_side=2, boxes=3, val_boxes=1, test_boxes=1, spectrum="lcdm")
    assert len(pd.read_csv(generate_cosmo(config, tmp_path / "out"))) == 12
