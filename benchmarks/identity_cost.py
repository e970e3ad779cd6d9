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
import sys
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
from audit_child import installed_audit, timed_audit_run


def main() -> None:
    from genfair import datasets

    audit = installed_audit()
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="genfair-bench-") as tmp:
        folder = Path(tmp)
        datasets.get("faces")(cache_dir=folder / "cache", image_size=64, seed=0, composition="as-given")
        run = ["--model", "vae", "--dataset", "faces"]
        plain = timed_audit_run(audit, folder, [*run, "--out", "plain", *extra])[:2]
        faces = timed_audit_run(audit, folder, [*run, "--out", "identity", *extra, "--identity"])[:2]
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
