"""Streams against a real `jacc serve` (SPEC §13, docs/protocol.md "Streams"): chunk frames
then one done frame, errors part way, flow control, cancellation, the timeout, order."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from e2e_support import APPS, app_source, ask, run, server_env, start_server
from websockets.asyncio.client import connect

SOURCE = app_source("functions")


def line_of(text: str) -> int:
    (number,) = [n for n, line in enumerate(SOURCE.splitlines(), 1) if text in line]
    return number


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("app"), SOURCE)
    yield running
    running.stop()


async def until_done(ws, limit: int = 100_000) -> list[dict]:
    frames = []
    for _ in range(limit):
        frames.append(json.loads(await ws.recv()))
        if frames[-1].get("type") == "done":
            return frames
    raise AssertionError("no done frame")


async def stats(server) -> dict:
    async with connect(server.ws("/ws/Stats")) as ws:
        return (await ask(ws, {}))["data"]["reports"][0]


async def closed_within(server, before: int, seconds: float) -> float:
    """How long until the streams' `finally` count passes `before` (fails past `seconds`)."""
    start = time.monotonic()
    while (await stats(server))["closed"] <= before:
        if time.monotonic() - start > seconds:
            raise AssertionError(f"no `finally` ran within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


# --- errors part way -------------------------------------------------------------------------


def test_a_generator_raising_after_two_items_gives_two_chunks_then_stream_error(server):
    async def client():
        async with connect(server.ws("/ws/function/fails_after")) as ws:
            await ws.send("{}")
            failed = await until_done(ws)
            pong = await ask(ws, {"type": "ping"})
            await ws.send(json.dumps({"good": 1}))
            return failed, pong, await until_done(ws)

    failed, pong, again = run(client())
    assert failed == [
        {"ok": True, "type": "chunk", "data": 0},
        {"ok": True, "type": "chunk", "data": 1},
        {"ok": False, "type": "done",
         "error": {"code": "STREAM_ERROR", "message": "ValueError: gave up after 2"}},
    ]
    assert pong["type"] == "pong"  # the socket stays usable
    assert [f["type"] for f in again] == ["chunk", "done"]
    assert again[-1]["error"]["message"] == "ValueError: gave up after 1"
    assert f"function fails_after raised ValueError at app.jac:{line_of('gave up after')}" \
        in server.output()


def test_a_chunk_json_cannot_carry_ends_the_stream_with_its_type(server):
    async def client():
        async with connect(server.ws("/ws/function/unsendable")) as ws:
            await ws.send("{}")
            return await until_done(ws)

    frames = run(client())
    assert frames[0] == {"ok": True, "type": "chunk", "data": 1}
    assert frames[1]["error"] == {
        "code": "STREAM_ERROR",
        "message": "a chunk holds a value of type `set`, which cannot be sent as JSON"}


def test_a_streaming_walker_that_raises_ends_with_stream_error_after_its_reports(server):
    async def client():
        async with connect(server.ws("/ws/Breaks")) as ws:
            await ws.send("{}")
            return await until_done(ws)

    assert run(client()) == [
        {"ok": True, "type": "chunk", "data": "first"},
        {"ok": False, "type": "done", "error": {"code": "STREAM_ERROR",
                                                "message": "KeyError: 'second'"}},
    ]


def test_in_dev_mode_stream_error_names_the_jac_line(tmp_path):
    dev = start_server(tmp_path / "dev", SOURCE, args=("--dev",))
    try:
        async def client():
            async with connect(dev.ws("/ws/function/fails_after")) as ws:
                await ws.send(json.dumps({"good": 0}))
                return await until_done(ws)

        [done] = run(client())
    finally:
        dev.stop()
    line = line_of("gave up after")
    assert done["error"] == {
        "code": "STREAM_ERROR", "message": "ValueError: gave up after 0", "line": line,
        "details": [{"file": "app.jac", "line": line, "function": "fails_after"}]}


# --- streaming walkers -----------------------------------------------------------------------


def test_a_streaming_walker_sends_each_report_the_moment_it_runs(server):
    async def client():
        async with connect(server.ws("/ws/Progress")) as ws:
            await ws.send(json.dumps({"steps": 3, "pause": 0.2}))
            arrivals = []
            for _ in range(4):
                frame = json.loads(await ws.recv())
                arrivals.append((time.time(), frame))
            return arrivals

    arrivals = run(client())
    assert [frame["type"] for _, frame in arrivals] == ["chunk", "chunk", "chunk", "done"]
    (first_at, first), (second_at, second) = arrivals[0], arrivals[1]
    # The first chunk was in the client's hands before the second report had even run.
    assert first_at < second["data"]["at"]
    assert second["data"]["at"] - first["data"]["at"] >= 0.19
    assert second_at - first_at >= 0.15
    assert arrivals[-1][1] == {"ok": True, "type": "done"}


# --- order and flow --------------------------------------------------------------------------


def test_frames_pipelined_behind_a_stream_are_answered_after_its_done_in_order(server):
    async def client():
        async with connect(server.ws("/ws/function/ws_stream")) as ws:
            for frame in ({"count": 2}, {"type": "ping"}, {"count": 1}, {"count": "x"}):
                await ws.send(json.dumps(frame))
            return [json.loads(await ws.recv()) for _ in range(7)]

    frames = run(client())
    kinds = [f.get("type") or ("error" if f["ok"] is False else "?") for f in frames]
    assert kinds == ["chunk", "chunk", "done", "pong", "chunk", "done", "error"]
    assert frames[-1]["error"]["code"] == "INVALID_PAYLOAD"


def test_a_fast_producer_never_overflows_a_client_that_reads(server):
    async def client():
        async with connect(server.ws("/ws/function/firehose"), max_size=None) as ws:
            await ws.send(json.dumps({"count": 3000, "size": 4096}))
            return await until_done(ws)

    frames = run(client())
    assert len(frames) == 3001 and frames[-1] == {"ok": True, "type": "done"}
    assert [f["data"]["seq"] for f in frames[:-1]] == list(range(3000))


def test_a_blocking_sync_generator_does_not_hold_other_clients_up(server):
    async def streaming():
        async with connect(server.ws("/ws/function/slow_lines")) as ws:
            await ws.send(json.dumps({"count": 3, "pause": 0.3}))
            return await until_done(ws)

    async def bystander():
        await asyncio.sleep(0.1)  # the generator is asleep in its thread by now
        worst = 0.0
        async with connect(server.ws("/ws/function/ws_echo")) as ws:
            for _ in range(10):
                start = time.monotonic()
                assert (await ask(ws, {"message": "hi"}))["ok"] is True
                worst = max(worst, time.monotonic() - start)
        return worst

    async def both():
        return await asyncio.gather(streaming(), bystander())

    frames, worst = run(both())
    assert [f["data"] for f in frames[:-1]] == ["line 0", "line 1", "line 2"]
    assert worst < 0.15, worst


# --- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close frame", "dropped connection"])
def test_a_client_leaving_mid_stream_closes_the_generator_within_a_second(server, how):
    async def client():
        before = (await stats(server))["closed"]
        async with connect(server.ws("/ws/function/endless")) as ws:
            await ws.send(json.dumps({"pause": 0.5}))
            for _ in range(2):  # the generator now sleeps in `asyncio.sleep` between items
                await ws.recv()
            if how == "dropped connection":
                ws.transport.abort()
        return await closed_within(server, before, 1.0)

    assert run(client()) < 1.0


def test_a_client_leaving_a_sync_generator_closes_it_once_its_step_returns(server):
    async def client():
        before = (await stats(server))["closed"]
        async with connect(server.ws("/ws/function/slow_lines")) as ws:
            await ws.send(json.dumps({"count": 1000, "pause": 0.2}))
            await ws.recv()
        return await closed_within(server, before, 1.0)

    assert run(client()) < 1.0


def test_the_walker_timeout_covers_the_whole_stream(tmp_path):
    env = server_env(JACC_WEBSOCKET_WALKER_TIMEOUT_SECONDS="1")
    timed = start_server(tmp_path / "timed", SOURCE, env=env)
    try:
        async def client():
            before = (await stats(timed))["closed"]
            async with connect(timed.ws("/ws/function/endless")) as ws:
                start = time.monotonic()
                await ws.send(json.dumps({"pause": 0.1}))
                frames = await until_done(ws)
                took = time.monotonic() - start
                pong = await ask(ws, {"type": "ping"})
            return frames, took, pong, (await stats(timed))["closed"] - before

        frames, took, pong, closed = run(client())
    finally:
        timed.stop()
    assert 5 <= len(frames) - 1 <= 11  # chunks every 0.1 s for one second
    assert frames[-1]["ok"] is False and frames[-1]["type"] == "done"
    assert frames[-1]["error"]["code"] == "EXECUTION_TIMEOUT"
    assert frames[-1]["error"]["reason"] == "walker_timeout_seconds"
    assert 0.9 < took < 2.0
    assert pong["type"] == "pong" and closed == 1  # its `finally` ran; the socket goes on


# --- a slow reader ---------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_slow_reader_of_ten_thousand_4k_chunks_is_never_closed_and_memory_stays_bounded(
        tmp_path):
    # 10,000 frames read 10 ms apart take 100 s: the walker timeout must allow that.
    env = server_env(JACC_WEBSOCKET_WALKER_TIMEOUT_SECONDS="600")
    slow = start_server(tmp_path / "slow", SOURCE, env=env)
    pid = slow.process.pid
    try:
        async def client():
            peak = baseline = _rss_kib(pid)
            async with connect(slow.ws("/ws/function/firehose"), max_size=None,
                               max_queue=1) as ws:
                await ws.send(json.dumps({"count": 10_000, "size": 4096}))
                count = 0
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "done":
                        return count, frame, baseline, peak
                    assert frame["data"]["seq"] == count
                    count += 1
                    if count % 500 == 0:
                        peak = max(peak, _rss_kib(pid))
                    await asyncio.sleep(0.01)

        count, done, baseline, peak = run(client())
        log = slow.log()
    finally:
        slow.stop()
    assert count == 10_000 and done == {"ok": True, "type": "done"}
    assert [line for line in log.splitlines() if "4408" in line or "too slow" in line] == []
    # 40 MB went through; the server held a few MB of it at most.
    assert peak - baseline < 16 * 1024, (baseline, peak)


def test_the_app_file_is_the_one_served():
    assert (APPS / "functions.jac").read_text(encoding="utf-8") == SOURCE
