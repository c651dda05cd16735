"""Functions and streams on a socket (runtime/server/ws/streams.py): frames, flow, cancel,
timeout, with the session's own parts (watchdog, read-ahead) and a stand-in connection.
The whole path through a real server is tests/e2e/test_ws_streams.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import jacc_runtime
import pytest
from jacc_runtime.server.functions import bind
from jacc_runtime.server.protocol import EXECUTION_TIMEOUT, STREAM_ERROR, ProtocolError
from jacc_runtime.server.ws.readahead import ReadAhead
from jacc_runtime.server.ws.streams import DONE_FRAME, TargetRunner, chunk_frame, done_frame
from jacc_runtime.server.ws.watchdog import WalkerWatchdog


class FakeConnection:
    """A connection that records what it is sent; `fills` are what `queue_fill` says, in turn."""

    def __init__(self, fills: list[float] | None = None) -> None:
        self.sent: list[str] = []
        self.fills = list(fills or [])
        self.closing = False

    def queue_fill(self) -> float:
        return self.fills.pop(0) if self.fills else 0.0

    async def reply(self, frame: str) -> None:
        self.sent.append(frame)


def receive_then(messages: list[dict], after: float = 0.0):
    """An ASGI receive: `messages` after `after` seconds, then nothing more, ever."""

    async def receive() -> dict:
        if messages:
            await asyncio.sleep(after)
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


DISCONNECT = {"type": "websocket.disconnect", "code": 1000}


class RecordedMetrics:
    """A walker's metrics (metrics.py) that keep what they are told."""

    def __init__(self) -> None:
        self.runs: list[float] = []
        self.errors: list[str] = []

    def ran(self, seconds: float) -> None:
        self.runs.append(seconds)

    def error(self, code: str, reason: str | None = None) -> None:
        self.errors.append(code)


def serve(target, payload: dict, *, connection: FakeConnection | None = None,
          receive=None, timeout: float = 30.0,
          metrics: RecordedMetrics | None = None) -> tuple[FakeConnection, object]:
    """Run `target` through a TargetRunner as a session's reader task would."""
    connection = connection or FakeConnection()

    async def scenario():
        loop = asyncio.get_running_loop()
        ahead = ReadAhead(receive or receive_then([]), 65536)
        watchdog = WalkerWatchdog(loop, walker=target.__jacc_spec__.name, timeout=timeout,
                                  heartbeat=30.0, read_ahead=ahead)
        broadcasts: list[str] = []

        async def broadcast(frame: str) -> None:
            broadcasts.append(frame)

        runner = TargetRunner(connection, watchdog=watchdog, read_ahead=ahead,
                              broadcast=broadcast, dev=False, cleanup_seconds=5.0, loop=loop,
                              metrics=metrics or RecordedMetrics())

        async def reader():
            try:
                await runner.run(bind(target), payload, loop.time())
            except ProtocolError as error:
                return error
            return broadcasts

        watchdog.reader = task = loop.create_task(reader())
        try:
            return await task
        finally:
            watchdog.cancel()

    return connection, asyncio.run(scenario())


def decoded(connection: FakeConnection) -> list[dict]:
    return [json.loads(frame) for frame in connection.sent]


# --- frames --------------------------------------------------------------------------------


def test_chunk_and_done_frames_have_jac_scales_shape():
    assert chunk_frame({"i": 1}) == '{"ok":true,"type":"chunk","data":{"i":1}}'
    assert DONE_FRAME == done_frame() == '{"ok":true,"type":"done"}'
    failed = done_frame(ProtocolError(STREAM_ERROR, "ValueError: boom", line=7))
    assert json.loads(failed) == {"ok": False, "type": "done", "error": {
        "code": "STREAM_ERROR", "message": "ValueError: boom", "line": 7}}
    with pytest.raises(ProtocolError, match="a chunk holds a value of type `set`"):
        chunk_frame({1})


# --- functions and streams -----------------------------------------------------------------


@jacc_runtime.function(protocol="websocket", public=True)
def add(a: int, b: int = 1) -> int:
    return a + b


@jacc_runtime.function(protocol="websocket", public=True, broadcast=True)
async def announce(text: str) -> str:
    return text.upper()


def test_a_function_answers_with_its_result_and_a_broadcast_one_publishes_it():
    connection, _ = serve(add, {"a": 2})
    assert decoded(connection) == [{"ok": True, "data": {"result": 3}}]
    connection, broadcasts = serve(announce, {"text": "hi"})
    assert connection.sent == [] and broadcasts == ['{"ok":true,"data":{"result":"HI"}}']


def test_a_sync_generator_steps_in_a_thread_and_ends_with_done():
    threads = []

    @jacc_runtime.function(protocol="websocket")
    def count(n: int):
        for i in range(n):
            threads.append(threading.current_thread().name)
            yield i

    connection, _ = serve(count, {"n": 3})
    assert decoded(connection) == [*({"ok": True, "type": "chunk", "data": i} for i in range(3)),
                                   {"ok": True, "type": "done"}]
    assert threading.main_thread().name not in threads


def test_a_stream_waits_while_the_queue_is_over_half_full():
    waited = []

    @jacc_runtime.function(protocol="websocket")
    async def two():
        yield 1
        waited.append(time.monotonic())
        yield 2

    # Before each chunk the runner looks at the queue: the second finds it full a while.
    connection = FakeConnection(fills=[0.0, 0.9, 0.8, 0.6, 0.51, 0.5])
    start = time.monotonic()
    serve(two, {}, connection=connection)
    assert [f.get("data") for f in decoded(connection)] == [1, 2, None]
    assert connection.fills == []  # it looked until the queue was at half
    assert time.monotonic() - start >= 0.015  # four looks, 5 ms apart


def test_a_peer_leaving_mid_stream_closes_the_generator_and_gets_no_done():
    closed = []

    @jacc_runtime.function(protocol="websocket")
    async def endless():
        try:
            while True:
                yield "tick"
                await asyncio.sleep(0.05)
        finally:
            closed.append(time.monotonic())

    start = time.monotonic()
    connection, _ = serve(endless, {}, receive=receive_then([DISCONNECT], after=0.12))
    assert closed and closed[0] - start < 0.5
    assert decoded(connection)[-1] == {"ok": True, "type": "chunk", "data": "tick"}


def test_a_peer_leaving_closes_a_blocked_sync_generator_once_its_step_returns():
    closed = []

    @jacc_runtime.function(protocol="websocket")
    def slow():
        try:
            yield 1
            time.sleep(0.3)  # the peer leaves during this step
            yield 2
        finally:
            closed.append(threading.current_thread().name)

    connection, _ = serve(slow, {}, receive=receive_then([DISCONNECT], after=0.05))
    assert closed and closed[0] != threading.main_thread().name
    assert [f["type"] for f in decoded(connection)] == ["chunk"]


def test_a_peer_gone_before_the_stream_starts_runs_nothing():
    ran = []

    @jacc_runtime.function(protocol="websocket")
    async def stream():
        ran.append(1)
        yield 1

    async def gone() -> dict:
        return DISCONNECT

    async def scenario():
        loop = asyncio.get_running_loop()
        ahead = ReadAhead(gone, 1000)
        ahead.start(loop)
        await asyncio.sleep(0)
        ahead.stop()
        assert ahead.peer_left
        watchdog = WalkerWatchdog(loop, walker="stream", timeout=5, heartbeat=30,
                                  read_ahead=ahead)
        runner = TargetRunner(FakeConnection(), watchdog=watchdog, read_ahead=ahead,
                              broadcast=None, dev=False, cleanup_seconds=1, loop=loop)
        watchdog.reader = asyncio.current_task()
        await runner.run(bind(stream), {}, loop.time())
        watchdog.cancel()

    asyncio.run(scenario())
    assert ran == []


def test_the_timeout_covers_the_whole_stream_and_ends_it_with_done():
    closed = []

    @jacc_runtime.function(protocol="websocket")
    async def endless():
        try:
            while True:
                yield 0
                await asyncio.sleep(0.05)
        finally:
            closed.append(1)

    connection, outcome = serve(endless, {}, timeout=0.3)
    frames = decoded(connection)
    assert 3 <= len(frames) - 1 <= 8
    assert frames[-1]["type"] == "done" and frames[-1]["error"]["code"] == EXECUTION_TIMEOUT
    assert closed == [1]
    assert outcome == []  # answered with a done frame, not an error frame


def test_a_function_past_the_timeout_before_any_stream_is_an_error_frame():
    @jacc_runtime.function(protocol="websocket")
    async def sleepy() -> int:
        await asyncio.sleep(5)
        return 1

    connection, outcome = serve(sleepy, {}, timeout=0.1)
    assert connection.sent == []
    assert isinstance(outcome, ProtocolError) and outcome.code == EXECUTION_TIMEOUT


class Reporter(jacc_runtime.Walker, protocol="websocket", public=True, stream=True):
    pause = jacc_runtime.field("float", lambda: 0.05)

    @jacc_runtime.entry
    async def go(self):
        jacc_runtime.report(self, time.monotonic())
        await asyncio.sleep(self.pause)
        jacc_runtime.report(self, time.monotonic())


def test_a_streaming_walker_sends_each_report_as_it_is_made():
    sent_at = []

    class Timed(FakeConnection):
        async def reply(self, frame: str) -> None:
            sent_at.append(time.monotonic())
            await super().reply(frame)

    connection, _ = serve(Reporter, {}, connection=Timed())
    frames = decoded(connection)
    assert [f["type"] for f in frames] == ["chunk", "chunk", "done"]
    # The first chunk went out before the second report was made.
    assert sent_at[0] < frames[1]["data"]
    assert Reporter(pause=0).__jacc_spec__.stream


def test_run_still_collects_a_streaming_walkers_reports():
    assert len(jacc_runtime.run(Reporter(pause=0))) == 2


class SyncReporter(jacc_runtime.Walker, protocol="websocket", public=True, stream=True):
    @jacc_runtime.entry
    def go(self):
        jacc_runtime.report(self, threading.current_thread().name)
        jacc_runtime.report(self, 2)


def test_a_streaming_walker_with_no_async_ability_runs_in_a_thread():
    connection, _ = serve(SyncReporter, {})
    frames = decoded(connection)
    assert [f["type"] for f in frames] == ["chunk", "chunk", "done"]
    assert frames[0]["data"] != threading.main_thread().name and frames[1]["data"] == 2


def test_a_failed_stream_counts_its_error_and_its_run_time():
    @jacc_runtime.function(protocol="websocket")
    async def broken():
        yield 1
        raise SystemExit("even this is the generator's own failure")

    metrics = RecordedMetrics()
    connection, outcome = serve(broken, {}, metrics=metrics)
    frames = decoded(connection)
    assert frames[-1]["error"] == {"code": "STREAM_ERROR",
                                   "message": "SystemExit: even this is the generator's own "
                                              "failure"}
    assert metrics.errors == ["STREAM_ERROR"] and len(metrics.runs) == 1
    assert outcome == []
