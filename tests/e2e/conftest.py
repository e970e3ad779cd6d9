"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder holding the MLflow store, with the session's dataset cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENFAIR_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
