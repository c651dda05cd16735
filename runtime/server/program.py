"""What `jacc serve` hands the server: a function that builds the program's walkers and
served functions.

The server never imports the compiler (docs/architecture.md). The CLI compiles;
the server calls the loader it was given once at start and, under `--dev`, again
on every save. A program with errors is reported as `BuildFailed`, carrying what
to show the user: the CLI prints it and `/__jacc/status` serves it as JSON.

A program is its *targets*: walker classes and served functions (`def:pub`, or a
`def` with `@restspec`; runtime/function.py), in source order. Top-level names are
unique in a Jac file, so a target's name is its key everywhere in the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..function import served_function
from ..walker import Walker

__all__ = ["BuildFailed", "Loader", "Program", "ServeError", "Target", "program_in",
           "targets_of", "walkers_in"]


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


# A walker class or a served function: anything with a `__jacc_spec__` the server serves.
Target = type[Walker] | Callable


class Program(Sequence):
    """The targets of one program, in source order; a sequence of them.

    `walkers` and `functions` are the two kinds apart. Two targets with one name
    are refused (ValueError): the name is each one's key, route and channel.
    """

    def __init__(self, targets: Iterable[Target] = ()) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        seen: set[str] = set()
        for target in self.targets:
            name = target.__jacc_spec__.name
            if name in seen:
                raise ValueError(f"two targets are named `{name}`")
            seen.add(name)

    @property
    def walkers(self) -> tuple[type[Walker], ...]:
        return tuple(t for t in self.targets if t.__jacc_spec__.kind == "walker")

    @property
    def functions(self) -> tuple[Callable, ...]:
        return tuple(t for t in self.targets if t.__jacc_spec__.kind == "function")

    def __getitem__(self, index):  # type: ignore[override]
        return self.targets[index]

    def __len__(self) -> int:
        return len(self.targets)

    def __iter__(self) -> Iterator[Target]:
        return iter(self.targets)

    def __repr__(self) -> str:
        return f"Program({[t.__jacc_spec__.name for t in self.targets]})"


# Builds the program of the source at a path; raises BuildFailed if it cannot.
Loader = Callable[[Path], Sequence[Target]]


def targets_of(targets: Iterable[Target] | Mapping[str, Target]) -> Program:
    """A `Program` of walker classes and served functions given as a list, a mapping or one."""
    if isinstance(targets, Program):
        return targets
    return Program(targets.values() if isinstance(targets, Mapping) else targets)


def program_in(namespace: Iterable[object]) -> Program:
    """The walker classes and served functions among `namespace`'s values, in order (a
    module's are in source order)."""
    return Program(value for value in namespace if _is_walker(value) or served_function(value))


def walkers_in(namespace: Iterable[object]) -> list[type[Walker]]:
    """The walker classes among `namespace`'s values, in order (a module's are in source order)."""
    return [value for value in namespace if _is_walker(value)]


def _is_walker(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, Walker) and value is not Walker
