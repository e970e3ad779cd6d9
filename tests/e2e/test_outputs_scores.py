"""`audit run --outputs` streamed in small batches: every per-image column equals a computation made
here from the PNG files (numpy; torchmetrics for SSIM and PSNR), and the worst cases equal the whole
frame's, each with the files' own pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from cli_runner import invoke
from PIL import Image
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from genfair.audit.result import AuditResult
from genfair.audit.skin import SRGB_TO_XYZ, central_face_mask
from genfair.audit.worst_cases import worst_cases

SIDE = 16


def _png_pixels(source: Path | bytes) -> np.ndarray:
    """``(3, H, W)`` float64 in [0, 1] of a PNG file or PNG bytes."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of ``(3, ...)`` sRGB in [0, 1], float64: the sRGB transfer function, XYZ, then Lab."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = np.asarray(SRGB_TO_XYZ, dtype=np.float64)
    t = np.tensordot(matrix, linear, axes=1) / matrix.sum(axis=1).reshape(3, *([1] * (rgb.ndim - 1)))
    delta = 6 / 29
    f = np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4 / 29)
    return np.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _skin(rgb: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """ITA, L* and hue (degrees) of the mask's mean L*, a*, b*."""
    lightness, a, b = _lab(rgb)[:, mask].mean(axis=1)
    return np.degrees(np.arctan2(lightness - 50, b)), lightness, np.degrees(np.arctan2(b, a))


def _wrap(degrees: float) -> float:
    return 180.0 - np.remainder(180.0 - degrees, 360.0)


def test_every_column_of_outputs_streamed_in_small_batches_equals_the_files(workdir: Path) -> None:
    rng = np.random.default_rng(3)
    (workdir / "images").mkdir()
    (workdir / "restored").mkdir()
    rows = []
    for person in range(24):
        gender, tone = ("female", "male")[person % 2], ("dark", "light")[person // 2 % 2]
        for shot in range(2):
            path, output = f"images/p{person:02d}_{shot}.png", f"restored/p{person:02d}_{shot}.png"
            base = np.clip((0.3 if tone == "dark" else 0.65) + 0.3 * rng.random((SIDE, SIDE, 3)), 0, 1)
            noisy = np.clip(base + rng.normal(0, 0.02 + 0.03 * rng.random(), base.shape), 0, 1)
            Image.fromarray((base * 255).round().astype(np.uint8)).save(workdir / path)
            Image.fromarray((noisy * 255).round().astype(np.uint8)).save(workdir / output)
            rows.append({"path": path, "subject": f"p{person}", "gender": gender, "tone": tone, "restored": output})
    pd.DataFrame(rows).to_csv(workdir / "manifest.csv", index=False)

    code, _, err = invoke("run", "--manifest", "manifest.csv", "--outputs", "restored", "--image-size", str(SIDE),
                          "--classifier-epochs", "0", "--attributes", "gender,tone", "--batch-size", "5",
                          "--out", "audit")
    assert code == 0, err
    result = AuditResult.load(workdir / "audit")
    per_image = result.per_image
    assert per_image["path"].tolist() == [row["path"] for row in rows]  # manifest order, every row once

    originals = np.stack([_png_pixels(workdir / row["path"]) for row in rows])
    outputs = np.stack([_png_pixels(workdir / row["restored"]) for row in rows])
    difference = outputs - originals
    np.testing.assert_allclose(per_image["mse_error"], (difference**2).mean(axis=(1, 2, 3)), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(per_image["mae_error"], np.abs(difference).mean(axis=(1, 2, 3)), rtol=1e-5, atol=1e-9)
    # torchmetrics in float64: the audit's float32 (variances as E[x^2] - mean^2) is within a few 1e-6
    exact = torch.from_numpy(outputs), torch.from_numpy(originals)
    ssim = structural_similarity_index_measure(*exact, data_range=1.0, reduction="none")
    np.testing.assert_allclose(per_image["ssim_score"], ssim.numpy(), rtol=0, atol=1e-5)
    psnr = peak_signal_noise_ratio(*exact, data_range=1.0, reduction="none", dim=(1, 2, 3))
    np.testing.assert_allclose(per_image["psnr_score"], psnr.numpy(), rtol=1e-5)

    mask = central_face_mask(SIDE)[0].numpy().astype(bool)
    for position, (original, output) in enumerate(zip(originals, outputs, strict=True)):
        (ita_in, lightness_in, hue_in), (ita_out, lightness_out, hue_out) = _skin(original, mask), _skin(output, mask)
        got = per_image.iloc[position]
        assert abs(got["ita_shift"] - _wrap(ita_out - ita_in)) < 1e-3
        assert abs(got["lightness_shift"] - (lightness_out - lightness_in)) < 1e-3
        assert abs(got["hue_shift"] - _wrap(hue_out - hue_in)) < 1e-3
    assert set(per_image["skin_mask"]) == {"central"}

    table = result.tables["worst_cases"]
    expected = worst_cases(per_image, attributes=["gender", "tone"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(table[expected.columns].reset_index(drop=True), expected, check_dtype=False)
    by_path = {row["path"]: position for position, row in enumerate(rows)}
    for pick in table.itertuples(index=False):
        np.testing.assert_array_equal(_png_pixels(pick.original_png), originals[by_path[pick.path]])
        np.testing.assert_array_equal(_png_pixels(pick.output_png), outputs[by_path[pick.path]])
