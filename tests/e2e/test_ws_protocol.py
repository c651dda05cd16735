"""The WebSocket protocol of docs/protocol.md against a real `jacc serve`, with the `websockets` client."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from e2e_support import ask, run
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


def test_the_seed_guide_python_client_frames(server):
    """Exactly what a client written for Jac Scale's guide sends and expects."""

    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            await ws.send(json.dumps({"message": "Hello!", "client_id": "py"}))
            response = json.loads(await ws.recv())
            assert response == {
                "ok": True,
                "data": {"reports": [{"echo": "Hello!", "client_id": "py"}]},
            }
            assert await ask(ws, {"message": "Hi"}) == {
                "ok": True,
                "data": {"reports": [{"echo": "Hi", "client_id": "anonymous"}]},
            }
        async with connect(server.ws("/ws/PingPong")) as ws:
            assert await ask(ws, {}) == {"ok": True, "data": {"reports": [{"status": "pong"}]}}
        async with connect(server.ws("/ws/ChatRoom")) as ws:
            assert await ask(ws, {"message": "hello room", "sender": "py"}) == {
                "ok": True,
                "data": {
                    "reports": [{"type": "message", "sender": "py", "content": "hello room"}]
                },
            }

    run(client())


def test_walker_alias_route(server):
    async def client():
        async with connect(server.ws("/ws/walker/EchoMessage")) as ws:
            assert (await ask(ws, {"message": "x"}))["ok"] is True

    run(client())


@pytest.mark.parametrize("path", ["/ws/Nobody", "/ws/Add", "/ws/walker/Add", "/ws/x/y/z", "/"])
def test_unknown_or_non_websocket_walkers_are_refused_with_404_before_101(server, path):
    async def client():
        with pytest.raises(InvalidStatus) as caught:
            async with connect(server.ws(path)):
                pass
        return caught.value.response

    response = run(client())
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "NOT_FOUND"


BAD_INPUTS = [
    ("not json", "not valid JSON"),
    ("[1, 2, 3]", "expected a JSON object, got an array"),
    ('"a string"', "expected a JSON object, got a string"),
    ("42", "expected a JSON object, got a number"),
    (b"\xde\xad\xbe\xef\xff\x00", "expected UTF-8 JSON text, got binary data"),
    (json.dumps({"message": "hi", "colour": "red"}), "invalid fields for EchoMessage: `colour`"),
    (json.dumps({"client_id": "py"}), "invalid fields for EchoMessage: `message`"),
    (json.dumps({"message": 123}), "invalid fields for EchoMessage: `message`"),
]


@pytest.mark.parametrize(("frame", "message"), BAD_INPUTS)
def test_bad_input_gets_invalid_payload_and_the_socket_still_serves(server, frame, message):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            error = await ask(ws, frame)
            assert error["ok"] is False
            assert error["error"]["code"] == "INVALID_PAYLOAD"
            assert error["error"]["message"].startswith(message)
            assert (await ask(ws, {"message": "after"}))["data"]["reports"][0]["echo"] == "after"
            return error

    run(client())


def test_wrong_types_are_listed_in_details(server):
    async def client():
        async with connect(server.ws("/ws/Typed")) as ws:
            error = await ask(ws, {"type": 1, "tags": ["a", 2], "count": "x", "extra": 0})
            assert (await ask(ws, {"type": "t", "count": None}))["ok"] is True
            return error["error"]

    error = run(client())
    assert error["code"] == "INVALID_PAYLOAD"
    assert error["details"] == [
        {"field": "type", "expected": "str", "message": "expected str, got int"},
        {"field": "tags", "expected": "list[str]", "message": "expected list[str], got int at [1]"},
        {"field": "count", "expected": "int | None", "message": "expected int | None, got str"},
        {"field": "extra", "message": "unknown field"},
    ]


def test_execution_error_and_internal_error_keep_the_socket(server):
    async def client():
        async with connect(server.ws("/ws/Boom")) as ws:
            assert (await ask(ws, {}))["error"] == {
                "code": "EXECUTION_ERROR",
                "message": "ValueError: boom",
            }
            assert (await ask(ws, {"message": "boom: x"}))["error"]["message"] == (
                "ValueError: boom: x"
            )
            assert (await ask(ws, {"type": "ping"}))["type"] == "pong"
        async with connect(server.ws("/ws/Unsendable")) as ws:
            error = (await ask(ws, {}))["error"]
            assert error["code"] == "EXECUTION_ERROR"
            assert "set" in error["message"] and "0x" not in error["message"]
            assert (await ask(ws, {"type": "ping"}))["type"] == "pong"

    run(client())
    # The traceback is in the server's log, naming the .jac file and line.
    output = server.output()
    assert "Traceback" in output and "ValueError: boom" in output
    assert re.search(r'File ".*app\.jac", line \d+, in explode', output)


def test_pipelined_frames_are_answered_in_order(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            # 50 = the default messages_per_second, which is also the burst allowed at once.
            for i in range(50):
                await ws.send(json.dumps({"message": str(i)}) if i % 7 else "oops")
            answers = [json.loads(await ws.recv()) for _ in range(50)]
        for i, answer in enumerate(answers):
            if i % 7:
                assert answer["data"]["reports"][0]["echo"] == str(i)
            else:
                assert answer["error"]["code"] == "INVALID_PAYLOAD"

    run(client())


def test_utf8_json_in_binary_frames_is_accepted(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            await ws.send(json.dumps({"message": "héllo ✓"}, ensure_ascii=False).encode())
            return json.loads(await ws.recv())

    assert run(client())["data"]["reports"][0]["echo"] == "héllo ✓"


def test_control_frames(server):
    async def client():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            pong = await ask(ws, {"type": "ping"})
            assert pong["type"] == "pong" and isinstance(pong["ts"], int)
            await ws.send(json.dumps({"type": "pong"}))  # absorbed, no answer
            assert (await ask(ws, {"message": "next"}))["data"]["reports"][0]["echo"] == "next"
        async with connect(server.ws("/ws/Typed")) as ws:
            # A walker with a `type` field gets these frames as ordinary requests.
            answer = await ask(ws, {"type": "ping"})
            assert answer == {
                "ok": True,
                "data": {"reports": [{"type": "ping", "tags": [], "count": None}]},
            }

    run(client())


def test_websocket_walkers_are_not_http_walkers(server):
    response = httpx.post(f"{server.http}/walker/EchoMessage", json={"message": "x"})
    assert response.status_code == 404
    paths = httpx.get(f"{server.http}/openapi.json").json()["paths"]
    assert "/walker/Add" in paths
    assert not any(name in path for path in paths for name in ("Echo", "Chat", "PingPong"))
