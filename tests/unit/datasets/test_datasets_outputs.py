"""Manifests that carry a model's outputs already on disk: the ``outputs=`` / ``inputs=`` columns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genfair.datasets import ManifestError, ManifestImageDataset, load_manifest, load_output
from genfair.datasets import datamodule as dm
from genfair.datasets import manifest as m


def rx(text: str) -> str:
    return re.escape(text)


def out_rows(tmp_path: Path, write_image, *, blank: tuple[int, ...] = (), lowres: bool = False) -> list[dict]:
    """Six rows of three subjects; every row but those in ``blank`` has a ``restored`` output (and,
    with ``lowres``, a ``lowres`` input), whose files are written (8x8 and 4x4 RGB)."""
    rows = []
    for s, g in (("a", "female"), ("b", "male"), ("c", "male")):
        for n in (1, 2):
            rows.append({"path": f"img/{s}_{n}.png", "subject": s, "gender": g, "restored": f"out/{s}_{n}.png"})
    for i, row in enumerate(rows):
        if i in blank:
            row["restored"] = ""
        else:
            write_image(tmp_path / row["restored"], value=40 + 10 * i)
        if lowres:
            row["lowres"] = "" if i in blank else f"lr/{row['subject']}_{i}.png"
            if row["lowres"]:
                write_image(tmp_path / row["lowres"], size=(4, 4), value=90 + i)
    return rows


# -- load_manifest: happy paths ------------------------------------------------------------------


def test_outputs_column_is_kept_resolved_and_not_an_attribute(make_manifest, tmp_path, write_image):
    manifest = load_manifest(make_manifest(out_rows(tmp_path, write_image)), outputs="restored")
    assert manifest.outputs == "restored" and manifest.inputs is None
    assert manifest.attributes == ("gender",)
    assert manifest.output_path(3) == tmp_path / "out/b_2.png"
    rows = manifest.output_rows
    assert rows.dtype == np.int64 and rows.tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(KeyError, match=r"manifest\.csv: the manifest was loaded without inputs=; pass inputs=<column>"):
        manifest.input_path(0)


def test_without_outputs_the_column_is_an_attribute(make_manifest, tmp_path, write_image):
    path = make_manifest(out_rows(tmp_path, write_image))
    pattern = rf"column 'restored': {rx(m.ERR_CONFLICTING_ATTRIBUTE)}: .*to leave 'restored' out$"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path)
    manifest = load_manifest(path, attributes=["gender"])
    assert manifest.outputs is None and "restored" in manifest.frame.columns
    assert manifest.output_rows.dtype == np.int64 and manifest.output_rows.tolist() == []
    with pytest.raises(KeyError, match=r"loaded without outputs=; pass outputs=<column>"):
        manifest.output_path(0)


def test_blank_outputs_are_rows_not_audited(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(0, 4))
    rows[4]["restored"] = "   "
    manifest = load_manifest(make_manifest(rows), outputs="restored")
    assert manifest.output_rows.tolist() == [1, 2, 3, 5]
    assert manifest.output_path(0) is None and manifest.output_path(4) is None
    assert manifest.frame["restored"].tolist()[4] == ""


def test_blank_outputs_in_parquet(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(2,))
    rows[2]["restored"] = None
    manifest = load_manifest(make_manifest(rows, suffix=".parquet"), outputs="restored")
    assert manifest.output_rows.tolist() == [0, 1, 3, 4, 5]


def test_inputs_column(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(1,), lowres=True)
    manifest = load_manifest(make_manifest(rows), outputs="restored", inputs="lowres")
    assert manifest.inputs == "lowres" and manifest.attributes == ("gender",)
    assert manifest.input_path(2) == tmp_path / "lr/b_2.png"
    assert manifest.input_path(1) is None
    assert manifest.output_rows.tolist() == [0, 2, 3, 4, 5]


def test_shared_inputs_are_allowed(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, lowres=True)
    for row in rows:
        row["lowres"] = rows[0]["lowres"]
    assert load_manifest(make_manifest(rows), outputs="restored", inputs="lowres").frame["lowres"].nunique() == 1


# -- load_manifest: naming the columns -----------------------------------------------------------


def test_missing_outputs_column(make_manifest, tmp_path, write_image):
    path = make_manifest(out_rows(tmp_path, write_image))
    pattern = (
        rf"manifest\.csv: {rx(m.ERR_UNKNOWN_IMAGE_COLUMN)}: outputs='restord' \(columns: \['path', 'subject', "
        rf"'gender', 'restored'\]\); did you mean 'restored'\?; fix: name the column"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restord")
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_UNKNOWN_IMAGE_COLUMN)}: inputs='lowres' .*\]\); fix:"):
        load_manifest(path, outputs="restored", inputs="lowres")


def test_outputs_named_as_attribute(make_manifest, tmp_path, write_image):
    path = make_manifest(out_rows(tmp_path, write_image, lowres=True))
    pattern = rf"{rx(m.ERR_IMAGE_COLUMN_AS_ATTRIBUTE)}: 'restored' is the outputs column .*fix: leave it out"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, attributes=["gender", "restored"], outputs="restored")
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_IMAGE_COLUMN_AS_ATTRIBUTE)}: 'lowres' is the inputs column"):
        load_manifest(path, attributes=["lowres"], outputs="restored", inputs="lowres")


@pytest.mark.parametrize("column", ["path", "subject", "split", "mask_path"])
def test_reserved_column_as_outputs(make_manifest, tmp_path, write_image, column):
    rows = [{**row, "split": "test", "mask_path": row["path"]} for row in out_rows(tmp_path, write_image)]
    path = make_manifest(rows, images=False)
    pattern = rf"{rx(m.ERR_RESERVED_IMAGE_COLUMN)}: outputs='{column}' \(reserved: path, subject, split, mask_path\)"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs=column)


def test_same_column_as_outputs_and_inputs(make_manifest, tmp_path, write_image):
    path = make_manifest(out_rows(tmp_path, write_image))
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_SAME_IMAGE_COLUMN)} 'restored'; fix:"):
        load_manifest(path, outputs="restored", inputs="restored")


def test_inputs_without_outputs(make_manifest, tmp_path, write_image):
    path = make_manifest(out_rows(tmp_path, write_image, lowres=True))
    with pytest.raises(ValueError, match=r"inputs='lowres' needs outputs="):
        load_manifest(path, inputs="lowres")


# -- load_manifest: the cells --------------------------------------------------------------------


def test_all_outputs_blank(make_manifest, tmp_path, write_image):
    path = make_manifest(out_rows(tmp_path, write_image, blank=tuple(range(6))))
    pattern = rf"manifest\.csv: column 'restored': {rx(m.ERR_NO_OUTPUTS)} \(all 6 cells are blank\); fix: fill in"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restored")


def test_input_without_output(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(2,), lowres=True)
    rows[2]["lowres"] = "lr/a_0.png"
    pattern = (
        rf"data row 3 \(line 4\), column 'lowres': {rx(m.ERR_INPUT_WITHOUT_OUTPUT)}: 'lr/a_0\.png' but the row's "
        rf"'restored' cell is blank; fix: fill in the row's restored path, or blank its lowres cell"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows), outputs="restored", inputs="lowres")


def test_output_without_input(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, lowres=True)
    rows[4]["lowres"] = rows[5]["lowres"] = ""
    pattern = (
        rf"data row 5 \(line 6\), column 'lowres': {rx(m.ERR_OUTPUT_WITHOUT_INPUT)}: blank, but the row's "
        rf"'restored' cell is 'out/c_1\.png'; 1 more row like this; fix: fill in the low-resolution image"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows), outputs="restored", inputs="lowres")


def test_absolute_output_path(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image)
    rows[1]["restored"] = str(tmp_path / "out/a_2.png")
    path = make_manifest(rows)
    pattern = rf"data row 2 \(line 3\), column 'restored': {rx(m.ERR_ABSOLUTE_PATH)} '/.*out/a_2\.png'; fix: .*allow_outside_root=True"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restored")
    assert load_manifest(path, outputs="restored", allow_outside_root=True).output_path(1) == tmp_path / "out/a_2.png"


def test_output_path_climbing_out(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, lowres=True)
    write_image(tmp_path.parent / f"{tmp_path.name}_lr.png", size=(4, 4))
    rows[3]["lowres"] = f"lr/../../{tmp_path.name}_lr.png"
    path = make_manifest(rows)
    pattern = rf"data row 4 \(line 5\), column 'lowres': {rx(m.ERR_OUTSIDE_ROOT)} .*climbs above it with '\.\.'"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restored", inputs="lowres")
    loaded = load_manifest(path, outputs="restored", inputs="lowres", allow_outside_root=True)
    assert loaded.input_path(3).resolve() == tmp_path.parent / f"{tmp_path.name}_lr.png"
    rows[0]["restored"] = "../elsewhere/a_1.png"
    with pytest.raises(ManifestError, match=rf"data row 1 \(line 2\), column 'restored': {rx(m.ERR_OUTSIDE_ROOT)}"):
        load_manifest(make_manifest(rows), outputs="restored", inputs="lowres", images="skip")


def test_duplicate_output_paths(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(0, 1))
    rows[4]["restored"] = "out/./b_1.png"
    pattern = (
        rf"data row 5 \(line 6\), column 'restored': {rx(m.ERR_DUPLICATE_OUTPUT)} 'out/\./b_1\.png' \(already at "
        rf"data row 3 as 'out/b_1\.png'\); fix: give each row its own output file"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows), outputs="restored")


def test_missing_output_file(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(0,))
    (tmp_path / rows[3]["restored"]).unlink()
    path = make_manifest(rows)
    pattern = (
        rf"data row 4 \(line 5\), column 'restored': {rx(m.ERR_MISSING_IMAGE)}: .*out/b_2\.png; fix: correct the "
        rf"path \(relative to the manifest's folder\) or blank the cell \(the row is then not audited\)$"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restored", images="exist")
    assert load_manifest(path, outputs="restored", images="skip").output_rows.tolist() == [1, 2, 3, 4, 5]


def test_unreadable_output_and_input_files(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, lowres=True)
    (tmp_path / rows[2]["restored"]).write_bytes(b"not a png")
    path = make_manifest(rows)
    pattern = rf"data row 3 \(line 4\), column 'restored': {rx(m.ERR_UNREADABLE_IMAGE)}: .*out/b_1\.png .*or blank the cell"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restored", inputs="lowres")
    assert load_manifest(path, outputs="restored", inputs="lowres", images="exist").inputs == "lowres"
    write_image(tmp_path / rows[2]["restored"])
    Image.new("I;16", (4, 4)).save(tmp_path / rows[5]["lowres"])
    pattern = rf"data row 6 \(line 7\), column 'lowres': {rx(m.ERR_IMAGE_MODE)} 'I;16'.*blank it and the row's restored cell"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path, outputs="restored", inputs="lowres")


def test_validation_touches_no_blank_output(make_manifest, tmp_path, write_image, monkeypatch):
    rows = out_rows(tmp_path, write_image, blank=(0, 1, 2, 3))
    path = make_manifest(rows)
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda file, *a, **k: opened.append(str(file)) or real_open(file, *a, **k))
    load_manifest(path, outputs="restored")
    assert sorted(Path(f).relative_to(tmp_path).as_posix() for f in opened if "/out/" in f) == ["out/c_1.png", "out/c_2.png"]


# -- load_output ---------------------------------------------------------------------------------


def test_load_output_matches_the_file_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / "out.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "original.png")
    output = load_output(tmp_path / "out.png", original=tmp_path / "original.png", image_size=8)
    assert output.dtype == torch.float32 and output.shape == (3, 8, 8)
    expected = np.transpose(pixels, (2, 0, 1)).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(output.numpy(), expected)


def test_load_output_resizes_like_load_image(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / "out.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "original.png")
    for size in (4, 32):
        output = load_output(tmp_path / "out.png", original=tmp_path / "original.png", image_size=size)
        assert torch.equal(output, dm.load_image(tmp_path / "out.png", image_size=size))


def test_load_output_greyscale_as_rgb(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(pixels, "L").save(tmp_path / "out.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "original.png")
    output = load_output(tmp_path / "out.png", original=tmp_path / "original.png", image_size=8)
    assert output.shape == (3, 8, 8)
    expected = pixels.astype(np.float32) / np.float32(255)
    for channel in range(3):
        np.testing.assert_array_equal(output[channel].numpy(), expected)
    grey = load_output(tmp_path / "out.png", original=tmp_path / "original.png", image_size=8, channels=1)
    assert grey.shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"channels must be one of \[1, 3\], got 2"):
        load_output(tmp_path / "out.png", original=tmp_path / "original.png", image_size=8, channels=2)


def test_load_output_aspect_ratio(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "out.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "original.png")
    pattern = rf"out\.png: {rx(dm.ERR_ASPECT_RATIO)} by 33\.3% \(more than 1%\): output 64x48 vs original 64x64; fix: save"
    with pytest.raises(ValueError, match=pattern):
        load_output(tmp_path / "out.png", original=tmp_path / "original.png", image_size=16)
    Image.new("RGB", (101, 100)).save(tmp_path / "within.png")  # 1% wider: allowed
    Image.new("RGB", (103, 100)).save(tmp_path / "beyond.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "square.png")
    assert load_output(tmp_path / "within.png", original=tmp_path / "square.png", image_size=4).shape == (3, 4, 4)
    with pytest.raises(ValueError, match=r"by 3\.0% .*output 103x100 vs original 100x100"):
        load_output(tmp_path / "beyond.png", original=tmp_path / "square.png", image_size=4)


# -- the dataset item ----------------------------------------------------------------------------


def test_item_output_equals_the_png(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, blank=(0,), lowres=True)
    pixels = np.random.default_rng(2).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / rows[2]["restored"])
    lowres = np.random.default_rng(3).integers(0, 256, size=(4, 4), dtype=np.uint8)
    Image.fromarray(lowres, "L").save(tmp_path / rows[2]["lowres"])
    manifest = load_manifest(make_manifest(rows), outputs="restored", inputs="lowres")
    dataset = ManifestImageDataset(manifest, manifest.output_rows, image_size=8)
    item = dataset.load_row(2)
    expected = np.transpose(pixels, (2, 0, 1)).astype(np.float32) / np.float32(255)
    assert item["output"].dtype == torch.float32
    np.testing.assert_array_equal(item["output"].numpy(), expected)
    assert item["input"].dtype == torch.float32 and item["input"].shape == (3, 4, 4)
    np.testing.assert_array_equal(item["input"][1].numpy(), lowres.astype(np.float32) / np.float32(255))
    assert "output" not in dataset.load_row(0) and "input" not in dataset.load_row(0)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=5)))
    assert batch["output"].shape == (5, 3, 8, 8) and batch["input"].shape == (5, 3, 4, 4)
    assert batch["index"].tolist() == [1, 2, 3, 4, 5]


def test_item_greyscale_output_as_rgb_and_greyscale_run(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image)
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / rows[1]["restored"])
    manifest = load_manifest(make_manifest(rows), outputs="restored")
    rgb = ManifestImageDataset(manifest, [1], image_size=8).load_row(1)["output"]
    assert rgb.shape == (3, 8, 8)
    assert all(torch.equal(rgb[c], torch.from_numpy(pixels.astype(np.float32) / np.float32(255))) for c in range(3))
    assert ManifestImageDataset(manifest, [1], image_size=8, channels=1).load_row(1)["output"].shape == (1, 8, 8)


def test_manifest_validation_refuses_an_output_of_another_aspect_ratio(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image)
    write_image(tmp_path / rows[4]["restored"], size=(8, 6))
    pattern = (
        rf"manifest\.csv: data row 5 \(line 6\), column 'restored': {rx(m.ERR_ASPECT_RATIO)} by 33\.3% \(more than "
        rf"1%\): output 8x6 vs original 8x8: out/c_1\.png; fix: save the output at the original's aspect ratio \(e\.g\. 8x8\)"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows), outputs="restored")
    write_image(tmp_path / rows[4]["restored"], size=(16, 16))  # same shape, any size: accepted
    assert load_manifest(make_manifest(rows), outputs="restored").outputs == "restored"


def test_item_output_aspect_ratio_names_row_and_column(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image)
    manifest = load_manifest(make_manifest(rows), outputs="restored")
    write_image(tmp_path / rows[4]["restored"], size=(8, 6))  # replaced after validation
    pattern = (
        rf"manifest\.csv: data row 5, column 'restored': {rx(dm.ERR_ASPECT_RATIO)} by 33\.3% \(more than 1%\): "
        rf"output 8x6 vs original 8x8: .*out/c_1\.png; fix: save the output at the original's aspect ratio"
    )
    with pytest.raises(ManifestError, match=pattern):
        ManifestImageDataset(manifest, manifest.output_rows, image_size=8).load_row(4)


def test_item_unreadable_output_and_input_name_row_and_column(make_manifest, tmp_path, write_image):
    rows = out_rows(tmp_path, write_image, lowres=True)
    manifest = load_manifest(make_manifest(rows), outputs="restored", inputs="lowres")
    dataset = ManifestImageDataset(manifest, manifest.output_rows, image_size=8)
    (tmp_path / rows[3]["restored"]).write_bytes(b"not a png any more")
    pattern = rf"data row 4, column 'restored': {rx(m.ERR_UNREADABLE_IMAGE)}: .*out/b_2\.png \(UnidentifiedImageError"
    with pytest.raises(ManifestError, match=pattern):
        dataset.load_row(3)
    (tmp_path / rows[5]["lowres"]).write_bytes(b"nor this")
    with pytest.raises(ManifestError, match=rf"data row 6, column 'lowres': {rx(m.ERR_UNREADABLE_IMAGE)}: .*lr/c_5\.png"):
        dataset.load_row(5)


def test_load_output_is_exported_lazily():
    import genfair.datasets as datasets

    assert "load_output" in datasets.__all__ and datasets.load_output is dm.load_output
