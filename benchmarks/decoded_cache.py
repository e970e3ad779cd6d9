"""Decoding each image once a run (``--cache-mb``) against decoding it in every epoch.

Three measurements on the default dataset (``faces``: 1,720 rows of 64x64 images with skin
masks, 1,240 of them in training), side by side in one run:

1. data epochs: the training loader alone (batch 32, shuffled) for 3 epochs, with the store of
   decoded images off and on, with 0, 1 and 2 worker processes, and with ``pin_memory``;
2. VAE training epochs: Lightning fitting the default VAE for 3 epochs (training + validation),
   store off and on, 0 and 2 workers;
3. the whole default ``audit run --model vae --dataset faces``, with ``--cache-mb 0`` and with
   the default, as child processes: wall time, CPU time (user + system: less sensitive than wall
   time to other jobs on the machine), stage times and peak RSS.

Prints Markdown for docs/benchmarks.md.

    .venv/bin/python benchmarks/decoded_cache.py [--sections data,training,run] [extra `audit run` options...]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

EPOCHS = 3
BATCH = 32


def faces(cache_dir: Path):
    from genfair import datasets

    spec = datasets.get("faces")(cache_dir=cache_dir, image_size=64, seed=0, composition="as-given")
    return datasets.load_manifest(spec.manifest_path, attributes=spec.attributes)


def datamodule(manifest, *, cache_mb: int, workers: int = 0):
    from genfair.datasets import FacesDataModule

    return FacesDataModule(manifest, image_size=64, batch_size=BATCH, seed=0, num_workers=workers,
                           require_val=True, cache_mb=cache_mb)


def data_epochs(manifest, *, cache_mb: int, workers: int, pin_memory: bool = False) -> list[float]:
    """Seconds per epoch of the training loader alone (the first includes starting the workers
    and, with the store and workers, decoding the split before they start)."""
    from torch.utils.data import DataLoader

    module = datamodule(manifest, cache_mb=cache_mb, workers=workers)
    seconds = []
    start = time.perf_counter()
    if pin_memory:
        dataset = module.dataset("train")
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, pin_memory=True)
    else:
        loader = module.train_dataloader()
    for _ in range(EPOCHS):
        for _batch in loader:
            pass
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
    return seconds


def training_epochs(manifest, *, cache_mb: int, workers: int) -> list[float]:
    """Seconds per epoch (training + validation) of the default VAE fitted by Lightning."""
    import pytorch_lightning as pl
    from genfair import models

    marks: list[float] = []

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            marks.append(time.perf_counter())

        def on_train_end(self, trainer, module) -> None:
            marks.append(time.perf_counter())

    spec = models.get("vae")
    module = spec.module.from_config(spec.config(image_size=64, channels=3, seed=0))
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()],
                         num_sanity_val_steps=0)
    pl.seed_everything(0, verbose=False)
    trainer.fit(module, datamodule=datamodule(manifest, cache_mb=cache_mb, workers=workers))
    return [b - a for a, b in itertools.pairwise(marks)]


def whole_run(audit: str, folder: Path, cache_dir: Path, extra: list[str]) -> dict[str, object]:
    """Wall and CPU seconds, peak RSS (MiB) and the printed stage times of one `audit run` child process."""
    env = {**os.environ, "GENFAIR_CACHE_DIR": str(cache_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    folder.mkdir()
    start = time.perf_counter()
    with (folder / "stdout.log").open("wb") as stdout, (folder / "stderr.log").open("wb") as stderr:
        child = subprocess.Popen([audit, "run", "--model", "vae", "--dataset", "faces", *extra], cwd=folder,
                                 env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own usage, so its own peak RSS
    seconds = time.perf_counter() - start
    text = (folder / "stdout.log").read_text(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"audit run {' '.join(extra)} failed:\n{(folder / 'stderr.log').read_text()[-3000:]}")
    line = next((line for line in text.splitlines() if line.startswith("time: ")), "")
    stages = {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+) s", line)}
    notes = [line for line in text.splitlines() if "cache-mb" in line]
    return {"wall": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
            "stages": stages, "notes": notes}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="data,training,run",
                        help="comma-separated: data, training, run (the two whole `audit run`s, ~4 min)")
    args, extra = parser.parse_known_args()  # the rest: more `audit run` options for the whole runs
    sections = set(args.sections.split(","))
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    import torch

    with tempfile.TemporaryDirectory(prefix="genfair-bench-") as tmp:
        cache_dir = Path(tmp) / "cache"
        manifest = faces(cache_dir)  # generated here, so the timed runs find it cached
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}); {date.today()}")
        print(f"data: {len(manifest.frame)} rows of 64x64 RGB images with masks; training split {BATCH}-image "
              f"batches\n")

        if "data" in sections:
            print_data_epochs(manifest)
        if "training" in sections:
            print_training_epochs(manifest)
        if "run" in sections:
            print_whole_runs(Path(tmp), cache_dir, extra)


def print_data_epochs(manifest) -> None:
    """Section 1: the training loader alone."""
    print(f"### Data epochs: the training loader alone, {EPOCHS} epochs\n")
    print("| store of decoded images | workers | pin_memory | epoch 1 (s) | later epochs, mean (s) |")
    print("|---|---:|---|---:|---:|")
    for cache_mb, workers, pin in ((0, 0, False), (1024, 0, False), (0, 1, False), (1024, 1, False),
                                   (0, 2, False), (1024, 2, False), (1024, 0, True)):
        seconds = data_epochs(manifest, cache_mb=cache_mb, workers=workers, pin_memory=pin)
        print(f"| {'on' if cache_mb else 'off'} | {workers} | {pin} | {seconds[0]:.2f} | {mean(seconds[1:]):.2f} |",
              flush=True)
    print()


def print_training_epochs(manifest) -> None:
    """Section 2: Lightning fitting the VAE."""
    print(f"### VAE training epochs (Lightning, training + validation), {EPOCHS} epochs\n")
    print("| store of decoded images | workers | epoch 1 (s) | later epochs, mean (s) |")
    print("|---|---:|---:|---:|")
    for cache_mb, workers in ((0, 0), (1024, 0), (0, 2), (1024, 2)):
        seconds = training_epochs(manifest, cache_mb=cache_mb, workers=workers)
        print(f"| {'on' if cache_mb else 'off'} | {workers} | {seconds[0]:.2f} | {mean(seconds[1:]):.2f} |",
              flush=True)
    print()


def print_whole_runs(tmp: Path, cache_dir: Path, extra: list[str]) -> None:
    """Section 3: the whole default run, without and with the store."""
    audit = shutil.which("audit", path=str(Path(sys.executable).parent))
    if audit is None:
        sys.exit("the `audit` command is not installed next to this Python: run `make setup` first")
    command = " ".join(["audit run --model vae --dataset faces", *extra])
    print(f"### The whole run: `{command}`\n")
    runs = {"--cache-mb 0 (decode every epoch)": whole_run(audit, tmp / "off", cache_dir, [*extra, "--cache-mb", "0"]),
            "default (--cache-mb 1024)": whole_run(audit, tmp / "on", cache_dir, extra)}
    stages = list(dict.fromkeys(name for run in runs.values() for name in run["stages"]))
    print(f"| run | wall (s) | CPU (s) | peak RSS (MiB) | {' | '.join(f'{name} (s)' for name in stages)} |")
    print(f"|---|---:|---:|---:|{'---:|' * len(stages)}")
    for label, run in runs.items():
        cells = " | ".join(f"{run['stages'].get(name, float('nan')):.1f}" for name in stages)
        print(f"| {label} | {run['wall']:.1f} | {run['cpu']:.1f} | {run['rss']:.0f} | {cells} |")
    for label, run in runs.items():
        for note in run["notes"]:
            print(f"\n{label}: {note}")


if __name__ == "__main__":
    main()
