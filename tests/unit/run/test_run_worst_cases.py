"""The run keeps its worst cases batch by batch: the same picks as ranking the whole split at once,
each with the very original and output it was scored on."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import torch
from PIL import Image

from genfair.audit.result import AuditResult, summarize
from genfair.audit.run.runner import _keep_worst, _worst_cases_table
from genfair.audit.worst_cases import WORST_CASES_K, worst_cases


def _decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_batch_by_batch_picks_equal_the_whole_splits_with_their_images(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    n = 40
    rows = pd.DataFrame({"path": [f"{i:02d}.png" for i in range(n)], "subject": [f"s{i // 2}" for i in range(n)],
                         "tone": ["dark", "light"] * (n // 2)}, index=np.arange(100, 100 + n))
    originals = torch.rand(n, 3, 4, 4, generator=generator)
    outputs = torch.rand(n, 3, 4, 4, generator=generator)
    mse = ((originals - outputs) ** 2).mean(dim=(1, 2, 3)).double().numpy()
    ita = np.round(torch.randn(n, generator=generator).double().numpy(), 1)  # rounded: ties across batches
    ita[[3, 17]] = np.nan

    kept, images = None, {}
    for start in range(0, n, 7):  # batches of 7, in manifest order as the loaders yield them
        part = slice(start, start + 7)
        batch = {"image": originals[part], "output": outputs[part]}
        kept, images = _keep_worst(kept, images, rows.iloc[part], {"mse_error": mse[part], "ita_shift": ita[part],
                                                                    "classified_tone": np.zeros(len(mse[part]))},
                                   batch, ["tone"])

    per_image = rows.assign(mse_error=mse, ita_shift=ita)
    expected = worst_cases(per_image, attributes=["tone"], k=WORST_CASES_K)
    assert set(images) == set(expected.index), "exactly the picks' images are kept"
    table = _worst_cases_table(per_image, ["tone"], images)
    pd.testing.assert_frame_equal(table.drop(columns=["original_png", "output_png"]), expected.reset_index(drop=True))
    assert len(table) == 2 * 2 * WORST_CASES_K
    for pick in table.itertuples(index=False):
        position = int(pick.path[:2])
        for png, image in ((pick.original_png, originals[position]), (pick.output_png, outputs[position])):
            expected_pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            np.testing.assert_array_equal(_decoded(png), expected_pixels)

    result = summarize(per_image, attributes=["tone"], metrics=["mse_error"], min_subjects=1)
    loaded = AuditResult.load(dataclasses.replace(result, tables={"worst_cases": table}).save(tmp_path / "audit"))
    pd.testing.assert_frame_equal(loaded.tables["worst_cases"], table)
