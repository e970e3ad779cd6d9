"""Wall time and peak memory of the default `audit run --model vae --dataset faces`.

Runs the installed `audit` command twice in a fresh temporary folder, side by side in one
process tree: first with an empty dataset cache (the synthetic faces are generated), then with
the cache warm. Prints a Markdown table for docs/benchmarks.md.

    .venv/bin/python benchmarks/default_run.py [extra `audit run` options...]
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def timed_run(audit: str, folder: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one `audit run` child process."""
    env = {**os.environ, "GENFAIR_CACHE_DIR": str(folder / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [audit, "run", "--model", "vae", "--dataset", "faces", *extra]
    log = folder / "stderr.log"
    with log.open("wb") as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own usage, so its own peak RSS
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"audit run failed:\n{log.read_text()}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    audit = shutil.which("audit", path=str(Path(sys.executable).parent))
    if audit is None:
        sys.exit("the `audit` command is not installed next to this Python: run `make setup` first")
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="genfair-bench-") as tmp:
        folder = Path(tmp)
        cold = timed_run(audit, folder, extra)
        warm = timed_run(audit, folder, extra)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {date.today()}")
    print(f"command: audit run --model vae --dataset faces {' '.join(extra)}".rstrip())
    print()
    print("| run | wall time (s) | peak memory (MiB) |")
    print("|---|---:|---:|")
    print(f"| empty dataset cache (generates the faces) | {cold[0]:.1f} | {cold[1]:.0f} |")
    print(f"| warm dataset cache | {warm[0]:.1f} | {warm[1]:.0f} |")
    print(f"| ratio cold / warm | {cold[0] / warm[0]:.2f} | {cold[1] / warm[1]:.2f} |")


if __name__ == "__main__":
    main()
