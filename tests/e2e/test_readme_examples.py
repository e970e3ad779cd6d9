"""The README's "Audit your own model" examples, run as written (from a folder laid out like the repository).

``audit ...`` lines run in-process (the command's own entry point, without a new interpreter's
start-up), ``python ...`` lines and the Python block in a subprocess of this interpreter.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import invoke

REPOSITORY = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- own-model-examples:begin -->", "<!-- own-model-examples:end -->"


def _blocks(language: str) -> list[str]:
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = text[text.index(BEGIN):text.index(END)]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _commands() -> list[list[str]]:
    lines = [line.split("#", 1)[0].strip() for block in _blocks("bash") for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_section_has_the_three_ways_in() -> None:
    commands = _commands()
    assert any("--outputs" in command for command in commands)
    assert any(arg.endswith(":make_model") for command in commands for arg in command)
    assert any(arg.endswith(".pt") for command in commands if command[0] == "audit" for arg in command)
    assert "audit_model(" in _blocks("python")[0]


def test_the_readme_examples_run_as_written(workdir: Path) -> None:
    (workdir / "examples").symlink_to(REPOSITORY / "examples")
    for command in _commands():
        if command[0] == "audit":
            code, out, err = invoke(*command[1:])
            assert code == 0, f"{shlex.join(command)}: {err}"
            assert "MLflow run" in out
        elif command[0] == "python":
            subprocess.run([sys.executable, *command[1:]], cwd=workdir, check=True, capture_output=True)
        else:
            pytest.fail(f"unexpected command in the README's examples: {shlex.join(command)}")
    done = subprocess.run([sys.executable, "-c", _blocks("python")[0]], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "mse_error" in done.stdout
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    runs = [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]
    assert sorted(run.data.tags["genfair.model"] for run in runs) == ["Darken", "bilinear", "make_model", "my_model"]
    assert all(run.info.status == "FINISHED" for run in runs)
