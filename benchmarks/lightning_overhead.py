"""Lightning's training throughput against a plain PyTorch loop: same model, data and batch size.

Both loops train the same model (fresh weights from the same seed) over the same DataLoader of
the default synthetic faces for the same number of epochs, alternating, in one process; the
first epoch of each is a warm-up and not timed. Prints a Markdown table for docs/benchmarks.md.

    .venv/bin/python benchmarks/lightning_overhead.py [--model vae] [--epochs 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import pytorch_lightning as pl
import torch

from genfair import datasets, models


class _EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def lightning_epochs(spec: models.ModelSpec, config: object, loader: torch.utils.data.DataLoader, epochs: int) -> list[float]:
    module = spec.module.from_config(config)
    timer = _EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.seconds


def plain_epochs(spec: models.ModelSpec, config: object, loader: torch.utils.data.DataLoader, epochs: int) -> list[float]:
    """The same module's training_step and optimiser, driven by a hand-written loop."""
    module = spec.module.from_config(config)
    optimizer = module.configure_optimizers()
    optimizer = optimizer[0] if isinstance(optimizer, (list, tuple)) else optimizer
    module.log = lambda *args, **kwargs: None  # no Trainer to log to
    module.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch_idx, batch in enumerate(loader):
            optimizer.zero_grad(set_to_none=True)
            loss = module.training_step(batch, batch_idx)
            loss = loss["loss"] if isinstance(loss, dict) else loss
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial, the first one a warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="alternating trials of each loop")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        spec_data = datasets.get("faces")(cache_dir=Path(cache), image_size=64, seed=0)
        manifest = datasets.load_manifest(spec_data.manifest_path, attributes=spec_data.attributes)
        datamodule = datasets.FacesDataModule(manifest, image_size=64, batch_size=args.batch_size, seed=0)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        images = len(loader.dataset)
        spec = models.get(args.model)
        config = spec.config(image_size=64, channels=3, seed=0)

        timed: dict[str, list[float]] = {"plain PyTorch loop": [], "Lightning Trainer": []}
        for _ in range(args.repeats):
            timed["plain PyTorch loop"] += plain_epochs(spec, config, loader, args.epochs)[1:]
            timed["Lightning Trainer"] += lightning_epochs(spec, config, loader, args.epochs)[1:]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {date.today()}")
    print(f"model {args.model}, {images} training images 64x64 RGB per epoch, batch {args.batch_size}; "
          f"median of {args.repeats * (args.epochs - 1)} timed epochs each")
    print()
    print("| loop | median epoch (s) | images/s |")
    print("|---|---:|---:|")
    medians = {name: sorted(values)[len(values) // 2] for name, values in timed.items()}
    for name, median in medians.items():
        print(f"| {name} | {median:.2f} | {images / median:.0f} |")
    ratio = medians["plain PyTorch loop"] / medians["Lightning Trainer"]
    print(f"| Lightning throughput / plain loop | | {ratio:.3f} |")


if __name__ == "__main__":
    main()
