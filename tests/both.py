"""A program compiled in memory (as `jacc serve` does) and built (`jacc build`, then
imported): tests of what a program means run it both ways."""

from __future__ import annotations

import importlib.util
import itertools
import types
from pathlib import Path

from jacc.compiler import build_file, load_module

_names = itertools.count()


def both(text: str, folder: Path) -> list[types.ModuleType]:
    """The module of `text` compiled in memory, and the module `jacc build` wrote."""
    number = next(_names)
    source = folder / f"app_{number}.jac"
    source.write_text(text, encoding="utf-8")
    in_memory = load_module(source, f"in_memory_{number}")
    built = build_file(source, folder / f"built_{number}.py").path
    spec = importlib.util.spec_from_file_location(f"built_{number}", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [in_memory, module]
