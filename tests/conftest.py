"""Fixtures shared by the unit tests (the end-to-end ones have tests/e2e/conftest.py)."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path
from typing import Callable

import pytest


def _import_path(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def import_built() -> Callable[[Path, str], types.ModuleType]:
    """`import_built(path, name)`: import a module written by `jacc build`, as a user would."""
    return _import_path
