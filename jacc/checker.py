"""Nodes → diagnostics. The checker collects every problem of a file; it never raises.

Checks (each code is in docs/diagnostics.md): `@restspec` rules, duplicate names
and fields, `has` without a type, `await` outside async code, `self.x` for an
unknown member, undefined names, a shadowed name used before its declaration
(`scopes`), `report`/`disengage`/`self` outside a walker, an expression without
`;`, misplaced docstrings, served functions and streams (`yield`), legacy
spellings, code nested deeper than compilers go, and the Python rules that
`compile()` would otherwise reject with a bare SyntaxError.

Each `visit_<Class>` method carries a rule; a node with none is traversed by
`generic_visit`, as in `ast.NodeVisitor`. A node of any other class raises.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import get_args

from . import nodes as n
from .depth import MAX_DEPTH, too_deep
from .diagnostics import Diagnostic
from .restspec import (
    RESTSPEC,
    has_restspec,
    is_restspec,
    jac_aliases,
    read_restspec,
    restspec_names,
)
from .scopes import Bindings, Resolution, globs_of, resolve, target_names
from .source import Span

JAC_BUILTINS = frozenset({"Root", "APIProtocol", RESTSPEC})
PYTHON_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__"}
RESERVED_PREFIXES = ("_jacc", "__jacc")
RESERVED_NAMES = frozenset({"__file__"})
# Overriding these would silently stop fields from being set (runtime/walker.py).
_WALKER_INTERNALS = frozenset({"__init__", "__new__", "__init_subclass__", "__jacc_spec__"})


def check(module: n.Module) -> list[Diagnostic]:
    """Every diagnostic for `module`, unsorted (the caller sorts)."""
    return ModuleChecker(module).run()


def _did_you_mean(name: str, candidates: set[str] | frozenset[str]) -> str | None:
    close = get_close_matches(name, sorted(candidates), n=1, cutoff=0.7)
    return f"did you mean `{close[0]}`?" if close else None


@dataclass
class _Scope:
    """What a body of code may refer to, and where it is."""

    names: set[str]
    walker: n.Walker | None = None  # inside a walker's ability or method
    members: set[str] | None = None  # the walker's members; None when a base is not ours
    is_async: bool = False
    in_function: bool = False
    ability: bool = False  # a walker's ability: no `yield` there (it streams with `report`)
    async_generator: bool = False  # an `async def` that yields: no `return VALUE`
    loop_depth: int = 0
    comprehension_names: list[set[str]] = field(default_factory=list)
    in_lambda: bool = False
    resolution: Resolution | None = None  # of the function or lambda body checked
    # The locals of the functions, lambdas and comprehensions around, innermost last.
    frames: tuple[frozenset[str], ...] = ()

    def enclosing(self) -> tuple[frozenset[str], ...]:
        """The frames a lambda written here sees around it."""
        inner = (self.resolution.locals,) if self.resolution is not None else ()
        return self.frames + inner + tuple(map(frozenset, self.comprehension_names))

    def knows(self, name: str) -> bool:
        return name in self.names or any(name in names for names in self.comprehension_names)

    def all_names(self) -> set[str]:
        return self.names.union(*self.comprehension_names)


class ModuleChecker:
    def __init__(self, module: n.Module) -> None:
        self.module = module
        self.diagnostics: list[Diagnostic] = []
        self.walkers: dict[str, n.Walker] = {}
        self.module_names: set[str] = set()
        self.first_seen: dict[str, Span] = {}
        self.bound: set[str] = set()  # module names bound so far, in file order
        self.globs = globs_of(module)
        self.aliases = jac_aliases(module)
        self.restspec_names = restspec_names(self.aliases)
        self.depth = 0
        self.reported_depth = False

    def error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, help))

    warning = error  # the code's letter says which

    def run(self) -> list[Diagnostic]:
        self.collect_top_level()
        self.check_stray_docs(self.module.stray_docs)
        module_scope = _Scope(self.known_globals())
        bound_by: dict[int, set[str]] = {}
        for element, name, _ in self.bindings():
            bound_by.setdefault(id(element), set()).add(name)
        for element in self.module.body:
            self.visit(element, module_scope)
            self.bound |= bound_by.get(id(element), set())
        return self.diagnostics

    def check_builtin_name(self, name: str, span: Span) -> None:
        # Every use of these names compiles to the runtime's: a definition would be ignored.
        if name in JAC_BUILTINS:
            self.error("E0205", f"`{name}` is built into Jac and cannot be redefined", span)

    def early(self) -> _Scope:
        """What code run at import time (glob values, bases, decorators, parameter and
        `static has` defaults) can see: only the names bound above it."""
        return _Scope(self.bound | PYTHON_BUILTINS | JAC_BUILTINS)

    # ------------------------------------------------------------ names

    def collect_top_level(self) -> None:
        first_seen: dict[str, Span] = {}
        for element, name, span in self.bindings():
            self.check_local_name(name, span)
            if not (isinstance(element, n.ImportFrom)
                    and element.module.split(".")[0] == "jaclang"):
                self.check_builtin_name(name, span)
            if name in first_seen:
                self.error("E0201", f"`{name}` is defined more than once", span,
                           help=f"the first definition is on line {first_seen[name].line}")
            else:
                first_seen[name] = span
            if isinstance(element, n.Walker) and name not in self.walkers:
                self.walkers[name] = element
        self.module_names = set(first_seen)
        self.first_seen = first_seen

    def bindings(self):
        for element in self.module.body:
            if isinstance(element, (n.Walker, n.Function)):
                yield element, element.name, element.name_span
            elif isinstance(element, n.Glob):
                for item in element.items:
                    yield element, item.name, _keyword(item.span, item.name)
            elif isinstance(element, n.ImportFrom):
                for name in element.names:
                    yield element, name.alias or name.name, name.span
            elif isinstance(element, n.ImportModule):
                yield element, element.alias or element.module.split(".")[0], element.span

    def known_globals(self) -> set[str]:
        return self.module_names | PYTHON_BUILTINS | JAC_BUILTINS

    def members_of(self, walker: n.Walker, seen: frozenset[str] = frozenset()) -> set[str] | None:
        """Every field, method and named ability of a walker and its bases in this file.

        None when a base is not a walker of this file: its members are unknown.
        """
        members = {m.name for m in walker.members if m.name}
        for base in walker.bases:
            if not (isinstance(base, n.Name) and base.id in self.walkers) or base.id in seen:
                return None
            inherited = self.members_of(self.walkers[base.id], seen | {walker.name})
            if inherited is None:
                return None
            members |= inherited
        return members

    # ------------------------------------------------------------ dispatch

    def visit(self, node: n.Node, scope: _Scope) -> None:
        visitor = VISITORS.get(type(node))
        if visitor is None:
            raise TypeError(f"checker: {type(node).__name__} is not a node of jacc.nodes")
        if self.depth >= MAX_DEPTH:
            self.nested_too_deeply(node)
            return  # nothing below it is checked, generated or compiled
        self.depth += 1
        try:
            visitor(self, node, scope)
        finally:
            self.depth -= 1

    def nested_too_deeply(self, node: n.Node) -> None:
        # Counted in nodes: each `+` of a chain, bracket, call, `elif` or block is one.
        if not self.reported_depth:  # one is enough: the others are the same nesting
            self.reported_depth = True
            self.diagnostics.append(too_deep(
                node.span, f"code nested too deeply: limit {MAX_DEPTH} levels",
                "Python's compiler stops about there: split the expression or the "
                "statement, for example with intermediate variables"))

    def generic_visit(self, node: n.Node, scope: _Scope) -> None:
        """A node with no rule of its own: check what is below it, in the same scope."""
        for child in n.children(node):
            self.visit(child, scope)

    def walk(self, nodes, scope: _Scope) -> None:
        for node in nodes:
            if node is not None:
                self.visit(node, scope)

    # ------------------------------------------------------------ module level

    def visit_Glob(self, node: n.Glob, scope: _Scope) -> None:
        early = self.early()
        for item in node.items:
            self.walk((item.annotation,), scope)
            self.visit(item.value, early)
            early.names.add(item.name)

    def visit_Function(self, node: n.Function, scope: _Scope) -> None:
        module_level = scope.walker is None
        self.check_decorators(node.decorators, scope, target=node if module_level else None)
        self.check_params(node.params, scope)
        if module_level and is_served(node, self.aliases):
            self.check_served_function(node)
        self.check_docstring(node.body)
        body_scope = self.body_scope(node.params, node.body, scope, is_async=node.is_async)
        body_scope.async_generator = node.is_async and _yields(node.body)
        self.walk(node.body, body_scope)

    def body_scope(self, params: tuple[n.Param, ...], body: tuple[n.Stmt, ...],
                   scope: _Scope, is_async: bool, frames: tuple = (),
                   in_lambda: bool = False) -> _Scope:
        """The scope of a function's, ability's or lambda's body: what it binds, resolved
        by Jac's rules (`scopes`), on top of what it can see."""
        bindings = Bindings.of(params, body)
        bound = set(bindings.fresh) | set(bindings.assigned) | set(bindings.declared_global)
        return _Scope(scope.all_names() | bound, walker=scope.walker, members=scope.members,
                      is_async=is_async, in_function=True, in_lambda=in_lambda,
                      resolution=resolve(bindings, frames, self.globs), frames=frames)

    def visit_Lambda(self, node: n.Lambda, scope: _Scope) -> None:
        self.check_params(node.params, scope, of_lambda=True)
        self.walk((node.returns,), scope)
        body_scope = self.body_scope(node.params, node.body, scope, is_async=False,
                                     frames=scope.enclosing(), in_lambda=True)
        self.walk(node.body, body_scope)

    def check_docstring(self, body: tuple[n.Stmt, ...]) -> None:
        first = body[0] if body else None
        if isinstance(first, n.ExprStmt) and isinstance(first.value, n.Constant) \
                and isinstance(first.value.value, str):
            self.warning("W0003", "a string at the start of a body is not a docstring in Jac",
                         first.span, help="Jac docstrings stand before what they document: "
                         "move the string above the declaration")

    def check_stray_docs(self, spans: tuple[Span, ...]) -> None:
        for span in spans:
            self.warning("W0003", "this docstring documents nothing", span,
                         help="Jac docstrings stand just before the walker, ability, `def` or "
                         "`has` they document; a walker's goes above `walker`")

    def check_params(self, params: tuple[n.Param, ...], scope: _Scope,
                     of_lambda: bool = False) -> None:
        seen: set[str] = set()
        seen_default = seen_star = False
        double_star: n.Param | None = None
        bare_star: n.Param | None = None
        for param in params:
            self.check_local_name(param.name, param.span)
            self.walk((param.annotation,), scope)  # annotations stay strings
            # A function's defaults run at import; a lambda's, where the lambda is.
            self.walk((param.default,), scope if of_lambda else self.early())
            if double_star is not None:
                self.error("E0003", f"no parameter can follow `**{double_star.name}`",
                           param.span)
            elif param.kind in ("star", "bare_star") and seen_star:
                self.error("E0003", "only one `*` is allowed among the parameters", param.span)
            if param.kind == "double_star":
                double_star = param
            if bare_star is not None and param.kind == "plain":
                bare_star = None  # it has its keyword-only parameter
            if param.kind == "bare_star":
                seen_star = True
                bare_star = param
                continue
            if param.name in seen:
                span = _keyword(param.span, param.name) if param.kind == "plain" else param.span
                self.error("E0204", f"parameter `{param.name}` is declared twice", span)
            seen.add(param.name)
            self.check_builtin_name(param.name, _keyword(param.span, param.name)
                                    if param.kind == "plain" else param.span)
            if param.name == "self" and scope.walker is not None and not of_lambda:
                self.error("E0204", "methods get `self` implicitly: do not declare it",
                           param.span, help="remove `self` from the parameters")
            if param.kind == "star":
                seen_star = True
            elif param.kind == "plain" and not seen_star:
                if param.default is not None:
                    seen_default = True
                elif seen_default:
                    self.error("E0003", f"parameter `{param.name}` without a default follows "
                               "one with a default", param.span)
        if bare_star is not None:
            self.error("E0003", "a bare `*` must be followed by a named parameter",
                       bare_star.span)

    def check_decorators(self, decorators: tuple[n.Decorator, ...], scope: _Scope,
                         target: n.Walker | n.Function | None) -> None:
        """`target` is what a `@restspec` may serve here: a walker, a module-level function."""
        for decorator in decorators:
            if is_restspec(decorator, self.aliases) and target is None:
                self.error("E0107", "`@restspec` applies to walkers and module-level functions "
                           "only", decorator.span)
                continue
            if not is_restspec(decorator, self.aliases):
                self.visit(decorator.expr, self.early())

    # ------------------------------------------------------------ walkers

    def visit_Walker(self, node: n.Walker, scope: _Scope) -> None:
        self.check_restspec(node)
        self.check_decorators(node.decorators, scope, target=node)
        self.walk(node.bases, self.early())
        self.check_members(node, scope)
        self.check_stray_docs(node.stray_docs)
        members = self.members_of(node)
        inner = _Scope(scope.names, walker=node, members=members)
        for member in node.members:
            if isinstance(member, n.HasField):
                # A `static has` default runs when the class is made; a field's, per instance.
                self.walk((member.type,), scope)
                self.walk((member.default,), self.early() if member.static else scope)
            elif isinstance(member, n.Ability):
                self.check_trigger(member)
                self.check_docstring(member.body)
                body_scope = self.body_scope((), member.body, inner, is_async=member.is_async)
                body_scope.ability = True  # no `yield` here: a walker streams its reports
                self.walk(member.body, body_scope)
            else:
                self.visit_Function(member, inner)

    def check_restspec(self, node: n.Walker) -> None:
        spec, problems = read_restspec(node.decorators, self.aliases)
        self.diagnostics.extend(problems)
        if spec.protocol is None:
            return  # unreadable: its one diagnostic says what to write; nothing follows
        if spec.protocol == "websocket" and not node.is_async:
            access = f" : {node.access}" if node.access else ""
            self.error("E0101", f"WebSocket walker `{node.name}` must be declared `async walker`",
                       node.keyword_span, help=f"write `async walker{access} {node.name}`")
        if spec.broadcast and spec.protocol != "websocket":
            span = _keyword_span(node.decorators, "broadcast", self.aliases) or node.name_span
            self.error("E0102", f"`broadcast=True` on `{node.name}` needs "
                       "`protocol=APIProtocol.WEBSOCKET`", span,
                       help="broadcast is only possible over WebSocket: add "
                       "`protocol=APIProtocol.WEBSOCKET`")
        if spec.stream:
            self.check_stream(node.decorators, f"`{node.name}`", spec.protocol, spec.broadcast,
                              _keyword_span(node.decorators, "stream", self.aliases)
                              or node.name_span)

    # ------------------------------------------------------------ served functions and streams
    # A module-level `def:pub`, or a `def` with `@restspec`, is served (docs/language.md,
    # "Served functions"); a generator function or a `stream=True` walker streams.

    def check_served_function(self, node: n.Function) -> None:
        spec, problems = read_restspec(node.decorators, self.aliases)
        self.diagnostics.extend(problems)
        stream_span = _keyword_span(node.decorators, "stream", self.aliases)
        if stream_span is not None:
            self.error("E0103", "`stream` applies to walkers only", stream_span,
                       help="a function streams when it `yield`s: remove `stream=`")
        if spec.broadcast and spec.protocol != "websocket":
            self.error("E0102", f"`broadcast=True` on `{node.name}` needs "
                       "`protocol=APIProtocol.WEBSOCKET`",
                       _keyword_span(node.decorators, "broadcast", self.aliases)
                       or node.name_span,
                       help="broadcast is only possible over WebSocket: add "
                       "`protocol=APIProtocol.WEBSOCKET`")
        if _yields(node.body):
            self.check_stream(node.decorators, f"`{node.name}`", spec.protocol,
                              spec.broadcast, node.name_span, function=True)
        for param in node.params:
            if param.kind in ("star", "double_star"):
                stars = "*" if param.kind == "star" else "**"
                self.error("E0207", f"served function `{node.name}` cannot take "
                           f"`{stars}{param.name}`", param.span,
                           help="a request is one JSON object: declare each field as a named "
                           "parameter")
            elif param.kind == "plain" and param.annotation is None:
                self.error("E0206", f"parameter `{param.name}` of served function "
                           f"`{node.name}` has no type", _keyword(param.span, param.name),
                           help=f"write `{param.name}: TYPE`: the parameters of a served "
                           "function are the fields of its requests, checked like `has` fields")

    def check_stream(self, decorators: tuple[n.Decorator, ...], what: str, protocol: str,
                     broadcast: bool, span: Span, function: bool = False) -> None:
        """A stream goes to its own sender over WebSocket, one chunk frame at a time."""
        if protocol != "websocket":
            fix = ("add `@restspec(protocol=APIProtocol.WEBSOCKET)`" if function and
                   not has_restspec(decorators, self.aliases)
                   else "add `protocol=APIProtocol.WEBSOCKET`")
            reason = "yields, so it streams" if function else "streams (`stream=True`)"
            self.error("E0111", f"{what} {reason}: streams are served over WebSocket only", span,
                       help=f"chunk frames need a WebSocket: {fix}")
        if broadcast:
            self.error("E0112", f"{what} streams and cannot broadcast",
                       _keyword_span(decorators, "broadcast", self.aliases) or span,
                       help="the chunks of two senders' streams would interleave: remove "
                       "`broadcast=True`")

    def check_members(self, node: n.Walker, scope: _Scope) -> None:
        first_seen: dict[str, Span] = {}
        for member in node.members:
            if not member.name:
                continue
            span = member.name_span if isinstance(member, n.Function) else \
                _keyword(member.span, member.name) if isinstance(member, n.HasField) else \
                member.span
            self.check_local_name(member.name, span)
            if member.name in _WALKER_INTERNALS:
                self.error("E0205", f"`{member.name}` is reserved: the runtime makes walkers "
                           "from their fields", span,
                           help="set things up in an entry ability instead")
            if member.name in first_seen:
                kind = "field" if isinstance(member, n.HasField) else "member"
                self.error("E0202", f"{kind} `{member.name}` is declared more than once in "
                           f"`{node.name}`", span,
                           help=f"the first declaration is on line {first_seen[member.name].line}")
            else:
                first_seen[member.name] = span
            if isinstance(member, n.HasField) and member.type is None:
                self.error("E0203", f"field `{member.name}` has no type", member.span,
                           help=f"write `has {member.name}: TYPE`, for example "
                           f"`has {member.name}: str`")

    def check_trigger(self, node: n.Ability) -> None:
        if node.legacy_root:
            self.diagnostics.append(Diagnostic(
                "W0001", "`` `root `` is the old spelling of `Root`", node.trigger_span,
                help=f"write `with Root {node.event}`"))
        elif node.trigger not in (None, "Root"):
            self.error("E0902", f"abilities triggered by `{node.trigger}` are not supported by "
                       "jacc", node.trigger_span,
                       help=f"jacc walkers run at the root: write `with Root {node.event}` "
                       f"or `with {node.event}`")

    # ------------------------------------------------------------ statements

    def visit_ExprStmt(self, node: n.ExprStmt, scope: _Scope) -> None:
        if not node.semicolon:
            end = Span(node.span.end_line, node.span.end_column + 1, node.span.end_line,
                       node.span.end_column + 1)
            self.error("E0005", "expected `;` after this expression", end,
                       help="Jac statements end with `;`; only the last expression of a "
                       "function, ability or lambda body may go without one, as its value")
        self.generic_visit(node, scope)

    def visit_Assign(self, node: n.Assign, scope: _Scope) -> None:
        for target in node.targets:
            self.check_target(target, scope)
        self.visit(node.value, scope)

    def visit_AnnAssign(self, node: n.AnnAssign, scope: _Scope) -> None:
        self.check_local_name(node.target.id, node.target.span)
        self.visit(node.annotation, scope)
        if node.value is not None:
            self.visit(node.value, scope)

    def visit_AugAssign(self, node: n.AugAssign, scope: _Scope) -> None:
        if isinstance(node.target, (n.TupleExpr, n.ListExpr, n.Starred)):
            self.error("E0505", "augmented assignment needs a single target", node.target.span)
        else:
            self.check_target(node.target, scope)
        self.visit(node.value, scope)

    def visit_Report(self, node: n.Report, scope: _Scope) -> None:
        if scope.walker is None:
            self.error("E0501", "`report` can only be used in a walker's ability or method",
                       _keyword(node.span, "report"))
        self.generic_visit(node, scope)

    def visit_Disengage(self, node: n.Disengage, scope: _Scope) -> None:
        if scope.walker is None:
            self.error("E0502", "`disengage` can only be used in a walker's ability or method",
                       node.span)

    def visit_Return(self, node: n.Return, scope: _Scope) -> None:
        if not scope.in_function:
            self.error("E0504", "`return` outside a function or ability",
                       _keyword(node.span, "return"),
                       help="module level holds only imports, globs, functions and walkers")
        elif scope.async_generator and node.value is not None:
            self.error("E0003", "`return` with a value in an async function that yields",
                       node.span, help="an async generator ends with a bare `return;` (a last "
                       "expression without `;` is a return value too: end it with `;`)")
        self.generic_visit(node, scope)

    # Generators (docs/language.md, "Streams").
    def visit_Yield(self, node: n.Yield | n.YieldFrom, scope: _Scope) -> None:
        if not scope.in_function:
            self.error("E0506", "`yield` outside a function", _keyword(node.span, "yield"),
                       help="a function that yields is a stream: move this into a `def`")
        elif scope.in_lambda:
            self.error("E0506", "`yield` in a lambda", _keyword(node.span, "yield"),
                       help="only a `def` can be a generator: write one")
        elif scope.ability:
            self.error("E0507", "`yield` in a walker's ability", _keyword(node.span, "yield"),
                       help="a walker streams its reports: declare it with "
                       "`@restspec(protocol=APIProtocol.WEBSOCKET, stream=True)` and `report` "
                       "each item")
        elif isinstance(node, n.YieldFrom) and scope.is_async:
            self.error("E0003", "`yield from` cannot be used in an async function", node.span,
                       help="write `for item in ... { yield item; }`")
        self.generic_visit(node, scope)

    visit_YieldFrom = visit_Yield

    def visit_Break(self, node: n.Break, scope: _Scope) -> None:
        if not scope.loop_depth:
            self.error("E0503", "`break` outside a loop", node.span)

    def visit_Continue(self, node: n.Continue, scope: _Scope) -> None:
        if not scope.loop_depth:
            self.error("E0503", "`continue` outside a loop", node.span)

    def visit_Global(self, node: n.Global, scope: _Scope) -> None:
        for name in node.names:
            if name not in self.module_names:
                self.error("E0402", f"`global {name}` names no glob of this module", node.span,
                           help=_did_you_mean(name, self.module_names))
            elif name in self.globs:
                self.warning("W0002", "`global` is not a Jac statement", node.span,
                             help=f"remove it: assigning `{name}` in a function rebinds the "
                             "glob without one")
            else:
                self.warning("W0002", "`global` is not a Jac statement", node.span,
                             help=f"a function rebinds only `glob` names: declare "
                             f"`glob {name}` if it is to be rebound")

    def visit_Nonlocal(self, node: n.Nonlocal, scope: _Scope) -> None:
        unbound = [name for name in node.names
                   if not any(name in frame for frame in scope.frames)]
        if unbound:
            self.error("E0003", f"`nonlocal {unbound[0]}`: no enclosing function or lambda "
                       f"binds `{unbound[0]}`", node.span)
        else:
            self.warning("W0002", "`nonlocal` is not a Jac statement", node.span,
                         help="remove it: assigning a name in a lambda rebinds the enclosing "
                         "function's without one")

    def visit_Delete(self, node: n.Delete, scope: _Scope) -> None:
        for target in node.targets:
            self.check_target(target, scope)

    def visit_While(self, node: n.While, scope: _Scope) -> None:
        self.visit(node.test, scope)
        self.in_loop(node.body, scope)
        self.walk(node.orelse, scope)

    def visit_For(self, node: n.For, scope: _Scope) -> None:
        self.check_target(node.target, scope, declares=True)
        self.visit(node.iter, scope)
        self.in_loop(node.body, scope)
        self.walk(node.orelse, scope)

    def in_loop(self, body: tuple[n.Stmt, ...], scope: _Scope) -> None:
        scope.loop_depth += 1
        try:
            self.walk(body, scope)
        finally:
            scope.loop_depth -= 1

    def visit_ExceptHandler(self, node: n.ExceptHandler, scope: _Scope) -> None:
        if node.name:
            self.check_local_name(node.name, node.span)
        self.generic_visit(node, scope)

    def check_local_name(self, name: str, span: Span) -> None:
        # A `_jacc` would shadow the runtime module that generated code calls; a
        # `__jacc_lines__` or `__file__` would break tracebacks of built modules.
        if name.startswith(RESERVED_PREFIXES) or name in RESERVED_NAMES:
            self.error("E0205", f"`{name}` is reserved for jacc's generated code", span,
                       help="names starting with `_jacc` or `__jacc`, and `__file__`, "
                       "are reserved")

    def check_target(self, target: n.Expr, scope: _Scope, declares: bool = False) -> None:
        """An assignment target; a loop's `declares` its names (a use of them would not
        be one before their declaration)."""
        pending = [(target, self.depth)]  # not recursive: a target may nest as a display does
        while pending:
            target, depth = pending.pop()
            if depth >= MAX_DEPTH:
                self.nested_too_deeply(target)
            elif isinstance(target, n.Name):
                self.check_builtin_name(target.id, target.span)
                self.check_local_name(target.id, target.span)
                if not declares:
                    self.check_shadowed_use(target, scope)
            elif isinstance(target, (n.TupleExpr, n.ListExpr)):
                starred = [e for e in target.elts if isinstance(e, n.Starred)]
                if len(starred) > 1:
                    self.error("E0505", "only one starred target is allowed", starred[1].span)
                pending.extend((element, depth + 1) for element in reversed(target.elts))
            elif isinstance(target, n.Starred):
                pending.append((target.value, depth + 1))
            elif isinstance(target, (n.Attribute, n.Subscript)):
                self.visit(target, scope)
            else:
                self.error("E0505", f"cannot assign to {_describe(target)}", target.span)

    def check_shadowed_use(self, name: n.Name, scope: _Scope) -> None:
        """A name used before the declaration that makes it a local hiding an outer one."""
        if scope.resolution is None:
            return
        point = scope.resolution.shadows_before(name.id, name.span)
        if point is not None:
            self.error("E0404", f"`{name.id}` is used before its declaration on line "
                       f"{point[0]} makes it local", name.span,
                       help=f"a typed declaration, loop target or `except ... as` makes "
                       f"`{name.id}` a new local for the whole body, hiding the outer "
                       f"`{name.id}`: declare it before its first use, or rename it")

    # ------------------------------------------------------------ expressions

    def visit_Name(self, node: n.Name, scope: _Scope) -> None:
        if not any(node.id in names for names in scope.comprehension_names):
            self.check_shadowed_use(node, scope)
        if node.id in self.restspec_names and scope.knows(node.id):
            self.error("E0107", "`restspec` can only be used as a walker's decorator", node.span)
        elif not scope.knows(node.id) and node.id in self.first_seen:
            defined = self.first_seen[node.id]
            help = (f"it is defined on line {defined.line}, which runs later: move that "
                    "definition above this line") if defined > node.span else \
                f"`{node.id}` does not exist until its own definition is complete"
            self.error("E0402", f"`{node.id}` is used before it is defined", node.span, help=help)
        elif not scope.knows(node.id):
            self.error("E0402", f"`{node.id}` is not defined", node.span,
                       help=_did_you_mean(node.id, scope.all_names() - PYTHON_BUILTINS
                                          | {"True", "False", "None"})
                       or _did_you_mean(node.id, scope.all_names()))

    def visit_SelfRef(self, node: n.SelfRef, scope: _Scope) -> None:
        if scope.walker is None or not scope.in_function:
            self.error("E0403", "`self` can only be used in a walker's ability or method",
                       node.span)

    def visit_BadString(self, node: n.BadString, scope: _Scope) -> None:
        self.error("E0002", node.message, node.span)

    def visit_Attribute(self, node: n.Attribute, scope: _Scope) -> None:
        self.generic_visit(node, scope)
        if isinstance(node.value, n.SelfRef) and scope.walker is not None \
                and scope.members is not None and node.attr not in scope.members \
                and not _is_dunder(node.attr):  # `self.__class__` and the like: every object's
            self.error("E0401", f"`{scope.walker.name}` has no field or method `{node.attr}`",
                       node.attr_span, help=_did_you_mean(node.attr, scope.members))

    def visit_Call(self, node: n.Call, scope: _Scope) -> None:
        self.generic_visit(node, scope)
        # Arguments are split into positional and keyword ones: their order is the spans'.
        first_keyword = min((k.span for k in node.keywords), default=None)
        first_unpack = min((k.span for k in node.keywords if k.name is None), default=None)
        for arg in node.args:
            if not isinstance(arg, n.Starred) and first_keyword and arg.span > first_keyword:
                self.error("E0003", "positional argument follows keyword argument", arg.span)
            elif first_unpack and arg.span > first_unpack:
                self.error("E0003", "`*` argument follows a `**` argument", arg.span)
        seen: set[str] = set()
        for keyword in node.keywords:
            if keyword.name is not None:
                if keyword.name in seen:
                    self.error("E0003", f"keyword argument `{keyword.name}` is repeated",
                               keyword.span)
                seen.add(keyword.name)

    def visit_Await(self, node: n.Await, scope: _Scope) -> None:
        if not scope.is_async:
            where = "an async ability or function" if scope.in_function else "a function"
            help = "a lambda cannot be async: use an `async def`" if scope.in_lambda else \
                "declare the ability or function `async`" if scope.in_function else None
            self.error("E0301", f"`await` can only be used inside {where}", node.span,
                       help=help)
        self.generic_visit(node, scope)

    def visit_Comprehension(self, node: n.Comprehension, scope: _Scope) -> None:
        # The first iterable is evaluated outside the comprehension's own scope.
        self.visit(node.generators[0].iter, scope)
        names: set[str] = set()
        scope.comprehension_names.append(names)
        try:
            for index, generator in enumerate(node.generators):
                if index:
                    self.visit(generator.iter, scope)
                names.update(name.id for name in target_names(generator.target))
                self.check_target(generator.target, scope)
                self.walk(generator.ifs, scope)
            self.walk((node.elt, node.value), scope)
        finally:
            scope.comprehension_names.pop()


# Each node class's visit: its `visit_` method where it has rules, else the generic one.
VISITORS = {cls: getattr(ModuleChecker, "visit_" + cls.__name__, ModuleChecker.generic_visit)
            for cls in n.NODE_CLASSES}


# ---------------------------------------------------------------- helpers


def _keyword_span(decorators: tuple[n.Decorator, ...], name: str,
                  aliases: dict[str, str]) -> Span | None:
    for decorator in decorators:
        if is_restspec(decorator, aliases) and isinstance(decorator.expr, n.Call):
            for keyword in decorator.expr.keywords:
                if keyword.name == name:
                    return keyword.span
    return None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _keyword(span: Span, word: str) -> Span:
    """The span of `word` at the start of `span`: the smallest span to point at."""
    return Span(span.line, span.column, span.line, span.column + len(word) - 1)


# Served functions and streams (docs/language.md).
_BLOCK_ITEMS = (*get_args(n.Stmt), n.ExceptHandler)


def is_served(node: n.Function, aliases: dict[str, str]) -> bool:
    """Whether a module-level function is served: `def:pub`, or any `def` with `@restspec`."""
    return node.access == "pub" or has_restspec(node.decorators, aliases)


def _yields(body: tuple[n.Stmt, ...]) -> bool:
    """Whether a function body yields anywhere (so the function is a generator)."""
    pending = list(body)
    while pending:
        statement = pending.pop()
        if isinstance(statement, (n.Yield, n.YieldFrom)):
            return True
        pending.extend(c for c in n.children(statement) if isinstance(c, _BLOCK_ITEMS))
    return False


def _describe(expr: n.Expr) -> str:
    if isinstance(expr, n.Constant):
        return "a literal"
    if isinstance(expr, n.Call):
        return "a function call"
    if isinstance(expr, n.SelfRef):
        return "`self`"
    return "this expression"
