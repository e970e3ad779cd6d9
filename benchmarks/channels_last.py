"""A training step of the default VAE and attribute classifier in three memory layouts, side by side.

The default run's training is convolutions on a CPU; oneDNN runs them faster when the weights
and the images are channels-last (NHWC). This times one optimisation step (the module's own
``training_step`` with ``self.log`` a no-op, ``backward``, the optimiser's ``step``) of a batch
of random images held in memory, at the default run's size (64x64 RGB, batch 32), in:

- **contiguous**: the default layout, ``torch.optim.AdamW`` (its per-tensor loop);
- **channels_last**: weights and images channels-last, the same optimiser;
- **channels_last + fused AdamW**: what ``ChannelsLastFit`` and ``adamw`` in
  ``genfair.models._common`` do while fitting.

Every layout trains a fresh model from the same config and seed. Rounds alternate the layouts
in one process, and the ratios compare median step times over every round's timed steps, as
wall time and as this process's CPU time (which other jobs on a shared machine disturb least).
Prints a Markdown table for docs/benchmarks.md.

    .venv/bin/python benchmarks/channels_last.py [--steps 25] [--rounds 3] [--batch-size 32] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch
from genfair.models.classifier import AttributeClassifier, AttributeClassifierConfig
from genfair.models.vae import VAE, VAEConfig

LAYOUTS = {  # name -> (channels_last, fused AdamW)
    "contiguous": (False, False),
    "channels_last": (True, False),
    "channels_last + fused AdamW": (True, True),
}


def step_times(build: Callable[[], torch.nn.Module], batch: dict[str, torch.Tensor], *, channels_last: bool,
               fused: bool, steps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each of ``steps`` training steps (after two warm-up steps)."""
    torch.manual_seed(0)
    module = build()
    module.log = lambda *args, **kwargs: None  # no Trainer to log to
    module.train()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        batch = {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, fused=fused)
    walls, cpus = [], []
    for i in range(steps + 2):
        wall, cpu = time.perf_counter(), time.process_time()
        loss = module.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:
            walls.append((time.perf_counter() - wall) * 1e3)
            cpus.append((time.process_time() - cpu) * 1e3)
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    n, size = args.batch_size, args.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=generator)
    models = {
        "vae": (lambda: VAE(VAEConfig(image_size=size)), {"image": images, "index": torch.arange(n)}),
        "classifier": (lambda: AttributeClassifier(AttributeClassifierConfig(image_size=size, num_classes=(4, 2))),
                       {"image": images, "index": torch.arange(n),
                        "labels": torch.stack([torch.randint(0, 4, (n,), generator=generator),
                                               torch.randint(0, 2, (n,), generator=generator)], dim=1)}),
    }
    times: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    names = list(LAYOUTS)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            for model, (build, batch) in models.items():
                walls, cpus = step_times(build, batch, channels_last=LAYOUTS[name][0], fused=LAYOUTS[name][1],
                                         steps=args.steps)
                total = times.setdefault((model, name), ([], []))
                total[0].extend(walls)
                total[1].extend(cpus)
    print(f"{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}; "
          f"{args.rounds} rounds x {args.steps} steps, batch {n} at {size}x{size}\n")
    print("| model | layout | median step, wall (ms) | median step, CPU (ms) | wall vs contiguous |")
    print("|---|---|---|---|---|")
    for model in models:
        reference = statistics.median(times[(model, "contiguous")][0])
        for name in names:
            wall, cpu = (statistics.median(t) for t in times[(model, name)])
            print(f"| {model} | {name} | {wall:.1f} | {cpu:.1f} | {wall / reference:.3f} |")


if __name__ == "__main__":
    main()
