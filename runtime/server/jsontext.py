"""JSON text in and out of a frame, by the `json` module's C parts without its Python wrappers.

`json.JSONDecoder.decode` and `json.JSONEncoder.encode` are Python methods around a
C scanner and a C encoder; on a small frame the wrappers cost more than the C
parts (docs/performance.md, "Levers"). Here the common case calls the C parts
directly and everything else takes the wrapper, so the results, and the errors
with their messages, are the wrapper's: tests/test_jsontext.py holds them equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder_module
from typing import Any

__all__ = ["decoder", "encoder"]


def decoder(**options: Any) -> Callable[[str], Any]:
    """A `decode(text)` equal to `json.JSONDecoder(**options).decode(text)`."""
    wrapper = json.JSONDecoder(**options)
    wrapped, scan = wrapper.decode, wrapper.scan_once

    def decode(text: str) -> Any:
        # An object with nothing around it: the scanner alone. Whitespace around
        # the value, trailing text and every error: the wrapper, which says what
        # is wrong as it always does.
        if text[:1] == "{":
            try:
                value, end = scan(text, 0)
            except StopIteration:
                return wrapped(text)
            if end == len(text):
                return value
        return wrapped(text)

    return decode


def encoder(**options: Any) -> Callable[[Any], str]:
    """An `encode(value)` equal to `json.JSONEncoder(**options).encode(value)`.

    The C encoder is made afresh for each value, as `JSONEncoder.iterencode`
    does: it keeps the objects it is inside of in a dict (to find a circular
    reference), which one shared among threads could not do.
    """
    wrapper = json.JSONEncoder(**options)
    return _direct(wrapper) or wrapper.encode


def _direct(wrapper: json.JSONEncoder) -> Callable[[Any], str] | None:
    """The C encoder with `wrapper`'s settings, or None where it cannot stand in for it:
    no C accelerator, an indent, or a signature this Python does not share."""
    make = _encoder_module.c_make_encoder
    if make is None or wrapper.indent is not None:
        return None
    escape = (_encoder_module.encode_basestring_ascii if wrapper.ensure_ascii
              else _encoder_module.encode_basestring)
    settings = (wrapper.default, escape, None, wrapper.key_separator, wrapper.item_separator,
                wrapper.sort_keys, wrapper.skipkeys, wrapper.allow_nan)

    def encode(value: Any) -> str:
        return "".join(make({} if wrapper.check_circular else None, *settings)(value, 0))

    probe = {"a": [1, 2.5, None, True, "é\u2028\"\\"], "b": {"c": ""}}
    try:
        same = encode(probe) == wrapper.encode(probe)
    except TypeError:  # a c_make_encoder of another signature
        same = False
    return encode if same else None
