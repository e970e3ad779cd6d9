"""What every command shares: the typer app, the consoles, common options and the error translation.

The library raises; this module translates: exit 0 on success, 1 when a fairness gate fails, 2 on
a usage, input or configuration error (one readable line, no traceback unless ``--debug``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

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
PolicyOption = Annotated[
    Path | None,
    typer.Option(help="Check the audit against this fairness policy (TOML); exit 1 when a rule fails.",
                 show_default=False),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(help="Regression check against this earlier audit: an MLflow run id or a saved audit folder.",
                 show_default=False),
]
JunitOption = Annotated[
    Path | None, typer.Option(help="Write the check's rules as JUnit XML to this file.", show_default=False)
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db.",
        show_default=False,
    ),
]
BinsOption = Annotated[
    list[str] | None,
    typer.Option("--bins", show_default=False,
                 help="Audit a numeric attribute by intervals: COLUMN=EDGES (age=18,30,45,65: groups age 18-29, "
                      "age 30-44, age 45-65) or COLUMN=quantiles:K (K groups of about equally many people); repeatable."),
]
MissingOption = Annotated[
    str, typer.Option(help="A blank attribute value: error, drop (leave its row out) or group (an 'unknown' group).")
]
FitOption = Annotated[
    str, typer.Option(help="Images that are not square: crop (the centred square), pad (black borders) or stretch.")
]


@contextlib.contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Turn the library's input errors into one red line and exit code 2 (full traceback with --debug).

    Training that stopped early (``genfair.audit.faults.TrainingStopped``) prints its line too and
    exits with its own code: 2 for a non-finite loss, 128 + the signal for SIGINT/SIGTERM.
    """
    try:
        yield
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        from rich.markup import escape

        error_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(getattr(err, "exit_code", EXIT_USAGE)) from None


def _is_user_error(err: Exception) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    faults = sys.modules.get("genfair.audit.faults")  # training stopped early: its own line and exit code
    if faults is not None and isinstance(err, faults.TrainingStopped):
        return True
    if "lightning_fabric" in sys.modules:  # a bad --strategy, --precision or --devices, caught by Lightning
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        return isinstance(err, MisconfigurationException)
    return False



def split_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def key_values(items: list[str], *, option: str, example: str = "bottleneck=16") -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} {example}")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def bin_pairs(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``--bins`` values as ``(column, spec)`` pairs."""
    return key_values(items or [], option="--bins", example="age=18,30,45,65")


def dataset_channels(dataset: str, manifest: object | None) -> int:
    """The channels a run reads: 1 for a named single-channel dataset (``cosmo``), else 3 (RGB)."""
    from genfair import datasets

    return 1 if manifest is None and dataset in datasets.SINGLE_CHANNEL else 3


def quiet_libraries(debug: bool) -> None:
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


