"""Run the `audit` command in-process, as the end-to-end tests do (import: ``from cli_runner import invoke``)."""

from __future__ import annotations

from typer.testing import CliRunner

from genfair.audit.cli import app


def invoke(*args: str) -> tuple[int, str, str]:
    """``audit ARGS...`` through typer's runner: ``(exit code, stdout, stderr)``.

    An exception other than the command's own exit is re-raised, so a crash fails the test with
    its traceback instead of hiding behind an exit code.
    """
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
