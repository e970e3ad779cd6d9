"""Manifest reading and validation: one test per error, plus the happy paths."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from genfair.datasets import RESERVED_COLUMNS, SPLITS, Manifest, ManifestError, load_manifest
from genfair.datasets import manifest as m
from genfair.datasets import manifest_checks as checks


def rx(text: str) -> str:
    return re.escape(text)


# -- happy paths ---------------------------------------------------------------------------------


def test_load_csv_defaults_to_every_non_reserved_column(make_manifest):
    path = make_manifest()
    manifest = load_manifest(path)
    assert isinstance(manifest, Manifest)
    assert manifest.attributes == ("gender", "skin_tone")
    assert manifest.root == path.parent
    assert manifest.source == path
    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(manifest.frame.index) == list(range(6))
    assert manifest.image_path(2) == path.parent / "img/b_1.png"
    assert not manifest.has_split


def test_named_attributes_keep_other_columns(make_manifest):
    rows = [{**row, "view": str(i)} for i, row in enumerate(m_rows())]
    manifest = load_manifest(make_manifest(rows), attributes=["gender"])
    assert manifest.attributes == ("gender",)
    assert "view" in manifest.frame.columns and "skin_tone" in manifest.frame.columns


def test_parquet_numbers_become_strings(make_manifest):
    rows = [{**row, "subject": i // 2, "tone": float(i // 2 + 1)} for i, row in enumerate(m_rows())]
    manifest = load_manifest(make_manifest(rows, suffix=".parquet"), attributes=("tone", "gender"))
    assert manifest.frame["subject"].tolist() == ["0", "0", "1", "1", "2", "2"]
    assert manifest.frame["tone"].tolist()[::2] == ["1", "2", "3"]
    assert all(isinstance(v, str) for v in manifest.frame["gender"])


def test_split_column_is_kept_and_not_an_attribute(make_manifest):
    rows = [{**row, "split": "train" if row["subject"] != "c" else "test"} for row in m_rows()]
    manifest = load_manifest(make_manifest(rows))
    assert manifest.has_split
    assert "split" not in manifest.attributes
    assert set(manifest.frame["split"]) <= set(SPLITS)
    assert set(RESERVED_COLUMNS) == {"path", "subject", "split", "mask_path"}


def test_image_checks_exist_and_skip(make_manifest, tmp_path):
    path = make_manifest()
    (tmp_path / "img/a_1.png").write_bytes(b"not an image")
    assert len(load_manifest(path, images="exist").frame) == 6
    (tmp_path / "img/a_2.png").unlink()
    with pytest.raises(ManifestError, match=rf"data row 2 \(line 3\), column 'path': {rx(m.ERR_MISSING_IMAGE)}"):
        load_manifest(path, images="exist")
    assert len(load_manifest(path, images="skip").frame) == 6
    with pytest.raises(ValueError, match=r"images must be one of 'verify', 'exist', 'skip', got 'header'"):
        load_manifest(path, images="header")


# -- file-level errors ---------------------------------------------------------------------------


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match=rf"nope\.csv: {rx(m.ERR_NOT_FOUND)}.*fix: check the path"):
        load_manifest(tmp_path / "nope.csv")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ManifestError, match=rf"manifest\.json: {rx(m.ERR_UNSUPPORTED_FORMAT)} '\.json'.*\.csv, \.parquet"):
        load_manifest(tmp_path / "manifest.json")


def test_empty_file(tmp_path):
    (tmp_path / "manifest.csv").write_text("")
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_EMPTY)} \(the file has no header"):
        load_manifest(tmp_path / "manifest.csv")


def test_header_only(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,subject,gender\n")
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_EMPTY)} \(a header but no rows\); fix: add one row"):
        load_manifest(tmp_path / "manifest.csv")


def test_unparseable_csv(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,subject\na.png,a\nb.png,b,extra,fields\n")
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_UNPARSEABLE)} as csv \(ParserError"):
        load_manifest(tmp_path / "manifest.csv")


def test_unparseable_parquet(tmp_path):
    (tmp_path / "manifest.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_UNPARSEABLE)} as parquet"):
        load_manifest(tmp_path / "manifest.parquet")


# -- columns -------------------------------------------------------------------------------------


def test_missing_required_column_suggests_a_close_one(make_manifest):
    rows = [{"paths": r["path"], "subject": r["subject"]} for r in m_rows()]
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_MISSING_COLUMNS)}\(s\) 'path'.*did you mean 'paths'"):
        load_manifest(make_manifest(rows, images=False))


def test_reserved_column_named_as_attribute(make_manifest):
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_RESERVED_ATTRIBUTE)}: 'subject'"):
        load_manifest(make_manifest(), attributes=["gender", "subject"])


def test_attribute_named_twice(make_manifest):
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_DUPLICATE_ATTRIBUTE)}: \['gender'\]"):
        load_manifest(make_manifest(), attributes=["gender", "gender"])


def test_unknown_attribute_suggests(make_manifest):
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_UNKNOWN_ATTRIBUTE)}: 'skintone'.*did you mean 'skin_tone'"):
        load_manifest(make_manifest(), attributes=["skintone"])


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["path", "subject", "gender"])
def test_blank_values_name_row_line_and_column(make_manifest, column):
    rows = m_rows()
    rows[2][column] = "  "
    rows[4][column] = ""
    pattern = rf"manifest\.csv: data row 3 \(line 4\), column '{column}': {rx(m.ERR_BLANK_VALUE)} '  '; 1 more row like this; fix:"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows))


def test_blank_in_parquet_null(make_manifest):
    rows = m_rows()
    rows[1]["gender"] = None
    with pytest.raises(ManifestError, match=rf"data row 2, column 'gender': {rx(m.ERR_BLANK_VALUE)} ''"):
        load_manifest(make_manifest(rows, suffix=".parquet"))


def test_line_numbers_follow_quoted_newlines(tmp_path, write_image):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)
    (tmp_path / "manifest.csv").write_text('path,subject,note\na.png,a,"two\nlines"\nb.png,,x\n')
    with pytest.raises(ManifestError, match=r"data row 2 \(line 4\), column 'subject'"):
        load_manifest(tmp_path / "manifest.csv")


def test_invalid_split(make_manifest):
    rows = [{**row, "split": "train"} for row in m_rows()]
    rows[3]["split"] = "Test"
    with pytest.raises(ManifestError, match=rf"data row 4 \(line 5\), column 'split': {rx(m.ERR_INVALID_SPLIT)} 'Test'.*train, val, test"):
        load_manifest(make_manifest(rows))


def test_absolute_path(make_manifest):
    rows = m_rows()
    rows[0]["path"] = "/etc/passwd"
    with pytest.raises(ManifestError, match=rf"data row 1 \(line 2\), column 'path': {rx(m.ERR_ABSOLUTE_PATH)} '/etc/passwd'"):
        load_manifest(make_manifest(rows))


def test_duplicate_path_names_the_first_occurrence(make_manifest):
    rows = m_rows()
    rows[3]["path"] = rows[0]["path"]
    rows[5]["path"] = rows[0]["path"]
    rows[3]["subject"] = rows[5]["subject"] = "a"
    rows[3]["gender"] = rows[5]["gender"] = "female"
    rows[3]["skin_tone"] = rows[5]["skin_tone"] = "darker"
    pattern = rf"data row 4 \(line 5\), column 'path': {rx(m.ERR_DUPLICATE_PATH)} 'img/a_1.png' \(already at data row 1\); 1 more row"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows))


def test_subject_with_two_values_of_an_attribute(make_manifest):
    rows = m_rows()
    rows[3]["gender"] = "female"  # subject b: male at row 3, female at row 4
    pattern = (
        rf"data row 4 \(line 5\), column 'gender': {rx(m.ERR_CONFLICTING_ATTRIBUTE)}: subject 'b' has gender "
        r"'female' here but 'male' at data row 3; fix: give all of a subject's rows the same gender"
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows))


def test_conflicts_are_counted_across_subjects(make_manifest):
    rows = m_rows()
    rows[1]["skin_tone"] = "lighter"
    rows[3]["skin_tone"] = "darker"
    with pytest.raises(ManifestError, match=r"data row 2 .*1 more subject affected; 1 more row like this"):
        load_manifest(make_manifest(rows))


def test_conflicting_attribute_not_checked_when_not_an_attribute(make_manifest):
    rows = [{**row, "view": str(i)} for i, row in enumerate(m_rows())]
    assert load_manifest(make_manifest(rows), attributes=["gender"]).attributes == ("gender",)


def test_subject_in_two_splits(make_manifest):
    rows = [{**row, "split": "train"} for row in m_rows()]
    rows[5]["split"] = "test"
    with pytest.raises(ManifestError, match=rf"column 'split': {rx(m.ERR_SUBJECT_IN_TWO_SPLITS)}: subject 'c'.*splits never share"):
        load_manifest(make_manifest(rows))


# -- images --------------------------------------------------------------------------------------


def test_missing_image(make_manifest):
    path = make_manifest(skip_images=["img/b_2.png", "img/c_1.png"])
    with pytest.raises(ManifestError, match=rf"data row 4 \(line 5\), column 'path': {rx(m.ERR_MISSING_IMAGE)}: .*b_2\.png; 1 more row"):
        load_manifest(path)


def test_unreadable_image(make_manifest, tmp_path):
    path = make_manifest()
    (tmp_path / "img/c_2.png").write_bytes(b"\x89PNG this is not really a png")
    with pytest.raises(ManifestError, match=rf"data row 6 \(line 7\), column 'path': {rx(m.ERR_UNREADABLE_IMAGE)}: .*c_2\.png \("):
        load_manifest(path)


def test_read_table_names_what_is_read(tmp_path):
    with pytest.raises(ManifestError, match=r"annotations file does not exist"):
        m.read_table(tmp_path / "a.csv", what="annotations")
    pd.DataFrame({"subject": ["x"]}).to_csv(tmp_path / "a.csv", index=False)
    assert m.read_table(tmp_path / "a.csv")["subject"].tolist() == ["x"]


def m_rows() -> list[dict]:
    """Six rows of three subjects (see conftest.default_rows), as fresh dicts."""
    return [
        {"path": f"img/{s}_{n}.png", "subject": s, "gender": g, "skin_tone": t}
        for s, g, t in (("a", "female", "darker"), ("b", "male", "lighter"), ("c", "male", "darker"))
        for n in (1, 2)
    ]


def test_paths_are_unchanged(make_manifest):
    manifest = load_manifest(make_manifest())
    assert manifest.frame["path"].tolist() == [r["path"] for r in m_rows()]
    assert Path(manifest.image_path(0)).is_file()


def test_inferred_attribute_errors_suggest_naming_attributes(make_manifest):
    rows = [{**row, "age": "" if i == 4 else "30", "view": str(i)} for i, row in enumerate(m_rows())]
    pattern = r"column 'age': blank value ''; fix: .*or name the sensitive attributes \(e\.g\. audit run --attributes gender,skin_tone; attributes=\['gender', 'skin_tone'\]\) to leave 'age' out"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows))
    with pytest.raises(ManifestError, match=r"column 'age': blank value ''; fix: fill in the age of this row or drop the row, or leave such rows "
                       r"out \(--missing drop\) or make them a group \(--missing group\)$"):
        load_manifest(make_manifest(rows, name="named"), attributes=["gender", "age"])


def test_real_photos_manifest(london_faces):
    manifest = load_manifest(london_faces, attributes=["gender", "race_binary"], images="exist")
    assert len(manifest.frame) == 1020
    assert manifest.frame.groupby("subject")["race_binary"].nunique().max() == 1


def test_a_column_named_index_is_just_another_column(make_manifest):
    rows = [{**row, "index": str(i)} for i, row in enumerate(m_rows())]
    rows[3]["gender"] = "female"
    with pytest.raises(ManifestError, match=r"subject 'b' has gender 'female' here but 'male' at data row 3"):
        load_manifest(make_manifest(rows), attributes=["gender"])


# -- masks (the optional mask_path column) -------------------------------------------------------


def mask_rows(tmp_path: Path, write_image, *, skip: tuple[int, ...] = ()) -> list[dict]:
    """``m_rows()`` with a ``mask_path`` per row; mask files written except for rows in ``skip``."""
    rows = [{**row, "mask_path": row["path"].replace("img/", "masks/")} for row in m_rows()]
    for i, row in enumerate(rows):
        if i not in skip:
            write_image(tmp_path / row["mask_path"], mode="L", value=255)
    return rows


def test_mask_path_is_reserved_kept_and_resolved(make_manifest, tmp_path, write_image):
    manifest = load_manifest(make_manifest(mask_rows(tmp_path, write_image)))
    assert m.MASK_COLUMN == "mask_path" and "mask_path" in RESERVED_COLUMNS
    assert manifest.attributes == ("gender", "skin_tone")
    assert manifest.has_mask
    assert manifest.frame["mask_path"].tolist()[:2] == ["masks/a_1.png", "masks/a_2.png"]
    assert manifest.mask_path(1) == tmp_path / "masks/a_2.png"


def test_mask_path_cannot_be_an_attribute(make_manifest, tmp_path, write_image):
    with pytest.raises(ManifestError, match=rf"{rx(m.ERR_RESERVED_ATTRIBUTE)}: 'mask_path'"):
        load_manifest(make_manifest(mask_rows(tmp_path, write_image)), attributes=["mask_path"])


def test_mask_path_of_a_manifest_without_masks(make_manifest):
    manifest = load_manifest(make_manifest())
    assert not manifest.has_mask
    with pytest.raises(KeyError, match=r"manifest\.csv: the manifest has no 'mask_path' column; check has_mask first"):
        manifest.mask_path(0)


def test_blank_mask_path(make_manifest, tmp_path, write_image):
    rows = mask_rows(tmp_path, write_image)
    rows[2]["mask_path"] = ""
    pattern = rf"data row 3 \(line 4\), column 'mask_path': {rx(m.ERR_BLANK_VALUE)} ''; fix: fill in the mask's path"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows))


def test_absolute_mask_path(make_manifest, tmp_path, write_image):
    rows = mask_rows(tmp_path, write_image)
    rows[1]["mask_path"] = "/masks/a_2.png"
    with pytest.raises(ManifestError, match=rf"data row 2 \(line 3\), column 'mask_path': {rx(m.ERR_ABSOLUTE_PATH)} '/masks/a_2.png'"):
        load_manifest(make_manifest(rows))


def test_shared_mask_files_are_allowed(make_manifest, tmp_path, write_image):
    rows = mask_rows(tmp_path, write_image)
    for row in rows:
        row["mask_path"] = rows[0]["mask_path"]
    assert load_manifest(make_manifest(rows)).frame["mask_path"].nunique() == 1


def test_missing_mask_file(make_manifest, tmp_path, write_image):
    rows = mask_rows(tmp_path, write_image, skip=(4,))
    pattern = rf"data row 5 \(line 6\), column 'mask_path': {rx(m.ERR_MISSING_IMAGE)}: .*masks/c_1\.png; fix: .*whole mask_path column"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows))


def test_unreadable_mask_file(make_manifest, tmp_path, write_image):
    path = make_manifest(mask_rows(tmp_path, write_image))
    (tmp_path / "masks/b_1.png").write_bytes(b"not a png")
    with pytest.raises(ManifestError, match=rf"data row 3 \(line 4\), column 'mask_path': {rx(m.ERR_UNREADABLE_IMAGE)}: .*b_1\.png"):
        load_manifest(path)
    assert load_manifest(path, images="exist").has_mask


# -- attribute codes -----------------------------------------------------------------------------


def test_attribute_classes_and_codes(make_manifest):
    rows = [{**row, "tone": str(t)} for row, t in zip(m_rows(), (2, 2, 10, 10, 1, 1))]
    manifest = load_manifest(make_manifest(rows), attributes=["skin_tone", "tone"])
    assert manifest.attribute_classes == {"skin_tone": ("darker", "lighter"), "tone": ("1", "10", "2")}
    codes = manifest.attribute_codes()
    assert codes.dtype == "int64" and codes.shape == (6, 2)
    assert codes.tolist() == [[0, 2], [0, 2], [1, 1], [1, 1], [0, 0], [0, 0]]


def test_attribute_codes_without_attributes(make_manifest):
    manifest = load_manifest(make_manifest(), attributes=[])
    assert manifest.attribute_classes == {}
    assert manifest.attribute_codes().shape == (6, 0)



# -- paths outside the manifest's folder ---------------------------------------------------------


@pytest.mark.parametrize("path", ["../elsewhere/a.png", "img/../../a.png", "./..\\a.png", ".."])
def test_paths_climbing_out_of_the_folder(make_manifest, path):
    rows = m_rows()
    rows[2]["path"] = path
    pattern = rf"data row 3 \(line 4\), column 'path': {rx(m.ERR_OUTSIDE_ROOT)} .*{rx(repr(path))} climbs above it.*--allow-outside-root"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows, images=False), images="skip")


@pytest.mark.parametrize("path", ["img/../img/b_1.png", "a..b/c.png", "img/..hidden.png", "./img/b_1.png"])
def test_dots_that_stay_inside_are_fine(make_manifest, path):
    rows = m_rows()
    rows[2]["path"] = path
    assert load_manifest(make_manifest(rows, images=False), images="skip").frame["path"].iat[2] == path


def test_allow_outside_root_accepts_absolute_and_climbing_paths(make_manifest, tmp_path, write_image):
    outside = write_image(tmp_path.parent / f"{tmp_path.name}-outside" / "x.png")
    rows = m_rows()
    rows[0]["path"] = str(outside)
    rows[1]["path"] = f"../{outside.parent.name}/x.png"
    path = make_manifest(rows)
    with pytest.raises(ManifestError, match=rx(m.ERR_ABSOLUTE_PATH)):
        load_manifest(path)
    manifest = load_manifest(path, allow_outside_root=True)
    assert manifest.image_path(0) == outside and manifest.image_path(1).resolve() == outside


def test_mask_paths_may_not_climb_out_either(make_manifest, tmp_path, write_image):
    rows = mask_rows(tmp_path, write_image)
    rows[4]["mask_path"] = "../m.png"
    with pytest.raises(ManifestError, match=rf"data row 5 \(line 6\), column 'mask_path': {rx(m.ERR_OUTSIDE_ROOT)}"):
        load_manifest(make_manifest(rows), images="skip")


def test_two_spellings_of_one_path_are_duplicates(make_manifest):
    rows = m_rows()
    rows[1]["path"] = "img//./a_1.png"
    pattern = rf"data row 2 \(line 3\), column 'path': {rx(m.ERR_DUPLICATE_PATH)} 'img//./a_1.png' \(already at data row 1 as 'img/a_1.png'\)"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows, images=False), images="skip")


# -- skin-tone scales ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "problem", "fix"),
    [
        ("fitzpatrick", "III", "Fitzpatrick skin types, integers from 1 to 6", "write 3 for 'III'"),
        ("Fitzpatrick", "7", "Fitzpatrick skin types, integers from 1 to 6", "write a number from 1 to 6"),
        ("fitzpatrick", "2.5", "integers from 1 to 6", "write a number from 1 to 6"),
        ("monk", "light", "Monk Skin Tone steps, integers from 1 to 10", "write a number from 1 to 10"),
        ("monk_skin_tone", "ix", "Monk Skin Tone steps", "write 9 for 'ix'"),
        ("ita", "n/a", "Individual Typology Angles in degrees, numbers from -90 to 90", "write a number from -90 to 90"),
        ("skin_tone_ita", "91", "numbers from -90 to 90", "write a number from -90 to 90"),
    ],
)
def test_tone_scale_values_must_be_numbers_on_the_scale(make_manifest, column, value, problem, fix):
    rows = [{**row, column: "4"} for row in m_rows()]
    rows[2][column] = rows[3][column] = value
    pattern = (
        rf"data row 3 \(line 4\), column '{column}': {rx(m.ERR_TONE_SCALE)} '{rx(value)}' \('{column}' holds "
        rf"[^)]*{rx(problem)}[^)]*\); 1 more row like this; fix: {rx(fix)} "
    )
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(make_manifest(rows, images=False), images="skip")


def test_tone_scales_are_written_canonically_and_only_checked_as_attributes(make_manifest):
    rows = [{**row, "fitzpatrick": value, "ita": "-12.5"} for row, value in zip(m_rows(), ["03", "3.0", " 5", "5", "1", "1"])]
    manifest = load_manifest(make_manifest(rows, images=False), images="skip")
    assert manifest.frame["fitzpatrick"].tolist() == ["3", "3", "5", "5", "1", "1"], "03 and 3.0 are one group"
    assert manifest.frame["ita"].tolist() == ["-12.5"] * 6
    rows[0]["fitzpatrick"] = "III"
    assert load_manifest(make_manifest(rows, images=False), attributes=["gender"], images="skip").frame[
        "fitzpatrick"].iat[0] == "III", "a column that is not audited is kept as-is"


def test_parquet_tone_numbers(make_manifest):
    rows = [{**row, "fitzpatrick": t} for row, t in zip(m_rows(), (2, 2, 6, 6, 1, 1))]
    manifest = load_manifest(make_manifest(rows, suffix=".parquet", images=False), images="skip")
    assert manifest.frame["fitzpatrick"].tolist() == ["2", "2", "6", "6", "1", "1"]


# -- image checks --------------------------------------------------------------------------------


def test_sixteen_bit_images_are_rejected_eight_bit_modes_are_not(make_manifest, tmp_path):
    import numpy as np
    from PIL import Image

    path = make_manifest()
    for name, mode in (("img/a_1.png", "P"), ("img/a_2.png", "LA"), ("img/b_1.png", "1")):
        Image.new(mode, (5, 7)).save(tmp_path / name)
    assert len(load_manifest(path).frame) == 6
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "img/c_1.png")
    pattern = rf"data row 5 \(line 6\), column 'path': {rx(m.ERR_IMAGE_MODE)} 'I;16': .*c_1\.png .*clipped.*; fix: save the image as 8-bit"
    with pytest.raises(ManifestError, match=pattern):
        load_manifest(path)
    assert len(load_manifest(path, images="exist").frame) == 6


def test_truncated_png_fails_the_verify(make_manifest, tmp_path):
    import numpy as np
    from PIL import Image

    path = make_manifest()
    image = tmp_path / "img/b_2.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    image.write_bytes(image.read_bytes()[:2000])  # the header is intact, the pixel data cut short
    with pytest.raises(ManifestError, match=rf"data row 4 \(line 5\), column 'path': {rx(m.ERR_UNREADABLE_IMAGE)}: .*b_2\.png \(OSError"):
        load_manifest(path)


def test_existence_by_folder_listing_agrees_with_stat(tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for k in range(checks._LIST_FOLDER_FROM + 5):
        (many / f"{k}.png").write_bytes(b"x")
    (many / "sub").mkdir()
    (many / "link.png").symlink_to(many / "0.png")
    (many / "dangling.png").symlink_to(many / "gone.png")
    names = [f"{k}.png" for k in range(checks._LIST_FOLDER_FROM + 7)] + ["sub", "link.png", "dangling.png", "../many/1.png"]
    files = [str(many / name) for name in names] + [str(tmp_path / "few" / "a.png"), str(many / "sub" / "x.png")]
    found = checks._existing(files)
    assert found.tolist() == [Path(f).is_file() for f in files]
    assert found.sum() == checks._LIST_FOLDER_FROM + 5 + 2  # the files, the link, and ../many/1.png
