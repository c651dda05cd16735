"""Lark parse tree → `nodes`. The transformer only builds nodes: it never raises.

It runs inside the LALR parser (`parser.py` hands it to Lark), so each callback
receives the already-lowered children of its rule. Spans come from the first and
last child that has one: tokens carry their positions, so Lark's
`propagate_positions` (which nearly doubles parse time) is not needed. Literals
are lowered by `literals`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, get_args

from lark import Token, Transformer

from . import literals
from . import nodes as n
from .source import Span


# Intermediate values of rules that are parts of a node, not nodes themselves.
@dataclass(frozen=True, slots=True)
class _Part:
    kind: str
    value: Any
    span: Span | None = None


_MEMBERS = get_args(n.Member)


def _span_of(item: Any) -> Span | None:
    if isinstance(item, Token):
        return Span.of_token(item)
    return getattr(item, "span", None)


def _span(*items: Any) -> Span:
    spans = [s for s in map(_span_of, items) if s is not None]
    return spans[0].to(spans[-1])


def _part(items: list, kind: str) -> Any:
    for item in items:
        if isinstance(item, _Part) and item.kind == kind:
            return item.value
    return None


def _parts(items: list, kind: str) -> list:
    return [i.value for i in items if isinstance(i, _Part) and i.kind == kind]


def _token(items: list, type_: str) -> Token | None:
    for item in items:
        if isinstance(item, Token) and item.type == type_:
            return item
    return None


def _nodes(items: list, kind: type | tuple) -> tuple:
    return tuple(i for i in items if isinstance(i, kind))


class Lower(Transformer):
    """Builds `nodes` from the rules of grammar/jac.lark, bottom-up."""

    def __init__(self, parse_fstring_expr: literals.ParseExpr) -> None:
        super().__init__(visit_tokens=False)
        self._parse_fstring_expr = parse_fstring_expr

    # ------------------------------------------------------------ module level

    def start(self, items: list) -> n.Module:
        body: list = []
        docstring = None
        pending = None  # a docstring written just before a walker documents it
        for index, item in enumerate(items):
            if isinstance(item, _Part):  # a docstring
                if index == 0:
                    docstring = item.value
                else:
                    pending = item.value
                continue
            if isinstance(item, tuple):
                body.extend(item)
            elif isinstance(item, n.Walker) and pending is not None and item.docstring is None:
                body.append(replace(item, docstring=pending))
            else:
                body.append(item)
            pending = None
        # Imports arrive as tuples of nodes: take the spans of what they hold.
        spans = sorted(s for s in map(_span_of, [*body, *items]) if s is not None)
        span = spans[0].to(spans[-1]) if spans else Span(1, 1, 1, 1)
        return n.Module(span, docstring, tuple(body))

    def fstring_expr(self, items: list) -> Any:
        return items[0]

    def docstring(self, items: list) -> _Part:
        value = items[0].value if isinstance(items[0], n.Constant) else None
        return _Part("doc", value if isinstance(value, str) else None, items[0].span)

    def dotted_name(self, items: list) -> _Part:
        return _Part("dotted", ".".join(items), _span(*items))

    def import_from(self, items: list) -> n.ImportFrom:
        return n.ImportFrom(_span(*items), _part(items, "dotted"), _nodes(items, n.ImportName))

    def import_name(self, items: list) -> n.ImportName:
        return n.ImportName(_span(*items), str(items[0]), str(items[1]) if len(items) > 1 else None)

    def import_modules(self, items: list) -> tuple:
        return _nodes(items, n.ImportModule)

    def import_module(self, items: list) -> n.ImportModule:
        alias = str(items[1]) if len(items) > 1 else None
        return n.ImportModule(_span(*items), items[0].value, alias)

    def glob_stmt(self, items: list) -> n.Glob:
        return n.Glob(_span(*items), _nodes(items, n.GlobItem))

    def glob_item(self, items: list) -> n.GlobItem:
        return n.GlobItem(_span(*items), str(items[0]), _part(items, "annotation"), items[-1])

    def annotation(self, items: list) -> _Part:
        return _Part("annotation", items[0], items[0].span)

    def default(self, items: list) -> _Part:
        return _Part("default", items[0], items[0].span)

    def returns(self, items: list) -> _Part:
        return _Part("returns", items[0], items[0].span)

    def decorated(self, items: list) -> Any:
        decorators = _nodes(items, n.Decorator)
        target = items[-1]
        return replace(target, decorators=decorators, span=decorators[0].span.to(target.span))

    decorated_method = decorated

    def decorator(self, items: list) -> n.Decorator:
        return n.Decorator(_span(*items), items[1])

    def function(self, items: list) -> n.Function:
        name = _token(items, "NAME")
        block = _part(items, "block")
        return n.Function(
            _span(*items), str(name), Span.of_token(name), tuple(_part(items, "params") or ()),
            _part(items, "returns"), block, _token(items, "ASYNC") is not None, (),
        )

    def parameters(self, items: list) -> _Part:
        return _Part("params", items)

    def plain_param(self, items: list) -> n.Param:
        return n.Param(_span(*items), str(items[0]), "plain", _part(items, "annotation"),
                       _part(items, "default"))

    def star_param(self, items: list) -> n.Param:
        return n.Param(_span(*items), str(items[1]), "star", _part(items, "annotation"), None)

    def double_star_param(self, items: list) -> n.Param:
        return n.Param(_span(*items), str(items[1]), "double_star", _part(items, "annotation"), None)

    def bare_star(self, items: list) -> n.Param:
        return n.Param(_span(*items), "*", "bare_star", None, None)

    # ------------------------------------------------------------ walkers

    def walker(self, items: list) -> n.Walker:
        keyword = _token(items, "WALKER")
        async_ = _token(items, "ASYNC")
        name = _token(items, "NAME")
        members: list = []
        docstring = None
        for item in items:
            if isinstance(item, tuple):  # a `has` statement's fields
                members.extend(item)
            elif isinstance(item, _MEMBERS):
                members.append(item)
            elif isinstance(item, _Part) and item.kind == "doc" and docstring is None:
                docstring = item.value
        return n.Walker(
            _span(*items), str(name), Span.of_token(name), _span(async_ or keyword, keyword),
            async_ is not None, _part(items, "access"), tuple(_part(items, "bases") or ()),
            tuple(members), (), docstring,
        )

    def access(self, items: list) -> _Part:
        return _Part("access", str(items[0]), _span(*items))

    def bases(self, items: list) -> _Part:
        return _Part("bases", items)

    def has_stmt(self, items: list) -> tuple:
        static = _token(items, "STATIC") is not None
        return tuple(replace(f, static=static) for f in _nodes(items, n.HasField))

    def has_item(self, items: list) -> n.HasField:
        return n.HasField(_span(*items), str(items[0]), _part(items, "annotation"),
                          _part(items, "default"), False)

    def ability(self, items: list) -> n.Ability:
        event = _token(items, "ENTRY") or _token(items, "EXIT")
        trigger = _part(items, "trigger")
        trigger_span = next((i.span for i in items if isinstance(i, _Part) and i.kind == "trigger"),
                            None)
        name = _token(items, "NAME")
        return n.Ability(
            _span(*items), str(name) if name else None, str(event), trigger, trigger_span,
            trigger == "`root", _token(items, "ASYNC") is not None, _part(items, "block"),
        )

    def trigger(self, items: list) -> _Part:
        return _Part("trigger", str(items[0]), _span(*items))

    # ------------------------------------------------------------ statements

    def block(self, items: list) -> _Part:
        return _Part("block", tuple(items))  # `statement*`: nothing else reaches here

    def expr_stmt(self, items: list) -> n.ExprStmt:
        return n.ExprStmt(items[0].span, items[0])

    def assignment(self, items: list) -> n.Assign:
        return n.Assign(_span(*items), tuple(items[:-1]), items[-1])

    def typed_assignment(self, items: list) -> n.AnnAssign:
        target = n.Name(Span.of_token(items[0]), str(items[0]))
        value = items[2] if len(items) > 2 else None
        return n.AnnAssign(_span(*items), target, _part(items, "annotation"), value)

    def aug_assignment(self, items: list) -> n.AugAssign:
        return n.AugAssign(_span(*items), items[0], str(items[1])[:-1], items[2])

    def report_stmt(self, items: list) -> n.Report:
        return n.Report(_span(*items), items[1])

    def return_stmt(self, items: list) -> n.Return:
        return n.Return(_span(*items), items[1] if len(items) > 1 else None)

    def disengage_stmt(self, items: list) -> n.Disengage:
        return n.Disengage(_span(*items))

    def break_stmt(self, items: list) -> n.Break:
        return n.Break(_span(*items))

    def continue_stmt(self, items: list) -> n.Continue:
        return n.Continue(_span(*items))

    def raise_stmt(self, items: list) -> n.Raise:
        exprs = items[1:]
        return n.Raise(_span(*items), exprs[0] if exprs else None,
                       exprs[1] if len(exprs) > 1 else None)

    def assert_stmt(self, items: list) -> n.Assert:
        return n.Assert(_span(*items), items[1], items[2] if len(items) > 2 else None)

    def global_stmt(self, items: list) -> n.Global:
        return n.Global(_span(*items), tuple(str(t) for t in items[1:]))

    def nonlocal_stmt(self, items: list) -> n.Nonlocal:
        return n.Nonlocal(_span(*items), tuple(str(t) for t in items[1:]))

    def delete_stmt(self, items: list) -> n.Delete:
        target = items[1]
        targets = target.elts if isinstance(target, n.TupleExpr) else (target,)
        return n.Delete(_span(*items), targets)

    def if_stmt(self, items: list) -> n.If:
        orelse = _part(items, "else") or ()
        for clause in reversed(_parts(items, "elif")):
            test, body, span = clause
            orelse = (n.If(span, test, body, orelse),)
        return n.If(_span(*items), items[1], _part(items, "block"), orelse)

    def elif_clause(self, items: list) -> _Part:
        return _Part("elif", (items[0], items[1].value, _span(*items)))

    def else_clause(self, items: list) -> _Part:
        return _Part("else", items[0].value)

    def finally_clause(self, items: list) -> _Part:
        return _Part("finally", items[0].value)

    def while_stmt(self, items: list) -> n.While:
        return n.While(_span(*items), items[1], _part(items, "block"), _part(items, "else") or ())

    def for_stmt(self, items: list) -> n.For:
        return n.For(_span(*items), items[1], items[2], _part(items, "block"),
                     _part(items, "else") or ())

    def targets(self, items: list) -> Any:
        return items[0] if len(items) == 1 else n.TupleExpr(_span(*items), tuple(items))

    def try_stmt(self, items: list) -> n.Try:
        return n.Try(_span(*items), _part(items, "block"), _nodes(items, n.ExceptHandler),
                     _part(items, "else") or (), _part(items, "finally") or ())

    def except_clause(self, items: list) -> n.ExceptHandler:
        name = _token(items, "NAME")
        return n.ExceptHandler(_span(*items), items[0], str(name) if name else None,
                               _part(items, "block"))

    # ------------------------------------------------------------ expressions

    def tuple(self, items: list) -> n.TupleExpr:
        return n.TupleExpr(_span(*items), tuple(items))

    def conditional(self, items: list) -> n.IfExp:
        body, test, orelse = items
        return n.IfExp(_span(*items), test, body, orelse)

    def op_chain(self, items: list) -> Any:
        return _OperatorFold(items).fold()

    def call(self, items: list) -> n.Call:
        args = items[1].value if len(items) > 2 else []
        positional = tuple(a for a in args if not isinstance(a, n.Keyword))
        keywords = tuple(a for a in args if isinstance(a, n.Keyword))
        return n.Call(_span(*items), items[0], positional, keywords)

    def arguments(self, items: list) -> _Part:
        return _Part("args", items)

    def generator_arg(self, items: list) -> n.Comprehension:
        return n.Comprehension(_span(*items), "generator", items[0], None, items[1])

    def keyword_arg(self, items: list) -> n.Keyword:
        return n.Keyword(_span(*items), str(items[0]), items[1])

    def star_arg(self, items: list) -> n.Starred:
        return n.Starred(_span(*items), items[1])

    def double_star_arg(self, items: list) -> n.Keyword:
        return n.Keyword(_span(*items), None, items[1])

    def subscript(self, items: list) -> n.Subscript:
        return n.Subscript(_span(*items), items[0], items[1])

    def subscript_tuple(self, items: list) -> n.TupleExpr:
        return n.TupleExpr(_span(*items), tuple(items))

    def slice(self, items: list) -> n.Slice:
        # Omitted parts are None; the colons are always there to take the span from.
        lower, _, upper, *second = items
        step = second[1] if second else None
        return n.Slice(_span(*items), lower, upper, step)

    def attribute(self, items: list) -> n.Attribute:
        return n.Attribute(_span(*items), items[0], str(items[1]), Span.of_token(items[1]))

    def name(self, items: list) -> n.Name:
        return n.Name(Span.of_token(items[0]), str(items[0]))

    def self_ref(self, items: list) -> n.SelfRef:
        return n.SelfRef(Span.of_token(items[0]))

    def number(self, items: list) -> n.Constant | n.BadString:
        return literals.number(items[0])

    def constant(self, items: list) -> n.Constant:
        value = {"None": None, "True": True, "False": False, "...": ...}[str(items[0])]
        return n.Constant(Span.of_token(items[0]), value)

    def string(self, items: list) -> n.Constant | n.FString | n.BadString:
        return literals.string(items[0], self._parse_fstring_expr)

    def strings(self, items: list) -> Any:
        if len(items) == 1:
            return items[0]
        return literals.concatenate(_span(*items), items)

    def paren(self, items: list) -> Any:
        return items[1]

    def tuple_display(self, items: list) -> n.TupleExpr:
        return n.TupleExpr(_span(*items), ())

    def generator(self, items: list) -> n.Comprehension:
        return n.Comprehension(_span(*items), "generator", items[1], None, items[2])

    def list_display(self, items: list) -> n.ListExpr:
        return n.ListExpr(_span(*items), tuple(items[1].value) if len(items) > 2 else ())

    def list_comp(self, items: list) -> n.Comprehension:
        return n.Comprehension(_span(*items), "list", items[1], None, items[2])

    def dict_display(self, items: list) -> n.DictExpr:
        pairs = items[1].value if len(items) > 2 else []
        return n.DictExpr(_span(*items), tuple(k for k, _ in pairs), tuple(v for _, v in pairs))

    def dict_comp(self, items: list) -> n.Comprehension:
        return n.Comprehension(_span(*items), "dict", items[1], items[2], items[3])

    def set_display(self, items: list) -> n.SetExpr:
        return n.SetExpr(_span(*items), tuple(items[1].value))

    def set_comp(self, items: list) -> n.Comprehension:
        return n.Comprehension(_span(*items), "set", items[1], None, items[2])

    def list_items(self, items: list) -> _Part:
        return _Part("items", items)

    set_items = list_items

    def starred(self, items: list) -> n.Starred:
        return n.Starred(_span(*items), items[1])

    def dict_items(self, items: list) -> _Part:
        return _Part("items", items)

    def dict_item(self, items: list) -> tuple:
        return (items[0], items[1])

    def dict_unpack(self, items: list) -> tuple:
        return (None, items[1])

    def comp_for(self, items: list) -> tuple:
        ifs = tuple(i.value for i in items if isinstance(i, _Part))
        nested = items[-1] if isinstance(items[-1], tuple) else ()
        here = n.CompFor(_span(items[0], items[2]), items[1], items[2], ifs)
        return (here,) + nested

    def comp_if(self, items: list) -> _Part:
        return _Part("if", items[0], items[0].span)


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


class _OperatorFold:
    """Folds the flat `op_chain` (operands, prefix and infix tokens) into a tree."""

    def __init__(self, items: list) -> None:
        self.items = items
        self.position = 0

    def fold(self) -> Any:
        return self.expression(0)

    def take(self) -> Any:
        item = self.items[self.position]
        self.position += 1
        return item

    def peek_infix(self) -> tuple[str, Token, int] | None:
        if self.position >= len(self.items):
            return None
        first = self.items[self.position]
        second = self.items[self.position + 1] if self.position + 1 < len(self.items) else None
        if isinstance(second, Token) and (first, second) in (("not", "in"), ("is", "not")):
            return f"{first} {second}", first, 2
        return str(first), first, 1

    def expression(self, min_power: int) -> Any:
        left = self.operand()
        while (infix := self.peek_infix()) is not None:
            op, token, width = infix
            power = _INFIX_POWER[op]
            if power <= min_power:
                break
            self.position += width
            if power == _COMPARISON:
                left = self.comparison(left, op)
            elif op == "**":  # right associative, and its right side may be negated
                left = self.binary(left, op, self.expression(power - 2))
            else:
                left = self.binary(left, op, self.expression(power))
        return left

    def operand(self) -> Any:
        item = self.take()
        if not isinstance(item, Token):
            return item
        op = str(item)
        operand = self.expression(_PREFIX_POWER[op])
        span = Span.of_token(item).to(operand.span)
        if op == "await":
            return n.Await(span, operand)
        return n.UnaryOp(span, op, operand)

    def comparison(self, left: Any, op: str) -> n.Compare:
        ops, comparators = [op], [self.expression(_COMPARISON)]
        while (infix := self.peek_infix()) is not None and _INFIX_POWER[infix[0]] == _COMPARISON:
            self.position += infix[2]
            ops.append(infix[0])
            comparators.append(self.expression(_COMPARISON))
        return n.Compare(left.span.to(comparators[-1].span), left, tuple(ops), tuple(comparators))

    def binary(self, left: Any, op: str, right: Any) -> Any:
        span = left.span.to(right.span)
        if op in ("and", "or"):
            values = left.values if isinstance(left, n.BoolOp) and left.op == op else (left,)
            return n.BoolOp(span, op, values + (right,))
        return n.BinOp(span, left, op, right)
