"""Train one autoencoder of the zoo on saved image splits until early stopping; its test MSE against PCA's.

The splits are a ``torch.save``'d dict ``{"train", "val", "test"}`` of (N, 3, H, W) float images
in [0, 1] (e.g. the splits an ``audit run`` datamodule yields, split by person). The model
trains with AdamW at batch 32 until ``val/loss`` has not improved for ``--patience`` epochs;
PCA keeps as many components as the model's bottleneck, fitted on the same training split.
Prints one JSON line: epochs, train MSE (first 400 training images, no augmentation), test
MSE, PCA's test MSE, their ratio, the median training step (ms, forward + backward + update)
and the wall time. One thread, so that step times compare across runs on a shared machine.

    nice -n 5 .venv/bin/python benchmarks/autoencoder_vs_pca.py SPLITS.pt cnn ['{"max_epochs": 100, "flip": false}']

``--step-time MODEL SIZE`` instead times training steps alone (random images, batch 32, the
model in channels-last format where it fits that way), the median of 40 after 5 warm-up steps.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from genfair import models


class _Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "index": i}


class _StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def pca_mse(data: dict[str, torch.Tensor], k: int) -> float:
    """Test MSE of PCA with ``k`` components fitted on the training split (reconstructions clamped to [0, 1])."""
    train = data["train"].flatten(1).double()
    mean = train.mean(0)
    _, _, v = torch.linalg.svd(train - mean, full_matrices=False)
    w = v[:k]
    test = data["test"].flatten(1).double() - mean
    return float(((test @ w.T @ w + mean).clamp(0, 1) - (test + mean)).square().mean())


def run(data: dict[str, torch.Tensor], name: str, options: dict[str, Any], *, patience: int = 5) -> dict[str, Any]:
    """Fit registry model ``name`` (config ``options``; ``max_epochs`` default 300) and measure it."""
    options = dict(options)
    max_epochs = int(options.pop("max_epochs", 300))
    spec = models.get(name)
    config = spec.config(image_size=data["train"].shape[-1], channels=3, seed=0, **options)
    pl.seed_everything(0, workers=True, verbose=False)
    model = spec.module(config)
    timer = _StepTimer()
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=[pl.callbacks.EarlyStopping("val/loss", patience=patience), timer],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", deterministic=True)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(_Images(data["train"]), batch_size=32, shuffle=True,
                                  generator=torch.Generator().manual_seed(0)),
                DataLoader(_Images(data["val"]), batch_size=64))
    wall = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        test = float((model(data["test"]) - data["test"]).square().mean())
        train = float((model(data["train"][:400]) - data["train"][:400]).square().mean())
    k = config.latent_dim if hasattr(config, "latent_dim") else config.bottleneck
    baseline = pca_mse(data, k)
    return {"model": name, "options": options, "params": sum(p.numel() for p in model.parameters()),
            "epochs": trainer.current_epoch, "train_mse": round(train, 5), "test_mse": round(test, 5),
            "pca_mse": round(baseline, 5), "ratio": round(test / baseline, 3),
            "step_ms": round(1000 * statistics.median(timer.seconds), 1), "wall_s": round(wall)}


def step_time(name: str, size: int, options: dict[str, Any] | None = None, *, steps: int = 40) -> float:
    """Median milliseconds of one training step (forward, backward, AdamW) at batch 32, one thread."""
    config = models.get(name).config(image_size=size, channels=3, seed=0, **(options or {}))
    model = models.get(name).module(config)
    images = torch.rand(32, 3, size, size, generator=torch.Generator().manual_seed(0))
    if getattr(model, "fit_channels_last", False):
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no Trainer to log to
    planned = model.configure_optimizers()
    optimizer = planned["optimizer"] if isinstance(planned, dict) else planned
    batch = {"image": images, "index": torch.arange(32)}
    seconds = []
    for i in range(steps + 5):
        start = time.perf_counter()
        optimizer.zero_grad()
        model.training_step(batch, i).backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds[5:])


def main() -> None:
    torch.set_num_threads(1)
    if sys.argv[1] == "--step-time":
        options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
        print(json.dumps({"model": sys.argv[2], "size": int(sys.argv[3]), "options": options,
                          "step_ms": round(step_time(sys.argv[2], int(sys.argv[3]), options), 1)}))
        return
    data = torch.load(sys.argv[1])
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    print(json.dumps(run(data, sys.argv[2], options)), flush=True)


if __name__ == "__main__":
    main()
