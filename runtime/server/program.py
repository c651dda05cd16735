"""What `jacc serve` hands the server: a function that builds the program's walkers.

The server never imports the compiler (docs/architecture.md). The CLI compiles;
the server calls the loader it was given once at start and, under `--dev`, again
on every save. A program with errors is reported as `BuildFailed`, carrying what
to show the user: the CLI prints it and `/__jacc/status` serves it as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..walker import Walker

__all__ = ["BuildFailed", "Loader", "ServeError", "walkers_in"]


class ServeError(Exception):
    """A reason, for the user, that serving cannot start or go on: a bad config value,
    a port in use, an unreachable backplane. The CLI prints it and exits 1."""


class BuildFailed(ServeError):
    """The program at hand cannot be served: its diagnostics, or the traceback of its top level.

    `rendered` is the text for a terminal; `diagnostics` the same problems as
    JSON objects (code, severity, message, line, column, end_line, end_column,
    help), empty when the program compiled but its top level raised.
    """

    def __init__(self, rendered: str, diagnostics: Sequence[dict] = ()) -> None:
        super().__init__(rendered)
        self.rendered = rendered
        self.diagnostics = tuple(diagnostics)


# Builds the walkers of the source at a path; raises BuildFailed if it cannot.
Loader = Callable[[Path], Sequence[type[Walker]]]


def walkers_in(namespace: Iterable[object]) -> list[type[Walker]]:
    """The walker classes among `namespace`'s values, in order (a module's are in source order)."""
    return [
        value
        for value in namespace
        if isinstance(value, type) and issubclass(value, Walker) and value is not Walker
    ]
