"""Does every learned model beat its no-learning or linear baseline on `faces` at default settings?

ae, cnn and vae are compared with pca at the same bottleneck (latent size); sr with bicubic at
the same scale. Every run is a full `audit run` (default epochs, 64x64, seed 0) into a
temporary MLflow store. Prints a Markdown table for docs/benchmarks.md.

    .venv/bin/python benchmarks/zoo_vs_baselines.py [--epochs 10] [--scale 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

from genfair import models
from genfair.audit.run import RunConfig, run_audit


def bottleneck_of(model: str) -> int:
    config = models.get(model).config(image_size=64, channels=3, seed=0)
    return config.latent_dim if hasattr(config, "latent_dim") else config.bottleneck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=RunConfig().epochs)
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = RunConfig(epochs=args.epochs, tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                         cache_dir=str(Path(tmp) / "cache"), experiment="zoo-vs-baselines", accelerator="cpu",
                         classifier_epochs=0)  # the classifier does not change any model's MSE

        def audited(model: str, **changes: object) -> tuple[float, float]:
            start = time.perf_counter()
            outcome = run_audit(dataclasses.replace(base, model=model, **changes), progress_bar=False)
            assert outcome is not None
            return float(outcome.result.per_image["mse_error"].mean()), time.perf_counter() - start

        rows = []
        for model in ("ae", "cnn", "vae"):
            size = bottleneck_of(model)
            learned, seconds = audited(model)
            baseline, _ = audited("pca", model_options=(("bottleneck", str(size)),))
            rows.append((model, f"bottleneck {size}", learned, seconds, f"pca, bottleneck {size}", baseline))
        learned, seconds = audited("sr", scale=args.scale)
        baseline, _ = audited("bicubic", scale=args.scale)
        rows.append(("sr", f"scale {args.scale}", learned, seconds, f"bicubic, scale {args.scale}", baseline))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {date.today()}")
    print(f"audit run --dataset faces (64x64, up to {args.epochs} epochs, seed 0); test MSE over the balanced panel")
    print()
    print("| model | setting | test MSE | run (s) | baseline | baseline MSE | MSE / baseline | beats it |")
    print("|---|---|---:|---:|---|---:|---:|---|")
    for model, setting, learned, seconds, name, baseline in rows:
        verdict = "yes" if learned < baseline else "**no**"
        print(f"| {model} | {setting} | {learned:.5f} | {seconds:.0f} | {name} | {baseline:.5f} | "
              f"{learned / baseline:.3f} | {verdict} |")


if __name__ == "__main__":
    main()
