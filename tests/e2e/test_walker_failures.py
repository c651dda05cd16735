"""Walkers that raise what is not an `Exception`, against a real `jacc serve` (docs/security.md#walkers).

`SystemExit`, `KeyboardInterrupt`, a `CancelledError` of the walker's own,
`GeneratorExit`, `StopIteration` and a user's BaseException subclass each end at
the walker's own frame (EXECUTION_ERROR naming the type and text), on both
transports and routes, async and not, broadcast and not. A client connected
meanwhile is answered throughout, and the server still stops on a signal. A real
cancellation (timeout, disconnect) stays one, even when the walker swallows it.
"""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from e2e_support import ask, run, server_env, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# Starts with a blank line, so that "line 1" is never right by accident.
SOURCE = """
# Walkers that fail in every way a Python program can.
import asyncio;

glob Halt = type("Halt", (BaseException,), {});

def failure(kind: str) -> BaseException | None {
    if kind == "exit" { return SystemExit(3); }
    if kind == "interrupt" { return KeyboardInterrupt(); }
    if kind == "cancel" { return asyncio.CancelledError(); }
    if kind == "generator" { return GeneratorExit(); }
    if kind == "stop" { return StopIteration("done"); }
    if kind == "halt" { return Halt("stop"); }
    return None;
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Fail {
    has kind: str;
    async can go with Root entry {
        await asyncio.sleep(0);
        raise failure(self.kind);
    }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub FailSync {
    has kind: str;
    can go with Root entry {
        raise failure(self.kind);
    }
}

@restspec(protocol=APIProtocol.WEBSOCKET, broadcast=True)
async walker : pub FailLoud {
    has kind: str;
    async can go with Root entry {
        problem = failure(self.kind);
        if problem is not None { raise problem; }
        report "fine";
    }
}

walker : pub HttpFail {
    has kind: str;
    can go with Root entry { raise failure(self.kind); }
}

async walker : pub HttpFailAsync {
    has kind: str;
    async can go with Root entry { raise failure(self.kind); }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Echo {
    has message: str;
    async can echo with Root entry { report self.message; }
}

@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub Stubborn {
    has seconds: float = 3.0;
    async can go with Root entry {
        report "started";
        try {
            await asyncio.sleep(self.seconds);
        } except asyncio.CancelledError {
            disengage;
        }
    }
}

async walker : pub HttpStubborn {
    has seconds: float = 3.0;
    async can go with Root entry {
        report "started";
        try {
            await asyncio.sleep(self.seconds);
        } except asyncio.CancelledError {
            disengage;
        }
    }
}
"""

RAISE_LINE = next(n for n, line in enumerate(SOURCE.splitlines(), 1)
                  if "raise failure(self.kind);" in line)

ASYNC_STOP = "RuntimeError: coroutine raised StopIteration"  # PEP 479, at the ability's boundary
MESSAGES = {
    "exit": "SystemExit: 3",
    "interrupt": "KeyboardInterrupt",
    "cancel": "CancelledError",
    "generator": "GeneratorExit",
    "halt": "Halt: stop",
    "stop": "StopIteration: done",
}


def expected(kind: str, is_async: bool) -> str:
    return ASYNC_STOP if kind == "stop" and is_async else MESSAGES[kind]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = server_env(JACC_WEBSOCKET_WALKER_TIMEOUT_SECONDS="1",
                     JACC_WEBSOCKET_MESSAGES_PER_SECOND="1000")
    running = start_server(tmp_path_factory.mktemp("app"), SOURCE, env=env)
    yield running
    # Whatever the walkers raised, a signal still stops the server cleanly.
    assert running.stop() == 0, running.output()


async def bystander_answers(ws, text: str) -> None:
    assert await asyncio.wait_for(ask(ws, {"message": text}), 5) == {
        "ok": True, "data": {"reports": [text]}}


WEBSOCKET_CASES = [("/ws/Fail", True), ("/ws/walker/Fail", True), ("/ws/FailSync", False),
                   ("/ws/walker/FailSync", False), ("/ws/FailLoud", True)]


@pytest.mark.parametrize("kind", list(MESSAGES))
@pytest.mark.parametrize(("path", "is_async"), WEBSOCKET_CASES,
                         ids=[path for path, _ in WEBSOCKET_CASES])
def test_a_websocket_walker_failure_ends_at_its_own_frame(server, path, is_async, kind):
    async def scenario():
        async with connect(server.ws("/ws/walker/Echo")) as bystander:
            await bystander_answers(bystander, "before")
            async with connect(server.ws(path)) as attacker:
                answer = await asyncio.wait_for(ask(attacker, {"kind": kind}), 5)
                assert answer == {"ok": False, "error": {
                    "code": "EXECUTION_ERROR", "message": expected(kind, is_async)}}
                # The attacker's socket stays open and usable.
                assert (await ask(attacker, {"type": "ping"}))["type"] == "pong"
            await bystander_answers(bystander, "after")

    run(scenario())


def test_a_broadcast_walker_failure_goes_to_the_sender_only(server):
    async def scenario():
        async with connect(server.ws("/ws/FailLoud")) as listener, \
                connect(server.ws("/ws/FailLoud")) as sender:
            assert server.wait_connections(2)["connections"] == 2
            error = await ask(sender, {"kind": "exit"})
            assert error["error"]["message"] == "SystemExit: 3"
            # The next broadcast is the first thing the listener hears.
            assert await ask(sender, {"kind": "none"}) == {"ok": True, "data": {"reports": ["fine"]}}
            assert json.loads(await listener.recv())["data"]["reports"] == ["fine"]

    run(scenario())


@pytest.mark.parametrize("kind", list(MESSAGES))
@pytest.mark.parametrize(("walker", "is_async"), [("HttpFail", False), ("HttpFailAsync", True)])
def test_an_http_walker_failure_ends_at_its_own_request(server, walker, is_async, kind):
    async def scenario():
        async with connect(server.ws("/ws/Echo")) as bystander:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(f"{server.http}/walker/{walker}", json={"kind": kind})
            assert response.status_code == 500
            assert response.json()["error"] == {
                "code": "EXECUTION_ERROR", "message": expected(kind, is_async)}
            await bystander_answers(bystander, "after")

    run(scenario())
    assert httpx.get(f"{server.http}/healthz", timeout=5).status_code == 200


def test_the_log_names_the_exception_and_the_jac_line(server):
    run(scenario_one(server, "/ws/Fail", "exit"))
    output = server.output()
    assert f"walker Fail raised SystemExit at app.jac:{RAISE_LINE}" in output
    assert f'app.jac", line {RAISE_LINE}, in go' in output


async def scenario_one(server, path: str, kind: str) -> dict:
    async with connect(server.ws(path)) as ws:
        return await ask(ws, {"kind": kind})


def test_a_walker_that_swallows_its_timeout_still_times_out(server):
    # `disengage` in the `except` ends the walk normally: the cancellation stands all the same.
    async def scenario():
        async with connect(server.ws("/ws/Stubborn")) as ws:
            answer = await asyncio.wait_for(ask(ws, {}), 5)
            assert answer["error"]["code"] == "EXECUTION_TIMEOUT"
            assert await ask(ws, {"seconds": 0}) == {"ok": True, "data": {"reports": ["started"]}}
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(f"{server.http}/walker/HttpStubborn", json={})
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "EXECUTION_TIMEOUT"

    run(scenario())


def test_a_client_that_leaves_cancels_its_walker_without_an_error(server):
    async def scenario():
        async with connect(server.ws("/ws/Stubborn")) as ws:
            await ws.send(json.dumps({"seconds": 0.5}))
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        async with connect(server.ws("/ws/Echo")) as bystander:
            await bystander_answers(bystander, "after")

    run(scenario())
    assert "walker Stubborn raised" not in server.output()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_after_exit_and_interrupt_a_signal_still_stops_the_server(tmp_path, sig):
    server = start_server(tmp_path / "app", SOURCE)

    async def scenario():
        bystander = await connect(server.ws("/ws/Echo"))
        for path in ("/ws/Fail", "/ws/FailSync"):
            for kind in ("exit", "interrupt"):
                assert (await scenario_one(server, path, kind))["ok"] is False
        await bystander_answers(bystander, "still here")
        server.process.send_signal(sig)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(bystander.recv(), 10)
        return closed.value.rcvd.code

    try:
        assert run(scenario()) == 1001
        assert server.process.wait(15) == 0
    finally:
        server.stop(signal.SIGKILL)
