"""Served functions: a module-level `def:pub` (or a `def` with `@restspec`) and its spec.

A compiled served function stays an ordinary Python function; codegen decorates it
with `function(...)`, which reads its signature once and attaches a `FunctionSpec`
as `__jacc_spec__`, as a walker class carries a `WalkerSpec`::

    @_jacc.function(protocol="websocket", public=True)
    def ws_echo(message: "str", client_id: "str" = "anonymous") -> "dict":
        return {"echo": message, "client_id": client_id}

    ws_echo(message="hi")                 # still a plain call
    ws_echo.__jacc_spec__.fields          # (Field("message", "str"), Field("client_id", ...))

The parameters are the fields a request carries (docs/language.md, "Served
functions"). A generator function (`yield`, sync or async) is a stream.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from .walker import Field, _normalise_protocol

__all__ = ["FunctionSpec", "function", "served_function"]

# Return annotations that promise a stream even when the function itself does not
# `yield` but returns a generator made elsewhere (the shape Jac Scale's guide uses).
_STREAM_RETURNS = re.compile(
    r"^\s*(?:typing\.|collections\.abc\.)?(?:Async)?(?:Generator|Iterator)\b")


@dataclass(frozen=True)
class FunctionSpec:
    """What the server needs to know about a served function, read off it once.

    The same attributes as a `WalkerSpec` where they mean the same thing, so that
    the server's checks, routes and documents treat both alike.
    """

    name: str
    protocol: str = "http"
    broadcast: bool = False
    public: bool = False
    method: str = "POST"
    path: str | None = None
    fields: tuple[Field, ...] = ()
    is_async: bool = False
    # A generator function (or one declared to return a generator): a stream of chunks.
    stream: bool = False
    # The return annotation as written, "" when there is none.
    returns: str = ""
    field_names: frozenset[str] = dataclass_field(default=frozenset())

    @property
    def is_websocket(self) -> bool:
        return self.protocol == "websocket"

    @property
    def kind(self) -> str:
        return "function"


def function(
    protocol: Any = "http",
    broadcast: bool = False,
    public: bool = False,
    method: str = "POST",
    path: str | None = None,
) -> Callable[[Callable], Callable]:
    """Mark a module-level function as served; returns it unchanged but for `__jacc_spec__`."""

    def serve(target: Callable) -> Callable:
        target.__jacc_spec__ = _spec_of(target, protocol, broadcast, public, method, path)
        return target

    return serve


def served_function(value: object) -> bool:
    """Whether `value` is a function marked by `function(...)`."""
    return callable(value) and isinstance(getattr(value, "__jacc_spec__", None), FunctionSpec)


def _spec_of(target: Callable, protocol: Any, broadcast: bool, public: bool, method: str,
             path: str | None) -> FunctionSpec:
    signature = inspect.signature(target)
    fields = tuple(_field(parameter, target) for parameter in signature.parameters.values())
    returns = _annotation_text(signature.return_annotation, missing="")
    generator = inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)
    return FunctionSpec(
        name=target.__name__,
        protocol=_normalise_protocol(protocol),
        broadcast=broadcast,
        public=public,
        method=method.upper(),
        path=path,
        fields=fields,
        is_async=inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target),
        stream=generator or bool(_STREAM_RETURNS.match(returns)),
        returns=returns,
        field_names=frozenset(f.name for f in fields),
    )


def _field(parameter: inspect.Parameter, target: Callable) -> Field:
    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD,
                          parameter.POSITIONAL_ONLY):
        # A request is one JSON object: only named parameters can be filled from it.
        raise TypeError(f"{target.__name__}(): a served function takes named parameters only, "
                        f"not {parameter}")
    type_text = _annotation_text(parameter.annotation)
    if parameter.default is inspect.Parameter.empty:
        return Field(parameter.name, type_text)
    default = parameter.default
    # Python evaluates a parameter's default once; the field hands out that same value.
    return Field(parameter.name, type_text, lambda: default)



def _annotation_text(annotation: Any, missing: str = "any") -> str:
    """An annotation as the type model reads it: compiled code keeps annotations as
    strings already; a Python caller may hand a class (`int`, not `'int'`)."""
    if annotation is inspect.Parameter.empty:
        return missing
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)
