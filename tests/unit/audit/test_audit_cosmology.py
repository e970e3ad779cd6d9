"""The cosmology measures against numpy loops and hand-worked toy sets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from genfair.audit.cosmology import (
    cosmology_columns,
    environment_error_table,
    octave_edges,
    per_sample_environment_errors,
    per_sample_power_spectrum,
    power_spectrum_table,
)

NAMES = ("void", "filament", "knot")


def test_power_spectrum_matches_a_loop_over_modes() -> None:
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    edges = octave_edges(16)
    got = per_sample_power_spectrum(images, edges=edges).numpy()
    for n in range(3):
        field = images[n, 0].double().numpy()
        field = field - field.mean()
        sums, counts = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
        for u in range(16):
            for v in range(16):
                value = sum(field[y, x] * np.exp(-2j * np.pi * (u * y + v * x) / 16) for y in range(16) for x in range(16))
                k = math.hypot(u if u < 8 else u - 16, v if v < 8 else v - 16)
                for b in range(len(edges) - 1):
                    if edges[b] <= k < edges[b + 1]:
                        sums[b] += abs(value) ** 2 / 256
                        counts[b] += 1
        assert np.allclose(got[n], sums / counts, rtol=1e-4)


def test_power_spectrum_of_a_plane_wave_by_hand() -> None:
    # A cos(2 pi 2 x / 16) on 16x16: |F|^2 = (A 256 / 2)^2 at k = (0, +-2), i.e. 64 A^2 per mode
    # after / 256; the bin [2, 4) averages those two modes with the other (empty) modes it holds.
    amplitude = 0.3
    x = torch.arange(16, dtype=torch.float64)
    images = (0.5 + amplitude * torch.cos(2 * math.pi * 2 * x / 16)).expand(16, 16)[None, None]
    k = np.fft.fftfreq(16, 1 / 16)
    modes = int(((np.hypot(k[:, None], k[None, :]) >= 2) & (np.hypot(k[:, None], k[None, :]) < 4)).sum())
    got = per_sample_power_spectrum(images, edges=(1.0, 2.0, 4.0)).numpy()[0]
    assert got[0] == pytest.approx(0.0, abs=1e-20)
    assert got[1] == pytest.approx(2 * 64 * amplitude**2 / modes)


def test_power_spectrum_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, H\), got \(1, 1, 8, 4\)"):
        per_sample_power_spectrum(torch.zeros(1, 1, 8, 4), edges=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"bin \[1.2, 1.3\) holds no modes of a 8x8 patch"):
        per_sample_power_spectrum(torch.zeros(1, 1, 8, 8), edges=(1.2, 1.3))
    with pytest.raises(ValueError, match="at least 4x4 pixels, got 2"):
        octave_edges(2)


def test_environment_errors_match_a_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    preds, target = torch.rand(2, 3, 4, 4, generator=generator), torch.rand(2, 3, 4, 4, generator=generator)
    codes = torch.randint(0, 3, (2, 4, 4), generator=generator)
    squared, absolute, pixels = per_sample_environment_errors(preds, target, codes, n_environments=3)
    for n in range(2):
        for e in range(3):
            sq = ab = px = 0.0
            for y in range(4):
                for x in range(4):
                    if int(codes[n, y, x]) == e:
                        d = [float(preds[n, c, y, x] - target[n, c, y, x]) for c in range(3)]
                        sq += sum(v * v for v in d) / 3
                        ab += sum(abs(v) for v in d) / 3
                        px += 1
            assert squared[n, e].item() == pytest.approx(sq, rel=1e-5)
            assert absolute[n, e].item() == pytest.approx(ab, rel=1e-5)
            assert pixels[n, e].item() == px


def test_environment_errors_reject_bad_codes() -> None:
    with pytest.raises(ValueError, match=r"preds and target must have the same shape, got \(1, 1, 2, 2\) and \(1, 1, 4, 4\)"):
        per_sample_environment_errors(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2),
                                      n_environments=3)
    with pytest.raises(ValueError, match=r"environment codes must be in 0..2, got 0..3"):
        per_sample_environment_errors(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2),
                                      torch.tensor([[[0, 3], [1, 1]]]), n_environments=3)
    with pytest.raises(ValueError, match=r"environments must be \(N, H, W\)"):
        per_sample_environment_errors(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 3),
                                      n_environments=3)


def _toy(n_boxes: int) -> pd.DataFrame:
    # two patches per box; box b's void pixels have squared error (b + 1) / 100 each, its filament
    # pixels 0.5 / 100; patch 0 has 6 void and 2 filament pixels, patch 1 has 2 void and 6 filament;
    # void pixels have target 0.5 (square 0.25), filament pixels 0.1 (square 0.01).
    rows = []
    for b in range(n_boxes):
        for void, filament in ((6, 2), (2, 6)):
            rows.append({"box": f"b{b}", "environment": "void" if void > filament else "filament",
                         "cosmo_sse_void": void * (b + 1) / 100, "cosmo_sae_void": void * math.sqrt((b + 1) / 100),
                         "cosmo_pixels_void": void, "cosmo_sse_filament": filament * 0.005,
                         "cosmo_sae_filament": filament * math.sqrt(0.005), "cosmo_pixels_filament": filament,
                         "cosmo_sse_knot": 0.0, "cosmo_sae_knot": 0.0, "cosmo_pixels_knot": 0,
                         "cosmo_sst_void": void * 0.25, "cosmo_sst_filament": filament * 0.01, "cosmo_sst_knot": 0.0})
    return pd.DataFrame(rows)


def test_environment_table_pools_pixels_by_hand() -> None:
    table = environment_error_table(_toy(6), environment_names=NAMES, n_resamples=400).set_index("group")
    # void: sum over boxes of 8 (b + 1) / 100 over 48 pixels = (8 * 21 / 100) / 48 = 0.035
    assert table.at["void", "mse_error"] == pytest.approx(0.035)
    assert table.at["filament", "mse_error"] == pytest.approx(0.005)
    # relative: void 0.035 / 0.25 = 0.14, filament 0.005 / 0.01 = 0.5 (larger, though its MSE is smaller)
    assert table.at["void", "relative_error"] == pytest.approx(0.14)
    assert table.at["filament", "relative_error"] == pytest.approx(0.5)
    assert table.at["filament", "relative_ci_low"] == pytest.approx(0.5)
    assert table.at["void", "pixel_share"] == pytest.approx(0.5)
    assert table.at["void", "ci_low"] < 0.035 < table.at["void", "ci_high"]
    # every box has the same filament error: every resample gives 0.005 (boxes, not pixels, are drawn)
    assert table.at["filament", "ci_low"] == pytest.approx(0.005) and table.at["filament", "ci_high"] == pytest.approx(0.005)
    assert table.at["knot", "evidence"] == "insufficient" and np.isnan(table.at["knot", "mse_error"])


def test_environment_table_interval_is_a_box_bootstrap() -> None:
    # 6 boxes with box means 0.01 .. 0.06 (equal pixels): the interval is the expanded percentile
    # interval of the mean of 6 values drawn with replacement, computed here independently
    table = environment_error_table(_toy(6), environment_names=NAMES, n_resamples=4000, seed=3).set_index("group")
    rng = np.random.default_rng(0)
    means = np.arange(1, 7) / 100
    draws = means[rng.integers(0, 6, (20000, 6))].mean(axis=1)
    from scipy import stats

    factor = math.sqrt(6 / 5) * stats.t.ppf(0.975, 5) / stats.norm.ppf(0.975)
    low, high = np.quantile(0.035 + factor * (draws - 0.035), [0.025, 0.975])
    assert table.at["void", "ci_low"] == pytest.approx(low, abs=0.002)
    assert table.at["void", "ci_high"] == pytest.approx(high, abs=0.002)


def test_environment_table_marks_few_boxes_insufficient() -> None:
    table = environment_error_table(_toy(3), environment_names=NAMES, n_resamples=100).set_index("group")
    assert table.at["void", "evidence"] == "insufficient" and np.isnan(table.at["void", "ci_low"])


def test_power_spectrum_table_by_hand() -> None:
    rows = []
    for b in range(5):
        for environment, output, target in (("void", (1.0, 0.5), (1.0, 1.0)), ("filament", (2.0, 1.0), (2.0, 4.0))):
            rows.append({"box": f"b{b}", "environment": environment, "cosmo_pk_output_0": output[0],
                         "cosmo_pk_output_1": output[1], "cosmo_pk_target_0": target[0], "cosmo_pk_target_1": target[1]})
    table = power_spectrum_table(pd.DataFrame(rows), attribute="environment", edges=(1.0, 2.0, 4.0), input_nyquist=2.0,
                                 n_resamples=200)
    ratio = table.set_index(["group", "k_low"])["power_ratio"]
    assert table["metric"].tolist()[:2] == ["k_1_2", "k_2_4"] and table["grouping"].tolist()[0] == "overall"
    assert ratio[("all", 1.0)] == pytest.approx(1.0)
    assert ratio[("all", 2.0)] == pytest.approx(1.5 / 5.0)  # pooled: (0.5 + 1) / (1 + 4)
    assert ratio[("void", 2.0)] == pytest.approx(0.5) and ratio[("filament", 2.0)] == pytest.approx(0.25)
    assert table["beyond_input"].tolist() == [False, True] * 3
    assert (table["evidence"] == "sufficient").all()


def test_cosmology_columns_names() -> None:
    target = torch.rand(2, 1, 8, 8)
    columns = cosmology_columns(torch.zeros(2, 1, 8, 8), target, torch.zeros(2, 8, 8, dtype=torch.long),
                                environment_names=NAMES, edges=octave_edges(8))
    assert torch.allclose(columns["cosmo_sst_void"], target.square().sum(dim=(1, 2, 3)))
    assert sorted(columns) == sorted([f"cosmo_{k}_{n}" for n in NAMES for k in ("sse", "sae", "pixels", "sst")]
                                     + [f"cosmo_pk_{label}_{b}" for label in ("output", "target") for b in range(2)])
