"""One ``audit run`` as a child process, timed, for the benchmarks that compare whole runs.

Imported by the benchmark scripts beside it (``python benchmarks/<name>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path


def installed_audit() -> str:
    """The ``audit`` command installed next to this Python; exits with the fix when there is none."""
    audit = shutil.which("audit", path=str(Path(sys.executable).parent))
    if audit is None:
        sys.exit("the `audit` command is not installed next to this Python: run `make setup` first")
    return audit


def stage_times(stdout: str) -> dict[str, float]:
    """Seconds per stage from the ``time: data 1.7 s, ... (total 9.0 s)`` line a run prints."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("time: ")]
    return {stage: float(value) for stage, value in
            re.findall(r"(\w+) ([\d.]+) s", line.removeprefix("time: ").split(" (total")[0])}


def timed_audit_run(audit: str, folder: Path, args: list[str]) -> tuple[float, dict[str, float], str]:
    """Wall seconds of ``audit run ARGS`` in ``folder`` (its own dataset cache, its own local store),
    its stage times and its stdout; exits with the run's stderr when it fails."""
    folder = folder.resolve()  # the child runs in it: a relative cache folder would nest inside itself
    env = {**os.environ, "GENFAIR_CACHE_DIR": str(folder / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run([audit, "run", *args], cwd=folder, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"audit run {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, stage_times(done.stdout), done.stdout
