"""Lark parse tree → `nodes`. The transformer only builds nodes: it never raises.

It runs inside the LALR parser (`parser.py` hands it to Lark), so each callback
receives the already-lowered children of its rule and unpacks them by name: the
grammar writes optional parts `[x]`, which arrive as None, so a rule's children
have a fixed shape. Spans come from the first and last child that has one: tokens
carry their positions, so Lark's `propagate_positions` (which nearly doubles parse
time) is not needed. Literals are lowered by `literals`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from lark import Token, Transformer

from . import literals
from . import nodes as n
from .source import Span


# Parts of nodes that are not nodes themselves.
@dataclass(frozen=True, slots=True)
class _Doc:
    """A docstring: where it stands decides what it documents."""

    value: str | None
    span: Span


@dataclass(frozen=True, slots=True)
class _Dotted:
    """A module's dotted name, `a.b.c`."""

    value: str
    span: Span


def _span_of(item: Any) -> Span | None:
    if isinstance(item, Token):
        return Span.of_token(item)
    return getattr(item, "span", None)


def _span(*items: Any) -> Span:
    # Only the first and the last placed item count: the ones between are not looked at.
    for item in items:
        if (first := _span_of(item)) is not None:
            break
    for item in reversed(items):
        if (last := _span_of(item)) is not None:
            break
    return first.to(last)


def _text(token: Token | None) -> str | None:
    return None if token is None else str(token)


class Lower(Transformer):
    """Builds `nodes` from the rules of grammar/jac.lark, bottom-up."""

    def __init__(self, parse_fstring_expr: literals.ParseExpr) -> None:
        super().__init__(visit_tokens=False)
        self._parse_fstring_expr = parse_fstring_expr

    # ------------------------------------------------------------ module level

    def start(self, items: list) -> n.Module:
        docstring = None
        first_doc = bool(items) and isinstance(items[0], _Doc)
        if first_doc:  # the module's: the file's first string
            docstring = items[0].value
        body, strays = _documented(items[1:] if first_doc else items)
        # Imports arrive as tuples of nodes: take the spans of what they hold.
        spans = sorted(s for s in map(_span_of, [*body, *items]) if s is not None)
        span = spans[0].to(spans[-1]) if spans else Span(1, 1, 1, 1)
        return n.Module(span, docstring, tuple(body), tuple(strays))

    def fstring_expr(self, items: list) -> Any:
        [value] = items
        return value

    def docstring(self, items: list) -> _Doc:
        [string] = items
        value = string.value if isinstance(string, n.Constant) else None
        return _Doc(value if isinstance(value, str) else None, string.span)

    def dotted_name(self, items: list) -> _Dotted:
        return _Dotted(".".join(items), _span(*items))

    def import_from(self, items: list) -> n.ImportFrom:
        _, module, *names = items
        return n.ImportFrom(_span(*items), module.value, tuple(names))

    def import_name(self, items: list) -> n.ImportName:
        name, alias = items
        return n.ImportName(_span(*items), str(name), _text(alias))

    def import_modules(self, items: list) -> tuple:
        _, *modules = items
        return tuple(modules)

    def import_module(self, items: list) -> n.ImportModule:
        module, alias = items
        return n.ImportModule(_span(*items), module.value, _text(alias))

    def glob_stmt(self, items: list) -> n.Glob:
        _, *globs = items
        return n.Glob(_span(*items), tuple(globs))

    def glob_item(self, items: list) -> n.GlobItem:
        name, annotation, value = items
        return n.GlobItem(_span(*items), str(name), annotation, value)

    def annotation(self, items: list) -> n.Expr:
        [expr] = items
        return expr

    default = returns = annotation  # `= value`, `-> TYPE`: the expression is all they hold

    def decorated(self, items: list) -> n.Walker | n.Function:
        *decorators, target = items
        return replace(target, decorators=tuple(decorators),
                       span=decorators[0].span.to(target.span))

    decorated_method = decorated

    def decorator(self, items: list) -> n.Decorator:
        _, expr = items
        return n.Decorator(_span(*items), expr)

    def function(self, items: list) -> n.Function:
        async_, _, access, name, params, returns, body = items
        return n.Function(_span(*items), str(name), Span.of_token(name), params or (), returns,
                          _returning_tail(body), async_ is not None, (), access=_text(access))

    def parameters(self, items: list) -> tuple:
        return tuple(items)

    def plain_param(self, items: list) -> n.Param:
        name, annotation, default = items
        return n.Param(_span(*items), str(name), "plain", annotation, default)

    def star_param(self, items: list) -> n.Param:
        _, name, annotation = items
        return n.Param(_span(*items), str(name), "star", annotation, None)

    def double_star_param(self, items: list) -> n.Param:
        _, name, annotation = items
        return n.Param(_span(*items), str(name), "double_star", annotation, None)

    def bare_star(self, items: list) -> n.Param:
        return n.Param(_span(*items), "*", "bare_star", None, None)

    # ------------------------------------------------------------ walkers

    def walker(self, items: list) -> n.Walker:
        async_, keyword, access, name, bases, *body = items
        members, strays = _documented(body)
        return n.Walker(
            _span(*items), str(name), Span.of_token(name), _span(async_ or keyword, keyword),
            async_ is not None, _text(access), bases or (), tuple(members), (), None,
            tuple(strays),
        )

    def access(self, items: list) -> Token:
        [word] = items  # `pub`, `priv` or `protect`
        return word

    def bases(self, items: list) -> tuple:
        return tuple(items)

    def has_stmt(self, items: list) -> tuple:
        static, _, *fields = items
        return tuple(replace(f, static=static is not None) for f in fields)

    def has_item(self, items: list) -> n.HasField:
        name, annotation, default = items
        return n.HasField(_span(*items), str(name), annotation, default, False)

    def ability(self, items: list) -> n.Ability:
        async_, _, name, trigger, event, body = items
        return n.Ability(
            _span(*items), _text(name), str(event), _text(trigger),
            Span.of_token(trigger) if trigger else None, _text(trigger) == "`root",
            async_ is not None, _returning_tail(body),
        )

    def trigger(self, items: list) -> Token:
        [word] = items  # `Root`, another name, or `` `root ``
        return word

    # ------------------------------------------------------------ statements

    def block(self, items: list) -> tuple:
        *statements, tail = items
        if tail is not None:  # an expression before `}` with no `;` after it
            statements.append(n.ExprStmt(tail.span, tail, semicolon=False))
        return tuple(statements)

    def expr_stmt(self, items: list) -> n.ExprStmt:
        [value] = items
        return n.ExprStmt(value.span, value)

    def assignment(self, items: list) -> n.Assign:
        *targets, value = items
        return n.Assign(_span(*items), tuple(targets), value)

    def typed_assignment(self, items: list) -> n.AnnAssign:
        name, annotation, value = items
        target = n.Name(Span.of_token(name), str(name))
        return n.AnnAssign(_span(*items), target, annotation, value)

    def aug_assignment(self, items: list) -> n.AugAssign:
        target, op, value = items
        return n.AugAssign(_span(*items), target, str(op)[:-1], value)

    def report_stmt(self, items: list) -> n.Report:
        _, value = items
        return n.Report(_span(*items), value)

    def return_stmt(self, items: list) -> n.Return:
        _, value = items
        return n.Return(_span(*items), value)

    # Generators (docs/language.md, "Streams").
    def yield_stmt(self, items: list) -> n.Yield:
        _, value = items
        return n.Yield(_span(*items), value)

    def yield_from_stmt(self, items: list) -> n.YieldFrom:
        _, value = items
        return n.YieldFrom(_span(*items), value)

    def disengage_stmt(self, items: list) -> n.Disengage:
        return n.Disengage(_span(*items))

    def break_stmt(self, items: list) -> n.Break:
        return n.Break(_span(*items))

    def continue_stmt(self, items: list) -> n.Continue:
        return n.Continue(_span(*items))

    def raise_stmt(self, items: list) -> n.Raise:
        _, exc, cause = items
        return n.Raise(_span(*items), exc, cause)

    def assert_stmt(self, items: list) -> n.Assert:
        _, test, msg = items
        return n.Assert(_span(*items), test, msg)

    def global_stmt(self, items: list) -> n.Global:
        _, *names = items
        return n.Global(_span(*items), tuple(map(str, names)))

    def nonlocal_stmt(self, items: list) -> n.Nonlocal:
        _, *names = items
        return n.Nonlocal(_span(*items), tuple(map(str, names)))

    def delete_stmt(self, items: list) -> n.Delete:
        _, target = items
        targets = target.elts if isinstance(target, n.TupleExpr) else (target,)
        return n.Delete(_span(*items), targets)

    def if_stmt(self, items: list) -> n.If:
        keyword, test, body, *elifs, orelse = items
        orelse = orelse or ()
        for clause in reversed(elifs):  # each `elif` is an If in the `else` of the one before
            orelse = (replace(clause, orelse=orelse),)
        # Like the other compound statements', the span ends where the block begins.
        return n.If(_span(keyword, test), test, body, orelse)

    def elif_clause(self, items: list) -> n.If:
        test, body = items
        return n.If(_span(*items), test, body, ())

    def else_clause(self, items: list) -> tuple:
        [body] = items
        return body

    finally_clause = else_clause

    def while_stmt(self, items: list) -> n.While:
        _, test, body, orelse = items
        return n.While(_span(*items), test, body, orelse or ())

    def for_stmt(self, items: list) -> n.For:
        _, target, iterable, body, orelse = items
        return n.For(_span(*items), target, iterable, body, orelse or ())

    def targets(self, items: list) -> Any:
        return items[0] if len(items) == 1 else n.TupleExpr(_span(*items), tuple(items))

    def try_stmt(self, items: list) -> n.Try:
        _, body, *handlers, orelse, finalbody = items
        return n.Try(_span(*items), body, tuple(handlers), orelse or (), finalbody or ())

    def except_clause(self, items: list) -> n.ExceptHandler:
        type_, name, body = items
        return n.ExceptHandler(_span(*items), type_, _text(name), body)

    # ------------------------------------------------------------ expressions

    def tuple(self, items: list) -> n.TupleExpr:
        return n.TupleExpr(_span(*items), tuple(items))

    def conditional(self, items: list) -> n.IfExp:
        body, test, orelse = items
        return n.IfExp(_span(*items), test, body, orelse)

    def op_chain(self, items: list) -> Any:
        return _fold(items)

    arithmetic_chain = op_chain

    def lambda_expr(self, items: list) -> n.Lambda:
        _, params, returns, body = items
        if len(body) == 1 and isinstance(body[0], n.ExprStmt):  # `lambda (x) { x + 1; }`
            body = (n.Return(body[0].span, body[0].value),)
        # The block's braces are not kept: the span ends with the body's last statement.
        return n.Lambda(_span(*items, *body), params or (), returns, _returning_tail(body))

    def lambda_params(self, items: list) -> tuple:
        [params] = items
        return params or ()

    def call(self, items: list) -> n.Call:
        func, args, _ = items
        args = args or ()
        positional = tuple(a for a in args if not isinstance(a, n.Keyword))
        keywords = tuple(a for a in args if isinstance(a, n.Keyword))
        return n.Call(_span(*items), func, positional, keywords)

    def arguments(self, items: list) -> tuple:
        return tuple(items)

    def generator_arg(self, items: list) -> n.Comprehension:
        elt, generators = items
        return n.Comprehension(_span(*items), "generator", elt, None, generators)

    def keyword_arg(self, items: list) -> n.Keyword:
        name, value = items
        return n.Keyword(_span(*items), str(name), value)

    def star_arg(self, items: list) -> n.Starred:
        _, value = items
        return n.Starred(_span(*items), value)

    starred = star_arg

    def double_star_arg(self, items: list) -> n.Keyword:
        _, value = items
        return n.Keyword(_span(*items), None, value)

    def subscript(self, items: list) -> n.Subscript:
        value, index, _ = items
        return n.Subscript(_span(*items), value, index)

    def subscript_tuple(self, items: list) -> n.TupleExpr:
        return n.TupleExpr(_span(*items), tuple(items))

    def slice(self, items: list) -> n.Slice:
        # Omitted parts are None; the first colon is always there to take the span from.
        lower, _, upper, _, step = items
        return n.Slice(_span(*items), lower, upper, step)

    def attribute(self, items: list) -> n.Attribute:
        value, name = items
        return n.Attribute(_span(*items), value, str(name), Span.of_token(name))

    def name(self, items: list) -> n.Name:
        [token] = items
        return n.Name(Span.of_token(token), str(token))

    def self_ref(self, items: list) -> n.SelfRef:
        [token] = items
        return n.SelfRef(Span.of_token(token))

    def number(self, items: list) -> n.Constant | n.BadString:
        [token] = items
        return literals.number(token)

    def constant(self, items: list) -> n.Constant:
        [token] = items
        value = {"None": None, "True": True, "False": False, "...": ...}[str(token)]
        return n.Constant(Span.of_token(token), value)

    def string(self, items: list) -> n.Constant | n.FString | n.BadString:
        [token] = items
        return literals.string(token, self._parse_fstring_expr)

    def strings(self, items: list) -> Any:
        if len(items) == 1:
            return items[0]
        return literals.concatenate(_span(*items), items)

    def paren(self, items: list) -> Any:
        _, value, _ = items
        return value

    def tuple_display(self, items: list) -> n.TupleExpr:
        return n.TupleExpr(_span(*items), ())

    def generator(self, items: list) -> n.Comprehension:
        _, elt, generators, _ = items
        return n.Comprehension(_span(*items), "generator", elt, None, generators)

    def list_display(self, items: list) -> n.ListExpr:
        _, elements, _ = items
        return n.ListExpr(_span(*items), elements or ())

    def list_comp(self, items: list) -> n.Comprehension:
        _, elt, generators, _ = items
        return n.Comprehension(_span(*items), "list", elt, None, generators)

    def dict_display(self, items: list) -> n.DictExpr:
        _, pairs, _ = items
        pairs = pairs or ()
        return n.DictExpr(_span(*items), tuple(k for k, _ in pairs), tuple(v for _, v in pairs))

    def dict_comp(self, items: list) -> n.Comprehension:
        _, key, value, generators, _ = items
        return n.Comprehension(_span(*items), "dict", key, value, generators)

    def set_display(self, items: list) -> n.SetExpr:
        _, elements, _ = items
        return n.SetExpr(_span(*items), elements)

    def set_comp(self, items: list) -> n.Comprehension:
        _, elt, generators, _ = items
        return n.Comprehension(_span(*items), "set", elt, None, generators)

    def list_items(self, items: list) -> tuple:
        return tuple(items)

    set_items = dict_items = list_items

    def dict_item(self, items: list) -> tuple:
        key, value = items
        return (key, value)

    def dict_unpack(self, items: list) -> tuple:
        _, value = items
        return (None, value)

    def comp_for(self, items: list) -> tuple:
        keyword, target, iterable, *ifs, nested = items
        here = n.CompFor(_span(keyword, iterable), target, iterable, tuple(ifs))
        return (here,) + (nested or ())

    def comp_if(self, items: list) -> n.Expr:
        [test] = items
        return test


# ---------------------------------------------------------------- docstrings and tails


def _documented(items: list) -> tuple[list, list[Span]]:
    """The declarations among `items` (a `has` statement's fields, imports: tuples), each
    with the docstring written just before it; and the docstrings that document nothing.

    A docstring before a glob or an import is Jac's too, but Python has nowhere to keep it.
    """
    declarations: list = []
    strays: list[Span] = []
    pending: _Doc | None = None
    for item in items:
        if isinstance(item, _Doc):
            if pending is not None:
                strays.append(pending.span)
            pending = item
            continue
        doc = pending.value if pending is not None else None
        pending = None
        if isinstance(item, tuple):
            fields = all(isinstance(i, n.HasField) for i in item)
            declarations.extend(replace(i, doc=doc) if fields and doc is not None else i
                                for i in item)
        elif isinstance(item, (n.Walker, n.Function, n.Ability)) and doc is not None:
            declarations.append(replace(item, docstring=doc))
        else:
            declarations.append(item)
    if pending is not None:
        strays.append(pending.span)
    return declarations, strays


def _returning_tail(body: tuple) -> tuple:
    """A function's, ability's or lambda's body whose last expression, written without
    `;`, is its return value."""
    if body and isinstance(body[-1], n.ExprStmt) and not body[-1].semicolon:
        last = body[-1]
        return body[:-1] + (n.Return(last.span, last.value),)
    return body


# ---------------------------------------------------------------- operators

# Python's binding powers. Prefix operators bind their operand up to the next
# operator that binds less tightly: `not a == b` is `not (a == b)`, `-a ** b` is
# `-(a ** b)`, `-a * b` is `(-a) * b`.
_INFIX_POWER = {
    "or": 1, "and": 2,
    "<": 4, ">": 4, "==": 4, ">=": 4, "<=": 4, "!=": 4, "in": 4, "not in": 4, "is": 4,
    "is not": 4,
    "|": 5, "^": 6, "&": 7, "<<": 8, ">>": 8, "+": 9, "-": 9,
    "*": 10, "/": 10, "//": 10, "%": 10, "@": 10, "**": 12,
}
_PREFIX_POWER = {"not": 3, "+": 11, "-": 11, "~": 11, "await": 13}
_COMPARISON = 4
_RIGHT_ASSOCIATIVE = "**"


@dataclass(slots=True)
class _Pending:
    """An operator waiting for its operands on the fold's stack."""

    op: str
    token: Token
    power: int
    arity: int  # 1 for a prefix; for a comparison, its operands; 2 otherwise
    ops: list[str] | None = None  # a chained comparison's operators


def _fold(items: list) -> Any:
    """The flat `op_chain` (operands, prefix and infix tokens) as a tree, by Python's
    precedence. Iterative (shunting-yard), so that no chain, however long or however
    deeply prefixed, can exhaust the recursion limit while parsing."""
    operands: list = []
    pending: list[_Pending] = []
    expect_operand = True
    position, end = 0, len(items)
    while position < end:
        item = items[position]
        position += 1
        if expect_operand and isinstance(item, Token):  # a prefix: `not`, `-`, `await`...
            pending.append(_Pending(str(item), item, _PREFIX_POWER[str(item)], 1))
            continue
        if expect_operand:
            operands.append(item)
            expect_operand = False
            continue
        op = str(item)
        if op in ("is", "not") and position < end and str(items[position]) in ("not", "in") \
                and isinstance(items[position], Token):
            op = f"{op} {items[position]}"  # `is not`, `not in`
            position += 1
        power = _INFIX_POWER[op]
        while pending and _binds_first(pending[-1], op, power):
            _reduce(operands, pending)
        if power == _COMPARISON and pending and pending[-1].ops is not None:
            pending[-1].ops.append(op)  # `a < b <= c` is one comparison
            pending[-1].arity += 1
        else:
            ops = [op] if power == _COMPARISON else None
            pending.append(_Pending(op, item, power, 2, ops))
        expect_operand = True
    while pending:
        _reduce(operands, pending)
    [tree] = operands
    return tree


def _binds_first(top: _Pending, op: str, power: int) -> bool:
    """Whether the operator on top of the stack takes its operands before `op` does."""
    if top.power != power:
        return top.power > power
    # Equal powers: left associative, but `**` groups to the right and comparisons chain.
    return op != _RIGHT_ASSOCIATIVE and power != _COMPARISON


def _reduce(operands: list, pending: list[_Pending]) -> None:
    top = pending.pop()
    if top.arity == 1:
        operand = operands.pop()
        span = Span.of_token(top.token).to(operand.span)
        operands.append(n.Await(span, operand) if top.op == "await"
                        else n.UnaryOp(span, top.op, operand))
        return
    values = operands[len(operands) - top.arity:]
    del operands[len(operands) - top.arity:]
    left, right = values[0], values[-1]
    span = left.span.to(right.span)
    if top.ops is not None:
        operands.append(n.Compare(span, left, tuple(top.ops), tuple(values[1:])))
    elif top.op in ("and", "or"):
        flat = left.values if isinstance(left, n.BoolOp) and left.op == top.op else (left,)
        operands.append(n.BoolOp(span, top.op, flat + (right,)))
    else:
        operands.append(n.BinOp(span, left, top.op, right))
