"""``audit models``: every model a run can train and audit, with its task, baseline and origin."""

from __future__ import annotations

from ._common import app, console


@app.command("models")
def list_models() -> None:
    """List the registered models (built in and plugins): key, task, what it is, its baseline, where it came from.

    Your own model needs no registration: pass --model file.py:factory, package.module:factory or a
    TorchScript .pt file to `audit run`.
    """
    from rich.table import Table

    from genfair import models

    table = Table(title="Models (audit run --model KEY)", title_justify="left")
    for header in ("key", "task", "description", "baseline", "from"):
        table.add_column(header, overflow="fold")
    for name in models.names():
        spec = models.get(name)
        table.add_row(name, spec.task, spec.description, spec.baseline or "-", spec.origin)
    console.print(table)
    console.print("Your own model: --model path/to/file.py:factory, --model package.module:factory, or "
                  "--model model.pt (TorchScript); outputs already on disk: --manifest M --outputs COLUMN.")
