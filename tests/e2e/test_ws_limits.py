"""The limits of docs/configuration.md against a real `jacc serve`: size, rate, connection caps, walker timeout.

One server, configured by a `jacc.toml` beside the app with small limits so the
tests are quick. Every walker is capped at three connections here, so each test
keeps at most that many open per walker.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from e2e_support import SECRET, app_source, ask, run, start_server
from raw_ws import OP_CLOSE, OP_TEXT, RawWebSocket, close_code
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)

CONFIG = """\
[websocket]
max_message_bytes = 1024
messages_per_second = 5
max_connections_per_walker = 3
max_connections_per_user = 2
walker_timeout_seconds = 0.5
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    (folder / "jacc.toml").write_text(CONFIG)
    running = start_server(folder, app_source("seed", "extras", "limits"))
    yield running
    running.stop()


async def closed_with(ws) -> tuple[dict, int, str]:
    """The error frame the server sent last, then its close code and reason."""
    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
    with pytest.raises(ConnectionClosed) as caught:
        await asyncio.wait_for(ws.recv(), 5)
    return frame, caught.value.rcvd.code, caught.value.rcvd.reason


def echo_frame(total_bytes: int, char: str = "x") -> str:
    """An EchoMessage frame of exactly `total_bytes` UTF-8 bytes."""
    empty = len(json.dumps({"message": ""}, ensure_ascii=False).encode())
    width = len(char.encode())
    assert (total_bytes - empty) % width == 0
    text = json.dumps({"message": char * ((total_bytes - empty) // width)}, ensure_ascii=False)
    assert len(text.encode()) == total_bytes
    return text


# --- size ------------------------------------------------------------------------------


def test_a_frame_at_the_limit_passes_and_one_byte_more_is_too_large(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            assert (await ask(ws, echo_frame(1024)))["ok"] is True
            await ws.send(echo_frame(1025))
            return await closed_with(ws)

    frame, code, reason = run(client())
    assert frame["ok"] is False
    assert frame["error"]["code"] == "MESSAGE_TOO_LARGE"
    assert "1025 bytes" in frame["error"]["message"] and "1024" in frame["error"]["message"]
    assert (code, reason) == (4413, "max_message_bytes")


def test_the_limit_is_in_utf8_bytes_not_characters(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            assert (await ask(ws, echo_frame(1024 - 1, "é")))["ok"] is True
            await ws.send(echo_frame(1023 + 2, "é"))  # fewer than 1024 characters
            return await closed_with(ws)

    frame, code, _ = run(client())
    assert frame["error"]["code"] == "MESSAGE_TOO_LARGE" and code == 4413


def test_a_binary_frame_over_the_limit(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            await ws.send(echo_frame(2000).encode())
            return await closed_with(ws)

    frame, code, _ = run(client())
    assert frame["error"]["code"] == "MESSAGE_TOO_LARGE" and code == 4413


def test_a_much_larger_frame_is_refused_by_the_websocket_layer(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage"), max_size=None) as ws:
            with pytest.raises(ConnectionClosed) as caught:
                await ws.send(echo_frame(4 * 2**20))
                await asyncio.wait_for(ws.recv(), 5)
            return caught.value

    closed = run(client())
    # 1009 "message too big"; no error frame (the frame was never read whole).
    assert closed.rcvd is None or closed.rcvd.code == 1009
    assert server.health()["status"] == "ok"


def test_an_announced_huge_frame_is_refused_from_its_header_alone(server):
    # The header says 1 GiB is coming and nothing follows: a server that buffered
    # the message whole would wait for it; this one closes at once.
    raw = RawWebSocket(server.port, "/ws/EchoMessage")
    try:
        assert raw.status == 101
        started = time.monotonic()
        raw.send_header(OP_TEXT, 2**30)
        frames = list(raw.frames(timeout=5))
        elapsed = time.monotonic() - started
    finally:
        raw.close()
    closes = [payload for opcode, payload in frames if opcode == OP_CLOSE]
    assert [close_code(payload) for payload in closes] == [1009]
    assert not [payload for opcode, payload in frames if opcode == OP_TEXT]
    assert elapsed < 2


# --- rate ------------------------------------------------------------------------------


def test_over_the_rate_is_refused_and_the_socket_recovers(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            # A burst of `messages_per_second` frames passes; control frames count too.
            for _ in range(5):
                await ws.send(json.dumps({"type": "ping"}))
            await ws.send(json.dumps({"message": "one too many"}))
            answers = [json.loads(await ws.recv()) for _ in range(6)]
            assert [a.get("type") for a in answers[:5]] == ["pong"] * 5
            limited = answers[5]["error"]
            assert limited["code"] == "RATE_LIMITED" and limited["reason"] == "messages_per_second"
            assert "retry in" in limited["message"]
            await asyncio.sleep(0.25)  # 5 a second: one token back
            assert (await ask(ws, {"message": "after a pause"}))["ok"] is True
            assert (await ask(ws, {"message": "too soon"}))["error"]["code"] == "RATE_LIMITED"
            await asyncio.sleep(1.1)  # the bucket is full again
            for n in range(5):
                assert (await ask(ws, {"message": str(n)}))["ok"] is True

    run(client())


def test_each_connection_has_its_own_bucket(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as first, \
                connect(server.ws("/ws/EchoMessage")) as second:
            for _ in range(5):
                await ask(first, {"type": "ping"})
            assert (await ask(first, {"type": "ping"}))["error"]["code"] == "RATE_LIMITED"
            assert (await ask(second, {"type": "ping"}))["type"] == "pong"

    run(client())


# --- connection caps -------------------------------------------------------------------


def wait_walker_count(server, walker: str, count: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        seen = server.health()["by_walker"].get(walker, 0)
        if seen == count or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def test_max_connections_per_walker_and_the_slot_is_released(server):
    async def client():
        held = [await connect(server.ws("/ws/Capped")) for _ in range(3)]
        try:
            assert wait_walker_count(server, "Capped", 3) == 3
            async with connect(server.ws("/ws/Capped")) as refused:
                frame, code, reason = await closed_with(refused)
            assert frame["error"]["code"] == "CAPACITY"
            assert frame["error"]["reason"] == "max_connections_per_walker"
            assert (code, reason) == (4403, "max_connections_per_walker")
            assert wait_walker_count(server, "Capped", 3) == 3  # the refused one never counted
            # Other walkers are not affected.
            async with connect(server.ws("/ws/EchoMessage")) as other:
                assert (await ask(other, {"message": "hi"}))["ok"] is True
            await held.pop().close()
            assert wait_walker_count(server, "Capped", 2) == 2
            async with connect(server.ws("/ws/Capped")) as again:
                assert (await ask(again, {}))["data"]["reports"] == ["hello"]
        finally:
            for ws in held:
                await ws.close()

    run(client())


def test_max_connections_per_user_counts_identified_connections_on_every_walker(server):
    token = TOKENS.issue("carol")

    async def client():
        private = await connect(server.ws(f"/ws/SecureChat?token={token}"))
        public = await connect(server.ws(f"/ws/EchoMessage?token={token}"))
        try:
            assert (await ask(private, {"message": "one"}))["ok"] is True
            assert (await ask(public, {"message": "two"}))["ok"] is True
            # A third connection of carol's: by query token, or by first-frame token.
            async with connect(server.ws(f"/ws/TeamChat?token={token}")) as third:
                by_query = await closed_with(third)
            async with connect(server.ws("/ws/SecureChat")) as third:
                await third.send(json.dumps({"message": "three", "token": token}))
                by_frame = await closed_with(third)
            # Anonymous connections and other users are not carol.
            async with connect(server.ws("/ws/EchoMessage")) as anonymous:
                assert (await ask(anonymous, {"message": "anon"}))["ok"] is True
            async with connect(server.ws(f"/ws/SecureChat?token={TOKENS.issue('dave')}")) as dave:
                assert (await ask(dave, {"message": "dave"}))["ok"] is True
            await private.close()
            assert wait_walker_count(server, "SecureChat", 0) == 0
            async with connect(server.ws("/ws/SecureChat")) as again:
                answer = await ask(again, {"message": "again", "token": token})
            return by_query, by_frame, answer
        finally:
            await private.close()
            await public.close()

    by_query, by_frame, answer = run(client())
    for frame, code, reason in (by_query, by_frame):
        assert frame["error"]["code"] == "CAPACITY"
        assert frame["error"]["reason"] == "max_connections_per_user"
        assert (code, reason) == (4403, "max_connections_per_user")
    assert answer["ok"] is True


def test_a_refresh_that_identifies_an_anonymous_connection_is_counted(server):
    token = TOKENS.issue("erin")

    async def client():
        held = [await connect(server.ws(f"/ws/EchoMessage?token={token}")) for _ in range(2)]
        try:
            for ws in held:
                assert (await ask(ws, {"message": "x"}))["ok"] is True
            async with connect(server.ws("/ws/EchoMessage")) as anonymous:
                await anonymous.send(json.dumps({"type": "refresh", "token": token}))
                return await closed_with(anonymous)
        finally:
            for ws in held:
                await ws.close()

    frame, code, _ = run(client())
    assert frame["error"]["code"] == "CAPACITY" and code == 4403


# --- walker timeout --------------------------------------------------------------------


def test_a_walker_past_its_timeout_is_cancelled_and_the_socket_stays_usable(server):
    async def client():
        async with connect(server.ws("/ws/Finished")) as counter:
            before = (await ask(counter, {}))["data"]["reports"][0]
            async with connect(server.ws("/ws/Sleepy")) as ws:
                started = time.monotonic()
                await ws.send(json.dumps({"seconds": 1.5}))
                await ws.send(json.dumps({"type": "ping"}))  # pipelined behind it
                timed_out = json.loads(await ws.recv())
                elapsed = time.monotonic() - started
                pong = json.loads(await ws.recv())
                quick = await ask(ws, {"seconds": 0.01})
            await asyncio.sleep(1.5)  # had the slow one gone on, it would have finished by now
            after = (await ask(counter, {}))["data"]["reports"][0]
        return timed_out, elapsed, pong, quick, after - before

    timed_out, elapsed, pong, quick, finished = run(client())
    assert timed_out["error"]["code"] == "EXECUTION_TIMEOUT"
    assert timed_out["error"]["reason"] == "walker_timeout_seconds"
    assert "Sleepy" in timed_out["error"]["message"] and "0.5 s" in timed_out["error"]["message"]
    assert 0.45 < elapsed < 1.2
    assert pong["type"] == "pong"
    assert quick == {"ok": True, "data": {"reports": [{"slept": 0.01}]}}
    assert finished == 1  # only the quick one: the slow one never reached its next line
    assert "walker Sleepy ran past walker_timeout_seconds" in server.output()


def test_a_walker_that_swallows_the_cancellation_still_timed_out(server):
    async def client():
        async with connect(server.ws("/ws/Stubborn")) as ws:
            first = await ask(ws, {"seconds": 5})
            second = await ask(ws, {"seconds": 0.01})
            return first, second

    first, second = run(client())
    assert first["error"]["code"] == "EXECUTION_TIMEOUT"
    assert second == {"ok": True, "data": {"reports": []}}


def test_an_http_walker_past_its_timeout_gets_504(server):
    slow = httpx.post(f"{server.http}/walker/SleepyHttp", json={"seconds": 3}, timeout=10)
    assert slow.status_code == 504
    assert slow.json()["error"]["code"] == "EXECUTION_TIMEOUT"
    quick = httpx.post(f"{server.http}/walker/SleepyHttp", json={"seconds": 0}, timeout=10)
    assert quick.json() == {"ok": True, "data": {"reports": [{"slept": 0}]}}


def test_nothing_leaked(server):
    # Runs last in this module: every refused or timed-out connection was released.
    health = server.wait_connections(0)
    assert health["connections"] == 0 and health["by_walker"] == {}
    assert "Traceback" not in server.output()
