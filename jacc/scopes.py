"""What a name assigned in a function means: Jac's scope rules (docs/language.md, "Names").

A bare assignment inside a function, ability or lambda (`x = v;`, `x += v;`, a tuple
target, `del x;`) binds to the nearest enclosing binding of the name: a local of an
enclosing function or lambda, else a module `glob`. Only where there is none does it make
a new local. A parameter, a typed declaration `x: T = v;`, a loop target and an
`except ... as x` always make a new local, which shadows an outer binding for the whole
body. Python says the same with `global` and `nonlocal` statements: codegen writes them
from what `resolve` finds, and the checker reports from it what Python would only find at
run time (a shadowed name used before its declaration, E0404).

Shared by the checker and codegen, like `restspec`. Both read a body's statements only
(never its expressions), so a resolution costs one pass over the statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence, get_args

from . import nodes as n
from .source import Span

# A position: (line, column). A declaration takes effect at such a point, and a use of
# the name written before it reads a local that does not exist yet.
Point = tuple[int, int]

_BLOCK_ITEMS = (*get_args(n.Stmt), n.ExceptHandler)


@dataclass
class Bindings:
    """What one body binds, read off its statements (its lambdas have their own)."""

    fresh: dict[str, Point] = field(default_factory=dict)  # name → where it takes effect
    assigned: dict[str, Span] = field(default_factory=dict)  # bare assignment targets
    declared_global: dict[str, Span] = field(default_factory=dict)  # `global x;` (legacy)
    declared_nonlocal: dict[str, Span] = field(default_factory=dict)

    @classmethod
    def of(cls, params: Iterable[n.Param], body: tuple[n.Stmt, ...]) -> Bindings:
        bindings = cls()
        for param in params:
            if param.kind != "bare_star":
                bindings.fresh.setdefault(param.name, (0, 0))  # before everything
        pending = list(reversed(body))
        while pending:  # in source order: a statement before the blocks inside it
            statement = pending.pop()
            bindings.add(statement)
            inner = [c for c in n.children(statement) if isinstance(c, _BLOCK_ITEMS)]
            pending.extend(reversed(inner))
        return bindings

    def add(self, statement: n.Stmt | n.ExceptHandler) -> None:
        if isinstance(statement, (n.Assign, n.Delete)):
            for target in statement.targets:
                self.assign(target)
        elif isinstance(statement, n.AugAssign):
            self.assign(statement.target)
        elif isinstance(statement, n.AnnAssign):  # the value is evaluated first
            self.declare(statement.target.id, _end(statement.span))
        elif isinstance(statement, n.For):  # bound once the iterable is evaluated
            for name in target_names(statement.target):
                self.declare(name.id, _end(statement.iter.span))
        elif isinstance(statement, n.ExceptHandler) and statement.name:
            self.declare(statement.name, _end(statement.type.span))
        elif isinstance(statement, n.Global):
            for name in statement.names:
                self.declared_global.setdefault(name, statement.span)
        elif isinstance(statement, n.Nonlocal):
            for name in statement.names:
                self.declared_nonlocal.setdefault(name, statement.span)

    def assign(self, target: n.Expr) -> None:
        for name in target_names(target):
            self.assigned.setdefault(name.id, name.span)

    def declare(self, name: str, point: Point) -> None:
        self.fresh.setdefault(name, point)


@dataclass(frozen=True)
class Resolution:
    """Where the names one body assigns live."""

    locals: frozenset[str]  # what a lambda inside this body sees as an enclosing binding
    globals: tuple[str, ...]  # sorted, so that generated code is deterministic
    nonlocals: tuple[str, ...]
    # Fresh locals that hide a glob or an enclosing local, and where each takes effect.
    shadowing: dict[str, Point]

    def shadows_before(self, name: str, span: Span) -> Point | None:
        """The declaration point of `name` if `span` uses it before that point."""
        point = self.shadowing.get(name)
        return point if point is not None and (span.line, span.column) < point else None


def resolve(bindings: Bindings, enclosing: Sequence[frozenset[str]],
            globs: frozenset[str]) -> Resolution:
    """Resolve one body's bindings; `enclosing` holds the locals of the functions and
    lambdas around it, innermost last (a walker's class body is not one: Python, like
    Jac, does not let methods see it)."""
    globals_ = set(bindings.declared_global)
    nonlocals = set(bindings.declared_nonlocal) - globals_
    locals_ = set(bindings.fresh) - globals_ - nonlocals
    for name in bindings.assigned:
        if name in globals_ or name in nonlocals or name in locals_:
            continue
        if any(name in frame for frame in enclosing):
            nonlocals.add(name)
        elif name in globs:
            globals_.add(name)
        else:
            locals_.add(name)
    shadowing = {name: point for name, point in bindings.fresh.items()
                 if name in locals_ and point != (0, 0)
                 and (name in globs or any(name in frame for frame in enclosing))}
    return Resolution(frozenset(locals_), tuple(sorted(globals_)), tuple(sorted(nonlocals)),
                      shadowing)


def target_names(target: n.Expr) -> Iterator[n.Name]:
    """The names an assignment target binds, `a` and `b` of `(a, [*b, c.d])`."""
    pending = [target]
    while pending:
        node = pending.pop()
        if isinstance(node, n.Name):
            yield node
        elif isinstance(node, (n.TupleExpr, n.ListExpr)):
            pending.extend(reversed(node.elts))
        elif isinstance(node, n.Starred):
            pending.append(node.value)


def globs_of(module: n.Module) -> frozenset[str]:
    return frozenset(item.name for element in module.body if isinstance(element, n.Glob)
                     for item in element.items)


def _end(span: Span) -> Point:
    return (span.end_line, span.end_column + 1)
