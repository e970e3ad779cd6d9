"""Every MLflow run is closed, whatever stops it (issue 19, item 3).

SIGTERM or SIGINT at any stage of ``audit run`` (data, training, prediction, audit, logging)
marks the run KILLED, tagged ``genfair.stopped_at=<stage>``, prints one line naming the stage
and exits 128 + the signal; an error at a stage marks it FAILED with the stage tagged; a study's
parent run ends KILLED or FAILED when a child or its report stops.

The signals are real and land at a known stage: a driver process imports genfair once, then
for each scenario forks a child that wraps one library function of that stage (it sends the
child SIGTERM or SIGINT with ``os.kill``, or raises, the first time it is called) and runs the
``audit`` app; the child's exit status is the process's own. Tiny runs: PCA (or a one-epoch
autoencoder) on 464 synthetic 16x16 faces, one MLflow store, one experiment per scenario.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from genfair.audit.faults import BEST_CHECKPOINT, NO_CHECKPOINT_MSG, RUNS_DIR, STOPPED_AT_TAG
from genfair.datasets.synthetic import SyntheticFacesConfig, ensure_synthetic_faces

SMALL_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=16, train_lighter_male=8, train_lighter_female=3,
                                   train_darker_male=4, train_darker_female=2, test_subjects_per_group=2)
TINY = ["--image-size", "16", "--batch-size", "16", "--accelerator", "cpu", "--attributes", "gender,skin_tone"]
NO_CLASSIFIER = ["--classifier-epochs", "0"]  # `audit attribute` trains none anyway, and has no such option
RUNNER = "genfair.audit.run.runner"
INJECTED = "injected failure"
AT_ONCE = 2  # scenarios running side by side (one store: as concurrent `audit run` processes share one)

DRIVER = '''
import importlib, json, os, signal, sys

from genfair.audit.cli import app


def hook(target, action):
    """Wrap ``module:attribute.path`` so that its first call sends ``action`` (a signal) or raises."""
    module, _, path = target.partition(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    fired = []

    def hooked(*args, **kwargs):
        if not fired:
            fired.append(True)
            if action == "raise":
                raise RuntimeError("INJECTED")
            os.kill(os.getpid(), getattr(signal, action))
        return original(*args, **kwargs)

    setattr(owner, name, hooked)


scenarios = json.loads(sys.argv[1])
for scenario in scenarios.values():  # imported once, here, not in every child
    importlib.import_module(scenario["hook"].partition(":")[0])
def start(name, scenario):
    pid = os.fork()
    if pid:
        return pid
    code = 1  # the child: hook, run the command as `audit` would, exit with its code
    with open(f"{name}.out", "w") as out, open(f"{name}.err", "w") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            hook(scenario["hook"], scenario["action"])
            app(scenario["args"], prog_name="audit")
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            sys.excepthook(*sys.exc_info())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


waiting, running = list(scenarios.items()), {}
while waiting or running:
    while waiting and len(running) < AT_ONCE:
        name, scenario = waiting.pop(0)
        running[start(name, scenario)] = name
    pid, status = os.wait()
    print(json.dumps({running.pop(pid): os.waitstatus_to_exitcode(status)}), flush=True)
'''.replace("INJECTED", INJECTED).replace("AT_ONCE", str(AT_ONCE))


@dataclass(frozen=True)
class Scenario:
    hook: str  # module:attribute whose first call stops the run
    action: str  # "SIGTERM", "SIGINT" or "raise"
    args: tuple[str, ...]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, list[str]]:
    """The working folder (MLflow store, genfair-runs/) and the ``audit`` options every scenario shares."""
    folder = tmp_path_factory.mktemp("runs-closed")
    manifest = ensure_synthetic_faces(SMALL_FACES, cache_dir)
    return folder, ["--manifest", str(manifest), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", *TINY]


def _run(name: str, model: str = "pca", *extra: str) -> tuple[str, ...]:
    return ("run", "--model", model, "--experiment", name, *extra)


SCENARIOS = {
    "data-unopened": Scenario(f"{RUNNER}:load_run_manifest", "SIGTERM", _run("data-unopened")),
    "data": Scenario(f"{RUNNER}:run_tags", "SIGTERM", _run("data")),
    "training": Scenario("genfair.models.ae:AE.training_step", "SIGTERM",
                         _run("training", "ae", "--epochs", "1", "--patience", "0")),
    "prediction": Scenario("genfair.models._common:ConfiguredModule.predict_step", "SIGTERM",
                           _run("prediction", "ae", "--epochs", "1", "--patience", "0")),  # PCA keeps no best.ckpt
    "audit": Scenario(f"{RUNNER}:audit_frame", "SIGTERM", _run("audit")),
    "audit-sigint": Scenario(f"{RUNNER}:score_batch", "SIGINT", _run("audit-sigint")),
    "logging": Scenario(f"{RUNNER}:log_audit", "SIGTERM", _run("logging")),
    "audit-error": Scenario(f"{RUNNER}:audit_frame", "raise", _run("audit-error")),
    "compare-child-error": Scenario(f"{RUNNER}:audit_frame", "raise",
                                    ("compare", "--models", "pca,ae", "--epochs", "1",
                                     "--experiment", "compare-child-error", "--out", "compare-child-error")),
    "compare-report": Scenario("genfair.audit.ranking:comparison_table", "SIGTERM",
                               ("compare", "--models", "pca", "--epochs", "1",
                                "--experiment", "compare-report", "--out", "compare-report")),
    "attribute-child": Scenario(f"{RUNNER}:audit_frame", "SIGTERM",
                                ("attribute", "--models", "ae", "--seeds", "1", "--epochs", "1",
                                 "--experiment", "attribute-child", "--out", "attribute-child")),
}


@pytest.fixture(scope="module")
def outcomes(setting: tuple[Path, list[str]]) -> dict[str, Outcome]:
    """Every scenario, each in a forked child of one driver process (genfair imported once)."""
    folder, common = setting
    (folder / "driver.py").write_text(DRIVER)
    spec = {name: {"hook": s.hook, "action": s.action,
                   "args": [*s.args, *common, *(NO_CLASSIFIER if s.args[0] != "attribute" else [])]}
            for name, s in SCENARIOS.items()}
    done = subprocess.run([sys.executable, "driver.py", json.dumps(spec)], cwd=folder, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = {name: code for line in done.stdout.splitlines() for name, code in json.loads(line).items()}
    return {name: Outcome(codes[name], (folder / f"{name}.out").read_text(), (folder / f"{name}.err").read_text())
            for name in SCENARIOS}


@pytest.fixture(scope="module")
def client(setting: tuple[Path, list[str]]) -> MlflowClient:
    return MlflowClient(f"sqlite:///{setting[0] / 'mlflow.db'}")


def runs_of(client: MlflowClient, experiment: str) -> list[Run]:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def the_stopped_run(client: MlflowClient, name: str) -> Run:
    (run,) = runs_of(client, name)
    return run


# -- a signal at each stage of `audit run` ---------------------------------------------------------------


@pytest.mark.parametrize("stage", ["data", "prediction", "audit", "logging"])
def test_sigterm_at_a_stage_kills_the_run_and_names_the_stage(stage: str, outcomes: dict[str, Outcome],
                                                              client: MlflowClient) -> None:
    outcome = outcomes[stage]
    line = error_line(outcome.stderr)
    assert outcome.code == 128 + signal.SIGTERM == 143, outcome.stderr[-3000:]
    run = the_stopped_run(client, stage)
    assert line.startswith(f"error: SIGTERM stopped the run during its {stage} stage; "
                           f"MLflow run {run.info.run_id} marked KILLED"), line
    assert run.info.status == "KILLED"
    assert run.data.tags[STOPPED_AT_TAG] == stage


def test_sigterm_in_training_stops_at_the_end_of_the_batch(outcomes: dict[str, Outcome], client: MlflowClient) -> None:
    """Lightning's own SIGTERM handling keeps working: the step finishes, then the run is KILLED."""
    outcome = outcomes["training"]
    line = error_line(outcome.stderr)
    assert outcome.code == 143, outcome.stderr[-3000:]
    run = the_stopped_run(client, "training")
    assert f"SIGTERM stopped training in epoch 0 (step 1); MLflow run {run.info.run_id} marked KILLED" in line
    assert NO_CHECKPOINT_MSG in line
    assert (run.info.status, run.data.tags[STOPPED_AT_TAG]) == ("KILLED", "training")


def test_a_run_stopped_after_training_keeps_the_trained_model(outcomes: dict[str, Outcome], client: MlflowClient,
                                                             setting: tuple[Path, list[str]]) -> None:
    run = the_stopped_run(client, "prediction")
    kept = RUNS_DIR / run.info.run_id / BEST_CHECKPOINT
    assert (setting[0] / kept).is_file()
    assert f"the trained model is kept: {kept}; audit it without training again with --checkpoint {kept}" in (
        error_line(outcomes["prediction"].stderr))
    assert f"model/{BEST_CHECKPOINT}" in {f.path for f in client.list_artifacts(run.info.run_id, "model")}


def test_sigint_at_the_audit_exits_130(outcomes: dict[str, Outcome], client: MlflowClient) -> None:
    outcome = outcomes["audit-sigint"]
    line = error_line(outcome.stderr)
    assert outcome.code == 128 + signal.SIGINT == 130, outcome.stderr[-3000:]
    run = the_stopped_run(client, "audit-sigint")
    assert line.startswith("error: SIGINT stopped the run during its audit stage")
    assert (run.info.status, run.data.tags[STOPPED_AT_TAG]) == ("KILLED", "audit")


def test_sigterm_before_the_run_opens_leaves_no_run(outcomes: dict[str, Outcome], client: MlflowClient) -> None:
    outcome = outcomes["data-unopened"]
    line = error_line(outcome.stderr)
    assert outcome.code == 143, outcome.stderr[-3000:]
    assert line == "error: SIGTERM stopped the run during its data stage; no MLflow run had been opened yet"
    assert runs_of(client, "data-unopened") == []


def test_an_error_at_a_stage_fails_the_run_and_names_the_stage(outcomes: dict[str, Outcome],
                                                               client: MlflowClient) -> None:
    outcome = outcomes["audit-error"]
    assert outcome.code == 1
    run = the_stopped_run(client, "audit-error")
    assert f"RuntimeError: {INJECTED}" in outcome.stderr
    assert f"genfair: stopped during the audit stage; MLflow run {run.info.run_id} marked FAILED" in outcome.stderr
    assert run.info.status == "FAILED"
    assert run.data.tags[STOPPED_AT_TAG] == "audit"
    assert run.data.tags["genfair.stopped"] == f"RuntimeError: {INJECTED}"


def test_no_run_is_left_running(outcomes: dict[str, Outcome], client: MlflowClient) -> None:
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'")
    assert running == [], [(r.info.run_name, r.info.status) for r in running]


# -- studies: the parent ends as its child or report does --------------------------------------------------


def _parent_and_children(client: MlflowClient, experiment: str) -> tuple[Run, list[Run]]:
    runs = runs_of(client, experiment)
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1
    return parent, children


def test_a_failing_child_fails_the_comparison_parent(outcomes: dict[str, Outcome], client: MlflowClient) -> None:
    outcome = outcomes["compare-child-error"]
    assert outcome.code == 1, outcome.stderr[-3000:]
    parent, children = _parent_and_children(client, "compare-child-error")
    assert [(child.info.status, child.data.tags[STOPPED_AT_TAG]) for child in children] == [("FAILED", "audit")]
    assert (parent.info.status, parent.data.tags[STOPPED_AT_TAG]) == ("FAILED", "children")
    assert parent.data.tags["genfair.stopped"] == f"RuntimeError: {INJECTED}"
    assert f"genfair: parent MLflow run {parent.info.run_id} marked FAILED" in outcome.stderr


def test_a_signal_during_the_report_kills_the_comparison_parent(outcomes: dict[str, Outcome],
                                                                client: MlflowClient) -> None:
    outcome = outcomes["compare-report"]
    line = error_line(outcome.stderr)
    assert outcome.code == 143, outcome.stderr[-3000:]
    parent, children = _parent_and_children(client, "compare-report")
    assert [child.info.status for child in children] == ["FINISHED"]
    assert (parent.info.status, parent.data.tags[STOPPED_AT_TAG]) == ("KILLED", "report")
    assert line == (f"error: SIGTERM stopped the run during its report stage; "
                    f"parent MLflow run {parent.info.run_id} marked KILLED")


def test_a_killed_cell_kills_the_attribution_parent(outcomes: dict[str, Outcome], client: MlflowClient,
                                                    setting: tuple[Path, list[str]]) -> None:
    """The cell (an ae: attribute needs a model with a per-image loss) keeps its trained model."""
    outcome = outcomes["attribute-child"]
    line = error_line(outcome.stderr)
    assert outcome.code == 143, outcome.stderr[-3000:]
    parent, children = _parent_and_children(client, "attribute-child")
    (child,) = children
    assert (child.info.status, child.data.tags[STOPPED_AT_TAG]) == ("KILLED", "audit")
    assert (parent.info.status, parent.data.tags[STOPPED_AT_TAG]) == ("KILLED", "children")
    kept = RUNS_DIR / child.info.run_id / BEST_CHECKPOINT
    assert line == (f"error: SIGTERM stopped the run during its audit stage; MLflow run {child.info.run_id} "
                    f"marked KILLED; parent MLflow run {parent.info.run_id} marked KILLED; the trained model is "
                    f"kept: {kept}; audit it without training again with --checkpoint {kept}")
    checkpoint = torch.load(setting[0] / kept, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] > 0 and checkpoint["state_dict"], "the trained model, not its initial weights"
