from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jacc_runtime.server import fieldtypes
from jacc_runtime.server.fieldtypes import (
    AnyValue,
    DictOf,
    Int,
    ListOf,
    Null,
    Str,
    TypeNode,
    Unchecked,
    UnionOf,
    declared_type,
)


def check_of(type_text: str):
    return declared_type(type_text).check


@pytest.mark.parametrize(
    ("type_text", "value"),
    [
        ("str", "hello"),
        ("str", ""),
        ("int", 0),
        ("int", -(2**70)),
        ("float", 1.5),
        ("float", 3),
        ("bool", False),
        ("list", [1, "a", None]),
        ("dict", {"a": [1]}),
        ("list[str]", []),
        ("list[str]", ["a", "b"]),
        ("dict[str, int]", {"a": 1, "b": 2}),
        ("str | None", None),
        ("str | None", "x"),
        ("None | str", None),
        ("Optional[int]", None),
        ("Optional[int]", 5),
        ("typing.Optional[int]", 5),
        ("Union[int, str]", "x"),
        ("List[int]", [1]),
        ("Dict[str, bool]", {"k": True}),
        ("list[dict[str, list[int]]]", [{"a": [1, 2]}, {}]),
        ("None", None),
        ("  int  ", 1),
        ("dict[str,int]", {"a": 1}),
    ],
)
def test_values_that_fit(type_text: str, value: object) -> None:
    assert check_of(type_text)(value) is None


@pytest.mark.parametrize(
    ("type_text", "value", "message"),
    [
        ("list[str]", ["a", "b", 3], "expected list[str], got int at [2]"),
        ("int", True, "expected int, got bool"),
        ("int", 1.0, "expected int, got float"),
        ("str", None, "expected str, got null"),
        ("str", 123, "expected str, got int"),
        ("float", False, "expected float, got bool"),
        ("float", "1.5", "expected float, got str"),
        ("bool", 1, "expected bool, got int"),
        ("list", {}, "expected list, got dict"),
        ("dict", [], "expected dict, got list"),
        ("dict[str, int]", {"a": 1, "b": "2"}, 'expected dict[str, int], got str at ["b"]'),
        ("str | None", 5, "expected str | None, got int"),
        ("Optional[int]", "5", "expected Optional[int], got str"),
        ("None", 0, "expected None, got int"),
        (
            "list[dict[str, list[int]]]",
            [{"a": [1]}, {"b": [2, "x"]}],
            'expected list[dict[str, list[int]]], got str at [1]["b"][1]',
        ),
        # The type is shown normalised, whatever the spacing in the source.
        ("dict[str,int]", {"a": None}, 'expected dict[str, int], got null at ["a"]'),
        ("typing.List[int]", [1, "x"], "expected typing.List[int], got str at [1]"),
        ("typing.Optional[str]", 1, "expected typing.Optional[str], got int"),
        ("typing.Dict[str, bool]", {"k": 0}, 'expected typing.Dict[str, bool], got int at ["k"]'),
        # A key holding quotes or brackets cannot garble the path.
        ("dict[str, int]", {'a"]': "x"}, 'expected dict[str, int], got str at ["a\\"]"]'),
    ],
)
def test_values_that_do_not_fit(type_text: str, value: object, message: str) -> None:
    assert check_of(type_text)(value) == message


def test_a_union_blames_the_element_inside_the_alternative_that_got_furthest() -> None:
    check = check_of("list[str] | None")
    assert check(["a", 1]) == "expected list[str] | None, got int at [1]"
    assert check(7) == "expected list[str] | None, got int"


@pytest.mark.parametrize(
    "type_text",
    [
        "any",
        "Any",
        "typing.Any",
        "MyClass",
        "tuple[int, str]",
        "set",
        "MyClass | None",  # a union with an unknown member may hold anything
        "list[int",  # unparsable
        "",
        "1 +",
        "lambda: 0",
        "int\x00",
        "Optional[int, str]",  # wrong arity: not something we understand
        "list[int, str]",
        "'str'",
    ],
)
def test_anything_not_understood_accepts_everything(type_text: str) -> None:
    check = check_of(type_text)
    for value in (None, True, 1, 1.5, "s", [1], {"a": 1}):
        assert check(value) is None


def test_containers_of_unknown_types_still_check_the_container() -> None:
    assert check_of("list[MyClass]")([{"anything": 1}]) is None
    assert check_of("list[MyClass]")("no") == "expected list[MyClass], got str"
    assert check_of("dict[str, any]")({"a": object()}) is None


def test_dict_keys_are_not_checked_since_json_keys_are_always_strings() -> None:
    assert check_of("dict[int, str]")({"1": "a"}) is None
    assert check_of("dict[int, str]")({"1": 2}) == 'expected dict[int, str], got int at ["1"]'


@pytest.mark.parametrize("depth", [50, 5000])
def test_deeply_nested_annotations_do_not_crash(depth: int) -> None:
    # Past the parser's nesting limit the text is unparsable, so anything fits.
    result = check_of("list[" * depth + "int" + "]" * depth)([[1]])
    assert result is None or result.startswith("expected list[")


def test_checks_are_compiled_once_per_text() -> None:
    assert declared_type("list[int]") is declared_type("list[int]")


# --- the model and its schema view ------------------------------------------


@pytest.mark.parametrize(
    ("type_text", "node"),
    [
        ("typing.Optional[str]", UnionOf((Str(), Null()))),
        ("Optional[str]", UnionOf((Str(), Null()))),
        ("str | None", UnionOf((Str(), Null()))),
        ("typing.List[int]", ListOf(Int())),
        ("list", ListOf(AnyValue())),
        ("dict[int, str]", DictOf(Str())),
        # Unions are flat and without repeats, whatever the spelling.
        ("Optional[int | None]", UnionOf((Int(), Null()))),
        ("Union[int, str | None]", UnionOf((Int(), Str(), Null()))),
        ("Union[int]", Int()),
        ("int | int", Int()),
        ("list[MyClass]", ListOf(Unchecked())),
        ("'str'", Unchecked()),
        ("list[int", Unchecked()),
    ],
)
def test_annotations_are_read_into_one_model(type_text: str, node: TypeNode) -> None:
    assert declared_type(type_text).node == node


_STRING, _INT, _NULL = {"type": "string"}, {"type": "integer"}, {"type": "null"}


@pytest.mark.parametrize(
    ("type_text", "schema"),
    [
        ("str", _STRING),
        ("int", _INT),
        ("float", {"type": "number"}),
        ("bool", {"type": "boolean"}),
        ("None", _NULL),
        ("list", {"type": "array"}),
        ("List", {"type": "array"}),
        ("dict", {"type": "object"}),
        ("typing.Dict", {"type": "object"}),
        ("list[int]", {"type": "array", "items": _INT}),
        ("typing.List[int]", {"type": "array", "items": _INT}),
        ("dict[str, int]", {"type": "object", "additionalProperties": _INT}),
        ("Dict[str, str]", {"type": "object", "additionalProperties": _STRING}),
        ("str | None", {"anyOf": [_STRING, _NULL]}),
        ("typing.Optional[str]", {"anyOf": [_STRING, _NULL]}),
        ("typing.Union[int, str, None]", {"anyOf": [_INT, _STRING, _NULL]}),
        ("Optional[int | None]", {"anyOf": [_INT, _NULL]}),
        (
            "list[dict[str, int | None]]",
            {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"anyOf": [_INT, _NULL]}},
            },
        ),
        # What is not understood is described as "anything", as the check treats it.
        ("list[MyClass]", {"type": "array"}),
        ("dict[str, any]", {"type": "object"}),
        ("MyClass | None", {}),
        ("any", {}),
        ("typing.Any", {}),
        ("'str'", {}),
        ("tuple[int, str]", {}),
        ("list[int", {}),
    ],
)
def test_schemas_of_declared_types(type_text: str, schema: dict) -> None:
    assert declared_type(type_text).json_schema() == schema


def test_a_schema_is_fresh_each_time_so_a_document_may_hold_it() -> None:
    declared = declared_type("list[int]")
    declared.json_schema()["items"]["type"] = "changed"
    assert declared.json_schema() == {"type": "array", "items": _INT}


def _node_classes(base: type = TypeNode) -> set[type]:
    found = set()
    for cls in base.__subclasses__():
        found |= {cls} | _node_classes(cls)
    return found


def test_every_node_class_is_reachable_from_some_annotation() -> None:
    # A node class that no name builds is dead; one that the name table misses is a gap.
    texts = ["None", "'unknown'"] + [
        f"{name}{args}" for name in fieldtypes._NAMES for args in ("", "[int]", "[str, int]")
    ]
    reached = {type(declared_type(text).node) for text in texts}
    assert reached == _node_classes()


# --- properties -------------------------------------------------------------

_ALL_KINDS = frozenset({"null", "bool", "int", "float", "str", "list", "dict"})

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)


@dataclass(frozen=True)
class _Declared:
    """A declared type, a strategy for values that fit it, and the top-level JSON kinds it takes."""

    text: str
    values: st.SearchStrategy[object]
    kinds: frozenset[str]


_leaves = st.sampled_from(
    [
        _Declared("str", st.text(max_size=8), frozenset({"str"})),
        _Declared("int", st.integers(), frozenset({"int"})),
        _Declared(
            "float",
            st.one_of(st.integers(), st.floats(allow_nan=False)),
            frozenset({"int", "float"}),
        ),
        _Declared("bool", st.booleans(), frozenset({"bool"})),
        _Declared("list", st.lists(_json_values, max_size=3), frozenset({"list"})),
        _Declared(
            "dict",
            st.dictionaries(st.text(max_size=4), _json_values, max_size=3),
            frozenset({"dict"}),
        ),
        _Declared("any", _json_values, _ALL_KINDS),
        _Declared("None", st.none(), frozenset({"null"})),
    ]
)


def _extend(children: st.SearchStrategy[_Declared]) -> st.SearchStrategy[_Declared]:
    return st.one_of(
        children.map(
            lambda t: _Declared(
                f"list[{t.text}]", st.lists(t.values, max_size=3), frozenset({"list"})
            )
        ),
        children.map(
            lambda t: _Declared(
                f"dict[str, {t.text}]",
                st.dictionaries(st.text(max_size=4), t.values, max_size=3),
                frozenset({"dict"}),
            )
        ),
        children.map(
            lambda t: _Declared(
                f"Optional[{t.text}]", st.one_of(st.none(), t.values), t.kinds | {"null"}
            )
        ),
        st.tuples(children, children).map(
            lambda pair: _Declared(
                f"{pair[0].text} | {pair[1].text}",
                st.one_of(pair[0].values, pair[1].values),
                pair[0].kinds | pair[1].kinds,
            )
        ),
    )


_declared_types = st.recursive(_leaves, _extend, max_leaves=6)

# One representative per kind, for building values of a kind a type refuses.
_value_of_kind: dict[str, st.SearchStrategy[object]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(),
    "float": st.floats(allow_nan=False).filter(lambda x: not float(x).is_integer()),
    "str": st.text(max_size=8),
    "list": st.lists(_json_values, max_size=3),
    "dict": st.dictionaries(st.text(max_size=4), _json_values, max_size=3),
}


@given(st.data())
def test_values_generated_for_a_type_always_fit(data: st.DataObject) -> None:
    declared = data.draw(_declared_types, label="type")
    value = data.draw(declared.values, label="value")
    assert check_of(declared.text)(value) is None


@given(st.data())
def test_a_value_of_another_json_kind_never_fits(data: st.DataObject) -> None:
    declared = data.draw(_declared_types.filter(lambda t: t.kinds != _ALL_KINDS), label="type")
    kind = data.draw(st.sampled_from(sorted(_ALL_KINDS - declared.kinds)), label="kind")
    value = data.draw(_value_of_kind[kind], label="value")
    assert check_of(declared.text)(value) == f"expected {declared.text}, got {kind}"


@given(st.text(max_size=40), _json_values)
def test_no_annotation_and_no_value_makes_a_check_raise(type_text: str, value: object) -> None:
    result = check_of(type_text)(value)
    assert result is None or result.startswith("expected ")


def test_float_fits_infinities_but_int_does_not() -> None:
    # json.loads accepts Infinity and NaN; they are floats, not ints.
    assert check_of("float")(math.inf) is None
    assert check_of("int")(math.nan) == "expected int, got float"
