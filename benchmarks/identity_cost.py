"""What `audit run --identity` adds to the default `audit run --model vae --dataset faces`.

Generates the synthetic faces once (so neither run pays for it), then runs the installed `audit`
command twice in one fresh folder, side by side: as it is, and with `--identity` (dlib's face
detector, 5- and 68-point landmarks and recogniser on every audited image; the faces extra).
Prints a Markdown table of the run's own stage times (`time/<stage>`) for docs/benchmarks.md.

    .venv/bin/python benchmarks/identity_cost.py [extra `audit run` options...]
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd


def timed_run(audit: str, folder: Path, extra: list[str], name: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of one `audit run` child, and the stage times it printed."""
    env = {**os.environ, "GENFAIR_CACHE_DIR": str(folder / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [audit, "run", "--model", "vae", "--dataset", "faces", "--out", name, *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"audit run failed:\n{done.stderr[-3000:]}")
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("time: ")]
    stages = {stage: float(value) for stage, value in
              re.findall(r"(\w+) ([\d.]+) s", line.removeprefix("time: ").split(" (total")[0])}
    return seconds, stages


def main() -> None:
    from genfair import datasets

    audit = shutil.which("audit", path=str(Path(sys.executable).parent))
    if audit is None:
        sys.exit("the `audit` command is not installed next to this Python: run `make setup` first")
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="genfair-bench-") as tmp:
        folder = Path(tmp)
        datasets.get("faces")(cache_dir=folder / "cache", image_size=64, seed=0, composition="as-given")
        plain = timed_run(audit, folder, extra, "plain")
        faces = timed_run(audit, folder, [*extra, "--identity"], "identity")
        per_image = pd.read_parquet(next((folder / "identity").glob("per_image*.parquet")))
    images = len(per_image)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {date.today()}")
    print(f"command: audit run --model vae --dataset faces {' '.join(extra)} [--identity]".replace("  ", " "))
    print()
    stages = list(dict.fromkeys([*plain[1], *faces[1]]))
    print("| run | wall time (s) | " + " | ".join(f"{stage} (s)" for stage in stages) + " |")
    print("|---|---:|" + "---:|" * len(stages))
    for label, (wall, spent) in (("as it is", plain), ("--identity", faces)):
        cells = " | ".join(f"{spent[stage]:.1f}" if stage in spent else "" for stage in stages)
        print(f"| {label} | {wall:.1f} | {cells} |")
    print()
    print(f"- identity stage: {faces[1]['identity']:.1f} s for {images} audited images "
          f"({faces[1]['identity'] / images * 1000:.0f} ms per image: detection, landmarks, two embeddings)")
    print(f"- wall time added: {faces[0] - plain[0]:+.1f} s ({faces[0] / plain[0]:.2f}x)")
    print(f"- faces found by the detector: {per_image['face_found'].mean():.0%} of the originals; "
          f"skin masks: {per_image['skin_mask'].value_counts().to_dict()}")
    print(f"- mean identity drift {per_image['identity_drift'].mean():.3f}, "
          f"no longer recognised {per_image['identity_lost'].mean():.0%}")


if __name__ == "__main__":
    main()
