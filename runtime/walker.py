"""The walker base class, its spec object and the spawn semantics of docs/language.md.

A compiled walker is an ordinary Python class::

    class ChatRoom(_jacc.Walker, protocol="websocket", broadcast=True, public=True):
        message = _jacc.field("str")
        sender = _jacc.field("str", lambda: "anonymous")

        @_jacc.entry
        async def handle(self):
            _jacc.report(self, {"content": self.message})

`__init_subclass__` turns the class body into a `WalkerSpec`; `spawn` runs an
instance and returns its reports.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import sys
from dataclasses import dataclass, field as dataclass_field
from types import CodeType, CoroutineType
from typing import Any, Callable

from .lines import jac_position, jac_site, relocate

_MISSING = object()


class APIProtocol(enum.Enum):
    """How a walker is served (Jac Scale's `APIProtocol`)."""

    HTTP = "http"
    WEBSOCKET = "websocket"
    WEBHOOK = "webhook"


class Root:
    """The node every walker is spawned at. jacc has no graph: the root is a marker."""


class Disengage(BaseException):
    """Raised by `disengage;` to end a walk at once.

    A BaseException, like `SystemExit`, so that a user's `except Exception`
    around the statement cannot swallow it."""


@dataclass(frozen=True)
class Field:
    """One `has` field: its name, its declared type as written, its default, and the
    docstring written before its `has` (the field's description in /openapi.json and
    /asyncapi.json)."""

    name: str
    type: str
    default_factory: Callable[[], Any] | None = None
    doc: str | None = None

    @property
    def required(self) -> bool:
        return self.default_factory is None


@dataclass(frozen=True)
class WalkerSpec:
    """What the server needs to know about a walker, read off its class once."""

    name: str
    protocol: str = "http"
    broadcast: bool = False
    public: bool = False
    method: str = "POST"
    path: str | None = None
    fields: tuple[Field, ...] = ()
    entries: tuple[Callable, ...] = ()
    exits: tuple[Callable, ...] = ()
    abilities: tuple[Callable, ...] = ()
    is_async: bool = False
    field_names: frozenset[str] = dataclass_field(default=frozenset())
    # `@restspec(stream=True)`: each report is sent as a chunk the moment it runs.
    stream: bool = False

    @property
    def is_websocket(self) -> bool:
        return self.protocol == "websocket"

    @property
    def kind(self) -> str:
        """`walker`; a served function's spec says `function` (function.py)."""
        return "walker"


class _FieldDecl:
    """A class-body placeholder for a field, replaced by the spec at class creation."""

    __slots__ = ("type", "default_factory", "doc")

    def __init__(self, type: str, default_factory: Callable[[], Any] | None,
                 doc: str | None) -> None:
        self.type = type
        self.default_factory = default_factory
        self.doc = doc


def field(type: str, default_factory: Callable[[], Any] | None = None, *,
          doc: str | None = None) -> Any:
    """Declare a `has` field; `default_factory` runs once per instance."""
    return _FieldDecl(type, default_factory, doc)


def entry(function: Callable) -> Callable:
    """Mark a method as an entry ability."""
    function.__jacc_event__ = "entry"
    return function


def exit(function: Callable) -> Callable:  # noqa: A001 - the Jac event is called `exit`
    """Mark a method as an exit ability."""
    function.__jacc_event__ = "exit"
    return function


class Reports(list):
    """A walker's reports, in order, and beside each the Jac position of its `report`.

    `sites[i]` is (file, line) of the statement that reported `self[i]`: a server
    that cannot send a report as JSON names the line that made it. Only such a
    report needs it, so what it is made from (the frame's code, line and globals)
    is kept, and the `.jac` position worked out when asked.

    `sink`, when set, takes each report instead, with its site, the moment it is
    made: a server streaming the walker sends it on at once. The core only calls it,
    so it never needs to know who listens.
    """

    __slots__ = ("_made_at", "sink")

    def __init__(self) -> None:
        super().__init__()
        self._made_at: list[tuple[CodeType, int, dict]] = []
        self.sink: Callable[[Any, tuple[str, int]], None] | None = None

    @property
    def sites(self) -> list[tuple[str, int]]:
        return [jac_site(code, line, globals_) for code, line, globals_ in self._made_at]


def report(walker: Walker, value: Any) -> None:
    """`report X;` — append X to the walker's reports (or hand it to their `sink`)."""
    reports = walker._jacc_reports
    frame = sys._getframe(1)
    if reports.sink is not None:
        reports.sink(value, jac_position(frame))
        return
    reports.append(value)
    reports._made_at.append((frame.f_code, frame.f_lineno, frame.f_globals))


def _normalise_protocol(protocol: Any) -> str:
    if isinstance(protocol, APIProtocol):
        return protocol.value
    value = str(protocol).lower()
    return "websocket" if value == "ws" else value


class Walker:
    """Base class of every compiled walker."""

    __jacc_spec__ = WalkerSpec(name="Walker")
    _jacc_reports: Reports

    def __init_subclass__(
        cls,
        protocol: Any = "http",
        broadcast: bool = False,
        public: bool = False,
        method: str = "POST",
        path: str | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        fields = _collect_fields(cls)
        entries, exits = _collect_abilities(cls)
        cls.__jacc_spec__ = WalkerSpec(
            name=cls.__name__,
            protocol=_normalise_protocol(protocol),
            broadcast=broadcast,
            public=public,
            method=method.upper(),
            path=path,
            fields=fields,
            entries=entries,
            exits=exits,
            abilities=entries + exits,
            is_async=any(inspect.iscoroutinefunction(a) for a in entries + exits),
            field_names=frozenset(f.name for f in fields),
            stream=stream,
        )

    def __init__(self, **values: Any) -> None:
        spec = self.__jacc_spec__
        if not spec.field_names.issuperset(values):  # one C call for the usual case
            unexpected = next(name for name in values if name not in spec.field_names)
            raise TypeError(f"{spec.name}() got an unexpected field {unexpected!r}")
        for f in spec.fields:
            value = values.get(f.name, _MISSING)
            if value is _MISSING:
                if f.default_factory is None:
                    raise TypeError(f"{spec.name}() missing required field {f.name!r}")
                value = f.default_factory()
            setattr(self, f.name, value)
        self._jacc_reports = Reports()

    def __repr__(self) -> str:
        values = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__jacc_spec__.fields)
        return f"{type(self).__name__}({values})"


def _collect_fields(cls: type) -> tuple[Field, ...]:
    """Fields of the bases first, then this class's in declaration order."""
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__jacc_spec__", Walker.__jacc_spec__).fields:
            inherited[f.name] = f
    for name, value in list(vars(cls).items()):
        if isinstance(value, _FieldDecl):
            inherited[name] = Field(name, value.type, value.default_factory, value.doc)
            # The instance attribute set in __init__ must not be shadowed.
            delattr(cls, name)
    return tuple(inherited.values())


def _collect_abilities(cls: type) -> tuple[tuple[Callable, ...], tuple[Callable, ...]]:
    """Abilities in declaration order, base walkers' first; an override keeps its place."""
    names: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            event = getattr(value, "__jacc_event__", None)
            if event is not None:
                names.setdefault(name, event)
    entries = tuple(getattr(cls, n) for n, e in names.items() if e == "entry")
    exits = tuple(getattr(cls, n) for n, e in names.items() if e == "exit")
    return entries, exits


async def spawn(walker: Walker) -> list:
    """Run a walker at the root: entry abilities, then exit abilities; return its reports.

    Works for async and non-async walkers alike; from synchronous code use `run`.
    Whatever the walker raises leaves with its traceback at the `.jac` lines,
    BaseExceptions too (`SystemExit`, a `CancelledError`): telling a failure
    from a cancellation is the caller's business, which knows who cancelled.
    """
    try:
        for ability in walker.__jacc_spec__.abilities:
            result = ability(walker)
            # A coroutine (an `async can`) or None (the others) is the rule; the
            # type comparison spares `isawaitable` for them.
            if type(result) is CoroutineType or (result is not None and inspect.isawaitable(result)):
                await result
    except Disengage:
        pass
    except BaseException as exc:
        raise relocate(exc)
    return walker._jacc_reports


def walk(walker: Walker) -> list:
    """Run a non-async walker in the calling thread, without an event loop; return its reports.

    The same semantics as `spawn`, for a walker none of whose abilities is
    async: the server calls it in a worker thread.
    """
    spec = walker.__jacc_spec__
    if spec.is_async:
        raise TypeError(f"walker {spec.name} has async abilities: use `await spawn(walker)`")
    try:
        for ability in spec.abilities:
            ability(walker)
    except Disengage:
        pass
    except BaseException as exc:
        raise relocate(exc)
    return walker._jacc_reports


def run(walker: Walker) -> list:
    """Run a walker to completion from synchronous code and return its reports."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running: the normal case
    else:
        raise RuntimeError("run() was called inside an event loop: use `await spawn(walker)`")
    if not walker.__jacc_spec__.is_async:
        return walk(walker)  # no event loop needed
    return asyncio.run(spawn(walker))
