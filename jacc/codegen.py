"""Nodes → located Python `ast` (the text of a built module is `emit`'s).

Every Python node carries the position of the Jac node it came from, so
`compile(tree, "app.jac", "exec")` gives tracebacks that name the Jac file and
line. `ast.unparse` loses positions, so a built module carries a line table
instead (see `jacc_runtime.lines`).

Strings reach the output only as `ast.Constant` values: no text of the source
is ever pasted into generated code, so a literal cannot change the program.

Jac's meaning where Python's differs: names assigned in a function get the
`global`/`nonlocal` statements that make Python bind them where Jac does
(`scopes`); a lambda whose body is more than one expression becomes a `def`
written just before the statement that holds it ("preludes", below).
"""

from __future__ import annotations

import ast
from typing import Any

from . import nodes as n
from .restspec import (
    API_PROTOCOL,
    JAC_MODULES,
    JAC_NAMES,
    RestSpec,
    has_restspec,
    is_restspec,
    jac_aliases,
    read_restspec,
)
from .scopes import Bindings, globs_of, resolve, target_names
from .source import Span

RUNTIME = "_jacc"  # the generated module's one import: `import jacc_runtime as _jacc`
BUILTIN_NAMES = {"Root": "Root", API_PROTOCOL: API_PROTOCOL}  # Jac names the runtime provides

_BINOPS = {
    "+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "//": ast.FloorDiv, "%": ast.Mod,
    "@": ast.MatMult, "**": ast.Pow, "<<": ast.LShift, ">>": ast.RShift, "|": ast.BitOr,
    "^": ast.BitXor, "&": ast.BitAnd,
}
_UNARY = {"not": ast.Not, "-": ast.USub, "+": ast.UAdd, "~": ast.Invert}
_COMPARE = {
    "<": ast.Lt, ">": ast.Gt, "==": ast.Eq, ">=": ast.GtE, "<=": ast.LtE, "!=": ast.NotEq,
    "in": ast.In, "not in": ast.NotIn, "is": ast.Is, "is not": ast.IsNot,
}


def _locate(node: ast.AST, span: Span) -> Any:
    node.lineno = span.line
    node.col_offset = span.column - 1
    node.end_lineno = span.end_line
    node.end_col_offset = span.end_column
    return node


def _runtime(attr: str, span: Span) -> ast.Attribute:
    return _locate(ast.Attribute(_locate(ast.Name(RUNTIME, ast.Load()), span), attr, ast.Load()),
                   span)


def _name(name: str, span: Span, ctx: ast.expr_context | None = None) -> ast.Name:
    return _locate(ast.Name(name, ctx or ast.Load()), span)


class CodeGen:
    """Translates one `Module`. Call `module()`."""

    def __init__(self, module: n.Module) -> None:
        self.tree = module
        self.walker: n.Walker | None = None
        self.aliases = jac_aliases(module)
        self.globs = globs_of(module)
        # Statements that must run just before the one being translated: the `def`s of
        # multi-statement lambdas and of comprehensions that hold one. Innermost last.
        self.preludes: list[list[ast.stmt]] = []
        # The locals of the functions, lambdas and comprehensions around, innermost last:
        # what a lambda's assignment may rebind (`scopes.resolve`).
        self.frames: list[frozenset[str]] = []
        self.made = 0  # generated `def`s so far, for their names

    # ------------------------------------------------------------ module

    def module(self) -> ast.Module:
        span = self.tree.span
        body: list[ast.stmt] = []
        if self.tree.docstring is not None:
            body.append(_locate(ast.Expr(_locate(ast.Constant(self.tree.docstring), span)), span))
        first_line = Span(span.line, 1, span.line, 1)
        runtime = ast.Import([_locate(ast.alias("jacc_runtime", RUNTIME), first_line)])
        body.append(_locate(runtime, first_line))
        for element in self.tree.body:
            body.extend(self.element(element))
        return ast.Module(body, [])

    def element(self, element: n.Element) -> list[ast.stmt]:
        method = getattr(self, "element_" + type(element).__name__, None)
        if method is None:
            raise TypeError(f"codegen: no rule for {type(element).__name__}")
        # A lambda in a glob's value, a default, a decorator or a base: its `def` goes
        # before the element, at module level (a walker's class body is no scope of it).
        return self.with_prelude(lambda: method(element))

    def with_prelude(self, translate) -> list[ast.stmt]:
        self.preludes.append([])
        try:
            made = translate()
        finally:
            prelude = self.preludes.pop()
        return prelude + (made if isinstance(made, list) else [made])

    def hoist(self, statement: ast.stmt) -> None:
        self.preludes[-1].append(statement)

    def element_ImportFrom(self, node: n.ImportFrom) -> list[ast.stmt]:
        from_jac = node.module.split(".")[0] in JAC_MODULES
        names, aliases = [], []
        for item in node.names:
            if not (from_jac and item.name in JAC_NAMES):
                names.append(_locate(ast.alias(item.name, item.alias), item.span))
            elif item.alias and item.name in BUILTIN_NAMES:
                # The runtime provides the name; an alias still needs binding.
                runtime = _runtime(BUILTIN_NAMES[item.name], item.span)
                aliases.append(self._assign_name(item.alias, runtime, item.span))
        if not names:
            return aliases
        return [_locate(ast.ImportFrom(node.module, names, 0), node.span), *aliases]

    def element_ImportModule(self, node: n.ImportModule) -> list[ast.stmt]:
        return [_locate(ast.Import([_locate(ast.alias(node.module, node.alias), node.span)]),
                        node.span)]

    def element_Glob(self, node: n.Glob) -> list[ast.stmt]:
        return [self._assign_name(item.name, self.expr(item.value), item.span)
                for item in node.items]

    def element_Function(self, node: n.Function, method: bool = False) -> list[ast.stmt]:
        args = self.arguments(node.params, with_self=node.name_span if method else None)
        kind = ast.AsyncFunctionDef if node.is_async else ast.FunctionDef
        returns = self.annotation(node.returns) if node.returns is not None else None
        decorators = [self.expr(d.expr) for d in node.decorators
                      if not is_restspec(d, self.aliases)]
        if not method and (node.access == "pub" or has_restspec(node.decorators, self.aliases)):
            decorators.insert(0, self.served_function(node))
        body = self.function_body(node.params, node.body, node.docstring, node.span)
        function = kind(node.name, args, body, decorators, returns, None)
        return [_locate(function, node.span)]

    def served_function(self, node: n.Function) -> ast.expr:
        """`@_jacc.function(protocol=..., public=...)`, outermost: the function's spec
        (runtime/function.py). A module-level `def:pub` or `@restspec` def is served."""
        spec, _ = read_restspec(node.decorators, self.aliases)
        keywords = _spec_keywords(spec, public=node.access == "pub", span=node.span)
        call = ast.Call(_runtime("function", node.span), [], keywords)
        return _locate(call, node.span)

    def element_Walker(self, node: n.Walker) -> list[ast.stmt]:
        self.walker = node
        try:
            return [self.walker_class(node)]
        finally:
            self.walker = None

    # ------------------------------------------------------------ walkers

    def walker_class(self, node: n.Walker) -> ast.ClassDef:
        spec, _ = read_restspec(node.decorators, self.aliases)
        decorators = [self.expr(d.expr) for d in node.decorators
                      if not is_restspec(d, self.aliases)]
        keywords = _spec_keywords(spec, public=node.access == "pub", span=node.span)
        if spec.stream:
            keywords.append(_locate_keyword(ast.keyword("stream", ast.Constant(True)), node.span))
        bases = [self.expr(b) for b in node.bases] + [_runtime("Walker", node.name_span)]
        body: list[ast.stmt] = []
        if node.docstring is not None:
            body.append(_locate(ast.Expr(_locate(ast.Constant(node.docstring), node.span)), node.span))
        entries = exits = 0
        for member in node.members:
            if isinstance(member, n.HasField):
                body.append(self.field(member))
            elif isinstance(member, n.Ability):
                entries += member.event == "entry"
                exits += member.event == "exit"
                index = entries if member.event == "entry" else exits
                body.append(self.ability(member, index))
            else:
                body.extend(self.element_Function(member, method=True))
        if not body:
            body.append(_locate(ast.Pass(), node.span))
        return _locate(ast.ClassDef(node.name, bases, keywords, body, decorators), node.span)

    def field(self, node: n.HasField) -> ast.stmt:
        if node.static:
            value = self.expr(node.default) if node.default else _locate(ast.Constant(None),
                                                                         node.span)
            return self._assign_name(node.name, value, node.span)
        args: list[ast.expr] = [_locate(ast.Constant(ast.unparse(self.expr(node.type))), node.span)]
        if node.default is not None:
            # A lambda, so that a default like `[]` is made anew for every instance.
            no_args = self.arguments((), with_self=None)
            args.append(_locate(ast.Lambda(no_args, self.expr(node.default)), node.default.span))
        keywords = []
        if node.doc is not None:  # the field's docstring, for /openapi.json and /asyncapi.json
            doc = _locate(ast.Constant(node.doc), node.span)
            keywords.append(_locate(ast.keyword("doc", doc), node.span))
        call = _locate(ast.Call(_runtime("field", node.span), args, keywords), node.span)
        return self._assign_name(node.name, call, node.span)

    def ability(self, node: n.Ability, index: int) -> ast.stmt:
        name = node.name or f"_jacc_{node.event}_{index}"
        args = self.arguments((), with_self=node.span)
        kind = ast.AsyncFunctionDef if node.is_async else ast.FunctionDef
        decorator = _runtime(node.event, node.span)
        body = self.function_body((), node.body, node.docstring, node.span)
        function = kind(name, args, body, [decorator], None, None)
        return _locate(function, node.span)

    # ------------------------------------------------------------ shared parts

    def function_body(self, params: tuple[n.Param, ...], body: tuple[n.Stmt, ...],
                      docstring: str | None, span: Span) -> list[ast.stmt]:
        """A function's, ability's or lambda's body, headed by its docstring and by the
        `global` and `nonlocal` statements that give its assignments Jac's meaning."""
        resolution = resolve(Bindings.of(params, body), self.frames, self.globs)
        head: list[ast.stmt] = []
        if docstring is not None:
            head.append(_locate(ast.Expr(_locate(ast.Constant(docstring), span)), span))
        if resolution.globals:
            head.append(_locate(ast.Global(list(resolution.globals)), span))
        if resolution.nonlocals:
            head.append(_locate(ast.Nonlocal(list(resolution.nonlocals)), span))
        self.frames.append(resolution.locals)
        try:
            statements = self.statements(body)
        finally:
            self.frames.pop()
        return head + (statements or [_locate(ast.Pass(), span)])

    def arguments(self, params: tuple[n.Param, ...], with_self: Span | None,
                  annotated: bool = True, defaults: bool = True) -> ast.arguments:
        positional: list[ast.arg] = []
        default_values: list[ast.expr] = []
        kwonly: list[ast.arg] = []
        kw_defaults: list[ast.expr | None] = []
        vararg = kwarg = None
        if with_self is not None:
            positional.append(_locate(ast.arg("self"), with_self))
        seen_star = False
        for param in params:
            annotation = self.annotation(param.annotation) \
                if param.annotation and annotated else None
            arg = _locate(ast.arg(param.name, annotation), param.span)
            default = self.expr(param.default) if param.default and defaults else None
            if param.kind == "star":
                vararg, seen_star = arg, True
            elif param.kind == "bare_star":
                seen_star = True
            elif param.kind == "double_star":
                kwarg = arg
            elif seen_star:
                kwonly.append(arg)
                kw_defaults.append(default)
            else:
                positional.append(arg)
                if default is not None:
                    default_values.append(default)
        return ast.arguments([], positional, vararg, kwonly, kw_defaults, kwarg, default_values)

    def annotation(self, expr: n.Expr) -> ast.expr:
        # Annotations stay strings: they document, and are never evaluated at import.
        return _locate(ast.Constant(ast.unparse(self.expr(expr))), expr.span)

    def body(self, statements: tuple[n.Stmt, ...], span: Span) -> list[ast.stmt]:
        return self.statements(statements) or [_locate(ast.Pass(), span)]

    def statements(self, statements: tuple[n.Stmt, ...]) -> list[ast.stmt]:
        return [made for statement in statements for made in self.statement(statement)]

    def _assign_name(self, name: str, value: ast.expr, span: Span) -> ast.stmt:
        target = _locate(ast.Name(name, ast.Store()), span)
        return _locate(ast.Assign([target], value), span)

    # ------------------------------------------------------------ statements

    def statement(self, node: n.Stmt) -> list[ast.stmt]:
        """The statement, after the `def`s its lambdas need (its prelude)."""
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is None:
            raise TypeError(f"codegen: no rule for {type(node).__name__}")
        return self.with_prelude(lambda: method(node))

    def stmt_ExprStmt(self, node: n.ExprStmt) -> list[ast.stmt]:
        if isinstance(node.value, n.Constant):
            # Does nothing, as in Python; and left out, a string at the start of a body
            # cannot become its docstring, which in Jac stands before the declaration.
            return []
        return [_locate(ast.Expr(self.expr(node.value)), node.span)]

    def stmt_Assign(self, node: n.Assign) -> ast.stmt:
        targets = [self.target(t) for t in node.targets]
        return _locate(ast.Assign(targets, self.expr(node.value)), node.span)

    def stmt_AnnAssign(self, node: n.AnnAssign) -> ast.stmt:
        value = self.expr(node.value) if node.value is not None else None
        statement = ast.AnnAssign(self.target(node.target), self.annotation(node.annotation),
                                  value, 1)
        return _locate(statement, node.span)

    def stmt_AugAssign(self, node: n.AugAssign) -> ast.stmt:
        statement = ast.AugAssign(self.target(node.target), _BINOPS[node.op](),
                                  self.expr(node.value))
        return _locate(statement, node.span)

    def stmt_Report(self, node: n.Report) -> ast.stmt:
        self_name = _locate(ast.Name("self", ast.Load()), node.span)
        call = ast.Call(_runtime("report", node.span), [self_name, self.expr(node.value)], [])
        return _locate(ast.Expr(_locate(call, node.span)), node.span)

    def stmt_Return(self, node: n.Return) -> ast.stmt:
        value = self.expr(node.value) if node.value is not None else None
        return _locate(ast.Return(value), node.span)

    # Generators (docs/language.md, "Streams").
    def stmt_Yield(self, node: n.Yield) -> ast.stmt:
        value = self.expr(node.value) if node.value is not None else None
        return _locate(ast.Expr(_locate(ast.Yield(value), node.span)), node.span)

    def stmt_YieldFrom(self, node: n.YieldFrom) -> ast.stmt:
        value = _locate(ast.YieldFrom(self.expr(node.value)), node.span)
        return _locate(ast.Expr(value), node.span)

    def stmt_Disengage(self, node: n.Disengage) -> ast.stmt:
        call = _locate(ast.Call(_runtime("Disengage", node.span), [], []), node.span)
        return _locate(ast.Raise(call, None), node.span)

    def stmt_Break(self, node: n.Break) -> ast.stmt:
        return _locate(ast.Break(), node.span)

    def stmt_Continue(self, node: n.Continue) -> ast.stmt:
        return _locate(ast.Continue(), node.span)

    def stmt_Raise(self, node: n.Raise) -> ast.stmt:
        exc = self.expr(node.exc) if node.exc is not None else None
        cause = self.expr(node.cause) if node.cause is not None else None
        return _locate(ast.Raise(exc, cause), node.span)

    def stmt_Assert(self, node: n.Assert) -> ast.stmt:
        msg = self.expr(node.msg) if node.msg is not None else None
        return _locate(ast.Assert(self.expr(node.test), msg), node.span)

    def stmt_Global(self, node: n.Global) -> list[ast.stmt]:
        return []  # function_body declares every name at the top, where Python wants it

    def stmt_Nonlocal(self, node: n.Nonlocal) -> list[ast.stmt]:
        return []

    def stmt_Delete(self, node: n.Delete) -> ast.stmt:
        return _locate(ast.Delete([self.target(t, ast.Del()) for t in node.targets]), node.span)

    def stmt_If(self, node: n.If) -> ast.stmt:
        orelse = self.statements(node.orelse)
        statement = ast.If(self.expr(node.test), self.body(node.body, node.span), orelse)
        return _locate(statement, node.span)

    def stmt_While(self, node: n.While) -> ast.stmt:
        orelse = self.statements(node.orelse)
        statement = ast.While(self.expr(node.test), self.body(node.body, node.span), orelse)
        return _locate(statement, node.span)

    def stmt_For(self, node: n.For) -> ast.stmt:
        orelse = self.statements(node.orelse)
        statement = ast.For(self.target(node.target), self.expr(node.iter),
                            self.body(node.body, node.span), orelse, None)
        return _locate(statement, node.span)

    def stmt_Try(self, node: n.Try) -> ast.stmt:
        handlers = [
            _locate(ast.ExceptHandler(self.expr(h.type), h.name, self.body(h.body, h.span)),
                    h.span)
            for h in node.handlers
        ]
        orelse = self.statements(node.orelse)
        final = self.statements(node.finalbody)
        if not handlers and not final:
            final = [_locate(ast.Pass(), node.span)]  # `try {}` alone: Python needs one
        statement = ast.Try(self.body(node.body, node.span), handlers, orelse, final)
        return _locate(statement, node.span)

    # ------------------------------------------------------------ expressions

    def target(self, node: n.Expr, ctx: ast.expr_context | None = None) -> ast.expr:
        ctx = ctx or ast.Store()
        if isinstance(node, n.Name):
            return _locate(ast.Name(node.id, ctx), node.span)
        if isinstance(node, (n.TupleExpr, n.ListExpr)):
            kind = ast.Tuple if isinstance(node, n.TupleExpr) else ast.List
            return _locate(kind([self.target(e, ctx) for e in node.elts], ctx), node.span)
        if isinstance(node, n.Starred):
            return _locate(ast.Starred(self.target(node.value, ctx), ctx), node.span)
        if isinstance(node, n.Attribute):
            return _locate(ast.Attribute(self.expr(node.value), node.attr, ctx), node.span)
        if isinstance(node, n.Subscript):
            return _locate(ast.Subscript(self.expr(node.value), self.expr(node.index), ctx),
                           node.span)
        raise TypeError(f"codegen: {type(node).__name__} is not an assignment target")

    def expr(self, node: n.Expr) -> ast.expr:
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            raise TypeError(f"codegen: no rule for {type(node).__name__}")
        return _locate(method(node), node.span)

    def expr_Name(self, node: n.Name) -> ast.expr:
        if node.id in BUILTIN_NAMES:
            return _runtime(BUILTIN_NAMES[node.id], node.span)
        return ast.Name(node.id, ast.Load())

    def expr_SelfRef(self, node: n.SelfRef) -> ast.expr:
        return ast.Name("self", ast.Load())

    def expr_Constant(self, node: n.Constant) -> ast.expr:
        return ast.Constant(node.value)

    def expr_FString(self, node: n.FString) -> ast.expr:
        values: list[ast.expr] = []
        for part in node.parts:
            if isinstance(part, str):
                values.append(_locate(ast.Constant(part), node.span))
                continue
            conversion = ord(part.conversion) if part.conversion else -1
            spec = self.expr(part.format_spec) if part.format_spec is not None else None
            values.append(_locate(ast.FormattedValue(self.expr(part.value), conversion, spec),
                                  part.span))
        joined = ast.JoinedStr(values)
        return _format_call(joined, node.span) if _unwritable_fstring(joined) else joined

    def expr_BadString(self, node: n.BadString) -> ast.expr:
        # The checker reports every bad literal (E0002): a checked module holds none.
        raise TypeError(f"codegen: a bad literal reached codegen: {node.message}")

    def expr_Attribute(self, node: n.Attribute) -> ast.expr:
        return ast.Attribute(self.expr(node.value), node.attr, ast.Load())

    def expr_Subscript(self, node: n.Subscript) -> ast.expr:
        return ast.Subscript(self.expr(node.value), self.expr(node.index), ast.Load())

    def expr_Slice(self, node: n.Slice) -> ast.expr:
        part = (lambda e: self.expr(e) if e is not None else None)
        return ast.Slice(part(node.lower), part(node.upper), part(node.step))

    def expr_Starred(self, node: n.Starred) -> ast.expr:
        return ast.Starred(self.expr(node.value), ast.Load())

    def expr_Call(self, node: n.Call) -> ast.expr:
        keywords = [_locate(ast.keyword(k.name, self.expr(k.value)), k.span) for k in node.keywords]
        return ast.Call(self.expr(node.func), [self.expr(a) for a in node.args], keywords)

    def expr_BinOp(self, node: n.BinOp) -> ast.expr:
        return ast.BinOp(self.expr(node.left), _BINOPS[node.op](), self.expr(node.right))

    def expr_UnaryOp(self, node: n.UnaryOp) -> ast.expr:
        return ast.UnaryOp(_UNARY[node.op](), self.expr(node.operand))

    def expr_BoolOp(self, node: n.BoolOp) -> ast.expr:
        op = ast.And() if node.op == "and" else ast.Or()
        return ast.BoolOp(op, [self.expr(v) for v in node.values])

    def expr_Compare(self, node: n.Compare) -> ast.expr:
        return ast.Compare(self.expr(node.left), [_COMPARE[op]() for op in node.ops],
                           [self.expr(c) for c in node.comparators])

    def expr_IfExp(self, node: n.IfExp) -> ast.expr:
        return ast.IfExp(self.expr(node.test), self.expr(node.body), self.expr(node.orelse))

    def expr_Await(self, node: n.Await) -> ast.expr:
        return ast.Await(self.expr(node.value))

    def expr_TupleExpr(self, node: n.TupleExpr) -> ast.expr:
        return ast.Tuple([self.expr(e) for e in node.elts], ast.Load())

    def expr_ListExpr(self, node: n.ListExpr) -> ast.expr:
        return ast.List([self.expr(e) for e in node.elts], ast.Load())

    def expr_SetExpr(self, node: n.SetExpr) -> ast.expr:
        return ast.Set([self.expr(e) for e in node.elts])

    def expr_DictExpr(self, node: n.DictExpr) -> ast.expr:
        keys = [self.expr(k) if k is not None else None for k in node.keys]
        return ast.Dict(keys, [self.expr(v) for v in node.values])

    def expr_Comprehension(self, node: n.Comprehension) -> ast.expr:
        # The first iterable is evaluated outside the comprehension, as in Python.
        first = self.expr(node.generators[0].iter)
        self.frames.append(frozenset(name.id for g in node.generators
                                     for name in target_names(g.target)))
        try:
            parts = [self.comprehension_part(g, index) for index, g in enumerate(node.generators)]
            elt = self.part(node.elt)
            value = self.part(node.value) if node.value is not None else None
        finally:
            self.frames.pop()
        if any(prelude for part in parts for prelude, _ in part[1:]) or elt[0] or \
                (value is not None and value[0]):
            return self.comprehension_def(node, first, parts, elt, value)
        generators = [
            _locate(ast.comprehension(target, first if index == 0 else iterable[1],
                                      [test for _, test in ifs], 0), g.span)
            for index, (g, (target, iterable, *ifs)) in enumerate(zip(node.generators, parts))
        ]
        if node.kind == "dict":
            return ast.DictComp(elt[1], value[1], generators)
        kind = {"list": ast.ListComp, "set": ast.SetComp, "generator": ast.GeneratorExp}[node.kind]
        return kind(elt[1], generators)

    def comprehension_part(self, generator: n.CompFor, index: int) -> list:
        """(target, (prelude, iterable), (prelude, test)...) of one `for` clause."""
        iterable = self.part(generator.iter) if index else ([], None)
        return [self.target(generator.target), iterable, *map(self.part, generator.ifs)]

    def part(self, expr: n.Expr) -> tuple[list[ast.stmt], ast.expr]:
        """An expression and the prelude it needs, kept apart."""
        self.preludes.append([])
        try:
            made = self.expr(expr)
        finally:
            prelude = self.preludes.pop()
        return prelude, made

    def comprehension_def(self, node: n.Comprehension, first: ast.expr, parts: list,
                          elt: tuple, value: tuple | None) -> ast.expr:
        """A comprehension that holds a multi-statement lambda, as a `def` with loops.

        The lambda's `def` must run for each item, inside the comprehension's scope (its
        variables are the lambda's closure): so the comprehension becomes the function
        it always was in Python, written out, with each prelude before its expression.
        Called with the first iterable, evaluated where the comprehension stands.
        """
        span = node.span
        body = self.comprehension_item(node, elt, value)
        for index in range(len(parts) - 1, -1, -1):  # the loops, innermost first
            target, (prelude, iterable), *ifs = parts[index]
            for if_prelude, test in reversed(ifs):
                body = if_prelude + [_locate(ast.If(test, body, []), span)]
            source = _name(_ITERABLE, span) if index == 0 else iterable
            body = prelude + [_locate(ast.For(target, source, body, [], None), span)]
        if node.kind != "generator":
            empty = _EMPTY[node.kind]()
            for inner in ast.walk(empty):
                _locate(inner, span)
            body = [self._assign_name(_RESULT, empty, span), *body,
                    _locate(ast.Return(_name(_RESULT, span)), span)]
        is_async = _awaits(body)
        name = self.made_name("comprehension")
        args = ast.arguments([], [_locate(ast.arg(_ITERABLE), span)], None, [], [], None, [])
        kind = ast.AsyncFunctionDef if is_async else ast.FunctionDef
        self.hoist(_locate(kind(name, args, body, [], None, None), span))
        call = _locate(ast.Call(_name(name, span), [first], []), span)
        # Python awaits an async list, set or dict comprehension where it stands.
        return ast.Await(call) if is_async and node.kind != "generator" else call

    @staticmethod
    def comprehension_item(node: n.Comprehension, elt: tuple,
                           value: tuple | None) -> list[ast.stmt]:
        """What the written-out comprehension does with each item: yield or collect it."""
        span = node.span
        if node.kind == "generator":
            return elt[0] + [_locate(ast.Expr(_locate(ast.Yield(elt[1]), span)), span)]
        if node.kind == "dict":
            key = _locate(ast.Subscript(_name(_RESULT, span), elt[1], ast.Store()), span)
            return elt[0] + value[0] + [_locate(ast.Assign([key], value[1]), span)]
        method = _locate(ast.Attribute(_name(_RESULT, span),
                                       "append" if node.kind == "list" else "add", ast.Load()),
                         span)
        return elt[0] + [_locate(ast.Expr(_locate(ast.Call(method, [elt[1]], []), span)), span)]

    def expr_Lambda(self, node: n.Lambda) -> ast.expr:
        single = self.single_expression(node)
        if single is not None:
            return single
        name = self.made_name("lambda")
        args = self.arguments(node.params, with_self=None, defaults=False)
        returns = self.annotation(node.returns) if node.returns is not None else None
        self.hoist(_locate(ast.FunctionDef(name, args, self.function_body(
            node.params, node.body, None, node.span), [], returns, None), node.span))
        # The `def` is a template; the lambda's value is a new function made from it where
        # the lambda stands, with the defaults evaluated there, as Python makes a lambda.
        return ast.Call(_runtime("make_lambda", node.span),
                        [_name(name, node.span), *self.lambda_defaults(node)], [])

    def lambda_defaults(self, node: n.Lambda) -> list[ast.expr]:
        """`make_lambda`'s arguments after the template: the positional defaults, as a
        tuple, and the keyword-only ones, as a dict; none when there are none."""
        positional: list[ast.expr] = []
        keyword: dict[str, ast.expr] = {}
        star = False
        for param in node.params:
            star = star or param.kind in ("star", "bare_star")
            if param.default is not None and star:
                keyword[param.name] = self.expr(param.default)
            elif param.default is not None:
                positional.append(self.expr(param.default))
        if not (positional or keyword):
            return []
        made: list[ast.expr] = [_locate(ast.Tuple(positional, ast.Load()), node.span)]
        if keyword:
            keys = [_locate(ast.Constant(k), node.span) for k in keyword]
            made.append(_locate(ast.Dict(keys, list(keyword.values())), node.span))
        return made

    def single_expression(self, node: n.Lambda) -> ast.Lambda | None:
        """A lambda whose body is one value, as Python's `lambda`; None when its value
        needs statements of its own (a lambda inside it does)."""
        body = node.body
        if len(body) > 1 or (body and not isinstance(body[0], n.Return)):
            return None
        self.frames.append(frozenset(p.name for p in node.params if p.kind != "bare_star"))
        try:
            if body and body[0].value is not None:
                prelude, value = self.part(body[0].value)
            else:
                prelude, value = [], _locate(ast.Constant(None), node.span)
        finally:
            self.frames.pop()
        if prelude:
            return None
        return ast.Lambda(self.arguments(node.params, with_self=None, annotated=False), value)

    def made_name(self, kind: str) -> str:
        self.made += 1
        return f"_jacc_{kind}_{self.made}"


# The locals of a written-out comprehension (comprehension_def): its result and the first
# iterable it is called with. Reserved names: no program's can clash.
_RESULT, _ITERABLE = "_jacc_result", "_jacc_iterable"
_EMPTY = {
    "list": lambda: ast.List([], ast.Load()),
    "dict": lambda: ast.Dict([], []),
    "set": lambda: ast.Set([ast.Starred(ast.Tuple([], ast.Load()), ast.Load())]),  # `{*()}`
}


def _awaits(body: list[ast.stmt]) -> bool:
    """Whether statements await, outside the functions they define."""
    pending: list[ast.AST] = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return False


def _spec_keywords(spec: RestSpec, public: bool, span: Span) -> list[ast.keyword]:
    """How a walker or a served function is served, as keywords for the runtime."""
    keywords = [
        ast.keyword("protocol", ast.Constant(spec.protocol)),
        ast.keyword("broadcast", ast.Constant(spec.broadcast)),
        ast.keyword("public", ast.Constant(public)),
    ]
    if spec.method is not None:
        keywords.append(ast.keyword("method", ast.Constant(spec.method)))
    if spec.path is not None:
        keywords.append(ast.keyword("path", ast.Constant(spec.path)))
    return [_locate_keyword(keyword, span) for keyword in keywords]


def _locate_keyword(keyword: ast.keyword, span: Span) -> ast.keyword:
    _locate(keyword.value, span)
    return _locate(keyword, span)


def _unwritable_fstring(joined: ast.JoinedStr) -> bool:
    """Whether `ast.unparse` (so `jacc build`) cannot write this f-string: Python 3.11
    allows no backslash between its braces, where a Jac string may need one."""
    inner = (node for value in joined.values if isinstance(value, ast.FormattedValue)
             for node in ast.walk(value.value))
    if not any(isinstance(node, (ast.Constant, ast.JoinedStr)) for node in inner):
        return False
    try:
        ast.unparse(joined)
    except ValueError:
        return True
    return False


def _format_call(joined: ast.JoinedStr, span: Span) -> ast.Call:
    """`f"a{x!r:>{w}}"` as `'a{!r:>{}}'.format(x, w)`: the same conversions, format specs
    and order of evaluation, with no name that the program could shadow."""
    def template(values: list[ast.expr]) -> str:
        parts = []
        for value in values:
            if isinstance(value, ast.Constant):
                parts.append(value.value.replace("{", "{{").replace("}", "}}"))
                continue
            args.append(value.value)
            conversion = f"!{chr(value.conversion)}" if value.conversion != -1 else ""
            spec = f":{template(value.format_spec.values)}" if value.format_spec else ""
            parts.append("{" + conversion + spec + "}")
        return "".join(parts)

    args: list[ast.expr] = []
    method = ast.Attribute(_locate(ast.Constant(template(joined.values)), span), "format",
                           ast.Load())
    return _locate(ast.Call(_locate(method, span), args, []), span)


def generate(module: n.Module) -> ast.Module:
    """The located Python AST of a checked module."""
    return CodeGen(module).module()


# ---------------------------------------------------------------- built modules

# The text of a built module is written by `emit`; named here too, where it was first.
from .emit import UnwritableModule, module_source  # noqa: E402,F401
