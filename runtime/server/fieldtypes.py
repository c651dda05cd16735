"""The declared-type model: a field's annotation read once, seen two ways.

A walker's `has tags: list[str]` reaches the server as the text `list[str]`
(`Field.type`). `declared_type` parses it once into a small tree of nodes
(`ListOf(Str())`), and the tree gives both views:

- the check of an incoming JSON value (docs/protocol.md, "Input checks"),
  compiled to closures once per text because it runs on every frame::

      check = declared_type("list[str]").check
      check(["a", "b"])    # None: it fits
      check(["a", 1])      # 'expected list[str], got int at [1]'

- the JSON Schema of the field, for `/openapi.json`::

      declared_type("list[str]").json_schema()   # {"type": "array", "items": {"type": "string"}}

Understood: `str`, `int` (never a bool), `float` (an int is accepted), `bool`,
`list`, `dict`, `list[T]`, `dict[K, V]`, `T | U`, `Optional[T]`, `Union[...]`,
`None`, `any` and their `typing` spellings (`List`, `Dict`, `Any`, `typing.X`).
Anything else — a class name, a malformed or unparsable annotation — accepts
every value: jacc checks what it can be sure of and never refuses a message
because of an annotation it does not understand. That holds for parts too:
`list[MyClass]` checks for a list and leaves its elements alone.

In `dict[K, V]` only the values are checked: JSON object keys are always
strings, so a key type other than `str` could never be satisfied over the wire.

The two views agree on every JSON value. A float with no fractional part (`1.0`)
is an integer to JSON and to JSON Schema, so the check accepts it for `int`
too; the third view, `normalise`, then hands the walker the int 1, so that a
walker never holds a float where it declared an int (docs/protocol.md,
"Declared types").
"""

from __future__ import annotations

import abc
import ast
import functools
import json
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "AnyValue",
    "Bool",
    "DeclaredType",
    "DictOf",
    "Float",
    "Int",
    "ListOf",
    "Null",
    "Str",
    "TypeNode",
    "Unchecked",
    "UnionOf",
    "declared_type",
]

# A matcher returns None when the value fits, else the offending value and the
# path to it. Paths are built only on failure, so the happy path allocates nothing.
_Failure = tuple[object, tuple[str, ...]]
_Matcher = Callable[[object], "_Failure | None"]
Check = Callable[[object], "str | None"]
Normaliser = Callable[[object], object]


@dataclass(frozen=True, eq=False)
class DeclaredType:
    """A field's declared type: its model, and the check compiled from it.

    `text` is the annotation as messages show it (normalised spacing). `check`
    takes a JSON-decoded value and returns None when it fits, else a short
    message such as ``expected list[str], got int at [2]``.
    """

    text: str
    node: TypeNode
    check: Check
    # Applied to a value `check` accepted, before a walker sees it: JSON has one
    # number 1 however it is written, so `1.0` fits `int` and becomes the int 1.
    # None for the many types with nothing to convert (no `int` inside).
    normalise: Normaliser | None = None
    # A Python type whose every value fits and is handed over as it is (`TypeNode.exact`).
    exact: type | None = None

    def json_schema(self) -> dict:
        """The JSON Schema (2020-12, as OpenAPI 3.1 uses) of the values `check` accepts."""
        return self.node.json_schema()


@functools.lru_cache(maxsize=4096)
def declared_type(type_text: str) -> DeclaredType:
    """The model of the declared type `type_text`, parsed and compiled once.

    Cached by text: walkers that share a type share one check, and the text is
    parsed once, never per message.
    """
    try:
        tree = ast.parse(type_text.strip(), mode="eval").body
        node, shown = _node(tree), ast.unparse(tree)
        return DeclaredType(shown, node, _make_check(node.matcher(), shown), node.normaliser(),
                            node.exact())
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # ValueError: null bytes in the text; RecursionError/MemoryError: absurd nesting.
        return DeclaredType(type_text, Unchecked(), _accept_all)


def _accept_all(value: object) -> str | None:
    return None


def _make_check(matcher: _Matcher | None, shown: str) -> Check:
    if matcher is None:
        return _accept_all

    def check(value: object) -> str | None:
        failure = matcher(value)
        if failure is None:
            return None
        bad, path = failure
        where = f" at {''.join(path)}" if path else ""
        return f"expected {shown}, got {_kind(bad)}{where}"

    return check


def _kind(value: object) -> str:
    """The JSON name of a value's kind, as shown in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


# --- the nodes --------------------------------------------------------------
#
# Each node gives both views. `matcher()` returns None for "accepts everything",
# exactly when `json_schema()` is `{}`: containers of such elements skip
# iterating them, and unions with such a member accept everything.


class TypeNode(abc.ABC):
    """One node of a declared type."""

    @abc.abstractmethod
    def matcher(self) -> _Matcher | None:
        """The validator view; None when every value fits."""

    @abc.abstractmethod
    def json_schema(self) -> dict:
        """The schema view: a fresh dict, so callers may place it in a document."""

    def normaliser(self) -> Normaliser | None:
        """What turns an accepted value into the one the walker gets; None: as it is."""
        return None

    def exact(self) -> type | None:
        """A Python type whose every value fits and needs no converting, if there is one:
        a frame's field of that type passes with one comparison (`WalkerBinding.check`)."""
        return None

    @classmethod
    def named(cls, args: tuple[TypeNode, ...] | None) -> TypeNode | None:
        """The node a name stands for, bare (`args` None) or subscripted; None if ill-formed."""
        return cls() if args is None else None


@dataclass(frozen=True)
class Str(TypeNode):
    def matcher(self) -> _Matcher:
        return _match_str

    def exact(self) -> type:
        return str

    def json_schema(self) -> dict:
        return {"type": "string"}


@dataclass(frozen=True)
class Int(TypeNode):
    def matcher(self) -> _Matcher:
        return _match_int

    def exact(self) -> type:
        return int

    def json_schema(self) -> dict:
        # JSON Schema's integer never matches a boolean, as the check refuses bools,
        # and matches 1.0, as the check accepts it (and makes it the int 1).
        return {"type": "integer"}

    def normaliser(self) -> Normaliser:
        return _int_of


@dataclass(frozen=True)
class Float(TypeNode):
    def matcher(self) -> _Matcher:
        return _match_float

    def exact(self) -> type:
        return float

    def json_schema(self) -> dict:
        return {"type": "number"}


@dataclass(frozen=True)
class Bool(TypeNode):
    def matcher(self) -> _Matcher:
        return _match_bool

    def exact(self) -> type:
        return bool

    def json_schema(self) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Null(TypeNode):
    def matcher(self) -> _Matcher:
        return _match_none

    def exact(self) -> type:
        return type(None)

    def json_schema(self) -> dict:
        return {"type": "null"}


@dataclass(frozen=True)
class AnyValue(TypeNode):
    """`any`: declared to hold any JSON value."""

    def matcher(self) -> None:
        return None

    def json_schema(self) -> dict:
        return {}


@dataclass(frozen=True)
class Unchecked(TypeNode):
    """An annotation, or part of one, that jacc does not understand: never refused."""

    def matcher(self) -> None:
        return None

    def json_schema(self) -> dict:
        return {}


@dataclass(frozen=True)
class ListOf(TypeNode):
    item: TypeNode

    @classmethod
    def named(cls, args: tuple[TypeNode, ...] | None) -> TypeNode | None:
        if args is None:
            return cls(AnyValue())
        return cls(args[0]) if len(args) == 1 else None

    def matcher(self) -> _Matcher:
        return _list_of(self.item.matcher())

    def json_schema(self) -> dict:
        items = self.item.json_schema()
        return {"type": "array", "items": items} if items else {"type": "array"}

    def normaliser(self) -> Normaliser | None:
        item = self.item.normaliser()
        return _each_of(item) if item is not None else None


@dataclass(frozen=True)
class DictOf(TypeNode):
    """`dict[K, V]`: only V is kept, since JSON object keys are always strings."""

    value: TypeNode

    @classmethod
    def named(cls, args: tuple[TypeNode, ...] | None) -> TypeNode | None:
        if args is None:
            return cls(AnyValue())
        return cls(args[1]) if len(args) == 2 else None

    def matcher(self) -> _Matcher:
        return _dict_of(self.value.matcher())

    def json_schema(self) -> dict:
        values = self.value.json_schema()
        if not values:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": values}

    def normaliser(self) -> Normaliser | None:
        values = self.value.normaliser()
        return _values_of(values) if values is not None else None


@dataclass(frozen=True)
class UnionOf(TypeNode):
    """`T | U`, `Optional[T]`, `Union[...]`: flat, without repeats, at least two members."""

    members: tuple[TypeNode, ...]

    @classmethod
    def named(cls, args: tuple[TypeNode, ...] | None) -> TypeNode | None:
        return cls.of(args) if args else None

    @classmethod
    def of(cls, members: tuple[TypeNode, ...]) -> TypeNode:
        flat: list[TypeNode] = []
        for member in members:
            for part in member.members if isinstance(member, UnionOf) else (member,):
                if part not in flat:
                    flat.append(part)
        return flat[0] if len(flat) == 1 else cls(tuple(flat))

    def matcher(self) -> _Matcher | None:
        return _union([member.matcher() for member in self.members])

    def json_schema(self) -> dict:
        schemas = [member.json_schema() for member in self.members]
        return {} if {} in schemas else {"anyOf": schemas}

    def normaliser(self) -> Normaliser | None:
        pairs = tuple((member.matcher(), member.normaliser()) for member in self.members)
        if all(normaliser is None for _, normaliser in pairs):
            return None
        return _first_fitting(pairs)


def _optional(args: tuple[TypeNode, ...] | None) -> TypeNode | None:
    return UnionOf.of((args[0], Null())) if args is not None and len(args) == 1 else None


# The one place a name in an annotation gets its meaning (`typing.X` reads as `X`).
# A name not here — a user class, `tuple`, `set` — is not a JSON kind we can vouch for.
_NAMES: dict[str, Callable[[tuple[TypeNode, ...] | None], TypeNode | None]] = {
    "str": Str.named,
    "int": Int.named,
    "float": Float.named,
    "bool": Bool.named,
    "any": AnyValue.named,
    "Any": AnyValue.named,
    "list": ListOf.named,
    "List": ListOf.named,
    "dict": DictOf.named,
    "Dict": DictOf.named,
    "Optional": _optional,
    "Union": UnionOf.named,
}

# `typing.List` and friends are spelled with a module prefix in some sources.
_TYPING_MODULES = frozenset({"typing"})


def _node(expr: ast.expr) -> TypeNode:
    if isinstance(expr, ast.Constant) and expr.value is None:
        return Null()
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.BitOr):
        return UnionOf.of((_node(expr.left), _node(expr.right)))
    args: tuple[TypeNode, ...] | None = None
    if isinstance(expr, ast.Subscript):
        elements = expr.slice.elts if isinstance(expr.slice, ast.Tuple) else [expr.slice]
        args = tuple(_node(element) for element in elements)
        expr = expr.value
    form = _NAMES.get(_name_of(expr) or "")
    node = form(args) if form is not None else None
    return node if node is not None else Unchecked()


def _name_of(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id in _TYPING_MODULES
    ):
        return expr.attr
    return None


# --- matchers: the validator view, compiled ---------------------------------


def _match_none(value: object) -> _Failure | None:
    return None if value is None else (value, ())


def _match_str(value: object) -> _Failure | None:
    return None if isinstance(value, str) else (value, ())


def _match_int(value: object) -> _Failure | None:
    # bool is a subclass of int in Python but a different kind in JSON; 1.0 is the
    # number 1 to JSON (and to JSON Schema), so it is an integer here too.
    kind = type(value)
    if kind is int or (kind is float and value.is_integer()):
        return None
    return (value, ())


# --- normalisers: what a walker is handed ------------------------------------


def _int_of(value: object) -> object:
    return int(value) if type(value) is float else value


def _each_of(item: Normaliser) -> Normaliser:
    def normalise(value: object) -> object:
        return [item(element) for element in value]

    return normalise


def _values_of(item: Normaliser) -> Normaliser:
    def normalise(value: object) -> object:
        return {key: item(element) for key, element in value.items()}

    return normalise


def _first_fitting(members: tuple[tuple[_Matcher | None, Normaliser | None], ...]) -> Normaliser:
    # A union converts as its first member that accepts the value: `int | float`
    # makes 1.0 the int 1, `float | int` leaves it a float.
    def normalise(value: object) -> object:
        for matcher, normaliser in members:
            if matcher is None or matcher(value) is None:
                return normaliser(value) if normaliser is not None else value
        return value

    return normalise


def _match_float(value: object) -> _Failure | None:
    # JSON does not distinguish 1 from 1.0 reliably across clients: accept ints.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    return (value, ())


def _match_bool(value: object) -> _Failure | None:
    return None if isinstance(value, bool) else (value, ())


def _match_list(value: object) -> _Failure | None:
    return None if isinstance(value, list) else (value, ())


def _match_dict(value: object) -> _Failure | None:
    return None if isinstance(value, dict) else (value, ())


def _list_of(item: _Matcher | None) -> _Matcher:
    if item is None:
        return _match_list

    def match(value: object) -> _Failure | None:
        if not isinstance(value, list):
            return (value, ())
        for index, element in enumerate(value):
            failure = item(element)
            if failure is not None:
                return (failure[0], (f"[{index}]", *failure[1]))
        return None

    return match


def _dict_of(item: _Matcher | None) -> _Matcher:
    if item is None:
        return _match_dict

    def match(value: object) -> _Failure | None:
        if not isinstance(value, dict):
            return (value, ())
        for key, element in value.items():
            failure = item(element)
            if failure is not None:
                # JSON-quoted so that a key holding `]` or `"` cannot garble the path.
                return (failure[0], (f"[{_quote_key(key)}]", *failure[1]))
        return None

    return match


def _quote_key(key: object) -> str:
    if isinstance(key, str):
        return json.dumps(key, ensure_ascii=False)
    return repr(key)


def _union(members: list[_Matcher | None]) -> _Matcher | None:
    # Two or more members, already without repeats (`UnionOf.of`).
    alternatives = tuple(member for member in members if member is not None)
    if len(alternatives) < len(members):
        return None
    if _match_none in alternatives:
        # `T | None` is by far the most common union: give it a short path. A null
        # failure never has a path, so testing it first cannot change the blame.
        inner = _union_of(tuple(a for a in alternatives if a is not _match_none))

        def match_optional(value: object) -> _Failure | None:
            return None if value is None else inner(value)

        return match_optional
    return _union_of(alternatives)


def _union_of(alternatives: tuple[_Matcher, ...]) -> _Matcher:
    if len(alternatives) == 1:
        return alternatives[0]

    def match_union(value: object) -> _Failure | None:
        deepest: _Failure | None = None
        for alternative in alternatives:
            failure = alternative(value)
            if failure is None:
                return None
            if deepest is None or len(failure[1]) > len(deepest[1]):
                deepest = failure
        # Blame the element inside the alternative that got furthest, e.g. the
        # int in `list[str] | None` given ["a", 1]; else the value itself.
        return deepest if deepest is not None and deepest[1] else (value, ())

    return match_union
