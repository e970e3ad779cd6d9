"""A team's store on PostgreSQL, and several audits at once (issue #19, items 1 and 2).

The module makes a throw-away PostgreSQL cluster (``initdb`` in a temporary folder, ``postgres``
on a free 127.0.0.1 port; as root both run as an unprivileged account, see ``servers.py``) and
starts one ``mlflow server --backend-store-uri postgresql://... --artifacts-destination DIR`` on
it. Against that server, as a team would use it (through the command's own entry point, in
this test's process: a separate one proves nothing more here):

- ``audit run --model pca`` finishes, and its run reads back through ``MlflowClient``, its
  status and metrics also through PostgreSQL itself;
- ``audit compare --models pca,bicubic`` logs a finished parent and two finished children;
- ``audit check`` exits 0 on a loose policy and 1 on one nobody can pass, logging each verdict.

Then four identical ``audit run --model pca`` processes start at once, once against the
PostgreSQL-backed server and once against one new local SQLite store (``--tracking-uri
sqlite:///...``, so the four also race to create it). Every process exits 0, the experiment
holds exactly four runs, all FINISHED, each of them open while another one was (the writes
really were concurrent, which the test checks from the runs' start and end times), and each
run has the metric keys, params and artifact files of the same audit run alone (the first
one above). Four writers, not the issue's eight: what the scenario proves is that several
processes creating the store and the experiment, opening their runs and logging metrics,
params and artifacts into it at the same time all succeed. That needs writers whose runs
overlap, which the overlap check shows for four (on SQLite the store's lock staggers the
starts by ~1 s, and 3 runs are still open at once; against the server all four are); on 2
cores eight only queue twice as long, each paying ~9 s of imports. The audits run on 464
synthetic 16x16 faces (the set ``test_faults.py`` uses) with one thread each (4 processes
share 2 cores).
The finalisers stop the MLflow server, then PostgreSQL, by their pids, and fail if any process
of theirs survives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from cli_runner import invoke
from in_process import audit_here
from genfair.datasets.synthetic import SyntheticFacesConfig, ensure_synthetic_faces
from servers import PostgresCluster, TrackingServer, find_postgres, mlflow_server, postgres_cluster

AUDIT = str(Path(sys.executable).with_name("audit"))
SMALL_FACES = SyntheticFacesConfig(image_size=16, images_per_subject=16, train_lighter_male=8, train_lighter_female=3,
                                   train_darker_male=4, train_darker_female=2, test_subjects_per_group=2)
TINY = ["--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--attributes", "gender,skin_tone"]
AT_ONCE = 4  # concurrent writers: enough to overlap (checked), see the module's docstring
ONE_AUDIT = ["run", "--model", "pca", "--classifier-epochs", "0", *TINY]  # the run alone, and each of the four
RUN_TIMEOUT_S = 600  # a tiny audit takes ~10 s alone and ~20 s as one of four on 2 cores
# Statistics as the existing server test checks them; with 2 people a group, every group counts.
LOOSE_POLICY = ("min_subjects = 2\n[statistics]\nn_resamples = 100\nn_permutations = 99\n"
                "[metrics.mse_error]\nmax_ratio = 100.0\n")
IMPOSSIBLE_POLICY = ("min_subjects = 2\njudge = \"estimate\"\n[statistics]\nn_resamples = 100\nn_permutations = 99\n"
                     "[metrics.mse_error]\nmax_worst = 1e-12\n")


# -- servers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """A new PostgreSQL cluster with an empty database ``mlflow``, stopped by its pid at the end."""
    found = find_postgres()
    if isinstance(found, str):
        pytest.skip(found)
    with postgres_cluster(found) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def team_server(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """``mlflow server`` with its runs in PostgreSQL and its artifacts in a temporary folder it serves."""
    try:
        import psycopg  # noqa: F401  (the server's PostgreSQL driver: genfair's dev extra)
    except ImportError:
        pytest.fail("psycopg is not installed, so MLflow cannot open a postgresql:// store: run `make setup`")
    with mlflow_server(postgres.url, tmp_path_factory.mktemp("team-server")) as server:
        yield server


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces(cache_dir: Path) -> list[str]:
    return ["--manifest", str(ensure_synthetic_faces(SMALL_FACES, cache_dir))]


@pytest.fixture(scope="module")
def audit_env(cache_dir: Path) -> dict[str, str]:
    """The environment of an ``audit`` subprocess: the session's dataset cache, one thread, no tracking URI."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env.update(GENFAIR_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_id_from(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]


def artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    files: set[str] = set()
    for entry in client.list_artifacts(run_id, path):
        files |= artifact_files(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return files


def postgres_rows(postgres: PostgresCluster, query: str, *args: object) -> list[tuple]:
    """Rows read from the cluster itself, past MLflow."""
    import psycopg

    with psycopg.connect(postgres.url) as connection:
        return connection.execute(query, args).fetchall()


# -- item 1: run, compare, check ---------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """What one run holds: its metrics, param keys and artifact files."""

    metrics: dict[str, float]
    params: frozenset[str]
    files: frozenset[str]


def named(files: frozenset[str]) -> frozenset[str]:
    """The files but the images of logged tables, which MLflow names with a fresh UUID in every run."""
    return frozenset(path for path in files if not path.startswith("table_images/"))


def logged(client: MlflowClient, run_id: str) -> Logged:
    run = client.get_run(run_id)
    return Logged(metrics=dict(run.data.metrics), params=frozenset(run.data.params),
                  files=frozenset(artifact_files(client, run_id)))


@pytest.fixture(scope="module")
def team_run(team_server: TrackingServer, faces: list[str], cache_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Logged]:
    """One audit logged to the server, alone: its run id, and what it logged (read before any check adds to it)."""
    folder = tmp_path_factory.mktemp("team-run")
    code, stdout, stderr = audit_here([*ONE_AUDIT, "--experiment", "team", *faces, "--tracking-uri", team_server.url],
                                      cwd=folder, cache_dir=cache_dir, threads=1)
    assert code == 0, f"audit run failed ({code}):\n{stderr[-4000:]}"
    assert f"in {team_server.url}" in stdout
    assert not (folder / "mlflow.db").exists() and not (folder / "mlruns").exists(), "nothing is logged locally"
    run_id = run_id_from(stdout)
    return run_id, logged(MlflowClient(tracking_uri=team_server.url), run_id)


def test_a_run_lands_in_postgres_and_reads_back(team_server: TrackingServer, postgres: PostgresCluster,
                                                team_run: tuple[str, Logged], tmp_path: Path) -> None:
    run_id, alone = team_run
    client = MlflowClient(tracking_uri=team_server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["genfair.model"] == "pca"
    for key in ("test/mse_error", "group/gender_x_skin_tone/female_darker/mse_error", "val/loss"):
        assert key in alone.metrics, key
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    assert {"audit/per_image.parquet", "audit/per_group.csv", "figures/error_by_group.png",
            "model/model.ckpt", "tables/group_intervals.json"} <= alone.files
    assert list(team_server.artifacts.rglob("per_image.parquet")), "stored under --artifacts-destination"

    # The run is in PostgreSQL itself: its status and every metric, read past MLflow.
    assert postgres_rows(postgres, "SELECT status FROM runs WHERE run_uuid = %s", run_id) == [("FINISHED",)]
    stored = dict(postgres_rows(postgres, "SELECT key, value FROM latest_metrics WHERE run_uuid = %s", run_id))
    assert stored.keys() == run.data.metrics.keys() and len(stored) > 50
    # An independent number: the mean of the per-image errors it uploaded.
    per_image = pd.read_parquet(client.download_artifacts(run_id, "audit/per_image.parquet", str(tmp_path)))
    assert per_image["subject"].nunique() == 8, "2 test people in each of 4 groups"
    assert stored["test/mse_error"] == pytest.approx(per_image["mse_error"].mean(), rel=1e-6)


def test_compare_logs_a_parent_and_its_children_to_postgres(team_server: TrackingServer, faces: list[str],
                                                           cache_dir: Path, tmp_path: Path) -> None:
    code, _, stderr = audit_here(["compare", "--models", "pca,bicubic", "--epochs", "1", "--scale", "2",
                                  "--classifier-epochs", "0", "--perplexity", "5", "--experiment", "zoo",
                                  "--out", "report", *faces, *TINY, "--tracking-uri", team_server.url],
                                 cwd=tmp_path, cache_dir=cache_dir, threads=1)
    assert code == 0, f"audit compare failed ({code}):\n{stderr[-4000:]}"
    client = MlflowClient(tracking_uri=team_server.url)
    runs = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
    parents = [run for run in runs if "genfair.compare" in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    children = {run.data.tags["genfair.model"]: run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent}
    assert set(children) == {"pca", "bicubic"} and len(runs) == 3
    assert all(run.info.status == "FINISHED" for run in children.values())
    assert {"report/report.html", "report/report.md"} <= artifact_files(client, parent)
    table = pd.read_csv(tmp_path / "report" / "comparison.csv").set_index("model")
    for model, run in children.items():
        assert table.loc[model, "run_id"] == run.info.run_id
        assert table.loc[model, "error"] == pytest.approx(run.data.metrics["test/mse_error"], rel=1e-6)
        assert "audit/per_image.parquet" in artifact_files(client, run.info.run_id, "audit")


def test_check_exits_by_its_verdict_and_logs_it_to_postgres(team_server: TrackingServer, team_run: tuple[str, Logged],
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id, _ = team_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=team_server.url)
    for name, policy, exit_code, verdict in (("loose", LOOSE_POLICY, 0, "pass"),
                                             ("impossible", IMPOSSIBLE_POLICY, 1, "fail")):
        (tmp_path / f"{name}.toml").write_text(policy)
        code, stdout, stderr = invoke("check", "--run", run_id, "--policy", f"{name}.toml",
                                      "--tracking-uri", team_server.url)
        assert code == exit_code, f"{name}: {stdout}\n{stderr}"
        run = client.get_run(run_id)
        assert run.data.tags["genfair.check.verdict"] == verdict, name
        assert (run.data.metrics["check/fail"] == 0) == (verdict == "pass"), name
        assert "check/rules.csv" in artifact_files(client, run_id, "check")
    assert not (tmp_path / "mlflow.db").exists(), "the check wrote nothing locally"


# -- item 2: several audits at once ------------------------------------------------------------------


@pytest.fixture(scope="module")
def alone(request: pytest.FixtureRequest, faces: list[str], cache_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """What the audit the four repeat logs when it runs alone: the team run's, or without PostgreSQL,
    one run into a SQLite store of its own (so the SQLite case runs wherever the tests do)."""
    if not isinstance(find_postgres(), str):
        return request.getfixturevalue("team_run")[1]
    folder = tmp_path_factory.mktemp("alone")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code, stdout, stderr = audit_here([*ONE_AUDIT, *faces, "--tracking-uri", uri], cwd=folder, cache_dir=cache_dir,
                                      threads=1)
    assert code == 0, f"audit run failed ({code}):\n{stderr[-4000:]}"
    return logged(MlflowClient(uri), run_id_from(stdout))


@pytest.mark.parametrize("store", ["postgresql-server", "sqlite"])
def test_audits_at_once_all_finish_with_everything_logged(
    store: str, alone: Logged, faces: list[str], audit_env: dict[str, str], tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    assert len(alone.metrics) > 50 and "audit/per_image.parquet" in alone.files, "a complete audit to compare with"
    if store == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # new: the four also race to create it
    else:
        uri = request.getfixturevalue("team_server").url
    processes, logs = [], []
    try:
        for number in range(AT_ONCE):
            # files, not pipes: nobody reads while the test waits, and a full pipe would block the run
            out, err = (open(tmp_path / f"audit-{number}.{name}", "w+") for name in ("out", "err"))  # noqa: SIM115
            logs.append((out, err))
            processes.append(subprocess.Popen([AUDIT, *ONE_AUDIT, "--experiment", "at-once", *faces, "--tracking-uri",
                                               uri], cwd=tmp_path, env=audit_env, stdout=out, stderr=err, text=True))
        for process in processes:
            process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = []
    for process, (out, err) in zip(processes, logs, strict=True):
        out.seek(0)
        err.seek(0)
        outputs.append((process.returncode, out.read(), err.read()))
        out.close()
        err.close()
    for number, (code, _, stderr) in enumerate(outputs):
        assert code == 0, f"audit {number} of {AT_ONCE} exited {code}:\n{stderr[-3000:]}"
    run_ids = {run_id_from(stdout) for _, stdout, _ in outputs}
    assert len(run_ids) == AT_ONCE

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("at-once").experiment_id], max_results=100)
    assert {run.info.run_id for run in runs} == run_ids, "no run lost, none left over"
    assert [run.info.status for run in runs] == ["FINISHED"] * AT_ONCE
    # at once, not one after another: every run was open (logging) while another one was
    spans = {run.info.run_id: (run.info.start_time, run.info.end_time) for run in runs}
    for run_id, (start, end) in spans.items():
        assert any(other < end and start < other_end for key, (other, other_end) in spans.items() if key != run_id), \
            f"run {run_id} was open alone, from {start} to {end} (ms): {sorted(spans.values())}"
    for run_id in sorted(run_ids):
        got = logged(client, run_id)
        assert len(got.metrics) == len(alone.metrics) and got.metrics.keys() == alone.metrics.keys(), run_id
        assert got.params == alone.params, run_id
        assert len(got.files) == len(alone.files) and named(got.files) == named(alone.files), run_id
        # the same data, seed and model: the same numbers, whoever else was logging at the time
        assert got.metrics["test/mse_error"] == pytest.approx(alone.metrics["test/mse_error"], rel=1e-6)
