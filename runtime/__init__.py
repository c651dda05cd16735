"""jacc's runtime: everything a module built by `jacc build` needs, and nothing else.

Generated code does `import jacc_runtime as _jacc` and uses only the names below.
The server lives beside it (`jacc_runtime.server`) and is never imported from here,
so a built module runs where only this package is installed.
"""

from __future__ import annotations

from .function import FunctionSpec, function
from .lambdas import make_lambda
from .walker import (
    APIProtocol,
    Disengage,
    Field,
    Root,
    Walker,
    WalkerSpec,
    entry,
    exit,
    field,
    report,
    run,
    spawn,
)

__all__ = [
    "APIProtocol",
    "Disengage",
    "Field",
    "FunctionSpec",
    "Root",
    "Walker",
    "WalkerSpec",
    "entry",
    "exit",
    "field",
    "function",
    "make_lambda",
    "report",
    "run",
    "spawn",
]
