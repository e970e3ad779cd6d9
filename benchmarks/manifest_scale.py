"""How long a large manifest takes to validate and split, and what the image checks cost per file.

1. Table (default 100,000 rows, 10 images per subject, two attributes, no split column, no image
   files): reading the CSV, ``load_manifest(images="skip")`` (every table check), the seeded
   subject-disjoint split, and building the ``FacesDataModule`` (split plus datasets over every
   row). Best of ``--repeat`` runs each; then one pass under ``tracemalloc`` for the peak traced
   memory, and pyarrow's pool peak (pandas keeps strings in Arrow buffers, which tracemalloc
   does not see).
2. Image checks on ``--files`` real 16x16 PNGs (in folders of 1,000): the existence check
   (``images="exist"``: one directory listing per folder) against one ``os.path.isfile`` per
   file (what it replaced), and the header check (``images="verify"``: PIL parses each header
   and, for PNG, its chunks). Per-file costs; multiply by 100,000 for a manifest that size.

    .venv/bin/python benchmarks/manifest_scale.py [--rows 100000] [--files 5000] [--repeat 3]

Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from genfair.datasets import FacesDataModule, load_manifest, subject_disjoint_split
from genfair.datasets.manifest import read_table

IMAGES_PER_SUBJECT = 10
FILES_PER_FOLDER = 1_000


def write_manifest(folder: Path, rows: int, *, name: str = "manifest.csv") -> Path:
    """``rows`` rows, ``rows / 10`` subjects in four (gender, skin_tone) groups; images in folders of 1,000."""
    row = pd.Series(np.arange(rows))
    subject = row // IMAGES_PER_SUBJECT
    names = "s" + subject.astype("str").str.zfill(7)
    frame = pd.DataFrame(
        {
            "path": "img/" + (row // FILES_PER_FOLDER).astype("str").str.zfill(4) + "/" + names + "_"
            + (row % IMAGES_PER_SUBJECT).astype("str") + ".png",
            "subject": names,
            "gender": np.where(subject % 2 == 0, "female", "male"),
            "skin_tone": np.where(subject // 2 % 2 == 0, "darker", "lighter"),
        }
    )
    path = folder / name
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def table_numbers(folder: Path, rows: int, repeat: int) -> dict[str, float]:
    folder.mkdir()
    path = write_manifest(folder, rows)
    manifest = load_manifest(path, images="skip")
    numbers = {
        "read CSV": best_of(repeat, lambda: read_table(path)),
        "load_manifest (all table checks)": best_of(repeat, lambda: load_manifest(path, images="skip")),
        "subject-disjoint split": best_of(
            repeat, lambda: subject_disjoint_split(manifest.frame, seed=0, attributes=manifest.attributes)
        ),
        "FacesDataModule (split + datasets)": best_of(repeat, lambda: FacesDataModule(manifest, image_size=64, seed=0)),
    }
    numbers["total: load + DataModule"] = numbers["load_manifest (all table checks)"] + numbers[
        "FacesDataModule (split + datasets)"
    ]
    pool = pa.default_memory_pool()
    tracemalloc.start()
    FacesDataModule(load_manifest(path, images="skip"), image_size=64, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    numbers["peak traced memory (MB)"] = peak / 1e6
    numbers["pyarrow pool peak (MB)"] = pool.max_memory() / 1e6
    numbers["manifest file (MB)"] = path.stat().st_size / 1e6
    return numbers


def image_numbers(folder: Path, files: int, repeat: int) -> dict[str, float]:
    folder.mkdir()
    path = write_manifest(folder, files)
    frame = pd.read_csv(path, dtype=str)
    for relative in frame["path"]:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (120, 80, 60)).save(target)
    full = [os.path.join(folder, p) for p in frame["path"]]
    skip = best_of(repeat, lambda: load_manifest(path, images="skip"))
    per_file = {
        "existence, one os.path.isfile per file (before)": best_of(repeat, lambda: [os.path.isfile(f) for f in full]),
        'existence, images="exist" (folder listings)': best_of(repeat, lambda: load_manifest(path, images="exist")) - skip,
        'header check, images="verify" (exist + PIL)': best_of(repeat, lambda: load_manifest(path, images="verify")) - skip,
    }
    return {name: seconds / files * 1e6 for name, seconds in per_file.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genfair-scale-") as temp:
        table = table_numbers(Path(temp) / "table", args.rows, args.repeat)
        images = image_numbers(Path(temp) / "images", args.files, args.repeat)

    print(f"- Date: {date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, pandas {pd.__version__}, Pillow {Image.__version__}")
    print(f"- Command: `.venv/bin/python benchmarks/manifest_scale.py --rows {args.rows} --files {args.files} "
          f"--repeat {args.repeat}` (best of {args.repeat})")
    print()
    print(f"| {args.rows:,} rows, no image files | seconds or MB |")
    print("|---|---:|")
    for name, value in table.items():
        print(f"| {name} | {value:.2f} |")
    print(f"| traced bytes per row | {table['peak traced memory (MB)'] * 1e6 / args.rows:.0f} |")
    print()
    print(f"| image check, {args.files:,} 16x16 PNGs | µs per file | seconds for 100,000 |")
    print("|---|---:|---:|")
    for name, micros in images.items():
        print(f"| {name} | {micros:.1f} | {micros * 0.1:.1f} |")


if __name__ == "__main__":
    main()
