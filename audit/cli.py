"""The ``audit`` command: a thin typer layer over ``genfair.audit.pipeline``.

Heavy libraries (torch, Lightning, MLflow) are imported inside the commands, so ``audit --help``
answers at once. The library raises; this module translates: exit 0 on success, 1 when a
fairness gate fails, 2 on a usage, input or configuration error (one readable line, no
traceback unless ``--debug``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from genfair.audit.pipeline import RunOutcome
    from genfair.audit.result import AuditResult

import typer
from rich.console import Console

EXIT_USAGE = 2
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)

app = typer.Typer(
    name="audit",
    help="Fairness audits of generative image models: per-group reconstruction error, logged to MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Prepare manifests (one row per image) for auditing.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Off a terminal (CI logs, pipes) rich assumes 80 columns, which wraps the tables' group names.
console = Console(width=None if sys.stdout.isatty() else 120)
error_console = Console(stderr=True)

DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db.",
        show_default=False,
    ),
]


@contextlib.contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    """Turn the library's input errors into one red line and exit code 2 (full traceback with --debug)."""
    try:
        yield
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        from rich.markup import escape

        error_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None


def _is_user_error(err: Exception) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    if "lightning_fabric" in sys.modules:  # a bad --strategy, --precision or --devices, caught by Lightning
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        return isinstance(err, MisconfigurationException)
    return False


@app.command()
def run(
    model: Annotated[str, typer.Option(help="Model to train and audit (registry key, e.g. vae).")] = "vae",
    dataset: Annotated[
        str, typer.Option(help="Named dataset (registry key, e.g. faces: synthetic Faces95-style faces).")
    ] = "faces",
    manifest: Annotated[
        Path | None,
        typer.Option(help="A CSV/Parquet manifest (path, subject, attributes, split) to audit instead of --dataset."),
    ] = None,
    attributes: Annotated[
        str | None,
        typer.Option(help="Comma-separated sensitive attribute columns. Default: the dataset's own.", show_default=False),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", "--max-epochs", help="Most training epochs (early stopping may end sooner).")
    ] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per batch (per device).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed for the data split, initialisation and data order.")] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    scale: Annotated[
        int | None, typer.Option(help="Super-resolution factor (sr, bicubic): 2, 4 or 8.", show_default=False)
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", "-o", help="Model config override KEY=VALUE, repeatable (e.g. -o bottleneck=16).",
                     show_default=False),
    ] = None,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu or gpu.")] = "auto",
    devices: Annotated[str, typer.Option(help="Devices per node: a count, -1 for all, or auto.")] = "1",
    num_nodes: Annotated[int, typer.Option(help="Machines (launch with torchrun or SLURM).")] = 1,
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp, ...")] = "auto",
    precision: Annotated[str, typer.Option(help="Lightning precision: 32-true, 16-mixed, bf16-mixed.")] = "32-true",
    patience: Annotated[int, typer.Option(help="Epochs without a better validation loss before stopping; 0: never.")] = 3,
    classifier_epochs: Annotated[
        int, typer.Option(help="Epochs of the attribute classifier that labels originals and outputs; 0 skips it.")
    ] = 5,
    resume: Annotated[Path | None, typer.Option(help="Continue training from this checkpoint.", show_default=False)] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Audit this trained checkpoint without training.", show_default=False)
    ] = None,
    tracking_uri: TrackingUriOption = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "genfair",
    debug: DebugOption = False,
) -> None:
    """Train a model, audit its outputs per demographic subgroup and log the run to MLflow."""
    with _user_errors(debug):
        from genfair.audit.pipeline import RunConfig, run_audit

        _quiet_libraries(debug)
        config = RunConfig(
            model=model,
            dataset=dataset,
            manifest=str(manifest) if manifest is not None else None,
            attributes=_split_list(attributes),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            image_size=image_size,
            scale=scale,
            model_options=_key_values(model_option or [], option="--model-option"),
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            patience=patience,
            classifier_epochs=classifier_epochs,
            resume=str(resume) if resume is not None else None,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            tracking_uri=tracking_uri,
            experiment=experiment,
        )
        outcome = run_audit(config, progress_bar=True)

    if outcome is not None:  # None on DDP ranks other than 0: rank 0 reports
        _print_run_summary(outcome)


@app.command()
def ui(
    tracking_uri: TrackingUriOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
) -> None:
    """Open the MLflow UI on the local store (Ctrl+C stops it)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith(("http://", "https://")):
        console.print(f"{uri} is a tracking server already: open it in your browser.")
        return
    console.print(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl+C stops it)")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host]
    command += ["--port", str(port), "--workers", "1"]
    # One light worker process; the server's job runner would start many more (see STACK.md).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # the server replaces this process: signals reach it directly


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
    with _user_errors(debug):
        from genfair.datasets import import_faces95 as build_manifest

        frame = build_manifest(images_dir, annotations, out)
    console.print(f"wrote {out}: {len(frame)} images of {frame['subject'].nunique()} subjects")
    console.print(f"audit it: audit run --model vae --manifest {out}")


def _split_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _key_values(items: list[str], *, option: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} bottleneck=16")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _quiet_libraries(debug: bool) -> None:
    """Lightning's device banners and MLflow's chatter add nothing to the printed table.

    Call after importing them: both set their loggers' levels when imported.
    """
    if debug:
        return
    for name in ("pytorch_lightning", "lightning_fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


FEW_SUBJECTS = 5  # below this many subjects a group's mean is an anecdote, not evidence
METRIC_HEADERS = {"mse_error": "MSE ↓", "mae_error": "MAE ↓", "psnr_score": "PSNR dB ↑", "ssim_score": "SSIM ↑"}


def _print_classifier_table(result: AuditResult) -> None:
    """How often the attribute classifier sees each person's own group, in originals and outputs."""
    if "classifier_accuracy" not in result.tables:
        return
    from rich import box
    from rich.table import Table

    originals = result.tables["classifier_accuracy"]
    outputs = result.tables.get("attribute_preservation")
    accuracy_columns = [column for column in originals.columns if column.endswith("_accuracy")]
    table = Table(
        title="Attribute classifier: share labelled as own group (originals → outputs)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("group")
    for column in accuracy_columns:
        table.add_column(column.removesuffix("_accuracy"), justify="right")
    for grouping, rows in originals.groupby("grouping", sort=False):
        table.add_section()
        for position, row in rows.iterrows():
            cells = []
            for column in accuracy_columns:
                cell = f"{row[column]:.2f}"
                if outputs is not None:
                    cell += f" → {outputs.loc[position, column]:.2f}"
                cells.append(cell)
            table.add_row("all images" if grouping == "overall" else str(row["group"]), *cells)
    console.print(table)


def _print_run_summary(outcome: RunOutcome) -> None:
    """The per-group table, the disparities, and where the run lives."""
    from rich import box
    from rich.table import Table

    result = outcome.result
    metrics = [name for name in METRIC_HEADERS if name in result.per_group]
    title = f"{result.metadata['model']} on {result.metadata['dataset']}: per-image error by group (test split)"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("group")
    shift = result.tables.get("skin_tone_shift")
    for header in ("images", "people", *(METRIC_HEADERS[name] for name in metrics), *(["ΔITA°"] if shift is not None else [])):
        table.add_column(header, justify="right")
    few = False
    for grouping, rows in result.per_group.groupby("grouping", sort=False):
        table.add_section()
        for position, row in zip(rows.index, rows.itertuples(index=False), strict=True):
            flag = row.n_subjects < FEW_SUBJECTS
            few |= flag
            label = "all images" if grouping == "overall" else str(row.group)
            values = [f"{getattr(row, name):.4g}" for name in metrics]
            if shift is not None:
                values.append(f"{shift.loc[position, 'ita_shift']:+.2f}")
            table.add_row(label, str(row.n_images), f"{row.n_subjects}{'*' if flag else ''}", *values)
    console.print(table)
    if few:
        console.print(f"* fewer than {FEW_SUBJECTS} people: an anecdote, not evidence.")
    if shift is not None:
        console.print("ΔITA°: skin-tone shift, output minus original (positive: the output's skin is lighter).")

    intervals = result.tables.get("disparity_intervals")
    if intervals is not None:
        intervals = intervals.set_index(["grouping", "metric"])
    disparities = Table(
        title="Disparities: worst group against best group (95% CI resamples people; p: permutation, Holm)",
        box=box.SIMPLE_HEAD,
    )
    for header in ("grouping", "metric", "worst group", "best group"):
        disparities.add_column(header)
    for header in ("ratio", "95% CI", "difference", "p"):
        disparities.add_column(header, justify="right")
    for row in result.disparities.itertuples(index=False):
        ci, p_value = "", ""
        if intervals is not None and (row.grouping, row.metric) in intervals.index:
            found = intervals.loc[(row.grouping, row.metric)]
            ci = f"[{found['ratio_ci_low']:.3f}, {found['ratio_ci_high']:.3f}]"
            p_value = f"{found['p_holm']:.3f}" if found["p_holm"] == found["p_holm"] else "n/a"
            if found["evidence"] != "sufficient":
                ci, p_value = "insufficient evidence", ""
        disparities.add_row(
            row.grouping, METRIC_HEADERS.get(row.metric, row.metric), str(row.worst_group), str(row.best_group),
            f"{row.ratio:.3f}", ci, f"{row.difference:.3g}", p_value,
        )
    console.print(disparities)
    if intervals is not None:
        console.print(
            "An interval for worst vs best can miss 1 by chance when groups are alike: judge a disparity by its p."
        )
    _print_classifier_table(result)
    console.print(f"MLflow run [bold]{outcome.run_id}[/] in {outcome.tracking_uri}")
    run_path = f"#/experiments/{outcome.experiment_id}/runs/{outcome.run_id}"
    if outcome.tracking_uri.startswith(("http://", "https://")):
        console.print(f"open it: {outcome.tracking_uri.rstrip('/')}/{run_path}", soft_wrap=True)
    else:
        console.print(f"open it: [bold]audit ui[/] in this folder, then http://127.0.0.1:5000/{run_path}", soft_wrap=True)
