"""The run keeps its worst cases batch by batch: the same picks as ranking the whole split at once,
each with the very original and output it was scored on."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from genfair.audit.result import AuditResult, summarize
from genfair.audit.run import runner
from genfair.audit.run.runner import _scores_frame, _worst_cases_table, _WorstCaseStream
from genfair.audit.worst_cases import WORST_CASES_K, worst_cases


def _decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("pending", [1, 9, 256])  # ranked every batch, every few, once at the end
def test_batch_by_batch_picks_equal_the_whole_splits_with_their_images(tmp_path, monkeypatch, pending) -> None:
    monkeypatch.setattr(runner, "WORST_PENDING", pending)
    generator = torch.Generator().manual_seed(0)
    n = 120
    rows = pd.DataFrame({"path": [f"{i:02d}.png" for i in range(n)], "subject": [f"s{i // 2}" for i in range(n)],
                         "tone": ["dark", "light"] * (n // 2)}, index=np.arange(100, 100 + n))
    originals = torch.rand(n, 3, 4, 4, generator=generator)
    outputs = torch.rand(n, 3, 4, 4, generator=generator)
    mse = ((originals - outputs) ** 2).mean(dim=(1, 2, 3)).double().numpy()
    ita = np.round(torch.randn(n, generator=generator).double().numpy(), 1)  # rounded: ties across batches
    ita[[3, 17]] = np.nan

    stream = _WorstCaseStream(rows, ["tone"])
    for start in range(0, n, 7):  # batches of 7, in manifest order as the loaders yield them
        part = slice(start, start + 7)
        batch = {"image": originals[part], "output": outputs[part]}
        stream.add(rows.index[part].to_numpy(), {"mse_error": mse[part], "ita_shift": ita[part],
                                                 "classified_tone": np.zeros(len(mse[part]))}, batch)
    images = stream.images()

    per_image = rows.assign(mse_error=mse, ita_shift=ita)
    expected = worst_cases(per_image, attributes=["tone"], k=WORST_CASES_K)
    assert set(images) == set(expected.index), "exactly the picks' images are kept"
    table = _worst_cases_table(per_image, ["tone"], images)
    pd.testing.assert_frame_equal(table.drop(columns=["original_png", "output_png"]), expected.reset_index(drop=True))
    assert len(table) == 2 * 2 * WORST_CASES_K
    for pick in table.itertuples(index=False):
        position = int(pick.path.split(".")[0])
        for png, image in ((pick.original_png, originals[position]), (pick.output_png, outputs[position])):
            expected_pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            np.testing.assert_array_equal(_decoded(png), expected_pixels)

    result = summarize(per_image, attributes=["tone"], metrics=["mse_error"], min_subjects=1)
    loaded = AuditResult.load(dataclasses.replace(result, tables={"worst_cases": table}).save(tmp_path / "audit"))
    pd.testing.assert_frame_equal(loaded.tables["worst_cases"], table)


def test_the_scores_frame_equals_one_frame_a_batch_concatenated() -> None:
    rng = np.random.default_rng(1)
    parts, indices = [], []
    for start in range(0, 50, 16):
        size = min(16, 50 - start)
        parts.append({"mse_error": rng.random(size), "skin_mask": np.full(size, "central", dtype=object),
                      "face_found": rng.random(size) > 0.5})
        indices.append(np.arange(start, start + size, dtype=np.int64) * 3)
    expected = pd.concat([pd.DataFrame(part, index=index) for part, index in zip(parts, indices, strict=True)])
    pd.testing.assert_frame_equal(_scores_frame(parts, indices), expected)
    parts[1] = {**parts[1], "extra": np.ones(len(indices[1]))}  # a column one batch lacks: NaN elsewhere
    expected = pd.concat([pd.DataFrame(part, index=index) for part, index in zip(parts, indices, strict=True)])
    pd.testing.assert_frame_equal(_scores_frame(parts, indices), expected)
    assert _scores_frame([], []).empty
