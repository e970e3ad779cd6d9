"""``audit run``: get a model's outputs, audit them per group, log the run; optionally check it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from genfair.audit.run import RunOutcome

from .results import load_gate, run_check
from ._common import (
    BaselineOption,
    BinsOption,
    DebugOption,
    FitOption,
    MissingOption,
    JunitOption,
    PolicyOption,
    TrackingUriOption,
    app,
    bin_pairs,
    console,
    dataset_channels,
    key_values,
    quiet_libraries,
    split_list,
    user_errors,
)


@app.command()
def run(
    model: Annotated[
        str | None,
        typer.Option(help="Model to audit: a registry key (audit models lists them; default vae), your own "
                          "file.py:factory or package.module:factory, or a TorchScript .pt file.", show_default=False),
    ] = None,
    outputs: Annotated[
        str | None,
        typer.Option(help="Audit outputs already on disk: the --manifest column holding each row's output file "
                          "(nothing is trained).", show_default=False),
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(help="With --outputs: the column holding the low-resolution input each output came from.",
                     show_default=False),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The model's name in tables, MLflow and reports (default: the key, column or factory).",
                     show_default=False),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="For --outputs and your own model: reconstruction (default) or upsampling (then --scale "
                          "or --inputs).", show_default=False),
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="Named dataset (registry key, e.g. faces: synthetic Faces95-style faces).")
    ] = "faces",
    manifest: Annotated[
        Path | None,
        typer.Option(help="A CSV/Parquet manifest (path, subject, attributes, split) to audit instead of --dataset."),
    ] = None,
    allow_outside_root: Annotated[
        bool,
        typer.Option("--allow-outside-root",
                     help="Accept manifest paths that are absolute or climb out of its folder with '..'."),
    ] = False,
    attributes: Annotated[
        str | None,
        typer.Option(help="Comma-separated sensitive attribute columns. Default: the dataset's own.", show_default=False),
    ] = None,
    bins: BinsOption = None,
    missing: MissingOption = "error",
    fit: FitOption = "crop",
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", "--max-epochs", show_default=False,
                     help="Most training epochs (early stopping may end sooner). Default 10 for a registry model; "
                          "your own model is audited as it is unless a LightningModule gets --epochs."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch (per device).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed for the data split, initialisation and data order.")] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    scale: Annotated[
        int | None, typer.Option(help="Super-resolution factor (sr, bicubic): 2, 4 or 8.", show_default=False)
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", "-o", help="Model config override KEY=VALUE, repeatable (e.g. -o bottleneck=16).",
                     show_default=False),
    ] = None,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu or gpu.")] = "auto",
    devices: Annotated[str, typer.Option(help="Devices per node: a count, -1 for all, or auto.")] = "1",
    num_nodes: Annotated[int, typer.Option(help="Machines (launch with torchrun or SLURM).")] = 1,
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp, ...")] = "auto",
    precision: Annotated[str, typer.Option(help="Lightning precision: 32-true, 16-mixed, bf16-mixed.")] = "32-true",
    patience: Annotated[int, typer.Option(help="Epochs without a better validation loss before stopping; 0: never.")] = 3,
    classifier_epochs: Annotated[
        int, typer.Option(help="Epochs of the attribute classifier that labels originals and outputs; 0 skips it. "
                               "It trains on a balanced set: new generated people (faces) or the training split "
                               "drawn balanced by group.")
    ] = 5,
    samples: Annotated[
        int, typer.Option(help="Samples a model that can sample (vae, gan, pulse's prior) draws for the samples audit: "
                               "whom it generates, by group, against its training data; 0 skips it.")
    ] = 1000,
    classifier: Annotated[
        str, typer.Option(help="The attribute classifier: cnn (a small CNN, --classifier-epochs epochs) or embedding "
                               "(logistic regression on dlib's 128-D face embeddings, trained once on the same "
                               "balanced set; the faces extra; about 0.12 s an image, so minutes on the faces)")
    ] = "cnn",
    classifier_min_accuracy: Annotated[
        float | None,
        typer.Option(help="Withhold the representation claims (rows, tests, flip rates) of a group whose held-out "
                          "or audited originals the classifier labels right less often than this, per attribute; the CLEAM "
                          "correction needs it of every group. Default 0.8: the classifier's own errors then move a "
                          "rate by at most 0.2, whatever the number of classes (chance is 1/K <= 0.5). 0: withhold "
                          "nothing.", show_default=False),
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue training from this checkpoint.", show_default=False)] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Audit this trained checkpoint without training.", show_default=False)
    ] = None,
    tracking_uri: TrackingUriOption = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "genfair",
    cache_mb: Annotated[
        int, typer.Option(help="Memory (MiB) for decoded images, so each file is decoded once a run; a larger set "
                               "is decoded every epoch (a note says so); 0: off.")
    ] = 1024,
    out: Annotated[
        Path | None, typer.Option(help="Also save the audit result (Parquet + metadata) in this folder.",
                                  show_default=False)
    ] = None,
    composition: Annotated[
        str, typer.Option(help="Training composition: as-given, or balanced (generated, or subsampled).")
    ] = "as-given",
    objective: Annotated[str, typer.Option(help="Training objective: erm, reweighted or group-dro.")] = "erm",
    sampler: Annotated[str, typer.Option(help="Training sampler: shuffle, or balanced (groups drawn equally).")
    ] = "shuffle",
    dro_eta: Annotated[
        float | None, typer.Option(help="Group DRO step size (default per model).", show_default=False)
    ] = None,
    reference: Annotated[
        str, typer.Option(help="Compare every group with: best, largest (most people), or a group, e.g. 'male / lighter'.")
    ] = "best",
    primary_metric: Annotated[
        str | None,
        typer.Option(help="Test this metric's disparities alone (Holm over its groupings); the other rows are "
                          "exploratory. Default: every disparity row of the run is one family.", show_default=False),
    ] = None,
    identity: Annotated[
        bool,
        typer.Option("--identity",
                     help="Also measure identity drift: does a face recogniser (dlib) still match each output to its "
                          "original? Needs pip install 'genfair[faces]'; about 0.25 s per audited image."),
    ] = False,
    skin_mask: Annotated[
        str | None,
        typer.Option(help="Skin region of the skin measures without manifest masks: central (an ellipse) or "
                          "landmarks (cheeks, forehead, nose bridge from dlib's 68 landmarks; the faces extra). "
                          "Default: landmarks with --identity, else central.", show_default=False),
    ] = None,
    policy: PolicyOption = None,
    baseline: BaselineOption = None,
    junit: JunitOption = None,
    debug: DebugOption = False,
) -> None:
    """Train a model (or run yours, or read its outputs from disk), audit the outputs per subgroup, log to MLflow.

    With --policy the audit is then checked like `audit check` (exit 1 when a rule fails).
    """
    with user_errors(debug):
        if outputs is not None and model is not None:
            raise ValueError(f"--outputs {outputs} audits files a model already wrote, and --model {model} names a "
                             f"model to run: pass one of them")
        if policy is None and (baseline is not None or junit is not None):
            raise ValueError("--baseline and --junit need --policy FILE (the rules to check); add it or drop them")
        # before training, so that a bad policy or baseline fails fast
        gate = None if policy is None else load_gate(policy, baseline, tracking_uri)
        from genfair.audit.run import RunConfig, run_audit

        quiet_libraries(debug)
        config = RunConfig(
            model=model or "vae",
            outputs=outputs,
            inputs=inputs,
            name=name,
            task=task,
            dataset=dataset,
            manifest=str(manifest) if manifest is not None else None,
            allow_outside_root=allow_outside_root,
            composition=composition,
            objective=objective,
            sampler=sampler,
            dro_eta=dro_eta,
            reference=reference,
            primary_metric=primary_metric,
            identity=identity,
            skin_mask=skin_mask,
            attributes=split_list(attributes),
            bins=bin_pairs(bins),
            missing=missing,
            fit=fit,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            image_size=image_size,
            channels=dataset_channels(dataset, manifest),
            scale=scale,
            model_options=key_values(model_option or [], option="--model-option"),
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            patience=patience,
            classifier_epochs=classifier_epochs,
            samples=samples,
            classifier=classifier,
            **({} if classifier_min_accuracy is None else {"classifier_min_accuracy": classifier_min_accuracy}),
            resume=str(resume) if resume is not None else None,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            tracking_uri=tracking_uri,
            experiment=experiment,
            cache_mb=cache_mb,
        )
        outcome = run_audit(config, progress_bar=True)

    if outcome is None:  # DDP ranks other than 0: rank 0 reports
        return
    _print_run_summary(outcome)
    with user_errors(debug):
        if out is not None:
            console.print(f"saved the audit in {outcome.result.save(out)}")
        if gate is not None:
            run_check(outcome.result, gate, run_id=outcome.run_id, tracking_uri=outcome.tracking_uri, junit=junit)



def _print_run_summary(outcome: RunOutcome) -> None:
    """Every table of the audit, and where the run lives."""
    from genfair.reports.terminal import print_audit

    print_audit(console, outcome.result)
    for note in outcome.result.metadata.get("notes", []):
        console.print(f"note: {note}", highlight=False)
    if outcome.seconds:
        spent = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in outcome.seconds.items())
        console.print(f"time: {spent} (total {sum(outcome.seconds.values()):.1f} s)", highlight=False, soft_wrap=True)
    console.print(f"MLflow run [bold]{outcome.run_id}[/] in {outcome.tracking_uri}")
    run_path = f"#/experiments/{outcome.experiment_id}/runs/{outcome.run_id}"
    if outcome.tracking_uri.startswith(("http://", "https://")):
        console.print(f"open it: {outcome.tracking_uri.rstrip('/')}/{run_path}", soft_wrap=True)
    else:
        console.print(f"open it: [bold]audit ui[/] in this folder, then http://127.0.0.1:5000/{run_path}", soft_wrap=True)
