"""Commands over finished audits: ``audit check``, ``audit compare-runs`` and ``audit ui``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from genfair.audit.result import AuditResult

from ._common import (
    BaselineOption,
    DebugOption,
    JunitOption,
    TrackingUriOption,
    app,
    console,
    user_errors,
)


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
    with user_errors(debug):
        from genfair.reports.tracking import load_audit, resolve_tracking_uri

        gate = load_gate(policy, baseline, tracking_uri)
        uri = resolve_tracking_uri(tracking_uri)
        result = load_audit(run_ref, tracking_uri=uri)
        run_id = None if Path(run_ref).is_dir() else run_ref
        run_check(result, gate, run_id=run_id, tracking_uri=uri, junit=junit)


def load_gate(policy: Path, baseline: str | None, tracking_uri: str | None) -> tuple[Any, Any]:
    """``(Policy, baseline AuditResult or None)``. Raises on bad input."""
    from genfair.audit.policy import load_policy
    from genfair.reports.tracking import load_audit, resolve_tracking_uri

    rules = load_policy(policy)
    earlier = None if baseline is None else load_audit(baseline, tracking_uri=resolve_tracking_uri(tracking_uri))
    return rules, earlier


def run_check(result: AuditResult, gate: tuple[Any, Any], *, run_id: str | None, tracking_uri: str,
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
    # One light worker process; with job execution on, the server starts about 15 processes and 3 GB.
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
    with user_errors(debug):
        from genfair.audit.compare import compare_models
        from genfair.audit.metrics import names as metric_names
        from genfair.audit.result import pairing_problem
        from genfair.reports.tracking import load_audit, resolve_tracking_uri

        uri = resolve_tracking_uri(tracking_uri)
        a, b = load_audit(run_a, tracking_uri=uri), load_audit(run_b, tracking_uri=uri)
        problem = pairing_problem(a, b)
        if problem is not None:
            raise ValueError(f"{run_a} and {run_b}: {problem}; fix: audit both models on one manifest with the same "
                             f"split and seed (audit compare does), then compare those runs")
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


