"""The layers of docs/architecture.md hold: the import-linter contracts in
pyproject.toml pass, and the contract on the runtime core names every core module."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_core_contract_names_every_core_module() -> None:
    # A new module in runtime/ outside server/ is core; the contract must cover it.
    core = {"jacc_runtime"} | {
        f"jacc_runtime.{path.stem}"
        for path in (REPO / "runtime").glob("*.py") if path.stem != "__init__"
    }
    contract = _contracts()["The runtime core imports only the standard library"]
    assert set(contract["source_modules"]) == core


def test_every_runtime_package_ships() -> None:
    # pyproject lists packages explicitly; a subpackage missing there is missing from the wheel.
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = set(config["tool"]["setuptools"]["packages"])
    found = {
        "jacc_runtime" + "".join(f".{part}" for part in init.parent.relative_to(REPO / "runtime").parts)
        for init in (REPO / "runtime").rglob("__init__.py")
    }
    assert found <= shipped
