"""The bad-input corpus: every malformed input ends in exit 2 and one readable line, before training.

Each case writes a tiny manifest (a few subjects, 16x16 images) into ``tmp_path`` and drives the
real ``audit`` command in-process with typer's CliRunner. The line must name the file, row, column,
key or option at fault and the fix; no traceback unless ``--debug``; and nothing is trained,
logged or written (no MLflow store appears, an existing store, ``--out`` folder or ``--junit``
file is left as it was).

Rules these cases pin down (see ``genfair.datasets.manifest``):

- paths must stay inside the manifest's folder (no absolute path, no ``..`` climbing out)
  unless ``--allow-outside-root``;
- mixed image sizes and 8-bit modes are converted and resized to ``--image-size`` (not
  rejected); 16/32-bit modes are rejected (converting them would clip);
- every group (combination of the attributes' values) must have a subject in the test split,
  and a seeded split refuses a group of a single subject;
- skin-tone scale columns (``fitzpatrick``, ``monk``, ``ita``, ...) hold numbers on their scale.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli_runner import invoke
from genfair.audit.cli import app

SIZE = 16
RUN = ["--model", "vae", "--epochs", "1", "--image-size", str(SIZE), "--batch-size", "8", "--accelerator", "cpu",
       "--devices", "1", "--classifier-epochs", "0"]
# Eight people, two per (gender, skin_tone) group (fd1, fd2, fl1, ..., ml2), two images each: 16 rows, in that
# order, so ml1's images are data rows 13-14 and ml2's 15-16.
PEOPLE = [(f"{g[0]}{t[0]}{k}", g, t) for g in ("female", "male") for t in ("darker", "lighter") for k in (1, 2)]
TYPO_POLICY = "[metrics.mse_error]\nmax_ratoi = 1.5\n"
LOOSE_POLICY = "[statistics]\nn_resamples = 200\nn_permutations = 199\n[metrics.mse_error]\nmax_ratio = 100.0\n"


# -- building inputs -----------------------------------------------------------------------------


def write_image(path: Path, *, size: tuple[int, int] = (SIZE, SIZE), mode: str = "RGB", value: int = 120) -> Path:
    """A tiny image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 7 + value) % 256
    image = Image.fromarray(pixels.astype(np.uint8), "L").convert(mode)
    image.save(path)
    return path


def people_rows(people: list[tuple[str, str, str]] = PEOPLE, *, images: int = 2) -> list[dict[str, str]]:
    return [
        {"path": f"img/{subject}_{n}.png", "subject": subject, "gender": gender, "skin_tone": tone}
        for subject, gender, tone in people
        for n in range(1, images + 1)
    ]


def write_manifest(folder: Path, rows: list[dict[str, str]], *, name: str = "manifest.csv") -> Path:
    """Write the rows as a CSV manifest, and a 16x16 image for every relative path inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    pd.DataFrame(rows).to_csv(target, index=False, lineterminator="\n")
    for row in rows:
        path = str(row.get("path", ""))
        if path.strip() and not os.path.isabs(path) and not path.startswith("..") and not (folder / path).exists():
            write_image(folder / path, value=sum(path.encode()) % 200)
    return target


def edit(rows: list[dict[str, str]], subject: str, column: str, value: str, *,
         only_first: bool = False) -> list[dict[str, str]]:
    """``rows`` with ``column`` set to ``value`` for ``subject``'s rows (or only its first)."""
    done = False
    changed = []
    for row in rows:
        if row["subject"] == subject and not (only_first and done):
            row = {**row, column: value}
            done = True
        changed.append(row)
    return changed


@dataclass(frozen=True)
class Case:
    """One malformed input: ``build(tmp)`` writes it and returns the CLI arguments; ``expect`` are
    substrings of the one error line (what is at fault, and the fix)."""

    id: str
    build: Callable[[Path], list[str]]
    expect: tuple[str, ...]


def manifest_run(rows: list[dict[str, str]], *extra: str, name: str = "manifest.csv") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        return ["run", "--manifest", str(write_manifest(tmp / "data", rows, name=name)), *extra, *RUN]

    return build


def raw_manifest(name: str, content: bytes | None) -> Callable[[Path], list[str]]:
    """A manifest file with exactly ``content`` (None: a folder of that name)."""

    def build(tmp: Path) -> list[str]:
        target = tmp / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            target.mkdir()
        else:
            target.write_bytes(content)
        return ["run", "--manifest", str(target), *RUN]

    return build


def with_bad_image(write: Callable[[Path], None], *, subject: str = "ml2") -> Callable[[Path], list[str]]:
    """The good manifest, with the first image of ``subject`` replaced by ``write(path)``."""

    def build(tmp: Path) -> list[str]:
        manifest = write_manifest(tmp / "data", people_rows())
        write(tmp / "data" / "img" / f"{subject}_1.png")
        return ["run", "--manifest", str(manifest), *RUN]

    return build


def outside_path(absolute: bool) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        outside = write_image(tmp / "elsewhere" / "x.png")
        path = str(outside) if absolute else "../elsewhere/x.png"
        rows = people_rows()
        rows[3] = {**rows[3], "path": path}
        return ["run", "--manifest", str(write_manifest(tmp / "data", rows)), *RUN]

    return build


def policy_file(command: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        policy = tmp / "fairness.toml"
        policy.write_text(TYPO_POLICY)
        if command == "check":
            return ["check", "--run", "0" * 32, "--policy", str(policy)]
        return ["run", "--policy", str(policy), *RUN]

    return build


def truncated_png(path: Path) -> None:
    write_image(path, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def sixteen_bit_png(path: Path) -> None:
    Image.fromarray((np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) * 250)).save(path)


def toned(column: str, values: dict[str, str]) -> list[dict[str, str]]:
    """The good rows plus a tone column: ``values[subject]``, else a plausible number."""
    default = {"darker": "5", "lighter": "2"} if column == "fitzpatrick" else {"darker": "-5.5", "lighter": "48.2"}
    return [{**row, column: values.get(row["subject"], default[row["skin_tone"]])} for row in people_rows()]


def renamed(row: dict[str, str], column: str, to: str | None) -> dict[str, str]:
    """``row`` with ``column`` renamed ``to`` (first), or dropped (``to=None``)."""
    rest = {key: value for key, value in row.items() if key != column}
    return rest if to is None else {to: row[column], **rest}


def aged(ages: Callable[[int], str]) -> list[dict[str, str]]:
    """``people_rows()`` with an ``age`` column: ``ages(i)`` for the ``i``-th person (0-based)."""
    return [{**row, "age": ages(i // 2)} for i, row in enumerate(people_rows())]


def split_rows(placement: dict[str, str]) -> list[dict[str, str]]:
    default = {"1": "train", "2": "test"}
    return [{**row, "split": placement.get(row["subject"], default[row["subject"][-1]])} for row in people_rows()]


CASES = [
    # the manifest file itself
    Case("manifest-not-found", lambda tmp: ["run", "--manifest", str(tmp / "no" / "such.csv"), *RUN],
         ("no/such.csv", "manifest not found", "fix: check the path")),
    Case("wrong-format-txt", raw_manifest("manifest.txt", b"path,subject\na.png,s1\n"),
         ("manifest.txt", "unsupported manifest format '.txt'", "fix: save it as one of .csv, .parquet")),
    Case("wrong-format-json", raw_manifest("manifest.json", b'[{"path": "a.png", "subject": "s1"}]'),
         ("manifest.json", "unsupported manifest format '.json'", "fix: save it as one of .csv, .parquet")),
    Case("manifest-is-a-folder", raw_manifest("faces.csv", None),
         ("faces.csv", "manifest not found", "or is a folder", "fix: check the path")),
    Case("empty-file", raw_manifest("manifest.csv", b""),
         ("manifest.csv", "empty manifest", "fix: write a header row")),
    Case("header-only", raw_manifest("manifest.csv", b"path,subject,gender\n"),
         ("manifest.csv", "empty manifest (a header but no rows)", "fix: add one row per image")),
    Case("ragged-csv", raw_manifest("manifest.csv", b"path,subject\nimg/a.png,s1\nimg/b.png,s2,extra,more\n"),
         ("manifest.csv", "cannot read manifest as csv", "fix: re-export the manifest")),
    Case("csv-named-parquet", raw_manifest("manifest.parquet", b"path,subject\nimg/a.png,s1\n"),
         ("manifest.parquet", "cannot read manifest as parquet", "fix: re-export the manifest")),
    # columns
    Case("missing-path-column", manifest_run([renamed(row, "path", "paths") for row in people_rows()]),
         ("manifest.csv", "missing required column(s) 'path'", "did you mean 'paths'", "fix: add a column 'path'")),
    Case("missing-subject-column", manifest_run([renamed(row, "subject", None) for row in people_rows()]),
         ("manifest.csv", "missing required column(s) 'subject'", "fix: add a column 'subject'")),
    Case("unknown-attribute", manifest_run(people_rows(), "--attributes", "gender,skintone"),
         ("manifest.csv", "attribute is not a column: 'skintone'", "did you mean 'skin_tone'")),
    # rows
    Case("duplicate-path", manifest_run(people_rows()[:3] + [{**people_rows()[5], "path": "img/fd1_1.png"}]
                                        + people_rows()[4:]),
         ("manifest.csv: data row 4 (line 5), column 'path'", "duplicate path 'img/fd1_1.png' (already at data row 1)",
          "fix: list each image once")),
    Case("path-climbs-out", outside_path(absolute=False),
         ("data row 4 (line 5), column 'path'", "path leaves the manifest's folder", "'../elsewhere/x.png'",
          "--allow-outside-root")),
    Case("path-absolute", outside_path(absolute=True),
         ("data row 4 (line 5), column 'path'", "path is not relative", "--allow-outside-root")),
    Case("invalid-split", manifest_run(split_rows({"ml1": "validation"})),
         ("column 'split'", "invalid split 'validation'", "fix: use one of train, val, test")),
    Case("conflicting-attribute", manifest_run(edit(people_rows(), "fd1", "gender", "male", only_first=True)),
         ("data row 2 (line 3), column 'gender'", "subject has two values of an attribute",
          "subject 'fd1' has gender 'female' here but 'male' at data row 1",
          "fix: give all of a subject's rows the same gender")),
    Case("blank-attribute", manifest_run(edit(people_rows(), "ml1", "gender", "")),
         ("data row 13 (line 14), column 'gender'", "blank value ''", "fix: fill in the gender of this row",
          "1 more row like this")),
    Case("non-numeric-fitzpatrick", manifest_run(toned("fitzpatrick", {"fl2": "III"})),
         ("column 'fitzpatrick'", "value is not on the skin-tone scale 'III'", "Fitzpatrick skin types, integers from 1 to 6",
          "fix: write 3 for 'III'")),
    Case("non-numeric-ita", manifest_run(toned("skin_tone_ita", {"md1": "n/a"}), "--attributes", "gender,skin_tone_ita"),
         ("column 'skin_tone_ita'", "value is not on the skin-tone scale 'n/a'", "fix: write a number from -90 to 90")),
    # numeric attributes and blank values (--bins, --missing)
    Case("numeric-attribute-unbinned", manifest_run([{**row, "age": str(20 + i)} for i, row in enumerate(people_rows())],
                                                    "--attributes", "gender,age"),
         ("column 'age'", "numeric attribute with many values (16 distinct numbers from 20 to 35",
          "fix: bin it, e.g. --bins age=20,", "--bins age=quantiles:4")),
    Case("bins-not-edges", manifest_run(aged(lambda i: str(20 + 5 * i)), "--attributes", "gender,age", "--bins",
                                        "age=young,old"),
         ("bad bins age='young,old'", "fix: e.g. --bins age=18,30,45,65 or --bins age=quantiles:4")),
    Case("bins-without-a-value", manifest_run(people_rows(), "--bins", "age"),
         ("--bins 'age': expected KEY=VALUE", "e.g. --bins age=18,30,45,65")),
    Case("bins-of-a-column-not-audited", manifest_run(aged(lambda i: str(20 + 5 * i)), "--attributes", "gender",
                                                      "--bins", "age=18,65"),
         ("bins for a column that is not an attribute: age=18,65", "--attributes gender,age")),
    Case("value-outside-the-bins", manifest_run(aged(lambda i: str(20 + 5 * i)), "--attributes", "gender,age",
                                                "--bins", "age=18,30,50"),
         ("data row 15 (line 16), column 'age'", "value outside the bins: '55'", "1 more row like this",
          "--bins age=18,30,50,55")),
    Case("word-in-a-binned-column", manifest_run(aged(lambda i: "unknown" if i == 3 else str(20 + i)),
                                                 "--attributes", "gender,age", "--bins", "age=quantiles:2"),
         ("data row 7 (line 8), column 'age'", "value to bin is not a number 'unknown'", "--missing drop")),
    Case("missing-rule-unknown", manifest_run(people_rows(), "--missing", "skip"),
         ("--missing must be one of error, drop, group, got 'skip'",)),
    Case("primary-metric-unknown", manifest_run(people_rows(), "--primary-metric", "lpips"),
         ("--primary-metric must be one of mse_error, mae_error, psnr_score, ssim_score, ita_shift, got 'lpips'",)),
    Case("fit-unknown", manifest_run(people_rows(), "--fit", "zoom"), ("--fit must be one of crop, pad, stretch",)),
    Case("drop-leaves-nothing", manifest_run(aged(lambda i: ""), "--attributes", "gender,age", "--missing", "drop"),
         ("every row has a blank sensitive value (age)", "fix: fill in the values")),
    Case("no-val-and-one-training-person", manifest_run(split_rows({s: "test" for s, _, _ in PEOPLE[1:]}),
                                                        "--attributes", "gender"),
         ("no row of its split column is 'val'", "1 training subject(s) cannot be split", "fix: assign some subjects")),
    # images
    Case("missing-image", with_bad_image(lambda path: path.unlink()),
         ("data row 15 (line 16), column 'path'", "image file not found", "img/ml2_1.png", "fix: correct the path")),
    Case("corrupt-image-bytes", with_bad_image(lambda path: path.write_bytes(bytes(range(256)) * 4)),
         ("data row 15 (line 16), column 'path'", "unreadable image file", "ml2_1.png", "fix: replace the file")),
    Case("truncated-png", with_bad_image(truncated_png),
         ("data row 15 (line 16), column 'path'", "unreadable image file", "fix: replace the file")),
    Case("not-an-image", with_bad_image(lambda path: path.write_text("subject,gender\nml2,male\n")),
         ("data row 15 (line 16), column 'path'", "unreadable image file", "fix: replace the file")),
    Case("sixteen-bit-image", with_bad_image(sixteen_bit_png),
         ("data row 15 (line 16), column 'path'", "unsupported image mode 'I;16'", "fix: save the image as 8-bit")),
    # groups and splits
    Case("single-subject-group", manifest_run(people_rows([p for p in PEOPLE if p[0] != "fd2"])),
         ("manifest.csv", "group has a single subject", "gender='female', skin_tone='darker'", "'fd1'",
          "fix: add subjects of this group")),
    Case("test-split-misses-a-group", manifest_run(split_rows({"fd1": "train", "fd2": "val"})),
         ("manifest.csv", "the test split has no subject of group gender='female', skin_tone='darker'",
          "in train and val", "fix: set split to 'test'")),
    # names and options
    Case("unknown-model", lambda tmp: ["run", *RUN, "--model", "vea"], ("unknown model 'vea'", "did you mean 'vae'")),
    Case("unknown-dataset", lambda tmp: ["run", "--dataset", "face", *RUN],
         ("unknown dataset 'face'", "did you mean 'faces'")),
    Case("resume-with-checkpoint", lambda tmp: ["run", "--resume", "a.ckpt", "--checkpoint", "b.ckpt", *RUN],
         ("--resume and --checkpoint conflict", "pass one")),
    Case("junit-without-policy", lambda tmp: ["run", "--junit", "report.xml", *RUN],
         ("--baseline and --junit need --policy", "add it or drop them")),
    Case("scale-on-a-non-sr-model", lambda tmp: ["run", *RUN, "--scale", "2"],
         ("--scale applies to super-resolution models", "not to 'vae'")),
    Case("unknown-model-option", lambda tmp: ["run", *RUN, "-o", "latnet_dim=8"],
         ("--model-option latnet_dim=8", "has no option 'latnet_dim'", "did you mean 'latent_dim'?", "its options:")),
    Case("zero-epochs", lambda tmp: ["run", *RUN, "--epochs", "0"], ("--epochs must be a positive integer, got 0",)),
    Case("unreachable-tracking-uri", manifest_run(people_rows(), "--tracking-uri", "http://127.0.0.1:9"),
         ("--tracking-uri http://127.0.0.1:9: cannot reach the MLflow tracking server", "nothing was trained",
          "fix: start the server")),
    Case("sqlite-store-in-a-missing-folder", manifest_run(people_rows(), "--tracking-uri", "sqlite:///no/such/mlflow.db"),
         ("--tracking-uri sqlite:///no/such/mlflow.db", "does not exist", "fix: create it")),
    Case("policy-unknown-key-run", policy_file("run"), ("fairness.toml", "metrics.mse_error.max_ratoi", "max_ratio")),
    Case("policy-unknown-key-check", policy_file("check"), ("fairness.toml", "metrics.mse_error.max_ratoi", "max_ratio")),
]


# -- running them --------------------------------------------------------------------------------


class ReachedTraining(Exception):
    """Raised where training would start: every check before it passed."""


@pytest.fixture
def workdir(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder (where the default MLflow store would go), training forbidden."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started: bad input must fail before it")

    monkeypatch.setattr("pytorch_lightning.Trainer.fit", no_training)
    monkeypatch.setattr("pytorch_lightning.Trainer.predict", no_training)
    return tmp_path


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_corpus_is_large_and_each_case_distinct() -> None:
    assert len(CASES) >= 20
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workdir: Path, case: Case) -> None:
    args = case.build(workdir)
    before = digests(workdir)
    code, stdout, stderr = invoke(*args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stdout: {stdout[-500:]}; stderr: {stderr[-500:]}"
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    for expected in case.expect:
        assert expected in lines[0], f"{expected!r} not in {lines[0]!r}"
    assert digests(workdir) == before, "a failed run wrote or changed files"
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlruns").exists()


def test_debug_shows_the_traceback(workdir: Path) -> None:
    (workdir / "empty.csv").write_bytes(b"")
    result = CliRunner().invoke(app, ["run", "--manifest", "empty.csv", *RUN, "--debug"])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ManifestError" and result.exc_info[2] is not None

    audit = Path(sys.executable).with_name("audit")  # the console script: what a user sees
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    plain = subprocess.run([str(audit), "run", "--junit", "x.xml"], cwd=workdir, env=env, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == ["error: --baseline and --junit need --policy FILE (the rules to check); "
                                                 "add it or drop them"]
    debug = subprocess.run([str(audit), "run", "--junit", "x.xml", "--debug"], cwd=workdir, env=env,
                           capture_output=True, text=True)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr and "ValueError: --baseline and --junit" in debug.stderr


def test_a_failed_run_keeps_the_store_the_out_folder_and_the_junit_file(workdir: Path) -> None:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    store = workdir / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("genfair")
    earlier = client.create_run(experiment).info.run_id
    client.set_terminated(earlier)
    (workdir / "out").mkdir()
    (workdir / "out" / "per_image.parquet").write_bytes(b"an earlier audit")
    (workdir / "report.xml").write_text("<testsuites/>")
    (workdir / "fairness.toml").write_text(LOOSE_POLICY)
    duplicate = write_manifest(workdir / "dup", people_rows()[:3] + [people_rows()[0]] + people_rows()[4:])
    untested = write_manifest(workdir / "untested", split_rows({"fd1": "train", "fd2": "train"}))
    before = digests(workdir)

    for manifest in (duplicate, untested):  # one fails in the manifest, one in the split (after it)
        code, _, stderr = invoke("run", "--manifest", str(manifest), "--tracking-uri", uri, "--out", "out",
                                 "--policy", "fairness.toml", "--junit", "report.xml", *RUN)
        assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
        assert digests(workdir) == before, "the store, the --out folder and the --junit file are untouched"
    runs = client.search_runs([experiment], run_view_type=ViewType.ALL)
    assert [run.info.run_id for run in runs] == [earlier], "no empty or half run left behind"


# -- inputs that are fine, by rule ---------------------------------------------------------------


@pytest.fixture
def reach_training(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Stop runs where training would start, after loading every train and test image as batches.

    Returns the batch image shapes seen.
    """
    from genfair.audit.run import runner as pipeline

    shapes: list[tuple[int, ...]] = []

    class Probe(pipeline.FacesDataModule):  # type: ignore[misc, name-defined]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            for loader in (self.train_dataloader(), self.test_dataloader()):
                shapes.extend(tuple(batch["image"].shape) for batch in loader)
            raise ReachedTraining

    monkeypatch.setattr(pipeline, "FacesDataModule", Probe)
    return shapes


def test_mixed_sizes_and_modes_are_converted_and_resized(workdir: Path, reach_training: list[tuple[int, ...]]) -> None:
    """Rule: any 8-bit mode becomes RGB (alpha dropped, palette expanded) and any size becomes
    --image-size square (box filter shrinking, bicubic enlarging); nothing is rejected for it."""
    rows = people_rows()
    looks = [((16, 16), "RGB", ".png"), ((40, 24), "L", ".png"), ((9, 9), "RGBA", ".png"), ((20, 20), "P", ".png"),
             ((17, 31), "LA", ".png"), ((32, 32), "CMYK", ".jpg"), ((16, 16), "1", ".png"), ((64, 48), "L", ".jpg")]
    for position, row in enumerate(rows):
        size, mode, suffix = looks[position % len(looks)]
        row["path"] = row["path"].replace(".png", suffix)
        write_image(workdir / "data" / row["path"], size=size, mode=mode)
    manifest = write_manifest(workdir / "data", rows)
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), *RUN])
    assert isinstance(result.exception, ReachedTraining), result.stderr
    assert reach_training and all(shape[1:] == (3, SIZE, SIZE) for shape in reach_training)


def test_allow_outside_root_accepts_dotdot_and_absolute_paths(workdir: Path, reach_training: list[tuple[int, ...]]) -> None:
    rows = people_rows()
    rows[0]["path"] = "../shared-images/fd1_1.png"
    rows[1]["path"] = str(workdir / "shared-images" / "fd1_2.png")
    for name in ("fd1_1.png", "fd1_2.png"):
        write_image(workdir / "shared-images" / name)
    manifest = write_manifest(workdir / "data", rows)
    code, _, stderr = invoke("run", "--manifest", str(manifest), *RUN)
    assert code == 2 and "path is not relative" in stderr and "--allow-outside-root" in stderr
    result = CliRunner().invoke(app, ["run", "--manifest", str(manifest), "--allow-outside-root", *RUN])
    assert isinstance(result.exception, ReachedTraining), result.stderr


def test_a_tracking_server_that_answers_passes_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    from genfair.reports.tracking import check_tracking_uri

    class NoHealth(http.server.BaseHTTPRequestHandler):  # answers 404 to everything, like a proxy without /health
        def do_GET(self) -> None:  # noqa: N802 - the handler's API
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NoHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_tracking_uri(f"http://127.0.0.1:{server.server_port}/prefix/")  # any answer: a server is there
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(ValueError, match=r"^\$MLFLOW_TRACKING_URI http://127\.0\.0\.1:9: cannot reach the MLflow"):
        check_tracking_uri(None)


def test_check_against_an_unreachable_server_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.toml").write_text("[metrics.mse_error]\nmax_ratio = 2.0\n")
    code, _, stderr = invoke("check", "--run", "0" * 32, "--policy", "policy.toml", "--tracking-uri",
                             "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the MLflow tracking server" in stderr and len(stderr.strip().splitlines()) == 1
