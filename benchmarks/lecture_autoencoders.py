"""The lecture's dense-autoencoder experiments on `digits`: bottleneck, output + loss, optimiser.

12 configurations: bottleneck 64 and 16 x (linear + MSE, sigmoid + MSE, sigmoid + BCE) x
(adam, adadelta), each a full `audit run --model ae --dataset digits` (greyscale, 16x16, no early
stopping, no attribute classifier) into a temporary MLflow store. Per configuration: test MSE
overall and per digit with 95% intervals (genfair's group intervals; each image is its own
subject), and the validation MSE per epoch (is it still falling at the end?). Then, per bottleneck
and optimiser, sigmoid + BCE against linear + MSE on the same test images (paired,
:func:`genfair.audit.compare_models`). Prints Markdown for docs/benchmarks.md and writes a figure of
originals above each configuration's outputs.

    .venv/bin/python benchmarks/lecture_autoencoders.py [--epochs 15] [--figure docs/img/lecture_autoencoders.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
from PIL import Image

from genfair.audit import compare_models
from genfair.audit.run import RunConfig, run_audit

OUTPUTS = (("linear", "mse"), ("sigmoid", "mse"), ("sigmoid", "bce"))
STILL_FALLING = 0.01  # the last 3 epochs cut the validation MSE by more than 1%


def _curve(run_id: str) -> list[float]:
    history = mlflow.tracking.MlflowClient().get_metric_history(run_id, "val/mse")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--figure", default="docs/img/lecture_autoencoders.png")
    args = parser.parse_args()

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = RunConfig(model="ae", dataset="digits", epochs=args.epochs, image_size=args.image_size, channels=1,
                         patience=0, classifier_epochs=0, accelerator="cpu", experiment="lecture-autoencoders",
                         tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}", cache_dir=str(Path(tmp) / "cache"))
        for bottleneck in (64, 16):
            for activation, loss in OUTPUTS:
                for optimizer in ("adam", "adadelta"):
                    options = (("bottleneck", str(bottleneck)), ("output_activation", activation), ("loss", loss),
                               ("optimizer", optimizer))
                    start = time.perf_counter()
                    outcome = run_audit(dataclasses.replace(base, model_options=options), progress_bar=False)
                    assert outcome is not None
                    runs[(bottleneck, activation, loss, optimizer)] = (outcome, time.perf_counter() - start,
                                                                       _curve(outcome.run_id))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {date.today()}")
    print(f"run_audit(RunConfig(model='ae', dataset='digits', image_size={args.image_size}, channels=1, "
          f"epochs={args.epochs}, patience=0, classifier_epochs=0, seed=0)); test split "
          f"{len(next(iter(runs.values()))[0].result.per_image)} images")
    print()
    print("| bottleneck | output + loss | optimiser | test MSE [95% CI] | worst digit (MSE) | best digit (MSE) | "
          "val MSE by epoch (first, middle, last) | still falling | run (s) |")
    print("|---:|---|---|---|---|---|---|---|---:|")
    for (bottleneck, activation, loss, optimizer), (outcome, seconds, curve) in runs.items():
        table = outcome.result.tables["group_intervals"]
        mse = table[table["metric"] == "mse_error"]
        overall = mse[mse["grouping"] == "overall"].iloc[0]
        digits = mse[mse["grouping"] == "digit"].sort_values("estimate")
        falling = len(curve) > 3 and (curve[-4] - curve[-1]) / curve[-4] > STILL_FALLING
        print(f"| {bottleneck} | {activation} + {loss.upper()} | {optimizer} | {overall['estimate']:.4f} "
              f"[{overall['ci_low']:.4f}, {overall['ci_high']:.4f}] | {digits.iloc[-1]['group']} "
              f"({digits.iloc[-1]['estimate']:.4f}) | {digits.iloc[0]['group']} ({digits.iloc[0]['estimate']:.4f}) | "
              f"{curve[0]:.4f}, {curve[len(curve) // 2]:.4f}, {curve[-1]:.4f} | {'yes' if falling else 'no'} | "
              f"{seconds:.0f} |")
    print()
    print("Sigmoid + BCE against linear + MSE on the same test images (B - A, negative: BCE is better):")
    print()
    print("| bottleneck | optimiser | MSE linear + MSE | MSE sigmoid + BCE | difference [95% CI] | Wilcoxon p |")
    print("|---:|---|---:|---:|---|---:|")
    for bottleneck in (64, 16):
        for optimizer in ("adam", "adadelta"):
            a = runs[(bottleneck, "linear", "mse", optimizer)][0].result.per_image
            b = runs[(bottleneck, "sigmoid", "bce", optimizer)][0].result.per_image
            groups = compare_models(a, b, attributes=["digit"], metrics=["mse_error"]).per_group
            row = groups[groups["grouping"] == "overall"].iloc[0]
            print(f"| {bottleneck} | {optimizer} | {row['mean_a']:.4f} | {row['mean_b']:.4f} | {row['difference']:+.4f} "
                  f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {row['p_value']:.3g} |")
    _figure(runs, Path(args.figure))
    print()
    print(f"figure: {args.figure}")


def _figure(runs: dict, path: Path) -> None:
    """Originals (top row) above each configuration's outputs, one column per test image shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(runs)
    samples = runs[keys[0]][0].result.tables["samples"]
    columns = min(10, len(samples))
    picks = samples.drop_duplicates("digit").head(columns).index
    decode = lambda data: np.asarray(Image.open(io.BytesIO(data)))  # noqa: E731
    figure, axes = plt.subplots(len(keys) + 1, columns, figsize=(columns * 0.8, (len(keys) + 1) * 0.85))
    for j, i in enumerate(picks):
        axes[0, j].imshow(decode(samples.at[i, "original_png"]), cmap="gray", vmin=0, vmax=255)
    axes[0, 0].set_ylabel("original", rotation=0, ha="right", va="center", fontsize=7)
    for row, key in enumerate(keys, start=1):
        shown = runs[key][0].result.tables["samples"]
        for j, i in enumerate(picks):
            axes[row, j].imshow(decode(shown.at[i, "output_png"]), cmap="gray", vmin=0, vmax=255)
        bottleneck, activation, loss, optimizer = key
        axes[row, 0].set_ylabel(f"{bottleneck} {activation}+{loss} {optimizer}", rotation=0, ha="right",
                                va="center", fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
