"""``audit data ...``: prepare manifests (one row per image) for auditing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    DebugOption,
    data_app,
    console,
    user_errors,
)


@data_app.command("import-faces95")
def import_faces95(
    images_dir: Annotated[Path, typer.Argument(help="Faces95 folder: <subject>/<subject>.<n>.jpg.")],
    annotations: Annotated[
        Path, typer.Option(help="Per-subject CSV: a subject column plus sensitive attribute columns.")
    ],
    out: Annotated[Path, typer.Option(help="Manifest to write (.csv or .parquet).")] = Path("manifest.csv"),
    debug: DebugOption = False,
) -> None:
    """Turn a Faces95-style folder plus per-subject annotations into a manifest."""
    with user_errors(debug):
        from genfair.datasets import import_faces95 as build_manifest

        frame = build_manifest(images_dir, annotations, out)
    console.print(f"wrote {out}: {len(frame)} images of {frame['subject'].nunique()} subjects")
    outside = " --allow-outside-root" if frame["path"].str.startswith("../").any() else ""  # images beside out's folder
    console.print(f"audit it: audit run --model vae --manifest {out}{outside}")


