"""Frames in and out (runtime/protocol.py): parsing, field checks, envelopes."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server.protocol import (
    EXECUTION_ERROR,
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    ProtocolError,
    WalkerBinding,
    decode_object,
    describe_exception,
    error_frame,
    pong_frame,
    run_walker,
    success_frame,
)
from jacc_runtime.server.threads import WalkerPool


class Echo(Walker, protocol="websocket", public=True):
    message = field("str")
    client_id = field("str", lambda: "anonymous")
    tags = field("list[str]", lambda: [])

    @entry
    async def echo(self):
        report(self, {"echo": self.message, "client_id": self.client_id})


class Typed(Walker, protocol="websocket", public=True):
    type = field("str")
    count = field("int | None", lambda: None)


class Boom(Walker, protocol="websocket", public=True):
    @entry
    async def explode(self):
        raise ValueError("boom")


class Unsendable(Walker, protocol="websocket", public=True):
    what = field("str")

    @entry
    async def send(self):
        values = {"set": {1, 2}, "self": self, "nan": float("nan"), "tuple_key": {(1, 2): 3}}
        report(self, values[self.what])


def run(coroutine):
    return asyncio.run(coroutine)


# --- decoding ----------------------------------------------------------------------


def test_decode_text_and_utf8_bytes():
    assert decode_object('{"message": "hé"}') == {"message": "hé"}
    assert decode_object('{"message": "hé"}'.encode()) == {"message": "hé"}


@pytest.mark.parametrize(
    ("data", "message", "status"),
    [
        ("not json", "not valid JSON: Expecting value at line 1 column 1", 400),
        ("", "not valid JSON: Expecting value at line 1 column 1", 400),
        ("[1, 2]", "expected a JSON object, got an array", 400),
        ('"text"', "expected a JSON object, got a string", 400),
        ("3", "expected a JSON object, got a number", 400),
        ("null", "expected a JSON object, got null", 400),
        ("true", "expected a JSON object, got a boolean", 400),
        ('{"a": NaN}', "not valid JSON: NaN is not valid JSON", 400),
        (b"\xff\xfe\x00garbage", "expected UTF-8 JSON text, got binary data", 400),
        ("[" * 100_000, "JSON nested too deeply", 400),
    ],
)
def test_decode_refuses_everything_but_one_object(data, message, status):
    with pytest.raises(ProtocolError) as caught:
        decode_object(data)
    assert caught.value.code == INVALID_PAYLOAD
    assert caught.value.message == message
    assert caught.value.status == status


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.text(max_size=64)))
def test_decode_never_fails_with_anything_but_invalid_payload(data):
    try:
        value = decode_object(data)
    except ProtocolError as error:
        assert error.code == INVALID_PAYLOAD
    else:
        assert isinstance(value, dict)


# --- field checks ------------------------------------------------------------------


def test_check_accepts_valid_fields_and_defaults():
    binding = WalkerBinding(Echo)
    binding.check({"message": "hi"})
    binding.check({"message": "hi", "client_id": "py", "tags": ["a"]})


def test_check_lists_every_problem_with_what_was_expected():
    binding = WalkerBinding(Echo)
    with pytest.raises(ProtocolError) as caught:
        binding.check({"client_id": 3, "tags": ["a", 1], "mesage": "typo"})
    error = caught.value
    assert error.code == INVALID_PAYLOAD
    assert error.status == 422
    assert error.details == [
        {"field": "message", "expected": "str", "message": "missing required field"},
        {"field": "client_id", "expected": "str", "message": "expected str, got int"},
        {"field": "tags", "expected": "list[str]", "message": "expected list[str], got int at [1]"},
        {"field": "mesage", "message": "unknown field, did you mean `message`?"},
    ]
    assert error.message == "invalid fields for Echo: `message`, `client_id`, `tags`, `mesage`"


def test_control_frames_only_where_the_walker_has_no_type_field():
    assert WalkerBinding(Echo).control_type({"type": "ping"}) == "ping"
    assert WalkerBinding(Echo).control_type({"type": "refresh", "token": "t"}) == "refresh"
    assert WalkerBinding(Echo).control_type({"type": "other"}) is None
    assert WalkerBinding(Typed).control_type({"type": "ping"}) is None


# --- frames out --------------------------------------------------------------------


def test_success_frame_is_exactly_the_reports_envelope():
    frame = success_frame([{"echo": "hé"}, 1])
    assert frame == '{"ok":true,"data":{"reports":[{"echo":"hé"},1]}}'
    assert success_frame([]) == '{"ok":true,"data":{"reports":[]}}'


def test_error_frame_shape():
    assert json.loads(error_frame("UNAUTHORIZED", "no token given", reason="missing")) == {
        "ok": False,
        "error": {"code": "UNAUTHORIZED", "message": "no token given", "reason": "missing"},
    }


def test_pong_frame_carries_milliseconds():
    frame = json.loads(pong_frame())
    assert frame["type"] == "pong" and isinstance(frame["ts"], int) and frame["ts"] > 1e12


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("set", "a report holds a value of type `set`, which cannot be sent as JSON"),
        ("self", "a report holds a value of type `Unsendable`, which cannot be sent as JSON"),
        ("nan", "a report cannot be sent as JSON: Out of range float values are not JSON compliant"),
        ("tuple_key", "a report holds a dict whose keys are not strings, numbers, booleans or null"),
    ],
)
def test_unserialisable_reports_are_execution_errors_without_reprs(what, message):
    # The walker's own failure (docs/protocol.md, "Errors while running").
    reports = run(run_walker(WalkerBinding(Unsendable), {"what": what}))
    with pytest.raises(ProtocolError) as caught:
        success_frame(reports, "Unsendable")
    assert caught.value.code == EXECUTION_ERROR
    assert caught.value.message.startswith(message[:30])
    assert "<" not in caught.value.message  # no `<object at 0x...>`


# --- running -----------------------------------------------------------------------


def test_run_walker_returns_reports():
    reports = run(run_walker(WalkerBinding(Echo), {"message": "hi"}))
    assert reports == [{"echo": "hi", "client_id": "anonymous"}]


def test_execution_error_names_type_and_text_and_logs_the_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="jacc.walker"):
        with pytest.raises(ProtocolError) as caught:
            run(run_walker(WalkerBinding(Boom), {}))
    assert caught.value.code == EXECUTION_ERROR
    assert caught.value.message == "ValueError: boom"
    assert caught.value.status == 500
    assert any(record.exc_info and "explode" in caplog.text for record in caplog.records)


def test_describe_exception_without_text():
    assert describe_exception(KeyError()) == "KeyError"
    assert describe_exception(RuntimeError("x: y")) == "RuntimeError: x: y"


# --- where a walker failed, in dev mode ------------------------------------------------

FAILING_JAC = """
def deeper(x: int) -> int {
    return 10 // x;
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Divide {
    has by: int = 0;

    async can divide with Root entry {
        report deeper(self.by);
    }
}
"""


def _compiled_walker(name: str, filename: str):
    from jacc.compiler import compile_source

    namespace: dict = {}
    exec(compile_source(FAILING_JAC, "app.jac", filename).code, namespace)
    return namespace[name]


def test_dev_mode_adds_the_jac_line_and_frames(tmp_path):
    binding = WalkerBinding(_compiled_walker("Divide", str(tmp_path / "app.jac")))
    with pytest.raises(ProtocolError) as caught:
        run(run_walker(binding, {}, dev=True))
    error = json.loads(caught.value.frame())["error"]
    assert error == {
        "code": "EXECUTION_ERROR",
        "message": "ZeroDivisionError: integer division or modulo by zero",
        "line": 3,
        "details": [{"file": "app.jac", "line": 11, "function": "divide"},
                    {"file": "app.jac", "line": 3, "function": "deeper"}],
    }
    assert str(tmp_path) not in caught.value.frame()


def test_without_dev_mode_the_line_is_only_in_the_log(tmp_path, caplog):
    binding = WalkerBinding(_compiled_walker("Divide", str(tmp_path / "app.jac")))
    with caplog.at_level(logging.ERROR, logger="jacc.walker"):
        with pytest.raises(ProtocolError) as caught:
            run(run_walker(binding, {}))
    assert json.loads(caught.value.frame())["error"] == {
        "code": "EXECUTION_ERROR",
        "message": "ZeroDivisionError: integer division or modulo by zero",
    }
    assert "walker Divide raised ZeroDivisionError at app.jac:3" in caplog.text


def test_dev_mode_names_the_jac_line_of_a_built_module_too(tmp_path):
    import importlib.util

    from jacc.compiler import build_file

    (tmp_path / "app.jac").write_text(FAILING_JAC)
    build_file(tmp_path / "app.jac", tmp_path / "app.py")
    spec = importlib.util.spec_from_file_location("jacc_test_protocol_built", tmp_path / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ProtocolError) as caught:
        run(run_walker(WalkerBinding(module.Divide), {}, dev=True))
    assert caught.value.line == 3
    assert [(d["file"], d["line"]) for d in caught.value.details] == [("app.jac", 11), ("app.jac", 3)]


def test_dev_mode_without_jac_frames_adds_nothing():
    with pytest.raises(ProtocolError) as caught:
        run(run_walker(WalkerBinding(Boom), {}, dev=True))  # a walker written in Python
    assert json.loads(caught.value.frame())["error"] == {
        "code": "EXECUTION_ERROR", "message": "ValueError: boom"}


# --- failures that are not Exceptions, and cancellations -------------------------------


class Halt(BaseException):
    """A user's own BaseException."""


FAILURES = [
    (lambda: SystemExit(3), "SystemExit: 3"),
    (KeyboardInterrupt, "KeyboardInterrupt"),
    (asyncio.CancelledError, "CancelledError"),
    (GeneratorExit, "GeneratorExit"),
    (lambda: Halt("stop"), "Halt: stop"),
    (lambda: StopIteration("done"), "StopIteration: done"),
]


def _raiser(make, is_async: bool) -> type[Walker]:
    if is_async:
        class Raiser(Walker, protocol="websocket", public=True):
            @entry
            async def go(self):
                await asyncio.sleep(0)
                raise make()
    else:
        class Raiser(Walker, protocol="websocket", public=True):
            @entry
            def go(self):
                raise make()
    return Raiser


async def _in_pool(binding: WalkerBinding, fields: dict) -> list:
    pool = WalkerPool()
    try:
        return await run_walker(binding, fields, threads=pool)
    finally:
        pool.stop()


@pytest.mark.parametrize(("make", "message"), FAILURES, ids=[m for _, m in FAILURES])
@pytest.mark.parametrize("where", ["async", "loop", "thread"])
def test_a_walker_failure_of_any_kind_is_an_execution_error(make, message, where, caplog):
    binding = WalkerBinding(_raiser(make, where == "async"))
    runner = _in_pool(binding, {}) if where == "thread" else run_walker(binding, {})
    with caplog.at_level(logging.ERROR, logger="jacc.walker"):
        with pytest.raises(ProtocolError) as caught:
            run(runner)
    if where != "thread" and make is FAILURES[-1][0]:
        # PEP 479: a StopIteration leaving a coroutine becomes a RuntimeError.
        message = "RuntimeError: coroutine raised StopIteration"
    assert (caught.value.code, caught.value.message) == (EXECUTION_ERROR, message)
    assert f"walker Raiser raised {message.partition(':')[0]}" in caplog.text


class Sleeper(Walker, protocol="websocket", public=True):
    what = field("str", lambda: "let it out")

    @entry
    async def sleep(self):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if self.what == "swallow":
                report(self, "swallowed")
                return
            if self.what == "raise":
                raise ValueError("not me") from None
            raise


@pytest.mark.parametrize("what", ["let it out", "swallow", "raise"])
def test_a_cancellation_stays_a_cancellation_whatever_the_walker_does(what):
    async def scenario():
        task = asyncio.ensure_future(run_walker(WalkerBinding(Sleeper), {"what": what}))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())


@pytest.mark.parametrize("what", ["let it out", "swallow", "raise"])
def test_a_timeout_around_run_walker_stays_a_timeout(what):
    async def scenario():
        async with asyncio.timeout(0.01):
            await run_walker(WalkerBinding(Sleeper), {"what": what})

    with pytest.raises(TimeoutError):
        run(scenario())


def test_a_cancelled_thread_walker_leaves_a_cancellation():
    release = threading.Event()

    class Blocked(Walker, protocol="websocket", public=True):
        @entry
        def wait(self):
            release.wait(5)

    async def scenario():
        pool = WalkerPool()
        task = asyncio.ensure_future(run_walker(WalkerBinding(Blocked), {}, threads=pool))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            release.set()
            pool.stop()

    run(scenario())
