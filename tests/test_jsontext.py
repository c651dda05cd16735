"""jsontext's decoder and encoder give what the `json` module's wrappers give: the same
values and text, the same errors with the same messages."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jacc_runtime.server.jsontext import decoder, encoder

scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False,
                                                                          allow_infinity=False)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)

ENCODERS = [
    {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False},
    {"ensure_ascii": True, "sort_keys": True},
    {"separators": (", ", ": "), "check_circular": False},
]


def outcome(function, *args):
    """What a call gives: ("value", result) or ("error", type, message)."""
    try:
        return ("value", function(*args))
    except Exception as error:  # the comparison is the point
        return ("error", type(error), str(error))


@pytest.mark.parametrize("options", ENCODERS)
@given(value=values)
def test_the_encoder_writes_what_json_writes(options: dict, value: object) -> None:
    assert encoder(**options)(value) == json.JSONEncoder(**options).encode(value)


@pytest.mark.parametrize("value", [
    [math.nan], {"a": math.inf}, {"a": [object()]}, {(1, 2): 3}, "plain text", 12, None,
])
def test_the_encoder_fails_as_json_fails(value: object) -> None:
    options = ENCODERS[0]
    assert outcome(encoder(**options), value) == outcome(json.JSONEncoder(**options).encode,
                                                                value)


def test_the_encoder_finds_a_circular_reference_every_time() -> None:
    # The C encoder records what it is inside of; a failure must not leave it recorded.
    loop: list = []
    loop.append(loop)
    encode = encoder()
    for _ in range(2):
        with pytest.raises(ValueError, match="Circular reference"):
            encode(loop)
    assert encode([[1], [1]]) == "[[1], [1]]"


def test_the_encoder_uses_default_as_json_does() -> None:
    options = {"default": lambda value: sorted(value)}
    assert encoder(**options)({"s": {3, 1}}) == json.JSONEncoder(**options).encode({"s": {3, 1}})


@given(value=values, before=st.sampled_from(["", " ", "\n\t"]),
       after=st.sampled_from(["", " ", "\r\n", " x", "{}", ","]))
def test_the_decoder_reads_what_json_reads(value: object, before: str, after: str) -> None:
    text = before + json.dumps(value) + after
    assert outcome(decoder(), text) == outcome(json.JSONDecoder().decode, text)


@pytest.mark.parametrize("text", [
    "", "{", "{}", '{"a":1}', '{"a":1}}', '{"a":1} ', ' {"a":1}', '{"a":NaN}', '{"a":1e400}',
    '{"a":"\x01"}', '{"a":[1,2,]}', "[1]", '"s"', "nul", '{"a":1', '{"a":1}\n{"b":2}',
])
def test_the_decoder_fails_and_succeeds_as_json_does(text: str) -> None:
    options = {"parse_constant": _refuse_constant, "parse_float": _finite}
    assert outcome(decoder(**options), text) == outcome(json.JSONDecoder(**options).decode,
                                                               text)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value
