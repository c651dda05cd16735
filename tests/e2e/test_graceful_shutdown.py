"""Graceful drain on SIGTERM, against a real `jacc serve` (docs/security.md#shutdown).

Walkers already running finish and are answered (up to `drain_seconds`), on
both transports and routes, async and not, broadcast and not; meanwhile new
connections and requests get 503 and new frames SERVICE_UNAVAILABLE; then the
sockets close with 1001 and the process exits 0. A walker that outlasts the
drain is cut off: 1001 for its socket, 503 for its HTTP request.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
from e2e_support import ask, run, server_env, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from jacc_runtime.server.threads import POOL_SIZE

SOURCE = """
# Walkers that take their time: each records its arrival, then sleeps until `until`
# (time.time()), so that a test knows when every request is in its walker.
import asyncio;
import time;

glob arrivals = [];

def arrive(id: int, until: float) -> float {
    arrivals.append(id);
    return max(0.0, until - time.time());
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Nap {
    has id: int;
    has until: float;
    async can nap with Root entry { await asyncio.sleep(arrive(self.id, self.until)); report self.id; }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub NapSync {
    has id: int;
    has until: float;
    can nap with Root entry { time.sleep(arrive(self.id, self.until)); report self.id; }
}

@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)
async walker : pub NapCast {
    has id: int;
    has until: float;
    async can nap with Root entry { await asyncio.sleep(arrive(self.id, self.until)); report self.id; }
}

async walker : pub HttpNap {
    has id: int;
    has until: float;
    async can nap with Root entry { await asyncio.sleep(arrive(self.id, self.until)); report self.id; }
}

walker : pub HttpNapSync {
    has id: int;
    has until: float;
    can nap with Root entry { time.sleep(arrive(self.id, self.until)); report self.id; }
}

async walker : pub Arrived {
    async can count with Root entry { report len(arrivals); }
}
"""


def start(folder, **env: str):
    return start_server(folder, SOURCE, env=server_env(JACC_WEBSOCKET_MESSAGES_PER_SECOND="1000",
                                                       **env))


async def arrived(server, count: int, timeout: float = 20) -> None:
    """Wait until `count` requests have reached their walkers."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            response = await client.post(f"{server.http}/walker/Arrived", json={})
            if response.json()["data"]["reports"] == [count]:
                return
            assert time.monotonic() < deadline, f"not all {count} requests reached their walkers"
            await asyncio.sleep(0.05)


def terminate_before(server, until: float) -> None:
    """SIGTERM, while the walkers that sleep until `until` are still running."""
    assert time.time() < until - 0.3, "too slow to start the requests: the test proves nothing"
    server.process.send_signal(signal.SIGTERM)


def closed_with(error: ConnectionClosed) -> int | None:
    return error.rcvd.code if error.rcvd is not None else None


async def until_closed(ws, timeout: float = 15) -> tuple[list[dict], int | None]:
    """Every frame `ws` receives until the server closes it, and the close code."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except ConnectionClosed as closed:
        return frames, closed_with(closed)


async def websocket_request(server, path: str, frame: dict) -> tuple[list[dict], int | None]:
    ws = await connect(server.ws(path))
    await ws.send(json.dumps(frame))
    return await until_closed(ws)


async def http_request(client: httpx.AsyncClient, server, walker: str, frame: dict):
    response = await client.post(f"{server.http}/walker/{walker}", json=frame)
    return response.status_code, response.json()


# 200 requests in flight: (route, how many), one walker frame per connection. The
# non-async ones fit in the walker threads at once, so that all 200 are running.
WEBSOCKET_MIX = [("/ws/Nap", 50), ("/ws/walker/Nap", 45), ("/ws/NapCast", 10),
                 ("/ws/NapSync", 2), ("/ws/walker/NapSync", 1)]
HTTP_MIX = [("HttpNap", 91), ("HttpNapSync", 1)]
assert sum(count for route, count in WEBSOCKET_MIX + HTTP_MIX if "Sync" in route) <= POOL_SIZE


def test_sigterm_answers_every_request_in_flight_then_closes_with_1001(tmp_path):
    server = start(tmp_path / "app")
    ids = iter(range(1000))

    async def scenario():
        until = time.time() + 4  # every walker sleeps until then: all are running at the SIGTERM
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            websockets = [(path, next(ids)) for path, count in WEBSOCKET_MIX for _ in range(count)]
            calls = [(walker, next(ids)) for walker, count in HTTP_MIX for _ in range(count)]
            ws_tasks = [asyncio.ensure_future(
                websocket_request(server, path, {"id": i, "until": until}))
                for path, i in websockets]
            http_tasks = [asyncio.ensure_future(
                http_request(client, server, walker, {"id": i, "until": until}))
                for walker, i in calls]
            await arrived(server, 200)
            terminate_before(server, until)
            return (websockets, await asyncio.gather(*ws_tasks),
                    calls, await asyncio.gather(*http_tasks))

    try:
        websockets, ws_results, calls, http_results = run(scenario())
        status = server.process.wait(15)
    finally:
        server.stop(signal.SIGKILL)
    assert len(websockets) + len(calls) == 200
    for (path, i), (frames, code) in zip(websockets, ws_results):
        assert code == 1001, (path, frames)
        # A broadcast walker's answer is its own broadcast, among the others' (queued ones flushed).
        assert {"ok": True, "data": {"reports": [i]}} in frames, (path, i, frames)
    for (walker, i), (status_code, body) in zip(calls, http_results):
        assert (status_code, body) == (200, {"ok": True, "data": {"reports": [i]}}), walker
    cast_ids = {i for path, i in websockets if path == "/ws/NapCast"}
    cast_frames = [frames for (path, _), (frames, _) in zip(websockets, ws_results)
                   if path == "/ws/NapCast"]
    assert all({f["data"]["reports"][0] for f in frames} == cast_ids for frames in cast_frames)
    assert status == 0
    assert "Traceback" not in server.output()


def test_during_the_drain_new_work_is_refused_and_open_sockets_answered(tmp_path):
    server = start(tmp_path / "app")

    async def scenario():
        until = time.time() + 3
        busy = await connect(server.ws("/ws/Nap"))
        idle = await connect(server.ws("/ws/walker/NapSync"))
        await busy.send(json.dumps({"id": 1, "until": until}))
        await arrived(server, 1)
        terminate_before(server, until)
        await asyncio.sleep(0.3)  # draining
        # A frame on an open socket is answered, but no walker starts.
        refused = await ask(idle, {"id": 2, "until": until})
        pong = await ask(idle, {"type": "ping"})
        with pytest.raises(InvalidStatus) as upgrade:
            await connect(server.ws("/ws/Nap"))
        async with httpx.AsyncClient(timeout=10) as client:
            request = await client.post(f"{server.http}/walker/HttpNap",
                                        json={"id": 3, "until": until})
            health = await client.get(f"{server.http}/healthz")
        busy_frames, busy_code = await until_closed(busy)
        idle_frames, idle_code = await until_closed(idle)
        return (refused, pong, upgrade.value.response.status_code, request, health,
                busy_frames, busy_code, idle_frames, idle_code)

    try:
        (refused, pong, upgrade, request, health,
         busy_frames, busy_code, idle_frames, idle_code) = run(scenario())
        status = server.process.wait(15)
    finally:
        server.stop(signal.SIGKILL)
    assert refused == {"ok": False, "error": {"code": "SERVICE_UNAVAILABLE",
                                              "message": "server shutting down",
                                              "reason": "draining"}}
    assert pong["type"] == "pong"
    assert upgrade == 503
    assert request.status_code == 503
    assert request.json()["error"] == {"code": "SERVICE_UNAVAILABLE",
                                       "message": "server shutting down"}
    assert health.status_code == 503  # a load balancer stops sending traffic here
    assert (busy_frames, busy_code) == ([{"ok": True, "data": {"reports": [1]}}], 1001)
    assert (idle_frames, idle_code) == ([], 1001)
    assert status == 0


@pytest.mark.parametrize("path", ["/ws/Nap", "/ws/walker/NapSync", "/ws/NapCast"])
def test_a_walker_longer_than_the_drain_is_cut_off(tmp_path, path):
    server = start(tmp_path / "app", JACC_SERVER_DRAIN_SECONDS="1")

    async def scenario():
        until = time.time() + 10
        async with httpx.AsyncClient(timeout=30) as client:
            socket = asyncio.ensure_future(websocket_request(server, path, {"id": 1, "until": until}))
            async_call = asyncio.ensure_future(
                http_request(client, server, "HttpNap", {"id": 2, "until": until}))
            thread_call = asyncio.ensure_future(
                http_request(client, server, "HttpNapSync", {"id": 3, "until": until}))
            await arrived(server, 3)
            signalled = time.monotonic()
            terminate_before(server, until)
            results = await asyncio.gather(socket, async_call, thread_call)
            return results, time.monotonic() - signalled

    try:
        ((frames, code), async_answer, thread_answer), took = run(scenario())
        waited = time.monotonic()
        status = server.process.wait(15)
        exit_wait = time.monotonic() - waited
    finally:
        server.stop(signal.SIGKILL)
    assert (frames, code) == ([], 1001)
    cut_off = {"code": "SERVICE_UNAVAILABLE",
               "message": "server shutting down: walker `HttpNap` was cut off at the end of the "
                          "drain", "reason": "drain_seconds"}
    assert async_answer == (503, {"ok": False, "error": cut_off})
    assert thread_answer[0] == 503
    assert 1.0 <= took < 3.0
    # The walker threads still sleeping do not hold the process up.
    assert status == 0
    assert exit_wait < 5
    assert "cut off" in server.output()


def test_the_drain_config_key_is_checked(tmp_path):
    (tmp_path / "app.jac").write_text(SOURCE)
    result = subprocess.run(
        [sys.executable, "-m", "jacc", "serve", "app.jac"], cwd=tmp_path,
        env=server_env(JACC_SERVER_DRAIN_SECONDS="0"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == ("config: server.drain_seconds must be a number > 0, got 0.0 "
                                     "(from JACC_SERVER_DRAIN_SECONDS)")
