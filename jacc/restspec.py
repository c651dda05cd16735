"""`@restspec(...)`: how a walker or a function is served, read off its decorator.

Shared by the checker (which reports every bad argument) and codegen (which
turns a valid one into class keywords). jacc reads the spec when it compiles, so
its values must be literals it can read: `APIProtocol.WEBSOCKET` (or the name
`APIProtocol` was imported as), a string, `True` or `False`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from difflib import get_close_matches

from . import nodes as n
from .diagnostics import Diagnostic
from .source import Span

RESTSPEC = "restspec"
API_PROTOCOL = "APIProtocol"
JAC_NAMES = ("Root", API_PROTOCOL, RESTSPEC)  # built into Jac: no Python import needed
JAC_MODULES = ("jaclang",)  # where programs written for Jac import them from
PROTOCOLS = {"HTTP": "http", "WEBSOCKET": "websocket"}
PROTOCOL_STRINGS = {"http": "http", "websocket": "websocket", "ws": "websocket"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
KEYWORDS = ("protocol", "broadcast", "method", "path", "stream")
# Keywords whose value is a boolean literal (E0106).
FLAGS = ("broadcast", "stream")


@dataclass(frozen=True)
class RestSpec:
    protocol: str | None = "http"  # None: not a value jacc can read (E0110 says so)
    broadcast: bool = False
    method: str | None = None
    path: str | None = None
    # A walker's reports sent as chunks as they happen (docs/language.md, "Streams").
    stream: bool = False


def jac_aliases(module: n.Module) -> dict[str, str]:
    """Each name the module uses for a Jac builtin, and which builtin it is:
    `import from jaclang.runtimelib.server { APIProtocol as AP }` adds `AP`."""
    aliases = {name: name for name in JAC_NAMES}
    for element in module.body:
        if isinstance(element, n.ImportFrom) and element.module.split(".")[0] in JAC_MODULES:
            for item in element.names:
                if item.name in JAC_NAMES and item.alias:
                    aliases[item.alias] = item.name
    return aliases


def restspec_names(aliases: dict[str, str]) -> frozenset[str]:
    return frozenset(name for name, builtin in aliases.items() if builtin == RESTSPEC)


def is_restspec(decorator: n.Decorator, aliases: dict[str, str]) -> bool:
    expr = decorator.expr.func if isinstance(decorator.expr, n.Call) else decorator.expr
    return isinstance(expr, n.Name) and aliases.get(expr.id) == RESTSPEC


def has_restspec(decorators: tuple[n.Decorator, ...], aliases: dict[str, str]) -> bool:
    return any(is_restspec(d, aliases) for d in decorators)


def read_restspec(decorators: tuple[n.Decorator, ...],
                  aliases: dict[str, str]) -> tuple[RestSpec, list[Diagnostic]]:
    """The spec of a walker's (or a function's) decorators, and what is wrong with them."""
    spec = RestSpec()
    problems: list[Diagnostic] = []
    for decorator in decorators:
        if not is_restspec(decorator, aliases):
            continue
        call = decorator.expr
        if not isinstance(call, n.Call):
            continue  # a bare `@restspec` keeps every default
        for arg in call.args:
            problems.append(Diagnostic("E0103", "`@restspec` takes keyword arguments only",
                                       arg.span, help="write `protocol=...`, `broadcast=...`"))
        seen: set[str] = set()
        for keyword in call.keywords:
            if keyword.name is None or keyword.name not in KEYWORDS:
                problems.append(_unknown_keyword(keyword))
                continue
            if keyword.name in seen:
                problems.append(Diagnostic("E0103", f"`{keyword.name}` is given twice",
                                           _name_span(keyword)))
            seen.add(keyword.name)
            spec, problem = _apply(spec, keyword, aliases)
            if problem:
                problems.append(problem)
    return spec, problems


def _unknown_keyword(keyword: n.Keyword) -> Diagnostic:
    name = keyword.name or "**"
    close = get_close_matches(name, KEYWORDS, n=1)
    help_ = f"did you mean `{close[0]}`?" if close else "expected one of " + ", ".join(
        f"`{k}`" for k in KEYWORDS)
    return Diagnostic("E0103", f"unknown `@restspec` argument `{name}`", _name_span(keyword),
                      help=help_)


def _name_span(keyword: n.Keyword) -> Span:
    """`name` of `name=value` (all of `**mapping`)."""
    span = keyword.span
    if keyword.name is None:
        return span
    return Span(span.line, span.column, span.line, span.column + len(keyword.name) - 1)


def _apply(spec: RestSpec, keyword: n.Keyword,
           aliases: dict[str, str]) -> tuple[RestSpec, Diagnostic | None]:
    value = keyword.value
    if keyword.name == "protocol":
        return _protocol(spec, value, aliases)
    if keyword.name in FLAGS:
        if isinstance(value, n.Constant) and isinstance(value.value, bool):
            return _replace(spec, **{keyword.name: value.value}), None
        return spec, Diagnostic("E0106", f"`{keyword.name}` must be `True` or `False`",
                                value.span, help="jacc reads `@restspec` when it compiles: "
                                f"write `{keyword.name}=True` or `{keyword.name}=False`")
    if keyword.name == "method":
        text = _method_text(value)
        if text is None:
            return spec, _unreadable("method", value, "`method=\"GET\"` (or " + ", ".join(
                METHODS[1:]) + "), or `HTTPMethod.GET`")
        if text.upper() not in METHODS:
            return spec, Diagnostic("E0105", f"unknown HTTP method `{text}`", value.span,
                                    help="expected one of " + ", ".join(METHODS))
        return _replace(spec, method=text.upper()), None
    if isinstance(value, n.Constant) and isinstance(value.value, str) and value.value.startswith("/"):
        return _replace(spec, path=value.value), None
    return spec, Diagnostic("E0109", "`path` must be a string starting with `/`", value.span)


def _protocol(spec: RestSpec, value: n.Expr,
              aliases: dict[str, str]) -> tuple[RestSpec, Diagnostic | None]:
    if isinstance(value, n.Attribute) and isinstance(value.value, n.Name) \
            and aliases.get(value.value.id) == API_PROTOCOL:
        if value.attr == "WEBHOOK":
            return spec, Diagnostic("E0108", "`APIProtocol.WEBHOOK` is not served by jacc",
                                    value.span, help="use `APIProtocol.HTTP` or "
                                    "`APIProtocol.WEBSOCKET`")
        if value.attr in PROTOCOLS:
            return _replace(spec, protocol=PROTOCOLS[value.attr]), None
        return spec, _unknown_protocol(f"{value.value.id}.{value.attr}", value)
    if isinstance(value, n.Constant) and isinstance(value.value, str):
        if value.value.lower() in PROTOCOL_STRINGS:
            protocol = PROTOCOL_STRINGS[value.value.lower()]
            return _replace(spec, protocol=protocol), None
        if value.value.lower() == "webhook":
            return spec, Diagnostic("E0108", "the webhook protocol is not served by jacc",
                                    value.span)
        return spec, _unknown_protocol(value.value, value)
    return _replace(spec, protocol=None), _unreadable(
        "protocol", value, "`protocol=APIProtocol.WEBSOCKET` or `APIProtocol.HTTP` (or the "
        "name `APIProtocol` is imported as), or one of \"http\", \"websocket\", \"ws\"")


def _unknown_protocol(text: str, value: n.Expr) -> Diagnostic:
    return Diagnostic("E0104", f"unknown protocol `{text}`", value.span,
                      help="expected `APIProtocol.HTTP`, `APIProtocol.WEBSOCKET`, "
                      "\"http\", \"websocket\" or \"ws\"")


def _unreadable(keyword: str, value: n.Expr, write: str) -> Diagnostic:
    return Diagnostic("E0110", f"`{keyword}` must be written out for jacc to read it",
                      value.span, help=f"jacc reads `@restspec` when it compiles, not when "
                      f"the program runs: write {write}")


def _method_text(value: n.Expr) -> str | None:
    if isinstance(value, n.Constant) and isinstance(value.value, str):
        return value.value
    if isinstance(value, n.Attribute) and isinstance(value.value, n.Name):
        return value.attr  # `HTTPMethod.GET`, as Jac's examples write it
    return None


def _replace(spec: RestSpec, **changes) -> RestSpec:
    return replace(spec, **changes)
