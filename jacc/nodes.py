"""The Jac AST: small frozen dataclasses, each with the span it came from.

Built by `lower`, read by `checker` and `codegen`. Expressions follow Python's
shape closely so that codegen is a direct translation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator, Union

from .source import Span


@dataclass(frozen=True, slots=True)
class Node:
    span: Span


# ------------------------------------------------------------------ expressions


@dataclass(frozen=True, slots=True)
class Name(Node):
    id: str


@dataclass(frozen=True, slots=True)
class SelfRef(Node):
    pass


@dataclass(frozen=True, slots=True)
class Constant(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class FormattedValue(Node):
    value: Expr
    conversion: str | None  # "r", "s", "a"
    format_spec: FString | None


@dataclass(frozen=True, slots=True)
class FString(Node):
    parts: tuple[str | FormattedValue, ...]


@dataclass(frozen=True, slots=True)
class BadString(Node):
    """A string literal Python would refuse; the checker reports it."""

    message: str


@dataclass(frozen=True, slots=True)
class Attribute(Node):
    value: Expr
    attr: str
    attr_span: Span


@dataclass(frozen=True, slots=True)
class Subscript(Node):
    value: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Slice(Node):
    lower: Expr | None
    upper: Expr | None
    step: Expr | None


@dataclass(frozen=True, slots=True)
class Starred(Node):
    value: Expr


@dataclass(frozen=True, slots=True)
class Keyword(Node):
    name: str | None  # None for **mapping
    value: Expr


@dataclass(frozen=True, slots=True)
class Call(Node):
    func: Expr
    args: tuple[Expr, ...]  # Starred for *args
    keywords: tuple[Keyword, ...]


@dataclass(frozen=True, slots=True)
class BinOp(Node):
    left: Expr
    op: str
    right: Expr


@dataclass(frozen=True, slots=True)
class UnaryOp(Node):
    op: str  # "not", "-", "+", "~"
    operand: Expr


@dataclass(frozen=True, slots=True)
class BoolOp(Node):
    op: str  # "and", "or"
    values: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Compare(Node):
    left: Expr
    ops: tuple[str, ...]  # "<", "in", "not in", "is not", ...
    comparators: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class IfExp(Node):
    test: Expr
    body: Expr
    orelse: Expr


@dataclass(frozen=True, slots=True)
class Await(Node):
    value: Expr


@dataclass(frozen=True, slots=True)
class TupleExpr(Node):
    elts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class ListExpr(Node):
    elts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class SetExpr(Node):
    elts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class DictExpr(Node):
    keys: tuple[Expr | None, ...]  # None marks a **mapping
    values: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class CompFor(Node):
    target: Expr
    iter: Expr
    ifs: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Comprehension(Node):
    kind: str  # "list", "set", "generator", "dict"
    elt: Expr  # the key, for a dict
    value: Expr | None  # the value, for a dict
    generators: tuple[CompFor, ...]


@dataclass(frozen=True, slots=True)
class Lambda(Node):
    """`lambda (params) -> T { body }`. A body of one expression statement is lowered to
    `return` of it, so a lambda's value is always a `return`."""

    params: tuple[Param, ...]
    returns: Expr | None
    body: tuple[Stmt, ...]


Expr = Union[
    Name, SelfRef, Constant, FString, BadString, Attribute, Subscript, Slice, Starred, Call,
    BinOp, UnaryOp, BoolOp, Compare, IfExp, Await, TupleExpr, ListExpr, SetExpr, DictExpr,
    Comprehension, Lambda,
]

# ------------------------------------------------------------------ statements


@dataclass(frozen=True, slots=True)
class ExprStmt(Node):
    value: Expr
    # False for an expression written without `;` where it is not a body's last: the
    # last one of a function's, ability's or lambda's body is lowered to a `Return`.
    semicolon: bool = True


@dataclass(frozen=True, slots=True)
class Assign(Node):
    targets: tuple[Expr, ...]
    value: Expr


@dataclass(frozen=True, slots=True)
class AnnAssign(Node):
    target: Name
    annotation: Expr
    value: Expr | None


@dataclass(frozen=True, slots=True)
class AugAssign(Node):
    target: Expr
    op: str  # "+", "-", ... (without "=")
    value: Expr


@dataclass(frozen=True, slots=True)
class Report(Node):
    value: Expr


@dataclass(frozen=True, slots=True)
class Return(Node):
    value: Expr | None


@dataclass(frozen=True, slots=True)
class Disengage(Node):
    pass


# Generators (docs/language.md, "Streams").
@dataclass(frozen=True, slots=True)
class Yield(Node):
    value: Expr | None


@dataclass(frozen=True, slots=True)
class YieldFrom(Node):
    value: Expr


@dataclass(frozen=True, slots=True)
class Break(Node):
    pass


@dataclass(frozen=True, slots=True)
class Continue(Node):
    pass


@dataclass(frozen=True, slots=True)
class Raise(Node):
    exc: Expr | None
    cause: Expr | None


@dataclass(frozen=True, slots=True)
class Assert(Node):
    test: Expr
    msg: Expr | None


@dataclass(frozen=True, slots=True)
class Global(Node):
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Nonlocal(Node):
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delete(Node):
    targets: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class If(Node):
    test: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]  # an `elif` is a nested If here


@dataclass(frozen=True, slots=True)
class While(Node):
    test: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class For(Node):
    target: Expr
    iter: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class ExceptHandler(Node):
    type: Expr
    name: str | None
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class Try(Node):
    body: tuple[Stmt, ...]
    handlers: tuple[ExceptHandler, ...]
    orelse: tuple[Stmt, ...]
    finalbody: tuple[Stmt, ...]


Stmt = Union[
    ExprStmt, Assign, AnnAssign, AugAssign, Report, Return, Disengage, Break, Continue, Raise,
    Assert, Global, Nonlocal, Delete, If, While, For, Try, Yield, YieldFrom,
]

# ------------------------------------------------------------------ declarations


@dataclass(frozen=True, slots=True)
class Param(Node):
    name: str
    kind: str  # "plain", "star", "double_star", "bare_star"
    annotation: Expr | None
    default: Expr | None


@dataclass(frozen=True, slots=True)
class Decorator(Node):
    expr: Expr


@dataclass(frozen=True, slots=True)
class Function(Node):
    name: str
    name_span: Span
    params: tuple[Param, ...]
    returns: Expr | None
    body: tuple[Stmt, ...]
    is_async: bool
    decorators: tuple[Decorator, ...]
    docstring: str | None = None  # the string written just before it
    # `def:pub`: "pub", "priv", "protect" or None; a module-level `def:pub` is served.
    access: str | None = None


@dataclass(frozen=True, slots=True)
class HasField(Node):
    name: str
    type: Expr | None  # None is an error the checker reports
    default: Expr | None
    static: bool
    doc: str | None = None  # the string written just before its `has`


@dataclass(frozen=True, slots=True)
class Ability(Node):
    name: str | None
    event: str  # "entry" or "exit"
    trigger: str | None  # "Root", another name, or None
    trigger_span: Span | None
    legacy_root: bool  # the old `` `root `` spelling
    is_async: bool
    body: tuple[Stmt, ...]
    docstring: str | None = None


Member = Union[HasField, Ability, Function]


@dataclass(frozen=True, slots=True)
class Walker(Node):
    name: str
    name_span: Span
    keyword_span: Span  # `walker`, or `async walker`
    is_async: bool
    access: str | None  # "pub", "priv", "protect" or None
    bases: tuple[Expr, ...]
    members: tuple[Member, ...]
    decorators: tuple[Decorator, ...]
    docstring: str | None
    # Strings in the body that document nothing: no member follows them.
    stray_docs: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportName(Node):
    name: str
    alias: str | None


@dataclass(frozen=True, slots=True)
class ImportFrom(Node):
    module: str
    names: tuple[ImportName, ...]


@dataclass(frozen=True, slots=True)
class ImportModule(Node):
    module: str
    alias: str | None


@dataclass(frozen=True, slots=True)
class GlobItem(Node):
    name: str
    annotation: Expr | None
    value: Expr


@dataclass(frozen=True, slots=True)
class Glob(Node):
    items: tuple[GlobItem, ...]


Element = Union[ImportFrom, ImportModule, Glob, Function, Walker]


@dataclass(frozen=True, slots=True)
class Module(Node):
    docstring: str | None
    body: tuple[Element, ...]
    stray_docs: tuple[Span, ...] = ()  # strings that document nothing: see Walker


# ------------------------------------------------------------------ traversal

NODE_CLASSES = tuple(c for c in list(globals().values())
                     if isinstance(c, type) and issubclass(c, Node) and c is not Node)
_CHILD_FIELDS = {c: tuple(f.name for f in fields(c) if f.name != "span") for c in NODE_CLASSES}
# What a field may hold besides nodes: names, flags, positions, the values of literals.
_LEAVES = (str, bytes, int, float, complex, type(None), type(...), Span)


def children(node: Node) -> Iterator[Node]:
    """The nodes directly below `node`, in field order (like `ast.iter_child_nodes`).

    Anything in a field that is neither a node nor a plain value raises: a stage
    that left something half-built there must not be skipped silently.
    """
    names = _CHILD_FIELDS.get(type(node))
    if names is None:
        raise TypeError(f"{type(node).__name__} is not a node of jacc.nodes")
    for name in names:
        value = getattr(node, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, Node):
                yield item
            elif not isinstance(item, _LEAVES):
                raise TypeError(f"{type(node).__name__}.{name} holds a "
                                f"{type(item).__name__}, not a node")
