"""Real servers for the end-to-end tests: an MLflow tracking server and a throw-away PostgreSQL cluster.

Import: ``from servers import mlflow_server, postgres_cluster``. Both are context managers that
start the server on a free 127.0.0.1 port, wait until it answers, and stop it by its pid on the
way out (also when the test fails), failing the test if any of its processes outlives the stop.

PostgreSQL comes from the machine (Debian's ``postgresql`` package puts ``initdb`` and
``postgres`` in ``/usr/lib/postgresql/<version>/bin``). Its server refuses to run as root, so
as root the cluster belongs to an unprivileged account (``postgres``, which the package
creates, else ``nobody``): its folder is made in the system temporary folder and handed to that
account, and ``initdb`` and ``postgres`` run under its uid and gid (``subprocess``'s
``user``/``group``, so that the pid we hold is the server's own). :func:`find_postgres` says
why when neither the binaries nor such an account exist, and the caller skips with that reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HEALTH_TIMEOUT_S = 120.0  # an MLflow server answers in ~6-15 s on a quiet 2-core machine; generous for a busy one
POSTGRES_TIMEOUT_S = 60.0  # a fresh cluster accepts connections in about a second
STOP_TIMEOUT_S = 20.0
POSTGRES_USER = "genfair"  # the cluster's superuser (trust authentication, loopback only)
POSTGRES_DATABASE = "mlflow"
UNPRIVILEGED_ACCOUNTS = ("postgres", "nobody")  # who runs PostgreSQL when the tests run as root


@dataclass(frozen=True)
class TrackingServer:
    url: str
    folder: Path  # holds server.log (and, for SQLite, mlflow.db)
    artifacts: Path  # --artifacts-destination


@dataclass(frozen=True)
class Postgres:
    bin: Path  # initdb, postgres, pg_isready, createdb
    uid: int | None  # the account that runs it; None: the current user
    gid: int | None


@dataclass(frozen=True)
class PostgresCluster:
    url: str  # postgresql://genfair@127.0.0.1:PORT/mlflow
    port: int
    pid: int  # the postmaster
    folder: Path  # data/ and postgres.log


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _wait_for_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with code {process.returncode} before answering /health:\n"
                        f"{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer {url}/health within {HEALTH_TIMEOUT_S:.0f} s:\n{log_tail(log)}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(process: subprocess.Popen[bytes], name: str, *, signum: int = signal.SIGTERM) -> list[str]:
    """Send ``signum`` to a server's process group, SIGKILL what is left after a while; the problems seen.

    The server must have been started with ``start_new_session=True`` (it leads its own group).
    """
    problems: list[str] = []
    pgid = process.pid
    if _group_alive(pgid):
        os.killpg(pgid, signum)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        problems.append(f"{name} {process.pid} ignored {signal.Signals(signum).name} for {STOP_TIMEOUT_S:.0f} s")
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        problems.append(f"processes of {name}'s group {pgid} outlived {signal.Signals(signum).name} by "
                        f"{STOP_TIMEOUT_S:.0f} s; killed")
        os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT_S)
    return problems


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, folder: Path) -> Iterator[TrackingServer]:
    """A real ``mlflow server`` on ``backend_store_uri`` that serves artifacts from ``folder/artifacts``.

    One worker and the job runner off (it would start many more processes); artifacts go up and
    down through the server (``--artifacts-destination``), as a team's clients would use them.
    """
    artifacts = folder / "artifacts"
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = folder / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(url, process, log)
        yield TrackingServer(url=url, folder=folder, artifacts=artifacts)
    finally:
        problems = stop_group(process, "mlflow server")
    if problems:
        pytest.fail("; ".join(problems) + f"\n{log_tail(log)}")


def find_postgres() -> Postgres | str:
    """PostgreSQL's server binaries and who may run them here, or why they cannot be run (a skip reason)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    found = next((Path(path).parent for path in candidates if (Path(path).parent / "postgres").is_file()), None)
    if found is None:
        return ("no PostgreSQL server binaries (initdb and postgres in /usr/lib/postgresql/*/bin or on PATH); "
                "install Debian's postgresql package")
    if os.geteuid() != 0:
        return Postgres(bin=found, uid=None, gid=None)
    for name in UNPRIVILEGED_ACCOUNTS:
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return Postgres(bin=found, uid=account.pw_uid, gid=account.pw_gid)
    return (f"running as root, PostgreSQL refuses to start, and there is no unprivileged account to run it as "
            f"(looked for {', '.join(UNPRIVILEGED_ACCOUNTS)})")


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parts[-3]
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@contextlib.contextmanager
def postgres_cluster(postgres: Postgres) -> Iterator[PostgresCluster]:
    """A new PostgreSQL cluster holding an empty database ``mlflow``, on a free 127.0.0.1 port.

    ``initdb`` makes the cluster (superuser ``genfair``, trust authentication: it only listens
    on loopback and lives for one test module) and ``postgres`` runs it as a child of this
    process; no Unix socket, no fsync. At the end the postmaster gets SIGINT (PostgreSQL's fast
    shutdown) by its pid, and its folder (in the system temporary folder, owned by the account
    that runs the server) is removed.

    Args:
        postgres: from :func:`find_postgres`.
    """
    as_other = postgres.uid is not None
    folder = Path(tempfile.mkdtemp(prefix="genfair-postgres-"))
    try:
        if as_other:
            os.chown(folder, postgres.uid, postgres.gid)
        account = {"user": postgres.uid, "group": postgres.gid, "extra_groups": []} if as_other else {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(folder)}
        data = folder / "data"
        initdb = subprocess.run(
            [str(postgres.bin / "initdb"), "--pgdata", str(data), "--username", POSTGRES_USER, "--auth", "trust",
             "--encoding", "UTF8", "--locale", "C", "--no-sync"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False, **account)
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed ({initdb.returncode}):\n{initdb.stdout[-2000:]}\n{initdb.stderr[-2000:]}")
        port = free_port()
        log = folder / "postgres.log"
        with log.open("wb") as sink:  # opened by us: the server writes through the inherited descriptor
            process = subprocess.Popen(
                [str(postgres.bin / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off"],
                cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **account)
        try:
            _wait_for_postgres(postgres, port, process, log)
            created = subprocess.run(
                [str(postgres.bin / "createdb"), "--host", "127.0.0.1", "--port", str(port), "--username",
                 POSTGRES_USER, POSTGRES_DATABASE], capture_output=True, text=True, timeout=60, check=False)
            if created.returncode != 0:
                pytest.fail(f"createdb failed ({created.returncode}): {created.stderr}\n{log_tail(log)}")
            yield PostgresCluster(url=f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/{POSTGRES_DATABASE}",
                                  port=port, pid=process.pid, folder=folder)
        finally:
            problems = stop_group(process, "postgres", signum=signal.SIGINT)
        if problems:
            pytest.fail("; ".join(problems) + f"\n{log_tail(log)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_postgres(postgres: Postgres, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + POSTGRES_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"postgres exited with code {process.returncode} before accepting connections:\n"
                        f"{log_tail(log)}")
        ready = subprocess.run([str(postgres.bin / "pg_isready"), "--host", "127.0.0.1", "--port", str(port),
                                "--username", POSTGRES_USER, "--dbname", "postgres"],
                               capture_output=True, timeout=30, check=False)
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    pytest.fail(f"postgres did not accept connections on port {port} within {POSTGRES_TIMEOUT_S:.0f} s:\n"
                f"{log_tail(log)}")
