"""Suite-wide fixtures and the opt-in markers (`slow`, `gpu`)."""

from __future__ import annotations

from pathlib import Path

import pytest

LONDON_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "london-faces"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="also run tests marked gpu (needs CUDA)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker in ("slow", "gpu"):
        if config.getoption(f"--run-{marker}"):
            continue
        skip = pytest.mark.skip(reason=f"opt in with --run-{marker}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def london_faces() -> Path:
    """The shared real-photo test set (read in place, never copied into the repository)."""
    manifest = LONDON_FACES / "manifest.csv"
    if not manifest.exists():
        pytest.skip(f"shared test photos not found at {LONDON_FACES}")
    return manifest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset cache for the whole session, so generated faces are made once."""
    return tmp_path_factory.mktemp("genfair-cache")
