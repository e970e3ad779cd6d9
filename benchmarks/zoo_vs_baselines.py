"""Does every learned model beat its no-learning or linear baseline on `faces`, trained until it has learned?

ae, cnn and vae are compared with pca at the same bottleneck (latent size); sr with bicubic at
the same scale. Every run is a full `audit run` (64x64, seed 0) into a temporary MLflow store;
each learned model trains until early stopping on its validation loss (``audit compare``'s
defaults: patience CONVERGENCE_PATIENCE, at most CONVERGENCE_MAX_EPOCHS epochs, a cap not meant
to bind). Prints a Markdown table for docs/benchmarks.md, with the epochs each model trained.

    .venv/bin/python benchmarks/zoo_vs_baselines.py [--epochs 300] [--patience 5] [--scale 4]
        [--models ae,cnn,vae,sr] [--manifest ../shared/data/london-faces/manifest.csv --attributes gender,race_binary]
        [--image-size 64]
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
from genfair.audit.run.config import CONVERGENCE_MAX_EPOCHS, CONVERGENCE_PATIENCE
from genfair.reports.tracking import learning_curves


def bottleneck_of(model: str, image_size: int) -> int:
    config = models.get(model).config(image_size=image_size, channels=3, seed=0)
    return config.latent_dim if hasattr(config, "latent_dim") else config.bottleneck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=CONVERGENCE_MAX_EPOCHS)
    parser.add_argument("--patience", type=int, default=CONVERGENCE_PATIENCE)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--models", default="ae,cnn,vae,sr")
    parser.add_argument("--manifest", default=None, help="a manifest to use instead of the synthetic faces")
    parser.add_argument("--attributes", default=None, help="the manifest's sensitive attributes, comma-separated")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        base = RunConfig(epochs=args.epochs, patience=args.patience, image_size=args.image_size,
                         manifest=args.manifest, attributes=tuple(args.attributes.split(",")) if args.attributes else None,
                         tracking_uri=uri, cache_dir=str(Path(tmp) / "cache"),
                         experiment="zoo-vs-baselines", accelerator="cpu",
                         classifier_epochs=0)  # the classifier does not change any model's MSE

        def audited(model: str, **changes: object) -> tuple[float, float, int]:
            start = time.perf_counter()
            outcome = run_audit(dataclasses.replace(base, model=model, **changes), progress_bar=False)
            assert outcome is not None
            curves = learning_curves({model: outcome.run_id}, tracking_uri=uri)
            return (float(outcome.result.per_image["mse_error"].mean()), time.perf_counter() - start,
                    int(curves["epoch"].max()) if len(curves) else 0)

        rows = []
        for model in args.models.split(","):
            if model == "sr":
                learned, seconds, epochs = audited("sr", scale=args.scale)
                baseline, _, _ = audited("bicubic", scale=args.scale)
                rows.append(("sr", f"scale {args.scale}", epochs, learned, seconds, f"bicubic, scale {args.scale}",
                             baseline))
                continue
            size = bottleneck_of(model, args.image_size)
            learned, seconds, epochs = audited(model)
            baseline, _, _ = audited("pca", model_options=(("bottleneck", str(size)),))
            rows.append((model, f"bottleneck {size}", epochs, learned, seconds, f"pca, bottleneck {size}", baseline))
            print(rows[-1], flush=True)

    data = args.manifest or "--dataset faces"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {date.today()}")
    print(f"audit run {data} ({args.image_size}x{args.image_size}, until early stopping with patience "
          f"{args.patience}, at most {args.epochs} epochs, seed 0); test MSE over the test split")
    print()
    print("| model | setting | epochs | test MSE | run (s) | baseline | baseline MSE | MSE / baseline | beats it |")
    print("|---|---|---:|---:|---:|---|---:|---:|---|")
    for model, setting, epochs, learned, seconds, name, baseline in rows:
        verdict = "yes" if learned < baseline else "**no**"
        print(f"| {model} | {setting} | {epochs} | {learned:.5f} | {seconds:.0f} | {name} | {baseline:.5f} | "
              f"{learned / baseline:.3f} | {verdict} |")


if __name__ == "__main__":
    main()
