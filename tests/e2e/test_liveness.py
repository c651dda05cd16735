"""Liveness (docs/protocol.md, "Limits and liveness") against a real `jacc serve` with one-second beats.

WebSocket-level pings every `heartbeat_seconds`: a peer that answers none is
dropped within two beats, an idle client that answers them stays; a private
connection that does not authenticate within `auth_timeout_seconds` is closed
with 4401 and hears no broadcast before; an expired token closes within a beat.
"""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from e2e_support import SECRET, app_source, ask, run, server_env, start_server
from raw_ws import OP_CLOSE, OP_PING, RawWebSocket, close_code
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)
BEAT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # From the environment this time (test_ws_limits.py uses a jacc.toml).
    env = server_env(JACC_WEBSOCKET_HEARTBEAT_SECONDS=str(BEAT),
                     JACC_WEBSOCKET_AUTH_TIMEOUT_SECONDS="1",
                     JACC_WEBSOCKET_WALKER_TIMEOUT_SECONDS="10")
    running = start_server(tmp_path_factory.mktemp("app"), app_source("seed", "limits"), env=env)
    yield running
    running.stop()


def test_a_peer_that_never_answers_pings_is_dropped_within_two_beats(server):
    raw = RawWebSocket(server.port, "/ws/EchoMessage")
    try:
        assert raw.status == 101
        assert server.wait_connections(1)["connections"] == 1
        frames = list(raw.frames(timeout=10))  # read, never answer, until the server hangs up
        gone_after = time.monotonic() - raw.opened_at
    finally:
        raw.close()
    opcodes = [opcode for opcode, _ in frames]
    assert opcodes[0] == OP_PING  # a WebSocket ping, never a JSON frame
    assert set(opcodes) <= {OP_PING, OP_CLOSE}
    closes = [close_code(payload) for opcode, payload in frames if opcode == OP_CLOSE]
    assert closes in ([], [1011])  # "keepalive ping timeout", when the close frame makes it
    assert BEAT < gone_after < 2 * BEAT + 0.5, gone_after
    assert server.wait_connections(0)["connections"] == 0


def test_an_idle_client_that_answers_pings_stays_connected(server):
    async def client():
        # The client's own keepalive is off: only the server's pings are in play.
        async with connect(server.ws("/ws/EchoMessage"), ping_interval=None) as ws:
            await asyncio.sleep(3.5 * BEAT)  # past two beats without a word from either side
            assert server.health()["connections"] == 1
            return await ask(ws, {"message": "still here"})

    assert run(client())["ok"] is True


def test_a_walker_running_for_several_beats_does_not_cost_its_connection(server):
    # While a walker runs the session reads no frame, and a pong that waits unread
    # behind the walker's frame would look like a dead peer: the session reads
    # ahead while a walker runs long, so pongs (and pipelined frames) get through.
    async def client():
        async with connect(server.ws("/ws/Sleepy"), ping_interval=None) as ws:
            await ws.send(json.dumps({"seconds": 3 * BEAT}))
            await asyncio.sleep(0.5 * BEAT)
            await ws.send(json.dumps({"seconds": 0.01}))  # pipelined behind the slow one
            await ws.send(json.dumps({"type": "ping"}))
            answers = [json.loads(await ws.recv()) for _ in range(3)]
            answers.append(await ask(ws, {"type": "ping"}))
            return answers

    slow, quick, pong, pong_again = run(client())
    assert slow["data"]["reports"] == [{"slept": 3 * BEAT}]
    assert quick["data"]["reports"] == [{"slept": 0.01}]
    assert pong["type"] == "pong" and pong_again["type"] == "pong"


def test_a_private_connection_that_never_authenticates_gets_4401_and_no_broadcast(server):
    token = TOKENS.issue("alice")

    async def client():
        async with connect(server.ws("/ws/TeamChat")) as silent, \
                connect(server.ws(f"/ws/TeamChat?token={token}")) as member:
            started = time.monotonic()
            sent = await ask(member, {"message": "members only"})
            frame = json.loads(await asyncio.wait_for(silent.recv(), 5))
            waited = time.monotonic() - started
            with pytest.raises(ConnectionClosed) as caught:
                await silent.recv()
            # The member is unaffected.
            assert (await ask(member, {"message": "again"}))["ok"] is True
            return sent, frame, waited, caught.value.rcvd

    sent, frame, waited, closed = run(client())
    assert sent["ok"] is True  # the member got its own broadcast...
    # ...and the silent connection got nothing but the refusal.
    assert frame["error"]["code"] == "UNAUTHORIZED" and frame["error"]["reason"] == "missing"
    assert "auth_timeout_seconds" in frame["error"]["message"]
    assert (closed.code, closed.reason) == (4401, "missing")
    assert 0.8 < waited < 2.0, waited


def test_authenticating_in_time_keeps_the_connection_past_the_auth_timeout(server):
    async def client():
        async with connect(server.ws("/ws/SecureChat")) as ws:
            await asyncio.sleep(0.5)
            first = await ask(ws, {"message": "hi", "token": TOKENS.issue("bob")})
            await asyncio.sleep(1.5)
            return first, await ask(ws, {"message": "later"})

    first, later = run(client())
    assert first["ok"] is True and later["ok"] is True


def test_a_public_connection_has_no_auth_timeout(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            await asyncio.sleep(1.5)
            return await ask(ws, {"message": "anonymous"})

    assert run(client())["ok"] is True


def test_an_expired_token_closes_within_one_beat(server):
    async def client():
        token = TOKENS.issue("carol", ttl_seconds=2)
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        async with connect(server.ws(f"/ws/SecureChat?token={token}"), ping_interval=None) as ws:
            assert (await ask(ws, {"message": "hi"}))["ok"] is True
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            closed_at = time.time()
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()
            return frame, caught.value.rcvd, closed_at - expires

    frame, closed, late = run(client())
    assert frame["error"] == {"code": "UNAUTHORIZED", "message": "token expired", "reason": "expired"}
    assert (closed.code, closed.reason) == (4401, "expired")
    assert -0.1 < late < BEAT, late


def test_a_refresh_before_expiry_keeps_the_connection_over_several_beats(server):
    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={TOKENS.issue('dave', ttl_seconds=2)}"),
                           ping_interval=None) as ws:
            refreshed = await ask(ws, {"type": "refresh", "token": TOKENS.issue("dave")})
            await asyncio.sleep(2.5 * BEAT)  # the old token's `exp` was at most 2 s away
            return refreshed, await ask(ws, {"message": "after the old token's expiry"})

    refreshed, answer = run(client())
    assert refreshed == {"type": "refreshed", "ok": True} and answer["ok"] is True
