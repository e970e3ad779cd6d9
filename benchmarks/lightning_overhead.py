"""Lightning's training throughput against a plain PyTorch loop: same model, data, optimiser and steps.

Per-step overhead only shows when a step is short, so this trains a small model (the dense
autoencoder ``ae`` at 32x32 RGB, batch 32: ~25 ms of CPU a step on a shared 2-core machine;
``--hidden-units 32`` makes it ~4 ms, where the overhead dominates) on batches held in
memory (the default synthetic faces' training images, decoded once and cut into
``--steps`` batches), so that no data pipeline is measured. Every loop trains a fresh model
built from the same config and seed, with the optimiser of its ``configure_optimizers``, for
``--epochs`` epochs of the same batches; the first epoch of each trial is a warm-up. Loops:

- **plain PyTorch loop**: the module's ``training_step``, ``zero_grad``, ``backward``,
  ``step``: the order of Lightning's automatic optimisation; ``self.log`` replaced by a
  no-op (there is no Trainer to log to). The reference of every ratio.
- **plain PyTorch loop, zero_grad first**: the common idiom's order (``zero_grad`` before
  ``training_step``), otherwise the same; it shows whether the order alone moves the step
  time (where the gradients are freed changes which memory the next allocations get).
- **Lightning, lean**: ``Trainer(logger=False, enable_checkpointing=False,
  enable_progress_bar=False, enable_model_summary=False)``; the module's ``self.log`` calls
  (``train/loss`` and ``train/mse``, per step and per epoch) run as in any training.
- **Lightning, lean, no self.log**: the same with ``self.log`` a no-op, which shows what the
  logging costs.
- **Lightning, defaults**: ``Trainer()``'s defaults on the CPU: progress bar (written to a
  file, not a terminal), model summary, a checkpoint every epoch and the default logger
  (CSV here), all under a temporary folder.

A step's time runs from the start of one training step (``on_train_batch_start``) to the
start of the next, so every hook, the batch hand-over and the logging between them count;
it is taken as wall time and as this process's CPU time (which other jobs on a shared
machine disturb least). The throughput ratios compare median steps over every timed step of
every round: a slow spell of the machine hits a minority of the steps and barely moves a
median. An epoch's time runs from its first step's start to the next epoch's (the last to
``on_train_end``): it adds what happens once an epoch (checkpointing, the epoch-end
logging). Trials alternate in one process, the order of the loops rotating from one round
to the next.
torch runs one intra-op thread by default (``--threads``): with other jobs on a 2-core
machine, two threads wait on each other and a step took 5x longer. Prints a Markdown table
for docs/benchmarks.md.

    .venv/bin/python benchmarks/lightning_overhead.py [--model ae] [--image-size 32] [--steps 100]
        [--hidden-units 512] [--epochs 3] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytorch_lightning as pl
import torch
from genfair import datasets, models


def _now() -> tuple[float, float]:
    """(wall, CPU) seconds: this process's CPU time is what other jobs on the machine disturb least."""
    return time.perf_counter(), time.process_time()


#: One epoch's marks: (wall, CPU) at the start of every step, then one at the epoch's end.
Epoch = list[tuple[float, float]]


class _StepClock(pl.Callback):
    """Marks the start of every training step; an epoch ends where the next one starts (or training ends)."""

    def __init__(self) -> None:
        self.epochs: list[Epoch] = []
        self.progress_bar = "none"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.epochs:
            self.epochs[-1].append(_now())
        self.epochs.append([])
        self.progress_bar = type(trainer.progress_bar_callback).__name__ if trainer.progress_bar_callback else "none"

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self.epochs[-1].append(_now())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs[-1].append(_now())


#: The progress bars the Lightning trials ran with (class names), for the printout.
PROGRESS_BARS: set[str] = set()


def _no_log(module: pl.LightningModule) -> pl.LightningModule:
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return module


def lightning_epochs(module: pl.LightningModule, batches: torch.utils.data.DataLoader, epochs: int, *, lean: bool,
                     root: Path) -> list[Epoch]:
    clock = _StepClock()
    options = (
        {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
        if lean
        else {"default_root_dir": str(root)}
    )
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[clock], limit_val_batches=0,
                         **options)
    with open(root / "console.txt", "a") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        trainer.fit(module, train_dataloaders=batches)  # the progress bar and the summary go to the file
    if not lean:
        PROGRESS_BARS.add(clock.progress_bar)
    return clock.epochs


def plain_epochs(module: pl.LightningModule, batches: torch.utils.data.DataLoader, epochs: int, *,
                 zero_grad_first: bool = False) -> list[Epoch]:
    """The same module's training_step and optimiser, driven by a hand-written loop.

    In Lightning's order (``training_step``, ``zero_grad``, ``backward``, ``step``), or with
    ``zero_grad_first`` in the common idiom's (``zero_grad`` before ``training_step``).
    """
    optimizer = module.configure_optimizers()
    optimizer = optimizer[0] if isinstance(optimizer, (list, tuple)) else optimizer
    module = _no_log(module)
    module.train()
    marks: list[Epoch] = []
    for _ in range(epochs):
        marks.append([])
        for batch_idx, batch in enumerate(batches):
            marks[-1].append(_now())
            if zero_grad_first:
                optimizer.zero_grad(set_to_none=True)
            loss = module.training_step(batch, batch_idx)
            loss = loss["loss"] if isinstance(loss, dict) else loss
            if not zero_grad_first:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        marks[-1].append(_now())
    return marks


def in_memory_batches(image_size: int, batch_size: int, steps: int, cache: Path) -> tuple[torch.utils.data.DataLoader, int]:
    """``steps`` batches of the synthetic faces' training split, decoded once (cycled if too few)."""
    spec = datasets.get("faces")(cache_dir=cache, image_size=image_size, seed=0)
    manifest = datasets.load_manifest(spec.manifest_path, attributes=spec.attributes)
    datamodule = datasets.FacesDataModule(manifest, image_size=image_size, batch_size=batch_size, seed=0)
    datamodule.setup("fit")
    loaded = [batch for batch in datamodule.train_dataloader() if batch["image"].shape[0] == batch_size]
    batches = [{key: value.clone() for key, value in loaded[i % len(loaded)].items()} for i in range(steps)]
    # A DataLoader without collation only hands the stored batches out; both loops iterate it.
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False), len(loaded) * batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ae")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-units", type=int, nargs="*", default=None,
                        help="the ae's hidden layers (default: its config's)")
    parser.add_argument("--steps", type=int, default=100, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial, the first one a warm-up")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of alternating trials of every loop")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on a shared 2-core machine two threads wait on each other")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        batches, distinct = in_memory_batches(args.image_size, args.batch_size, args.steps, root / "cache")
        spec = models.get(args.model)
        extra = {} if args.hidden_units is None else {"hidden_units": tuple(args.hidden_units)}
        config = spec.config(image_size=args.image_size, channels=3, seed=0, **extra)

        def fresh() -> pl.LightningModule:
            return spec.module.from_config(config)

        loops: dict[str, Callable[[], list[tuple[float, float]]]] = {
            "plain PyTorch loop": lambda: plain_epochs(fresh(), batches, args.epochs),
            "plain PyTorch loop, zero_grad first": lambda: plain_epochs(fresh(), batches, args.epochs,
                                                                        zero_grad_first=True),
            "Lightning, lean": lambda: lightning_epochs(fresh(), batches, args.epochs, lean=True, root=root),
            "Lightning, lean, no self.log": lambda: lightning_epochs(_no_log(fresh()), batches, args.epochs, lean=True,
                                                                     root=root),
            "Lightning, defaults": lambda: lightning_epochs(fresh(), batches, args.epochs, lean=False, root=root),
        }
        names = list(loops)
        steps: dict[str, list[tuple[float, float]]] = {name: [] for name in names}  # every timed step cycle
        epoch_seconds: dict[str, list[float]] = {name: [] for name in names}  # every timed epoch, wall
        load = []
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                for marks in loops[name]()[1:]:  # the first epoch of a trial is its warm-up
                    steps[name] += [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(marks[:-1])]
                    epoch_seconds[name].append(marks[-1][0] - marks[0][0])
            load.append(os.getloadavg()[0])
        parameters = sum(p.numel() for p in fresh().parameters())

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"pytorch-lightning {pl.__version__}, {torch.get_num_threads()} torch thread(s); {date.today()}; "
          f"load average {min(load):.1f}-{max(load):.1f} after the rounds")
    print(f"model {args.model} ({parameters:,} parameters, hidden units {getattr(config, 'hidden_units', '-')}), "
          f"{args.image_size}x{args.image_size} RGB, batch {args.batch_size}, {args.steps} in-memory batches per "
          f"epoch ({distinct} distinct training images); {args.rounds} rounds x {args.epochs} epochs per loop, the "
          f"first epoch of each trial a warm-up; {len(steps[names[0]])} timed steps per loop; progress bar of the "
          f"defaults: {', '.join(sorted(PROGRESS_BARS))}")
    print()
    print("| loop | median step, wall (ms) | median step, CPU (ms) | images/s (median step, wall) "
          "| throughput / plain (median step, wall) | (median step, CPU) | median epoch, wall (s) "
          "| throughput / plain (median epoch, wall) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    median = {name: (statistics.median(w for w, _ in steps[name]), statistics.median(c for _, c in steps[name]),
                     statistics.median(epoch_seconds[name])) for name in names}
    plain = median[names[0]]
    for name in names:
        step_wall, step_cpu, epoch = median[name]
        print(f"| {name} | {1000 * step_wall:.2f} | {1000 * step_cpu:.2f} | {args.batch_size / step_wall:,.0f} "
              f"| {plain[0] / step_wall:.3f} | {plain[1] / step_cpu:.3f} | {epoch:.3f} | {plain[2] / epoch:.3f} |")


if __name__ == "__main__":
    main()
