"""Walkers that compute without awaiting, against a real `jacc serve` (docs/security.md#walkers).

A non-async walker runs in a thread: while it computes, every other client is
answered at once, and the walker timeout answers on time although the thread
runs on; the frames behind it on its connection still run one at a time, in
order. An async walker that blocks the loop cannot be helped, but is named in
one WARNING per incident with its `.jac` line.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time

import httpx
import pytest
from e2e_support import ask, run, server_env, start_server
from websockets.asyncio.client import connect

# Starts with a blank line, so that "line 1" is never right by accident.
SOURCE = """
# Walkers that compute for a while without awaiting.
import time;

def spin(seconds: float) -> float {
    end = time.monotonic() + seconds;
    while time.monotonic() < end { }
    return seconds;
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Crunch {
    has seconds: float;
    can go with Root entry { report spin(self.seconds); }
}

@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)
async walker : pub CrunchCast {
    has seconds: float;
    can go with Root entry { report spin(self.seconds); }
}

walker : pub HttpCrunch {
    has seconds: float;
    can go with Root entry { report spin(self.seconds); }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Hog {
    has seconds: float;
    async can go with Root entry { report spin(self.seconds); }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Echo {
    has message: str;
    async can echo with Root entry { report self.message; }
}

walker : pub Add {
    has a: int;
    has b: int = 1;
    can add with Root entry { report self.a + self.b; }
}
"""

SPIN_LINE = next(n for n, line in enumerate(SOURCE.splitlines(), 1) if "while time." in line)
# What another client may wait for a ping, an async walker and an HTTP walker while
# a walker computes for 2 s: it waited the whole 2 s when walkers ran on the loop;
# now typically a few ms, bounded loosely for a loaded test machine.
BYSTANDER_BOUND = 0.5
BYSTANDER_MEDIAN = 0.1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = server_env(JACC_WEBSOCKET_MESSAGES_PER_SECOND="100000")
    running = start_server(tmp_path_factory.mktemp("app"), SOURCE, env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """A server whose walkers time out after a second."""
    env = server_env(JACC_WEBSOCKET_WALKER_TIMEOUT_SECONDS="1",
                     JACC_WEBSOCKET_MESSAGES_PER_SECOND="100000")
    running = start_server(tmp_path_factory.mktemp("app"), SOURCE, env=env)
    yield running
    running.stop()


async def keep_asking(server, until: asyncio.Future) -> list[float]:
    """Round trips of another client (ping, an async walker, an HTTP walker) until `until` is done."""
    times = []
    async with connect(server.ws("/ws/Echo")) as ws, httpx.AsyncClient(timeout=10) as client:
        while not until.done():
            started = time.monotonic()
            assert (await ask(ws, {"type": "ping"}))["type"] == "pong"
            assert (await ask(ws, {"message": "hi"}))["data"]["reports"] == ["hi"]
            response = await client.post(f"{server.http}/walker/Add", json={"a": 1})
            assert response.json()["data"]["reports"] == [2]
            times.append(time.monotonic() - started)
    return times


async def crunch(server, how: str, seconds: float):
    if how == "http":
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(f"{server.http}/walker/HttpCrunch",
                                         json={"seconds": seconds})
        return response.json()
    async with connect(server.ws(how)) as ws:
        return await ask(ws, {"seconds": seconds})


@pytest.mark.parametrize("how", ["/ws/Crunch", "/ws/walker/Crunch", "/ws/CrunchCast", "http"])
def test_a_cpu_bound_walker_does_not_hold_up_other_clients(server, how):
    async def scenario():
        started = time.monotonic()
        walker = asyncio.ensure_future(crunch(server, how, 2.0))
        await asyncio.sleep(0.2)  # the walker is computing
        times = await keep_asking(server, walker)
        return walker.result(), time.monotonic() - started, times

    answer, took, times = run(scenario())
    assert answer == {"ok": True, "data": {"reports": [2.0]}}
    assert took >= 2.0
    assert len(times) >= 5
    assert max(times) < BYSTANDER_BOUND, times
    assert statistics.median(times) < BYSTANDER_MEDIAN, times


def test_a_thread_walker_is_never_taken_for_a_blocked_loop(server):
    run(crunch(server, "/ws/Crunch", 1.0))
    assert "by walker Crunch" not in server.output()


def test_an_async_walker_that_blocks_the_loop_is_named_in_one_warning(server):
    before = server.output().count("event loop blocked")
    assert run(crunch(server, "/ws/Hog", 1.0))["ok"] is True
    time.sleep(0.3)  # the monitor has seen the loop beat again
    lines = [line for line in server.output().splitlines() if "event loop blocked" in line]
    assert len(lines) == before + 1, lines
    assert re.search(rf"WARNING.*by walker Hog at app\.jac:{SPIN_LINE}\b", lines[-1]), lines[-1]


def test_the_timeout_answers_on_time_and_the_connection_keeps_its_order(impatient):
    async def scenario():
        async with connect(impatient.ws("/ws/walker/Crunch")) as ws:
            started = time.monotonic()
            # Pipelined: the second walker waits for the thread of the first, and the ping
            # does not overtake it: one at a time, in order. The third waits for a thread
            # that outlives its own timeout, and times out in turn.
            frames = ({"seconds": 1.5}, {"seconds": 0.0}, {"type": "ping"},
                      {"seconds": 3.0}, {"seconds": 0.0})
            for frame in frames:
                await ws.send(json.dumps(frame))
            answers = []
            for _ in frames:
                answers.append((json.loads(await ws.recv()), time.monotonic() - started))
            return answers

    (first, at), (second, second_at), (pong, _), (third, _), (fourth, fourth_at) = run(scenario())
    assert first["error"]["code"] == "EXECUTION_TIMEOUT"
    assert 1.0 <= at < 1.4
    assert second == {"ok": True, "data": {"reports": [0.0]}}
    assert 1.45 <= second_at < 1.9  # once the first walker's thread was done
    assert pong["type"] == "pong"
    assert third["error"]["code"] == "EXECUTION_TIMEOUT"
    assert fourth["error"]["code"] == "EXECUTION_TIMEOUT"  # its wait for the third counts
    assert fourth_at < 4.0


def test_a_timed_out_thread_does_not_hold_up_other_clients(impatient):
    async def scenario():
        walker = asyncio.ensure_future(crunch(impatient, "/ws/Crunch", 3.0))
        await asyncio.sleep(0.2)
        times = await keep_asking(impatient, asyncio.ensure_future(asyncio.sleep(2.5)))
        return await walker, times

    answer, times = run(scenario())
    assert answer["error"]["code"] == "EXECUTION_TIMEOUT"
    assert max(times) < BYSTANDER_BOUND, times
    assert statistics.median(times) < BYSTANDER_MEDIAN, times


def test_an_http_walker_times_out_on_time_in_its_thread(impatient):
    started = time.monotonic()
    answer = run(crunch(impatient, "http", 2.5))
    assert answer["error"]["code"] == "EXECUTION_TIMEOUT"
    assert time.monotonic() - started < 1.8
