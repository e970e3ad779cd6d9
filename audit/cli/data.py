"""``audit data ...``: prepare manifests (one row per image) for auditing.

Each ``import-*`` command writes a manifest with an importer of :mod:`genfair.datasets`, then
prints what it wrote, the importer's notes (its INFO and WARNING log lines: images left out, no
identity labels, labels made one per person) and an ``audit run`` command for the manifest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import (
    DebugOption,
    data_app,
    console,
    split_list,
    user_errors,
)

if TYPE_CHECKING:
    import pandas as pd

OutOption = Annotated[Path, typer.Option(help="Manifest to write (.csv or .parquet).")]
AGE_BINS = "age=0,18,30,45,65,120"
"""Age bins the UTKFace command suggests (``audit run --bins``): children, young adults, ..., over 65."""


@data_app.command("import-faces95")
def import_faces95(
    images_dir: Annotated[Path, typer.Argument(help="Faces95 folder: <subject>/<subject>.<n>.jpg.")],
    annotations: Annotated[
        Path, typer.Option(help="Per-subject CSV: a subject column plus sensitive attribute columns.")
    ],
    out: OutOption = Path("manifest.csv"),
    debug: DebugOption = False,
) -> None:
    """Turn a Faces95-style folder plus per-subject annotations into a manifest."""
    with user_errors(debug), _notes("faces95") as notes:
        from genfair.datasets import import_faces95 as build_manifest

        frame = build_manifest(images_dir, annotations, out)
    _report(out, frame, notes)


@data_app.command("import-utkface")
def import_utkface(
    images_dir: Annotated[
        Path, typer.Argument(help="UTKFace folder: <age>_<gender>_<race>_<date&time>.jpg (or .jpg.chip.jpg) files.")
    ],
    out: OutOption = Path("manifest.csv"),
    skip_malformed: Annotated[
        bool,
        typer.Option("--skip-malformed", help="Leave out files whose name is not in UTKFace's form (listed in one "
                                              "line) instead of stopping."),
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Turn a UTKFace folder into a manifest: age, gender and race from the file names, every image its own subject."""
    with user_errors(debug), _notes("utkface") as notes:
        from genfair.datasets import import_utkface as build_manifest

        frame = build_manifest(images_dir, out, skip_malformed=skip_malformed)
    command = _report(out, frame, notes, ("gender", "race"))
    console.print(f"by age too (a number: bin it): {command},age --bins {AGE_BINS}", markup=False, highlight=False,
                  soft_wrap=True)


@data_app.command("import-fairface")
def import_fairface(
    images_dir: Annotated[Path, typer.Argument(help="FairFace folder: the one that holds train/ and val/.")],
    labels: Annotated[
        list[Path],
        typer.Option(help="FairFace label CSV (file,age,gender,race,service_test); repeat it for "
                          "fairface_label_train.csv and fairface_label_val.csv."),
    ],
    out: OutOption = Path("manifest.csv"),
    debug: DebugOption = False,
) -> None:
    """Turn FairFace's images and label files into a manifest, every image its own subject."""
    with user_errors(debug), _notes("fairface") as notes:
        from genfair.datasets import import_fairface as build_manifest

        frame = build_manifest(images_dir, labels, out)
    command = _report(out, frame, notes, ("gender", "race"))
    console.print(f"by age group too: {command},age", markup=False, highlight=False, soft_wrap=True)


@data_app.command("import-celeba")
def import_celeba(
    images_dir: Annotated[Path, typer.Argument(help="CelebA's image folder (img_align_celeba/).")],
    attributes: Annotated[Path, typer.Option(help="CelebA's list_attr_celeba.txt.")],
    identities: Annotated[Path, typer.Option(help="CelebA's identity_CelebA.txt: the subject of each image.")],
    partition: Annotated[
        Path | None,
        typer.Option(help="CelebA's list_eval_partition.txt (0 train, 1 val, 2 test): the split column. "
                          "Default: none (audit run splits by identity).", show_default=False),
    ] = None,
    keep: Annotated[
        str | None,
        typer.Option(help="Further attributes to keep, comma-separated (e.g. Young,Pale_Skin): yes/no columns "
                          "named in lowercase.", show_default=False),
    ] = None,
    out: OutOption = Path("manifest.csv"),
    debug: DebugOption = False,
) -> None:
    """Turn CelebA's images, attributes and identities into a manifest: Male as gender, identities as subjects."""
    with user_errors(debug), _notes("celeba") as notes:
        from genfair.datasets import import_celeba as build_manifest

        frame = build_manifest(
            images_dir, attributes, identities, out, partition=partition, keep=split_list(keep) or ()
        )
    _report(out, frame, notes, tuple(c for c in frame.columns if c not in ("path", "subject", "split")))


class _Collect(logging.Handler):
    """Keeps the messages of the records it is handed."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.INFO)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _notes(importer: str) -> Iterator[list[str]]:
    """The INFO and WARNING lines the importer module ``importer`` logs while the block runs."""
    messages: list[str] = []
    log = logging.getLogger(f"genfair.datasets.{importer}")
    handler, level = _Collect(messages), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _report(out: Path, frame: pd.DataFrame, notes: Sequence[str], attributes: Sequence[str] = ()) -> str:
    """Print what was written, the notes and the audit command (returned too, to print variants of it)."""
    console.print(f"wrote {out}: {len(frame)} images of {frame['subject'].nunique()} subjects",
                  markup=False, soft_wrap=True)
    for note in notes:
        console.print(f"note: {note}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    named = f" --attributes {','.join(attributes)}" if attributes else ""
    outside = " --allow-outside-root" if frame["path"].str.startswith("../").any() else ""  # images beside out's folder
    command = f"audit run --model vae --manifest {out}{outside}{named}"
    console.print(f"audit it: {command}", markup=False, highlight=False, soft_wrap=True)
    return command
