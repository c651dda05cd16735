"""Served functions: the core's `function` decorator and spec (runtime/function.py), the
server's binding, call and result frame (runtime/server/functions.py), and the Program the
loader hands over (runtime/server/program.py)."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Generator

import jacc_runtime
import pytest
from jacc_runtime.function import FunctionSpec, served_function
from jacc_runtime.server.functions import FunctionBinding, bind, is_stream, result_frame
from jacc_runtime.server.program import Program, program_in, targets_of
from jacc_runtime.server.protocol import (
    EXECUTION_ERROR,
    INVALID_PAYLOAD,
    ProtocolError,
    WalkerBinding,
)

from jacc.compiler import compile_source


@jacc_runtime.function(protocol="ws", public=True)
def echo(message: str, client_id: str = "anonymous") -> dict:
    """Echoes."""
    return {"echo": message, "client_id": client_id, "thread": threading.current_thread().name}


@jacc_runtime.function()
async def later(n: int) -> int:
    return n + 1


@jacc_runtime.function(protocol="websocket")
def numbers(count: int = 3, *, step: int = 1):
    yield from range(0, count * step, step)


@jacc_runtime.function(protocol="websocket")
def made_elsewhere(count: int) -> Generator[int, None, None]:
    return numbers(count)


class Hello(jacc_runtime.Walker, protocol="websocket", public=True):
    name = jacc_runtime.field("str")


# --- the spec ------------------------------------------------------------------------------


def test_the_decorator_leaves_a_plain_function_with_its_spec():
    assert echo(message="hi")["echo"] == "hi"  # still an ordinary call
    spec = echo.__jacc_spec__
    assert isinstance(spec, FunctionSpec) and served_function(echo)
    assert (spec.name, spec.kind, spec.protocol, spec.public, spec.stream, spec.returns) == (
        "echo", "function", "websocket", True, False, "dict")
    assert [(f.name, f.type, f.required) for f in spec.fields] == [
        ("message", "str", True), ("client_id", "str", False)]
    assert spec.fields[1].default_factory() == "anonymous"
    assert spec.field_names == {"message", "client_id"}


def test_a_generator_or_a_declared_generator_is_a_stream():
    assert numbers.__jacc_spec__.stream and not numbers.__jacc_spec__.is_async
    assert made_elsewhere.__jacc_spec__.stream
    assert later.__jacc_spec__.is_async and not later.__jacc_spec__.stream
    assert [f.name for f in numbers.__jacc_spec__.fields] == ["count", "step"]  # keyword-only too


def test_star_parameters_cannot_be_served():
    with pytest.raises(TypeError, match="named parameters only"):
        jacc_runtime.function()(lambda *values: 0)


def test_a_compiled_def_pub_is_a_plain_function_with_a_spec():
    namespace: dict = {"__name__": "app"}
    exec(compile_source(
        '\ndef:pub add(a: int, b: int = 1) -> int { return a + b; }\n'
        '@restspec(protocol=APIProtocol.WEBSOCKET)\n'
        'async def:pub words(text: str) { for w in text.split() { yield w; } }\n').code,
        namespace)
    assert namespace["add"](a=2) == 3
    assert namespace["add"].__jacc_spec__.protocol == "http"

    async def collect():
        return [w async for w in namespace["words"](text="a b")]

    assert asyncio.run(collect()) == ["a", "b"]
    assert namespace["words"].__jacc_spec__.stream


# --- the program ---------------------------------------------------------------------------


def test_a_program_keeps_source_order_and_tells_the_kinds_apart():
    program = program_in([echo, Hello, 42, later, len, jacc_runtime.Walker])
    assert list(program) == [echo, Hello, later]
    assert program.walkers == (Hello,) and program.functions == (echo, later)
    assert targets_of(program) is program
    assert list(targets_of({"x": Hello})) == [Hello]


def test_two_targets_of_one_name_are_refused():
    @jacc_runtime.function()
    def Hello(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="`Hello`"):
        Program([globals()["Hello"], Hello])


# --- binding and calling -------------------------------------------------------------------


def test_bind_picks_the_binding_by_kind():
    assert type(bind(Hello)) is WalkerBinding and bind(Hello).kind == "walker"
    binding = bind(echo)
    assert isinstance(binding, FunctionBinding) and binding.kind == "function"
    assert binding.function is echo and binding.controls


def test_parameters_are_checked_like_fields():
    binding = bind(echo)
    binding.check({"message": "hi"})
    with pytest.raises(ProtocolError) as error:
        binding.check({"message": 1, "extra": 2})
    assert error.value.code == INVALID_PAYLOAD
    assert [d["field"] for d in error.value.details] == ["message", "extra"]


def test_a_plain_def_runs_in_a_worker_thread_and_an_async_def_on_the_loop():
    async def calls():
        return (await bind(echo).call({"message": "hi"}), await bind(later).call({"n": 1}))

    plain, coroutine = asyncio.run(calls())
    assert plain["thread"] != threading.main_thread().name
    assert coroutine == 2


def test_a_generator_function_is_called_but_not_run():
    ran = []

    @jacc_runtime.function(protocol="websocket")
    def lazy():
        ran.append(1)
        yield 1

    value = asyncio.run(bind(lazy).call({}))
    assert inspect.isgenerator(value) and is_stream(value) and ran == []
    assert is_stream(asyncio.run(bind(made_elsewhere).call({"count": 2})))
    assert not is_stream([1, 2])


def test_a_raising_function_is_an_execution_error_naming_the_exception():
    @jacc_runtime.function()
    def broken() -> int:
        raise KeyError("gone")

    with pytest.raises(ProtocolError) as error:
        asyncio.run(bind(broken).call({}))
    assert (error.value.code, error.value.message) == (EXECUTION_ERROR, "KeyError: 'gone'")


def test_the_result_frame_is_the_specs_shape():
    assert json.loads(result_frame({"a": [1]})) == {"ok": True, "data": {"result": {"a": [1]}}}
    assert result_frame(None) == '{"ok":true,"data":{"result":null}}'
    with pytest.raises(ProtocolError) as error:
        result_frame({1, 2}, "f")
    assert error.value.code == EXECUTION_ERROR
    assert error.value.message == "the result holds a value of type `set`, which cannot be " \
                                  "sent as JSON"
