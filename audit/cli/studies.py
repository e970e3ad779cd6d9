"""The studies: ``audit compare``, ``audit report`` and ``audit attribute``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    BinsOption,
    DebugOption,
    FitOption,
    MissingOption,
    TrackingUriOption,
    app,
    bin_pairs,
    console,
    dataset_channels,
    quiet_libraries,
    split_list,
    user_errors,
)


ALL_MODELS = "ae,vae,cnn,sr,pca,bicubic"
# audit compare's training defaults: genfair.audit.run.config.CONVERGENCE_MAX_EPOCHS and
# CONVERGENCE_PATIENCE (spelled here so that `audit --help` does not import torch; a test keeps them equal).
COMPARE_MAX_EPOCHS = 300
COMPARE_PATIENCE = 5
PriorityOption = Annotated[
    str, typer.Option(help="Rank by fidelity, fairness or speed, or weights like fairness=2,fidelity=1.")
]
OutOption = Annotated[Path, typer.Option(help="Folder for report.html, report.md, figures/ and comparison.csv.")]
DevicesOption = Annotated[str, typer.Option(help="Devices per node for each training: a count, -1 for all, or auto.")]
StrategyOption = Annotated[str, typer.Option(help="Lightning strategy of each training: auto, ddp, ...")]
PerplexityOption = Annotated[float, typer.Option(help="t-SNE perplexity of the latent-space figure.")]
ExaggerationOption = Annotated[float, typer.Option(help="t-SNE early exaggeration of the latent-space figure.")]


@app.command()
def compare(
    models: Annotated[str, typer.Option(help="Comma-separated models to train and audit.")] = ALL_MODELS,
    dataset: Annotated[str, typer.Option(help="Named dataset (registry key).")] = "faces",
    manifest: Annotated[Path | None, typer.Option(help="A manifest to audit instead of --dataset.")] = None,
    attributes: Annotated[str | None, typer.Option(help="Comma-separated sensitive attribute columns.")] = None,
    bins: BinsOption = None,
    missing: MissingOption = "error",
    fit: FitOption = "crop",
    allow_outside_root: Annotated[bool, typer.Option(help="Accept manifest paths outside its folder.")] = False,
    epochs: Annotated[int, typer.Option(
        "--epochs", "--max-epochs",
        help="Most training epochs per model; by default a cap that early stopping reaches first.")] = COMPARE_MAX_EPOCHS,
    patience: Annotated[int, typer.Option(
        help="Epochs without a better validation loss before a model stops (0: never stop early).")] = COMPARE_PATIENCE,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    seed: Annotated[int, typer.Option(help="One seed for every model: same split, same people.")] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    scale: Annotated[int, typer.Option(help="Super-resolution factor of sr and bicubic: 2, 4 or 8.")] = 4,
    classifier_epochs: Annotated[int, typer.Option(help="Epochs of each run's attribute classifier; 0 skips it.")] = 5,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu or gpu.")] = "auto",
    devices: DevicesOption = "1",
    strategy: StrategyOption = "auto",
    priority: PriorityOption = "fidelity",
    out: OutOption = Path("comparison"),
    from_experiment: Annotated[
        str | None, typer.Option(help="Gather finished runs from this MLflow experiment instead of training.",
                                 show_default=False)
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the parent and child runs.")] = "genfair",
    perplexity: PerplexityOption = 30.0,
    early_exaggeration: ExaggerationOption = 12.0,
    tracking_uri: TrackingUriOption = None,
    debug: DebugOption = False,
) -> None:
    """Train and audit several models on the same data, split and seed; rank them; write a report.

    Every learned model trains until early stopping on its validation loss (the default
    --epochs is a cap it is not meant to reach); the report shows each one's learning curves.
    """
    with user_errors(debug):
        from genfair.audit.run import RunConfig
        from genfair.audit.run.studies import run_comparison
        from genfair.audit.ranking import parse_priority

        weights = parse_priority(priority)
        quiet_libraries(debug)
        base = RunConfig(
            dataset=dataset, manifest=str(manifest) if manifest is not None else None,
            attributes=split_list(attributes), epochs=epochs, patience=patience, batch_size=batch_size, seed=seed,
            image_size=image_size, channels=dataset_channels(dataset, manifest), scale=scale,
            classifier_epochs=classifier_epochs, accelerator=accelerator,
            devices=devices, strategy=strategy, experiment=experiment, tracking_uri=tracking_uri, allow_outside_root=allow_outside_root,
            bins=bin_pairs(bins), missing=missing, fit=fit,
        )
        outcome = run_comparison(base, split_list(models) or (), priority=weights, out=out,
                                 from_experiment=from_experiment, perplexity=perplexity,
                                 early_exaggeration=early_exaggeration)
    if outcome is not None:
        _print_comparison(outcome)


@app.command()
def report(
    experiment: Annotated[str, typer.Option(help="MLflow experiment whose finished audits to compare.")],
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models (default: every model found).", show_default=False)
    ] = None,
    priority: PriorityOption = "fidelity",
    out: OutOption = Path("comparison"),
    perplexity: PerplexityOption = 30.0,
    early_exaggeration: ExaggerationOption = 12.0,
    tracking_uri: TrackingUriOption = None,
    debug: DebugOption = False,
) -> None:
    """Rebuild the comparison report from MLflow alone: the latest finished audit of each model."""
    with user_errors(debug):
        from genfair.audit.run import RunConfig
        from genfair.audit.run.studies import run_comparison
        from genfair.audit.ranking import parse_priority

        weights = parse_priority(priority)
        quiet_libraries(debug)
        outcome = run_comparison(RunConfig(tracking_uri=tracking_uri), split_list(models) or (), priority=weights,
                                 out=out, from_experiment=experiment, perplexity=perplexity,
                                 early_exaggeration=early_exaggeration)
    if outcome is not None:
        _print_comparison(outcome)


def _print_comparison(outcome: Any) -> None:
    from genfair.reports.terminal import print_ranking

    print_ranking(console, outcome.ranked, outcome.recommendation)
    console.print(f"report: {outcome.html} and {outcome.markdown}")
    if outcome.parent_run_id:
        console.print(f"MLflow parent run {outcome.parent_run_id} holds every model's run as a child")


@app.command()
def attribute(
    models: Annotated[str, typer.Option("--models", "--model", help="Comma-separated models to study.")] = "vae",
    dataset: Annotated[str, typer.Option(help="Named dataset (registry key).")] = "faces",
    manifest: Annotated[Path | None, typer.Option(help="A manifest to study instead of --dataset.")] = None,
    attributes: Annotated[str | None, typer.Option(help="Comma-separated sensitive attribute columns.")] = None,
    bins: BinsOption = None,
    missing: MissingOption = "error",
    fit: FitOption = "crop",
    mitigation: Annotated[str, typer.Option(help="The objective set against ERM: group-dro or reweighted.")
    ] = "group-dro",
    seeds: Annotated[int, typer.Option(help="Training seeds per cell (the noise floor).")] = 3,
    epochs: Annotated[int, typer.Option("--epochs", "--max-epochs", help="Most training epochs per cell.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    seed: Annotated[int, typer.Option(help="Data seed (same people in every cell) and the first training seed.")
    ] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu or gpu.")] = "auto",
    devices: DevicesOption = "1",
    strategy: StrategyOption = "auto",
    allow_outside_root: Annotated[bool, typer.Option(help="Accept manifest paths outside its folder.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for report.html, report.md, effects.csv and cuts.csv.")
    ] = Path("attribution"),
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the parent and the cells' runs.")] = "genfair",
    tracking_uri: TrackingUriOption = None,
    debug: DebugOption = False,
) -> None:
    """Where does the bias come from? Train composition x objective x seeds, on one audit panel."""
    with user_errors(debug):
        from genfair.audit.run import RunConfig
        from genfair.audit.run.studies import run_attribution

        quiet_libraries(debug)
        base = RunConfig(
            dataset=dataset, manifest=str(manifest) if manifest is not None else None,
            attributes=split_list(attributes), epochs=epochs, batch_size=batch_size, seed=seed,
            image_size=image_size, channels=dataset_channels(dataset, manifest), accelerator=accelerator,
            devices=devices, strategy=strategy, allow_outside_root=allow_outside_root,
            experiment=experiment, tracking_uri=tracking_uri,
            bins=bin_pairs(bins), missing=missing, fit=fit,
        )
        outcome = run_attribution(base, split_list(models) or ("vae",), mitigation=mitigation, seeds=seeds, out=out)
    if outcome is None:
        return
    from genfair.reports.terminal import print_effects

    print_effects(console, outcome.effects, outcome.summary)
    console.print(f"report: {outcome.html} and {outcome.markdown} ({outcome.seconds:.0f} s); MLflow parent run "
                  f"{outcome.parent_run_id}")


