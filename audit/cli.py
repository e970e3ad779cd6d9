"""The ``audit`` command: a thin typer layer over ``genfair.audit.pipeline``.

Heavy libraries (torch, Lightning, MLflow) are imported inside the commands, so ``audit --help``
answers at once. The library raises; this module translates: exit 0 on success, 1 when a
fairness gate fails, 2 on a usage, input or configuration error (one readable line, no
traceback unless ``--debug``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from genfair.audit.pipeline import RunOutcome
    from genfair.audit.result import AuditResult

import typer
from rich.console import Console

EXIT_USAGE = 2
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)

app = typer.Typer(
    name="audit",
    help="Fairness audits of generative image models: per-group reconstruction error, logged to MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Prepare manifests (one row per image) for auditing.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Off a terminal (CI logs, pipes) rich assumes 80 columns, which wraps the tables' group names.
console = Console(width=None if sys.stdout.isatty() else 120)
error_console = Console(stderr=True)

DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
PolicyOption = Annotated[
    Path | None,
    typer.Option(help="Check the audit against this fairness policy (TOML); exit 1 when a rule fails.",
                 show_default=False),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(help="Regression check against this earlier audit: an MLflow run id or a saved audit folder.",
                 show_default=False),
]
JunitOption = Annotated[
    Path | None, typer.Option(help="Write the check's rules as JUnit XML to this file.", show_default=False)
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db.",
        show_default=False,
    ),
]


@contextlib.contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    """Turn the library's input errors into one red line and exit code 2 (full traceback with --debug).

    Training that stopped early (``genfair.audit.faults.TrainingStopped``) prints its line too and
    exits with its own code: 2 for a non-finite loss, 128 + the signal for SIGINT/SIGTERM.
    """
    try:
        yield
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        from rich.markup import escape

        error_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(getattr(err, "exit_code", EXIT_USAGE)) from None


def _is_user_error(err: Exception) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    faults = sys.modules.get("genfair.audit.faults")  # training stopped early: its own line and exit code
    if faults is not None and isinstance(err, faults.TrainingStopped):
        return True
    if "lightning_fabric" in sys.modules:  # a bad --strategy, --precision or --devices, caught by Lightning
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        return isinstance(err, MisconfigurationException)
    return False


@app.command()
def run(
    model: Annotated[str, typer.Option(help="Model to train and audit (registry key, e.g. vae).")] = "vae",
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
    epochs: Annotated[
        int, typer.Option("--epochs", "--max-epochs", help="Most training epochs (early stopping may end sooner).")
    ] = 10,
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
        int, typer.Option(help="Epochs of the attribute classifier that labels originals and outputs; 0 skips it.")
    ] = 5,
    resume: Annotated[Path | None, typer.Option(help="Continue training from this checkpoint.", show_default=False)] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Audit this trained checkpoint without training.", show_default=False)
    ] = None,
    tracking_uri: TrackingUriOption = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "genfair",
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
    policy: PolicyOption = None,
    baseline: BaselineOption = None,
    junit: JunitOption = None,
    debug: DebugOption = False,
) -> None:
    """Train a model, audit its outputs per demographic subgroup and log the run to MLflow.

    With --policy the audit is then checked like `audit check` (exit 1 when a rule fails).
    """
    with _user_errors(debug):
        if policy is None and (baseline is not None or junit is not None):
            raise ValueError("--baseline and --junit need --policy FILE (the rules to check); add it or drop them")
        # before training, so that a bad policy or baseline fails fast
        gate = None if policy is None else _load_gate(policy, baseline, tracking_uri)
        from genfair.audit.pipeline import RunConfig, run_audit

        _quiet_libraries(debug)
        config = RunConfig(
            model=model,
            dataset=dataset,
            manifest=str(manifest) if manifest is not None else None,
            allow_outside_root=allow_outside_root,
            composition=composition,
            objective=objective,
            sampler=sampler,
            dro_eta=dro_eta,
            reference=reference,
            attributes=_split_list(attributes),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            image_size=image_size,
            scale=scale,
            model_options=_key_values(model_option or [], option="--model-option"),
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            patience=patience,
            classifier_epochs=classifier_epochs,
            resume=str(resume) if resume is not None else None,
            checkpoint=str(checkpoint) if checkpoint is not None else None,
            tracking_uri=tracking_uri,
            experiment=experiment,
        )
        outcome = run_audit(config, progress_bar=True)

    if outcome is None:  # DDP ranks other than 0: rank 0 reports
        return
    _print_run_summary(outcome)
    with _user_errors(debug):
        if out is not None:
            console.print(f"saved the audit in {outcome.result.save(out)}")
        if gate is not None:
            _run_check(outcome.result, gate, run_id=outcome.run_id, tracking_uri=outcome.tracking_uri, junit=junit)


@app.command("check")
def check_command(
    run_ref: Annotated[str, typer.Option("--run", help="The audit to check: an MLflow run id or a saved audit folder.")],
    policy: Annotated[Path, typer.Option(help="Fairness policy (TOML); see docs/fairness-policy.example.toml.")],
    baseline: BaselineOption = None,
    junit: JunitOption = None,
    tracking_uri: TrackingUriOption = None,
    debug: DebugOption = False,
) -> None:
    """Check an audit against a fairness policy (and a baseline): exit 0 pass, 1 fairness failure, 2 bad input."""
    with _user_errors(debug):
        from genfair.reports.tracking import load_audit, resolve_tracking_uri

        gate = _load_gate(policy, baseline, tracking_uri)
        uri = resolve_tracking_uri(tracking_uri)
        result = load_audit(run_ref, tracking_uri=uri)
        run_id = None if Path(run_ref).is_dir() else run_ref
        _run_check(result, gate, run_id=run_id, tracking_uri=uri, junit=junit)


def _load_gate(policy: Path, baseline: str | None, tracking_uri: str | None) -> tuple[Any, Any]:
    """``(Policy, baseline AuditResult or None)``. Raises on bad input."""
    from genfair.audit.policy import load_policy
    from genfair.reports.tracking import load_audit, resolve_tracking_uri

    rules = load_policy(policy)
    earlier = None if baseline is None else load_audit(baseline, tracking_uri=resolve_tracking_uri(tracking_uri))
    return rules, earlier


def _run_check(result: AuditResult, gate: tuple[Any, Any], *, run_id: str | None, tracking_uri: str,
               junit: Path | None) -> None:
    """Judge ``result``, print the rules, write JUnit, log the verdicts to the run; exit 1 on a failure."""
    from genfair.audit.policy import check, junit_xml
    from genfair.reports.terminal import print_check
    from genfair.reports.tracking import log_check

    policy, baseline = gate
    report = check(result, policy, baseline=baseline)
    print_check(console, report, title=f"Fairness check of {result.metadata.get('model', 'the audit')}"
                + (" against the baseline" if baseline is not None else ""))
    xml = junit_xml(report)
    if junit is not None:
        from genfair.audit.result import write_atomic

        junit.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(junit, lambda temp: Path(temp).write_text(xml, encoding="utf-8"))
        console.print(f"JUnit report: {junit}")
    if run_id is not None:
        log_check(run_id, report, tracking_uri=tracking_uri, junit=xml)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command()
def ui(
    tracking_uri: TrackingUriOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
) -> None:
    """Open the MLflow UI on the local store (Ctrl+C stops it)."""
    from genfair.reports.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        console.print(f"{uri} is a tracking server already: open it in your browser.")
        return
    console.print(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl+C stops it)")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host]
    command += ["--port", str(port), "--workers", "1"]
    # One light worker process; the server's job runner would start many more (see STACK.md).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # the server replaces this process: signals reach it directly


@app.command("compare-runs")
def compare_runs(
    run_a: Annotated[str, typer.Argument(help="Model A: an MLflow run id, or a saved audit folder.")],
    run_b: Annotated[str, typer.Argument(help="Model B, audited on the same images (same manifest, split and seed).")],
    metric: Annotated[str, typer.Option(help="Metric to tabulate (every metric is compared).")] = "mse_error",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of people.")] = 1000,
    permutations: Annotated[int, typer.Option(help="Sign flips for the 'B is fairer' p-value.")] = 1000,
    min_subjects: Annotated[int, typer.Option(help="Fewer people than this: insufficient evidence.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    tracking_uri: TrackingUriOption = None,
    debug: DebugOption = False,
) -> None:
    """Is model B better than model A for every group, and fairer? Paired per person, with intervals and p."""
    with _user_errors(debug):
        from genfair.audit.compare import compare_models
        from genfair.audit.metrics import names as metric_names
        from genfair.reports.tracking import load_audit, resolve_tracking_uri

        uri = resolve_tracking_uri(tracking_uri)
        a, b = load_audit(run_a, tracking_uri=uri), load_audit(run_b, tracking_uri=uri)
        attributes = list(a.metadata.get("attributes", []))
        if attributes != list(b.metadata.get("attributes", [])):
            raise ValueError(
                f"the two audits group by different attributes ({attributes} and {b.metadata.get('attributes')}); "
                f"compare audits of one manifest"
            )
        metrics = [name for name in metric_names() if name in a.per_image and name in b.per_image]
        if metric not in metrics:
            raise ValueError(f"--metric {metric!r} is not in both audits; choose one of {metrics}")
        comparison = compare_models(a.per_image, b.per_image, attributes=attributes, metrics=metrics,
                                    n_resamples=resamples, n_permutations=permutations, seed=seed,
                                    min_subjects=min_subjects)
    from genfair.reports.terminal import print_comparison

    label_a, label_b = str(a.metadata.get("model", "A")), str(b.metadata.get("model", "B"))
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    print_comparison(console, comparison.per_group, comparison.disparities, a=label_a, b=label_b, metric=metric)


ALL_MODELS = "ae,vae,cnn,sr,pca,bicubic"
PriorityOption = Annotated[
    str, typer.Option(help="Rank by fidelity, fairness or speed, or weights like fairness=2,fidelity=1.")
]
OutOption = Annotated[Path, typer.Option(help="Folder for report.html, report.md, figures/ and comparison.csv.")]
PerplexityOption = Annotated[float, typer.Option(help="t-SNE perplexity of the latent-space figure.")]
ExaggerationOption = Annotated[float, typer.Option(help="t-SNE early exaggeration of the latent-space figure.")]


@app.command()
def compare(
    models: Annotated[str, typer.Option(help="Comma-separated models to train and audit.")] = ALL_MODELS,
    dataset: Annotated[str, typer.Option(help="Named dataset (registry key).")] = "faces",
    manifest: Annotated[Path | None, typer.Option(help="A manifest to audit instead of --dataset.")] = None,
    attributes: Annotated[str | None, typer.Option(help="Comma-separated sensitive attribute columns.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", "--max-epochs", help="Most training epochs per model.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    seed: Annotated[int, typer.Option(help="One seed for every model: same split, same people.")] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    scale: Annotated[int, typer.Option(help="Super-resolution factor of sr and bicubic: 2, 4 or 8.")] = 4,
    classifier_epochs: Annotated[int, typer.Option(help="Epochs of each run's attribute classifier; 0 skips it.")] = 5,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu or gpu.")] = "auto",
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
    """Train and audit several models on the same data, split and seed; rank them; write a report."""
    with _user_errors(debug):
        from genfair.audit.pipeline import RunConfig, run_comparison
        from genfair.audit.ranking import parse_priority

        weights = parse_priority(priority)
        _quiet_libraries(debug)
        base = RunConfig(
            dataset=dataset, manifest=str(manifest) if manifest is not None else None,
            attributes=_split_list(attributes), epochs=epochs, batch_size=batch_size, seed=seed,
            image_size=image_size, scale=scale, classifier_epochs=classifier_epochs, accelerator=accelerator,
            experiment=experiment, tracking_uri=tracking_uri,
        )
        outcome = run_comparison(base, _split_list(models) or (), priority=weights, out=out,
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
    with _user_errors(debug):
        from genfair.audit.pipeline import RunConfig, run_comparison
        from genfair.audit.ranking import parse_priority

        weights = parse_priority(priority)
        _quiet_libraries(debug)
        outcome = run_comparison(RunConfig(tracking_uri=tracking_uri), _split_list(models) or (), priority=weights,
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
    mitigation: Annotated[str, typer.Option(help="The objective set against ERM: group-dro or reweighted.")
    ] = "group-dro",
    seeds: Annotated[int, typer.Option(help="Training seeds per cell (the noise floor).")] = 3,
    epochs: Annotated[int, typer.Option("--epochs", "--max-epochs", help="Most training epochs per cell.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    seed: Annotated[int, typer.Option(help="Data seed (same people in every cell) and the first training seed.")
    ] = 0,
    image_size: Annotated[int, typer.Option(help="Side of the square images, in pixels.")] = 64,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto, cpu or gpu.")] = "auto",
    allow_outside_root: Annotated[bool, typer.Option(help="Accept manifest paths outside its folder.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for report.html, report.md, effects.csv and cuts.csv.")
    ] = Path("attribution"),
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the parent and the cells' runs.")] = "genfair",
    tracking_uri: TrackingUriOption = None,
    debug: DebugOption = False,
) -> None:
    """Where does the bias come from? Train composition x objective x seeds, on one audit panel."""
    with _user_errors(debug):
        from genfair.audit.pipeline import RunConfig, run_attribution

        _quiet_libraries(debug)
        base = RunConfig(
            dataset=dataset, manifest=str(manifest) if manifest is not None else None,
            attributes=_split_list(attributes), epochs=epochs, batch_size=batch_size, seed=seed,
            image_size=image_size, accelerator=accelerator, allow_outside_root=allow_outside_root,
            experiment=experiment, tracking_uri=tracking_uri,
        )
        outcome = run_attribution(base, _split_list(models) or ("vae",), mitigation=mitigation, seeds=seeds, out=out)
    if outcome is None:
        return
    from genfair.reports.terminal import print_effects

    print_effects(console, outcome.effects, outcome.summary)
    console.print(f"report: {outcome.html} and {outcome.markdown} ({outcome.seconds:.0f} s); MLflow parent run "
                  f"{outcome.parent_run_id}")


@data_app.command("import-faces95")
def import_faces95(
    images_dir: Annotated[Path, typer.Argument(help="Faces95 folder: <subject>/<subject>.<n>.jpg.")],
    annotations: Annotated[
        Path, typer.Option(help="Per-subject CSV: a subject column plus sensitive attribute columns.")
    ],
    out: Annotated[Path, typer.Option(help="Manifest to write (.csv or .parquet).")] = Path("manifest.csv"),
    debug: DebugOption = False,
) -> None:
    """Turn a Faces95-style folder plus per-subject annotations into a manifest."""
    with _user_errors(debug):
        from genfair.datasets import import_faces95 as build_manifest

        frame = build_manifest(images_dir, annotations, out)
    console.print(f"wrote {out}: {len(frame)} images of {frame['subject'].nunique()} subjects")
    outside = " --allow-outside-root" if frame["path"].str.startswith("../").any() else ""  # images beside out's folder
    console.print(f"audit it: audit run --model vae --manifest {out}{outside}")


def _split_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _key_values(items: list[str], *, option: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} bottleneck=16")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _quiet_libraries(debug: bool) -> None:
    """Lightning's device banners and MLflow's chatter add nothing to the printed table.

    Call after importing them: both set their loggers' levels when imported.
    """
    if debug:
        return
    for name in ("pytorch_lightning", "lightning_fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _print_run_summary(outcome: RunOutcome) -> None:
    """Every table of the audit, and where the run lives."""
    from genfair.reports.terminal import print_audit

    print_audit(console, outcome.result)
    console.print(f"MLflow run [bold]{outcome.run_id}[/] in {outcome.tracking_uri}")
    run_path = f"#/experiments/{outcome.experiment_id}/runs/{outcome.run_id}"
    if outcome.tracking_uri.startswith(("http://", "https://")):
        console.print(f"open it: {outcome.tracking_uri.rstrip('/')}/{run_path}", soft_wrap=True)
    else:
        console.print(f"open it: [bold]audit ui[/] in this folder, then http://127.0.0.1:5000/{run_path}", soft_wrap=True)
