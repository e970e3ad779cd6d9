"""``audit ...`` in the test's own process, set up as a fresh ``audit`` subprocess would be.

For tests that log to a real tracking server (or a store of their own) and need nothing a
separate process gives: it saves the interpreter's start-up and ~9 s of imports a call. MLflow's
process-wide tracking URI, which the command points at the run's store, is given back afterwards,
so the server (stopped at the end of its module) never leaks into later tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking._tracking_service import utils as tracking_utils

from cli_runner import invoke


def audit_here(args: list[str], *, cwd: Path, cache_dir: Path, threads: int | None = None) -> tuple[int, str, str]:
    """``audit ARGS...`` run in ``cwd`` with the session's dataset cache and no ``$MLFLOW_TRACKING_URI``.

    Args:
        args: the command line after ``audit``.
        cwd: the working folder (where a default store would be created).
        cache_dir: ``$GENFAIR_CACHE_DIR`` for the call.
        threads: torch's intra-op threads for the call (as ``OMP_NUM_THREADS`` would set them in a
            subprocess), restored afterwards; None leaves them as they are.

    Returns:
        ``(exit code, stdout, stderr)``, as :func:`cli_runner.invoke` gives them.
    """
    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            return invoke(*args)
        finally:
            torch.set_num_threads(before)
