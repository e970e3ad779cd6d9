"""The import contract that keeps the audit core pure names every core module, and the folders show the stages."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
CORE_CONTRACT = "the audit core stays free of training, tracking, plotting, data loading and reports"


def _contract(name: str) -> dict:
    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return next(contract for contract in config["contracts"] if contract["name"] == name)


def test_the_core_contract_lists_every_module_of_the_core() -> None:
    """A new module in audit/ (outside run/ and cli/) must join the contract, or it could import anything."""
    on_disk = {f"genfair.audit.{path.stem}" for path in (REPOSITORY / "audit").glob("*.py") if path.stem != "__init__"}
    assert set(_contract(CORE_CONTRACT)["source_modules"]) == on_disk


def test_no_contract_ignores_imports() -> None:
    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert all("ignore_imports" not in contract for contract in config["contracts"])


def test_the_run_and_the_cli_are_the_only_sub_packages_of_the_audit() -> None:
    packages = {path.parent.name for path in (REPOSITORY / "audit").glob("*/__init__.py")}
    assert packages == {"run", "cli"}
