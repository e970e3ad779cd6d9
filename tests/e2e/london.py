"""Small manifests of the shared London photos for the end-to-end tests (read in place, never copied).

Import: ``from london import london_frontal``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def london_frontal(folder: Path, london: Path, *, train: int, test: int) -> Path:
    """A manifest of the two frontal photos of ``train`` then ``test`` London people (``test // 2``
    of each gender tested), its paths absolute (runs need ``--allow-outside-root``)."""
    frame = pd.read_csv(london, dtype=str, keep_default_na=False)
    frame = frame[frame["frontal"] == "1"]
    people = frame.drop_duplicates("subject")
    tested = pd.concat([people[people["gender"] == g].head(test // 2) for g in ("female", "male")])["subject"]
    trained = people[~people["subject"].isin(tested)].head(train)["subject"]
    split = {s: "train" for s in trained} | {s: "test" for s in tested}
    rows = frame[frame["subject"].isin(split)].assign(
        split=lambda f: f["subject"].map(split), path=lambda f: [str(london.parent / p) for p in f["path"]])
    folder.mkdir(parents=True, exist_ok=True)
    rows[["path", "subject", "gender", "split"]].to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"
