"""Studies composed of runs: ``audit compare`` / ``audit report`` and ``audit attribute``.

A study is a loop over stage 1 with one audit per cell and one report at the end: every cell is
a full :func:`~genfair.audit.run.runner.run_audit`, a child of one parent MLflow run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from genfair import models
from genfair.audit.faults import STOPPED_AT_TAG, TrainingInterrupted, TrainingStopped, store_lock
from genfair.audit.result import AuditResult
from genfair.reports.tracking import activate_experiment, resolve_tracking_uri

from .config import RunConfig, RunOutcome, build_model_config, generates_balanced, has_scale
from .runner import run_audit
from .stages import STOPPED_TAG_CHARS, RunStages
from .training import is_global_zero



@dataclass(frozen=True)
class ComparisonOutcome:
    """What ``audit compare`` / ``audit report`` hand back: the ranked table, the words, the files."""

    ranked: pd.DataFrame
    recommendation: str
    html: Path
    markdown: Path
    parent_run_id: str | None


def run_comparison(
    base: RunConfig,
    model_names: Sequence[str],
    *,
    priority: dict[str, float],
    out: Path,
    from_experiment: str | None = None,
    perplexity: float = 30.0,
    early_exaggeration: float = 12.0,
    progress_bar: bool = True,
) -> ComparisonOutcome | None:
    """Audit every model on the same data, split and seed (or gather finished runs), rank, report.

    Training: each model runs as ``run_audit(base with model=...)``, a child of one parent MLflow
    run in ``base.experiment``; ``sr`` and ``bicubic`` get ``base.scale``, the others none. The
    report (``report.html``, ``report.md``, ``figures/``, ``comparison.csv``) is written to
    ``out`` and logged to the parent run under ``report/``. With ``from_experiment`` nothing is
    trained: the latest finished audit of each model in that experiment is read back
    (``model_names`` empty: every model found) and the report is written, not logged. The parent
    run ends FINISHED, or KILLED (a signal) or FAILED (any other error) when a child or the report
    stops, tagged ``genfair.stopped_at`` "children" or "report".

    Returns:
        The outcome, or None on DDP ranks other than 0.

    Raises:
        ValueError: an unknown model, or a bad option of one (checked before anything trains).
    """
    from genfair.audit.ranking import comparison_table, rank_models, recommendation
    from genfair.reports.comparison import comparison_figures, display_table, learning_curve_figure, write_report
    from genfair.reports.tracking import finished_audits, learning_curves, load_audit

    tracking_uri = resolve_tracking_uri(base.tracking_uri)
    configs = {name: dataclasses.replace(base, model=name, scale=base.scale if has_scale(name) else None)
               for name in model_names}
    for config in configs.values():  # every option checked before the first model trains
        build_model_config(models.get(config.model), config)
    results: dict[str, AuditResult] = {}
    run_ids: dict[str, str] = {}
    parent_id = None
    stages = RunStages(first="children" if from_experiment is None else "report")
    with stages.installed(), contextlib.ExitStack() as closing:
        if from_experiment is not None:
            found = finished_audits(from_experiment, tracking_uri=tracking_uri)
            wanted = list(model_names) or list(found)
            missing = [name for name in wanted if name not in found]
            if missing:
                raise ValueError(f"no finished audit of {missing} in experiment {from_experiment!r} (it has {list(found)}); "
                                 f"drop them from --models or run them first")
            for name in wanted:
                run_ids[name] = found[name]
                results[name] = load_audit(found[name], tracking_uri=tracking_uri)
        else:
            children = _run_children(base, configs, kind="compare", model_names=model_names,
                                     progress_bar=progress_bar, stages=stages)
            if children is None:  # a DDP rank other than 0
                return None
            client, parent_id, outcomes = children
            closing.enter_context(_closed_if_stopped(client, parent_id, stages))
            for name, outcome in outcomes.items():
                results[name], run_ids[name] = outcome.result, outcome.run_id

        stages.enter("report")
        table = comparison_table(results, run_ids=run_ids)
        ranked = rank_models(table, priority)
        text = recommendation(ranked, results, priority, seed=base.seed)
        figures = comparison_figures(results, perplexity=perplexity, early_exaggeration=early_exaggeration,
                                     seed=base.seed)
        curves = learning_curves(run_ids, tracking_uri=tracking_uri)
        curve_figure = learning_curve_figure(curves)
        if curve_figure is not None:
            figures["learning_curves"] = curve_figure
        first = next(iter(results.values()))
        notes = [
            f"Dataset {first.metadata.get('dataset')}, seed {first.metadata.get('run', {}).get('seed')}, "
            f"{len(first.per_image)} test images of {first.per_image['subject'].nunique()} people; every number in "
            f"a row comes from that model's MLflow run (column 'run'): its group_intervals, disparity_intervals, "
            f"skin_tone_disparities, representation_tests and model_facts tables.",
            "Intervals: 95%, resampling people within groups. Ratio and difference compare the worst- and best-served "
            "group of the finest grouping; p is the permutation test's, Holm-adjusted. Images per second: CPU "
            "inference over the test split, measured alike for every model.",
        ]
        if len(curves):
            reached = curves.groupby("model", sort=False)["epoch"].max()
            notes.append("Training: each learned model until early stopping on its validation loss, audited with the "
                         "weights of its best validation epoch; epochs trained: "
                         + ", ".join(f"{model} {int(epochs)}" for model, epochs in reached.items())
                         + " (learning_curves.csv, and the learning-curve figure).")
        out.mkdir(parents=True, exist_ok=True)
        ranked.to_csv(out / "comparison.csv", index=False)
        curves.to_csv(out / "learning_curves.csv", index=False)
        html, markdown = write_report(out, title=f"Which model suits {first.metadata.get('dataset')}?",
                                      table=display_table(ranked), recommendation=text, figures=figures, notes=notes,
                                      audits=results)
        if parent_id is not None:
            client.log_artifacts(parent_id, str(out), artifact_path="report")
            client.set_terminated(parent_id, status="FINISHED")
    return ComparisonOutcome(ranked=ranked, recommendation=text, html=html, markdown=markdown,
                             parent_run_id=parent_id)


def _run_children(
    base: RunConfig, configs: Mapping[Any, RunConfig], *, kind: str, model_names: Sequence[str], progress_bar: bool,
    stages: RunStages,
) -> tuple[Any, str, dict[Any, RunOutcome]] | None:
    """Run every config as a child of one new parent run (tag ``genfair.<kind>``): ``(client, parent id, outcomes)``.

    The parent is marked KILLED or FAILED if a child stops (:func:`_closed_if_stopped`); the caller
    finishes it, inside :func:`_closed_if_stopped` too. None on DDP ranks other than 0: they open
    no run, and train every child alongside rank 0 (each child's trainer needs every rank).
    """
    if not is_global_zero():
        _follow_rank_zero(configs.values())
        return None
    tracking_uri = resolve_tracking_uri(base.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    with store_lock(tracking_uri):
        experiment = activate_experiment(base.experiment)
    parent = client.create_run(experiment.experiment_id, run_name=f"{kind}-{base.dataset}-seed{base.seed}",
                               tags={f"genfair.{kind}": ",".join(model_names), "genfair.seed": str(base.seed)})
    parent_id = parent.info.run_id
    outcomes: dict[Any, RunOutcome] = {}
    with _closed_if_stopped(client, parent_id, stages):
        for position, (key, config) in enumerate(configs.items()):
            outcome = run_audit(dataclasses.replace(config, parent_run_id=parent_id), progress_bar=progress_bar)
            if outcome is None:  # a rank > 0 that its environment did not name (the trainer knew): keep no run
                client.set_terminated(parent_id, status="KILLED")
                client.delete_run(parent_id)
                _follow_rank_zero(list(configs.values())[position + 1:])
                return None
            outcomes[key] = outcome
    return client, parent_id, outcomes


def _follow_rank_zero(configs: Iterable[RunConfig]) -> None:
    """A DDP rank other than 0: train every child alongside rank 0 (each child's trainer needs every rank)."""
    for config in configs:
        run_audit(config, progress_bar=False)


@contextlib.contextmanager
def _closed_if_stopped(client: Any, parent_id: str, stages: RunStages) -> Iterator[None]:
    """On any error, the study's parent run marked KILLED (a signal) or FAILED (anything else), then the error goes on.

    The parent is tagged ``genfair.stopped_at`` (the study's stage: "children" or "report") and
    ``genfair.stopped`` (the error); a stopped run's message names the parent too.
    """
    try:
        yield
    except BaseException as err:
        stages.hold()  # a second signal must not cut the closing short
        status = "KILLED" if isinstance(err, TrainingInterrupted | KeyboardInterrupt | SystemExit) else "FAILED"
        what = str(err) if isinstance(err, TrainingStopped) else f"{type(err).__name__}: {err}"
        client.set_tag(parent_id, STOPPED_AT_TAG, stages.current)
        client.set_tag(parent_id, "genfair.stopped", what[:STOPPED_TAG_CHARS])
        client.set_terminated(parent_id, status=status)
        parent = f"parent MLflow run {parent_id} marked {status}"
        if isinstance(err, TrainingStopped):
            err.run = f"{err.run}; {parent}" if err.run else parent
        else:
            err.add_note(f"genfair: {parent}")
        raise


# --- where does the bias come from? `audit attribute` ----------------------------------------------


@dataclass(frozen=True)
class AttributionOutcome:
    """What ``audit attribute`` hands back: the effects, the excess cuts, the words, the files."""

    effects: pd.DataFrame
    cuts: pd.DataFrame
    summary: str
    reference: str
    html: Path
    markdown: Path
    parent_run_id: str | None
    seconds: float


def run_attribution(
    base: RunConfig,
    model_names: Sequence[str],
    *,
    mitigation: str = "group-dro",
    seeds: int = 3,
    out: Path,
    progress_bar: bool = True,
) -> AttributionOutcome | None:
    """A factorial attribution study: composition x objective x training seed (x model), on one audit panel.

    Cells: training composition {as-given, balanced} x objective {erm, ``mitigation``} x
    ``seeds`` training seeds (``base.seed``, ``base.seed + 1``, ...) for each model. Every cell
    is a full ``run_audit`` (a child of one parent MLflow run) with the data seed fixed at
    ``base.seed``, so every cell audits the same people. The effects
    (:func:`genfair.audit.attribution.attribution_effects`), the excess cuts against the
    majority (the group with most training people as given; a tie is stated) and a summary go to ``out``
    (``report.html``, ``report.md``, ``effects.csv``, ``cuts.csv``) and to the parent run, which
    ends FINISHED, or KILLED or FAILED when a cell or the report stops (as in :func:`run_comparison`).

    Returns:
        The outcome, or None on DDP ranks other than 0.

    Raises:
        ValueError: an unknown model or mitigation, ``seeds < 1``, or a bad option (checked
            before anything trains).
    """
    if mitigation not in ("reweighted", "group-dro"):
        raise ValueError(f"--mitigation must be reweighted or group-dro, got {mitigation!r}")
    if seeds < 1:
        raise ValueError(f"--seeds must be 1 or more, got {seeds}")
    start = time.perf_counter()
    cells = [(model, composition, objective, base.seed + offset)
             for model in model_names for composition in ("as-given", "balanced")
             for objective in ("erm", mitigation) for offset in range(seeds)]
    configs = {cell: dataclasses.replace(base, model=cell[0], composition=cell[1], objective=cell[2],
                                         seed=cell[3], data_seed=base.seed, classifier_epochs=0)
               for cell in cells}
    for config in configs.values():
        build_model_config(models.get(config.model), config)
    for name in model_names:  # a cell with the mitigation would fail after the first cells trained
        if not getattr(models.get(name).module, "supports_objectives", False):
            raise ValueError(f"--models {name}: its training has no per-image loss for --mitigation {mitigation} to "
                             f"reweight; compare its training compositions with `audit run --model {name} "
                             f"--composition balanced` against `--composition as-given` (benchmarks/pulse_finding.py)")
    stages = RunStages(first="children")
    with stages.installed():
        children = _run_children(base, configs, kind="attribute", model_names=model_names, progress_bar=progress_bar,
                                 stages=stages)
        if children is None:  # a DDP rank other than 0
            return None
        client, parent_id, outcomes = children
        with _closed_if_stopped(client, parent_id, stages):
            stages.enter("report")
            return _attribution_report(base, model_names, cells, outcomes, client=client, parent_id=parent_id,
                                       mitigation=mitigation, seeds=seeds, out=out, start=start)


def _attribution_report(base: RunConfig, model_names: Sequence[str], cells: list[tuple[Any, ...]],
                        outcomes: dict[Any, RunOutcome], *, client: Any, parent_id: str, mitigation: str, seeds: int,
                        out: Path, start: float) -> AttributionOutcome:
    """The attribution study's effects, cuts and report from its cells' outcomes; the parent run finished."""
    from genfair.audit.attribution import attribution_effects, attribution_summary, excess_cuts
    from genfair.reports.comparison import effects_figure, write_report

    frames = [outcome.result.per_image.assign(model=cell[0], composition=cell[1], objective=cell[2], seed=cell[3])
              for cell, outcome in outcomes.items()]
    as_given = next(outcome for cell, outcome in outcomes.items() if cell[1] == "as-given")
    composition = as_given.result.metadata["splits"]["train"]["composition"]
    most = max(composition.values())  # the composition counts people: one definition of the majority
    tied = sorted(group for group, people in composition.items() if people == most)
    majority = tied[0]
    long = pd.concat(frames, ignore_index=True)
    attributes = list(as_given.result.metadata["attributes"])
    effects = attribution_effects(long, attributes=attributes, mitigation=mitigation, seed=base.seed)
    cuts = excess_cuts(long, attributes=attributes, reference=majority, seed=base.seed)
    summary = attribution_summary(effects, cuts, reference=majority)
    out.mkdir(parents=True, exist_ok=True)
    effects.to_csv(out / "effects.csv", index=False)
    cuts.to_csv(out / "cuts.csv", index=False)
    finest = effects[effects["grouping"] == effects["grouping"].iloc[-1]]
    table = finest.assign(**{"95% CI": finest.apply(lambda r: f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}]", axis=1)})[
        ["model", "effect", "group", "n_subjects", "estimate", "95% CI", "seed_se", "within_seed_noise"]]
    table = table.assign(estimate=table["estimate"].map(lambda v: f"{v:+.3g}"),
                         seed_se=table["seed_se"].map(lambda v: f"{v:.2g}"))
    notes = [
        f"{len(cells)} cells: compositions as-given and balanced x objectives erm and {mitigation} x {seeds} training "
        f"seeds x {len(model_names)} model(s), every cell audited on the same {long['path'].nunique()} test images "
        f"of {long['subject'].nunique()} people (data seed {base.seed}). Each cell is a child of MLflow run "
        f"{parent_id}.",
        f"Effects are differences of seed-averaged group errors; intervals resample people (the same people in "
        f"every cell) and add retraining noise (Student t on the per-seed standard error). Excess error is a "
        f"group's error minus {majority}'s (most training people as given) in the same cell.",
    ]
    if len(tied) > 1:
        notes.append(f"{', '.join(tied)} tie with {most} training people each; the excess is measured against "
                     f"{majority}, the first of them by name.")
    if base.composition == "as-given" and not generates_balanced(base):
        notes.append("This data has no generator of a balanced counterfactual: the balanced cells train on a "
                     "subsample of the training subjects, as many per group as the smallest group has.")
    html, markdown = write_report(out, title=f"Where does the bias come from? {base.dataset}", table=table,
                                  recommendation=summary, figures={"effects": effects_figure(effects)}, notes=notes)
    client.log_artifacts(parent_id, str(out), artifact_path="attribution")
    client.log_batch(parent_id, metrics=_effect_metrics(effects))
    client.set_terminated(parent_id, status="FINISHED")
    return AttributionOutcome(effects=effects, cuts=cuts, summary=summary, reference=majority, html=html,
                              markdown=markdown, parent_run_id=parent_id, seconds=time.perf_counter() - start)


def _effect_metrics(effects: pd.DataFrame) -> list[Any]:
    """``attribution/<model>/<effect>/<grouping>/<group>/{estimate,ci_low,ci_high,seed_se}`` for MLflow."""
    from mlflow.entities import Metric

    from genfair.reports.tracking import metric_key

    stamp = int(time.time() * 1000)
    metrics = []
    for row in effects.to_dict("records"):
        for column in ("estimate", "ci_low", "ci_high", "seed_se"):
            if math.isfinite(row[column]):
                key = metric_key("attribution", row["model"], row["effect"], row["grouping"], row["group"], column)
                metrics.append(Metric(key, float(row[column]), stamp, 0))
    return metrics
