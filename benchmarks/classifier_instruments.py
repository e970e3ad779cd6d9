"""The two attribute classifiers, side by side: accuracy per group on held-out originals, and time.

For each instrument (``--classifier cnn``: the small CNN, 5 epochs; ``--classifier embedding``:
logistic regression on dlib's face embeddings, the faces extra) it runs the installed ``audit``
command on

- the London photos (``../shared/data/london-faces``, 1,020 real photos of 102 people, read in
  place), attributes gender and race_binary, the seeded split by person (the classifier trains
  on the training people, drawn balanced, and is measured on the validation and test people);
- the synthetic faces (``--dataset faces``): trained on 240 new generated people, measured on
  64 more (the cartoons: does dlib find a face in them?).

The audited model is ``pca`` (seconds to fit), so the classifier's stage dominates what the two
runs differ in. Prints Markdown for docs/benchmarks.md: per instrument and data the accuracy of
every group and attribute (subject-clustered 95% interval, people), the share of images with a
face found (embedding), and the run's ``classifier`` stage time.

    .venv/bin/python benchmarks/classifier_instruments.py [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
from audit_child import installed_audit, timed_audit_run

LONDON = Path(__file__).resolve().parents[2] / "shared" / "data" / "london-faces" / "manifest.csv"
INSTRUMENTS = ("cnn", "embedding")


def face_share(stdout: str) -> str:
    found = re.search(r"dlib found a face in (\d+%) of them", " ".join(stdout.split()))
    return found.group(1) if found else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    options = parser.parse_args()
    audit = installed_audit()
    if not LONDON.exists():
        sys.exit(f"the London photos are not at {LONDON}")
    data = {"London photos (gender, race_binary)": ["--manifest", str(LONDON), "--attributes", "gender,race_binary"],
            "synthetic faces": ["--dataset", "faces"]}
    rows, times = [], []
    with tempfile.TemporaryDirectory(prefix="genfair-bench-") as tmp:
        folder = Path(tmp)
        for label, args in data.items():
            for instrument in INSTRUMENTS:
                name = f"{instrument}-{len(times)}"
                wall, stages, stdout = timed_audit_run(audit, folder, [
                    "--model", "pca", "--out", name, *args, "--image-size", str(options.image_size),
                    "--accelerator", "cpu", "--classifier", instrument])
                validity = pd.read_parquet(folder / name / "classifier_validity.parquet")
                held_out = pd.read_parquet(folder / name / "classifier_held_out.parquet")
                times.append((label, instrument, wall, stages.get("classifier", float("nan")), len(held_out),
                              face_share(stdout)))
                rows.append(validity.assign(data=label, instrument=instrument))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {date.today()}")
    print(f"command: .venv/bin/python benchmarks/classifier_instruments.py --image-size {options.image_size}")
    print()
    print("| data | instrument | classifier stage (s) | run wall (s) | held-out images | faces found |")
    print("|---|---|---:|---:|---:|---:|")
    for label, instrument, wall, stage, held, found in times:
        print(f"| {label} | {instrument} | {stage:.1f} | {wall:.1f} | {held} | {found} |")
    print()
    table = pd.concat(rows, ignore_index=True)
    table = table[table["grouping"] != "overall"]
    print("| data | grouping | group | attribute | people | " + " | ".join(INSTRUMENTS) + " |")
    print("|---|---|---|---|---:|" + "---|" * len(INSTRUMENTS))
    for (label, grouping, group, attribute), cells in table.groupby(["data", "grouping", "group", "attribute"],
                                                                     sort=False):
        by = cells.set_index("instrument")
        people = int(by["n_subjects"].iloc[0])
        shown = []
        for instrument in INSTRUMENTS:
            row = by.loc[instrument]
            interval = "" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            flag = "" if row["status"] == "valid" else " (unreliable)"
            shown.append(f"{row['accuracy']:.2f}{interval}{flag}")
        print(f"| {label} | {grouping} | {group} | {attribute} | {people} | " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main()
