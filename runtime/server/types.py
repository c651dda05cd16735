"""Declared-type checks for incoming fields (SPEC §6, last paragraph).

A walker's `has message: str` arrives over the wire as JSON, so the server checks
each decoded value against the annotation before the walker sees it::

    check = compile_check("list[str]")
    check(["a", "b"])    # None: it fits
    check(["a", 1])      # 'expected list[str], got int at [1]'

Understood: `str`, `int` (never a bool), `float` (an int is accepted), `bool`,
`list`, `dict`, `list[T]`, `dict[K, V]`, `T | U`, `Optional[T]`, `Union[...]`,
`None`, `any` and their `typing` spellings (`List`, `Dict`, `Any`, `typing.X`).
Anything else — a class name, a malformed or unparsable annotation — accepts
every value: jacc checks what it can be sure of and never refuses a message
because of an annotation it does not understand. That holds for parts too:
`list[MyClass]` checks for a list and leaves its elements alone.

In `dict[K, V]` only the values are checked: JSON object keys are always
strings, so a key type other than `str` could never be satisfied over the wire.
"""

from __future__ import annotations

import ast
import functools
import json
from typing import Callable

__all__ = ["compile_check"]

# A matcher returns None when the value fits, else the offending value and the
# path to it. Paths are built only on failure, so the happy path allocates nothing.
_Failure = tuple[object, tuple[str, ...]]
_Matcher = Callable[[object], "_Failure | None"]

_ANY_NAMES = frozenset({"any", "Any"})
_LIST_NAMES = frozenset({"list", "List"})
_DICT_NAMES = frozenset({"dict", "Dict"})
# `typing.List` and friends are spelled with a module prefix in some sources.
_TYPING_MODULES = frozenset({"typing"})


@functools.lru_cache(maxsize=4096)
def compile_check(type_text: str) -> Callable[[object], str | None]:
    """Return a checker for values of the declared type `type_text`.

    The checker takes a JSON-decoded value and returns None when it fits, else a
    short message such as ``expected list[str], got int at [2]``. Checkers are
    cached by text: walkers that share a type share one checker, and the text is
    parsed once, never per message.
    """
    try:
        tree = ast.parse(type_text.strip(), mode="eval").body
        matcher = _build(tree)
        shown = ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # ValueError: null bytes in the text; RecursionError/MemoryError: absurd nesting.
        return _accept_all
    if matcher is None:
        return _accept_all
    return _make_checker(matcher, shown)


def _accept_all(value: object) -> str | None:
    return None


def _make_checker(matcher: _Matcher, shown: str) -> Callable[[object], str | None]:
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


# --- building matchers ------------------------------------------------------
#
# `_build` returns None for "accepts everything": `any` and whatever part of an
# annotation is not understood. Only that part goes unchecked, so `list[MyClass]`
# still insists on a list; containers of such elements skip iterating them and
# unions with such a member collapse to "accepts everything".


def _build(node: ast.expr) -> _Matcher | None:
    if isinstance(node, ast.Constant) and node.value is None:
        return _match_none
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([_build(node.left), _build(node.right)])
    name = _name_of(node)
    if name is not None:
        return _build_name(name)
    if isinstance(node, ast.Subscript):
        generic = _name_of(node.value)
        if generic is None:
            return None
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return _build_generic(generic, args)
    return None


def _name_of(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in _TYPING_MODULES
    ):
        return node.attr
    return None


def _build_name(name: str) -> _Matcher | None:
    if name in _ANY_NAMES:
        return None
    if name in _LIST_NAMES:
        return _match_list
    if name in _DICT_NAMES:
        return _match_dict
    # A user class, `tuple`, `set`, ...: not a JSON kind we can vouch for.
    return _SIMPLE.get(name)


def _build_generic(generic: str, args: list[ast.expr]) -> _Matcher | None:
    if generic in _LIST_NAMES and len(args) == 1:
        return _list_of(_build(args[0]))
    if generic in _DICT_NAMES and len(args) == 2:
        return _dict_of(_build(args[1]))
    if generic == "Optional" and len(args) == 1:
        return _union([_build(args[0]), _match_none])
    if generic == "Union" and args:
        return _union([_build(arg) for arg in args])
    return None


def _match_none(value: object) -> _Failure | None:
    return None if value is None else (value, ())


def _match_str(value: object) -> _Failure | None:
    return None if isinstance(value, str) else (value, ())


def _match_int(value: object) -> _Failure | None:
    # bool is a subclass of int in Python but a different kind in JSON.
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return (value, ())


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


_SIMPLE: dict[str, _Matcher] = {
    "str": _match_str,
    "int": _match_int,
    "float": _match_float,
    "bool": _match_bool,
    "None": _match_none,
}


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
    if any(member is None for member in members):
        return None
    alternatives: list[_Matcher] = []
    for member in members:
        if member not in alternatives:
            alternatives.append(member)  # type: ignore[arg-type]
    if len(alternatives) == 1:
        return alternatives[0]
    if len(alternatives) == 2 and _match_none in alternatives:
        # `T | None` is by far the most common union: give it a short path.
        inner = alternatives[0] if alternatives[1] is _match_none else alternatives[1]

        def match_optional(value: object) -> _Failure | None:
            return None if value is None else inner(value)

        return match_optional

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
