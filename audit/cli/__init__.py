"""The ``audit`` command: a thin typer layer over :mod:`genfair.audit.run`, one module per command group.

Heavy libraries (torch, Lightning, MLflow) are imported inside the commands, so ``audit --help``
answers at once. Exit codes: 0 success, 1 a fairness gate failed, 2 a usage, input or
configuration error (one readable line; the traceback with ``--debug``).
"""

from . import run, results, studies, models, data  # noqa: I001 - the order of `audit --help`
from ._common import EXIT_USAGE, app

__all__ = ["EXIT_USAGE", "app"]
_commands = (run, results, studies, models, data)  # imported for their @app.command registrations
