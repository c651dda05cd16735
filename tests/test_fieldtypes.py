from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

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
        ("int", 1.5, "expected int, got float"),
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


# One representative per kind, for building values of a kind a type refuses.
_value_of_kind: dict[str, st.SearchStrategy[object]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(),
    # JSON's kinds: a float with no fractional part is the integer it equals.
    "float": st.floats(allow_nan=False).filter(lambda x: not float(x).is_integer()),
    "str": st.text(max_size=8),
    "list": st.lists(_json_values, max_size=3),
    "dict": st.dictionaries(st.text(max_size=4), _json_values, max_size=3),
}


def _of_another_kind(kinds: frozenset[str]) -> st.SearchStrategy[object]:
    others = sorted(_ALL_KINDS - kinds)
    return st.sampled_from(others).flatmap(_value_of_kind.__getitem__) if others else _json_values


@dataclass(frozen=True)
class _Declared:
    """A declared type in one spelling, with strategies for values that fit it and
    for values that nearly do (one part of the wrong kind), and the top-level JSON
    kinds it takes."""

    text: str
    values: st.SearchStrategy[object]
    kinds: frozenset[str]
    near: st.SearchStrategy[object]


def _leaf(text: str, values: st.SearchStrategy[object], kinds: frozenset[str]) -> _Declared:
    return _Declared(text, values, kinds, _of_another_kind(kinds))


_scalars = [
    _leaf("str", st.text(max_size=8), frozenset({"str"})),
    _leaf("int", st.integers(), frozenset({"int"})),
    _leaf(
        "float", st.one_of(st.integers(), st.floats(allow_nan=False)), frozenset({"int", "float"})
    ),
    _leaf("bool", st.booleans(), frozenset({"bool"})),
    _leaf("None", st.none(), frozenset({"null"})),
]
_others = [
    *(
        _leaf(text, st.lists(_json_values, max_size=3), frozenset({"list"}))
        for text in ("list", "List", "typing.List")
    ),
    *(
        _leaf(
            text,
            st.dictionaries(st.text(max_size=4), _json_values, max_size=3),
            frozenset({"dict"}),
        )
        for text in ("dict", "Dict", "typing.Dict")
    ),
    *(_leaf(text, _json_values, _ALL_KINDS) for text in ("any", "Any", "typing.Any")),
    # Not understood, so never refused: a class, a container JSON lacks, a string.
    *(
        _leaf(text, _json_values, _ALL_KINDS)
        for text in ("MyClass", "set", "tuple[int, str]", "'str'")
    ),
]
# Half the leaves are scalars, so that elements are checked, not only containers.
_leaves = st.one_of(st.sampled_from(_scalars), st.sampled_from(_others))

# Every spelling of each form, written as `ast.unparse` shows it (messages use that).
_LIST_FORMS = ("list[{}]", "List[{}]", "typing.List[{}]")
_DICT_FORMS = ("dict[str, {}]", "Dict[str, {}]", "typing.Dict[str, {}]", "dict[int, {}]")
_OPTIONAL_FORMS = ("Optional[{}]", "typing.Optional[{}]", "{} | None", "None | {}")
_UNION_FORMS = ("{} | {}", "Union[{}, {}]", "typing.Union[{}, {}]")


def _list_of(form: str, item: _Declared) -> _Declared:
    # One element of the wrong kind, anywhere among fitting ones.
    near_element = st.builds(
        lambda good, bad, at: [*good[:at], bad, *good[at:]],
        st.lists(item.values, max_size=2),
        item.near,
        st.integers(0, 2),
    )
    kinds = frozenset({"list"})
    return _Declared(
        form.format(item.text),
        st.lists(item.values, min_size=1, max_size=3),
        kinds,
        st.one_of(near_element, _of_another_kind(kinds)),
    )


def _dict_of(form: str, value: _Declared) -> _Declared:
    fitting = st.dictionaries(st.text(max_size=4), value.values, max_size=2)
    near_value = st.builds(
        lambda good, key, bad: {**good, key: bad}, fitting, st.text(max_size=4), value.near
    )
    kinds = frozenset({"dict"})
    return _Declared(
        form.format(value.text),
        st.dictionaries(st.text(max_size=4), value.values, min_size=1, max_size=3),
        kinds,
        st.one_of(near_value, _of_another_kind(kinds)),
    )


def _optional(form: str, inner: _Declared) -> _Declared:
    values = st.one_of(st.none(), inner.values)
    return _Declared(form.format(inner.text), values, inner.kinds | {"null"}, inner.near)


def _union(form: str, a: _Declared, b: _Declared) -> _Declared:
    return _Declared(
        form.format(a.text, b.text),
        st.one_of(a.values, b.values),
        a.kinds | b.kinds,
        st.one_of(a.near, b.near),
    )


def _extend(children: st.SearchStrategy[_Declared]) -> st.SearchStrategy[_Declared]:
    return st.one_of(
        st.builds(_list_of, st.sampled_from(_LIST_FORMS), children),
        st.builds(_dict_of, st.sampled_from(_DICT_FORMS), children),
        st.builds(_optional, st.sampled_from(_OPTIONAL_FORMS), children),
        st.builds(_union, st.sampled_from(_UNION_FORMS), children, children),
    )


# `recursive` alone favours big trees; a bare leaf as often keeps each kind in sight.
_declared_types = st.one_of(_leaves, st.recursive(_leaves, _extend, max_leaves=6))


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


# --- the two views agree ----------------------------------------------------


def _assert_views_agree(type_text: str, value: object) -> None:
    model = declared_type(type_text)
    schema = model.json_schema()
    Draft202012Validator.check_schema(schema)
    documented = Draft202012Validator(schema).is_valid(value)
    accepted = model.check(value) is None
    event("accepted" if accepted else "refused")
    if accepted:
        assert documented, (
            f"{type_text}: the check accepts {value!r}, the schema {schema} refuses it"
        )
    # Refused means undocumented, and accepted documented: the views are equal.
    assert documented == accepted, (
        f"{type_text}: the check and the schema {schema} disagree on {value!r}"
    )


@settings(max_examples=500)
@given(st.data())
def test_every_value_the_check_accepts_fits_the_schema_and_no_other(data: st.DataObject) -> None:
    declared = data.draw(_declared_types, label="type")
    # Values built for the type fit; those of another type or any JSON mostly do not.
    other = data.draw(_declared_types, label="other type")
    value = data.draw(
        st.one_of(declared.values, declared.near, other.values, _json_values), label="value"
    )
    _assert_views_agree(declared.text, value)


# Text that is only sometimes an annotation: malformed, quoted, or odd.
_SOUP = "list List dict str int float bool None any Optional Union typing. MyClass".split()
_annotation_soup = st.lists(
    st.sampled_from([*_SOUP, "[", "]", ", ", " | ", "'", "(", ")", " "]), max_size=12
).map("".join)

_MISSPELLINGS = (
    "'{}'",  # quoted whole: a forward reference, not understood
    "({})",
    "  {}\t",
    "list[{}, int]",  # wrong arity
    "Optional[{}, None]",
    "dict[{}]",
    "{}]",
    "[{}",
    "typing.{}",
)


@settings(max_examples=300)
@given(st.data())
def test_odd_annotations_keep_the_views_in_agreement(data: st.DataObject) -> None:
    declared = data.draw(_declared_types, label="type")
    type_text = data.draw(
        st.one_of(
            _annotation_soup,
            st.sampled_from(_MISSPELLINGS).map(lambda form: form.format(declared.text)),
            st.just(declared.text.replace("int", "'int'").replace(", ", ",")),
        ),
        label="annotation",
    )
    value = data.draw(st.one_of(declared.values, declared.near, _json_values), label="value")
    _assert_views_agree(type_text, value)


def test_an_integral_float_is_an_integer_to_the_check_and_the_schema() -> None:
    model = declared_type("int")
    assert Draft202012Validator(model.json_schema()).is_valid(1.0)
    assert model.check(1.0) is None and model.check(-3e2) is None
    assert model.check(1.5) == "expected int, got float"
    assert declared_type("float").check(1.0) is None


@pytest.mark.parametrize(("type_text", "value", "handed"), [
    ("int", 1.0, 1),
    ("int", 7, 7),
    ("list[int]", [1.0, 2, 3e1], [1, 2, 30]),
    ("dict[str, int]", {"a": 2.0}, {"a": 2}),
    ("int | None", 4.0, 4),
    ("int | float", 4.0, 4),
    ("float | int", 4.0, 4.0),
    ("list[int | str]", ["x", 5.0], ["x", 5]),
    ("Optional[List[int]]", [0.0], [0]),
])
def test_the_walker_is_handed_ints_where_it_declared_int(type_text, value, handed) -> None:
    model = declared_type(type_text)
    assert model.check(value) is None
    result = model.normalise(value)
    assert result == handed and type(result) is type(handed)
    if isinstance(result, list):
        assert [type(x) for x in result] == [type(x) for x in handed]


@pytest.mark.parametrize("type_text", ["str", "float", "list[str]", "dict", "any", "bool | None"])
def test_types_without_an_int_convert_nothing(type_text) -> None:
    assert declared_type(type_text).normalise is None


def test_float_fits_infinities_but_int_does_not() -> None:
    # json.loads accepts Infinity and NaN; they are floats, not ints.
    assert check_of("float")(math.inf) is None
    assert check_of("int")(math.nan) == "expected int, got float"


@pytest.mark.parametrize("type_text", ["str", "int", "float", "bool", "None", "list", "int | str",
                                       "dict[str, int]", "any", "Frobnicate"])
@given(value=st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
       | st.text() | st.lists(st.integers(), max_size=3))
def test_a_value_of_the_exact_type_fits_as_it_is(type_text: str, value: object) -> None:
    # WalkerBinding.check lets a value of `exact` type through with no check at all.
    declared = declared_type(type_text)
    if declared.exact is None or type(value) is not declared.exact:
        return
    assert declared.check(value) is None
    if declared.normalise is not None:
        assert declared.normalise(value) is value


def test_the_plain_types_have_an_exact_type() -> None:
    assert {text: declared_type(text).exact for text in ("str", "int", "float", "bool", "None")} == {
        "str": str, "int": int, "float": float, "bool": bool, "None": type(None)}
    assert declared_type("list[int]").exact is None
    assert declared_type("int | str").exact is None
