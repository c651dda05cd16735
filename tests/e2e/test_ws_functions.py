"""Served functions against a real `jacc serve` (SPEC §13): Jac Scale's test shapes first,
then routes, auth, checks and errors, over WebSocket and HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from e2e_support import SECRET, app_source, ask, run, start_server
from jacc_runtime.server.auth import TokenService
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TOKEN = TokenService(SECRET).issue("ann")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("app"), app_source("functions"))
    yield running
    running.stop()


async def frames_until_done(ws, limit: int = 50) -> list[dict]:
    frames = []
    for _ in range(limit):
        frames.append(json.loads(await ws.recv()))
        if frames[-1].get("type") == "done":
            return frames
    raise AssertionError(f"no done frame in {frames}")


# --- Jac Scale's own shapes (tests/server/test_ws_functions.jac of jac-scale) ---------------


def test_ws_function_echo_returns_the_function_result_envelope(server):
    async def client():
        async with connect(server.ws("/ws/function/ws_echo")) as ws:
            return await ask(ws, {"message": "hi", "client_id": "c1"})

    answer = run(client())
    assert answer == {"ok": True, "data": {"result": {
        "status": "success", "echo": "hi", "client_id": "c1", "protocol": "websocket"}}}
    # What Jac Scale's test reads: data.result when it is there.
    body = answer["data"]["result"] if "result" in answer["data"] else answer["data"]
    assert (body["echo"], body["client_id"], body["protocol"]) == ("hi", "c1", "websocket")


def test_ws_function_streaming_yields_chunk_frames_then_a_done_frame(server):
    async def client():
        async with connect(server.ws("/ws/function/ws_stream")) as ws:
            await ws.send(json.dumps({"count": 3}))
            return await frames_until_done(ws)

    frames = run(client())
    chunks = [f for f in frames if f.get("type") == "chunk"]
    assert [c["data"] for c in chunks] == [{"index": i, "label": f"chunk-{i}"} for i in range(3)]
    assert all(c["ok"] is True for c in chunks)
    assert frames[-1] == {"ok": True, "type": "done"}
    assert len(frames) == 4


def test_the_same_echo_over_http_at_function_route(server):
    answer = httpx.post(f"{server.http}/function/echo", json={"message": "hi"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "data": {"result": {
        "status": "success", "echo": "hi", "client_id": "anonymous", "protocol": "http"}}}


def test_ws_private_function_rejects_a_message_with_no_token(server):
    async def client():
        async with connect(server.ws("/ws/function/ws_private_echo")) as ws:
            answer = await ask(ws, {"message": "secret"})
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return answer, closed.value.rcvd.code

    answer, code = run(client())
    assert answer["ok"] is False and answer["error"]["code"] == "UNAUTHORIZED"
    assert code == 4401


def test_ws_private_function_accepts_a_query_token_or_a_first_frame_token(server):
    async def client():
        async with connect(server.ws(f"/ws/function/ws_private_echo?token={TOKEN}")) as ws:
            by_query = await ask(ws, {"message": "hi", "token": TOKEN})  # an old client's key
        async with connect(server.ws("/ws/function/ws_private_echo")) as ws:
            by_frame = await ask(ws, {"message": "hi", "token": TOKEN})
        return by_query, by_frame

    for answer in run(client()):
        assert answer == {"ok": True, "data": {"result": {
            "status": "success", "message": "hi", "authenticated": True}}}


# --- routes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/ws/function/echo",       # an HTTP function
    "/ws/function/secret_sum",  # a helper: not served at all
    "/ws/function/Stats",      # a walker, on the functions' route
    "/ws/ws_echo",             # a function, on the walkers' routes
    "/ws/walker/ws_echo",
])
def test_upgrades_to_what_is_not_a_websocket_function_there_get_404(server, path):
    async def client():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.ws(path)):
                pass
        return refused.value.response

    response = run(client())
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("name", ["ws_echo", "ws_stream", "secret_sum", "Stats"])
def test_what_is_not_an_http_function_gets_404_over_http(server, name):
    answer = httpx.post(f"{server.http}/function/{name}", json={}, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"


def test_openapi_lists_http_functions_and_no_websocket_one(server):
    document = httpx.get(f"{server.http}/openapi.json", timeout=10).json()
    assert {"/function/echo", "/function/add", "/function/whoami"} <= set(document["paths"])
    assert not [p for p in document["paths"] if "ws_" in p or "stream" in p]
    add = document["paths"]["/function/add"]["post"]
    body = add["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert body["required"] == ["a"] and body["additionalProperties"] is False
    result = add["responses"]["200"]["content"]["application/json"]["schema"]
    assert result["properties"]["data"]["properties"]["result"] == {"type": "integer"}
    whoami = document["paths"]["/function/whoami"]["get"]
    assert whoami["security"] == [{"bearerAuth": []}]


def test_asyncapi_lists_websocket_functions_and_their_streams(server):
    channels = httpx.get(f"{server.http}/asyncapi.json", timeout=10).json()["channels"]
    assert channels["ws_echo"]["address"] == "/ws/function/ws_echo"
    assert channels["ws_stream"]["x-jacc-stream"] is True
    assert "echo" not in channels and "secret_sum" not in channels
    assert channels["Progress"]["x-jacc-stream"] is True


def test_the_banner_lists_functions(server):
    rows = {line.split()[0]: line.split() for line in server.output().splitlines()
            if line.startswith("  ")}
    assert rows["ws_echo"] == ["ws_echo", "/ws/function/ws_echo", "websocket", "yes", "no", "no"]
    assert rows["ws_stream"][-1] == "yes"
    assert rows["add"] == ["add", "POST", "/function/add", "http", "yes", "no", "no"]
    assert rows["whoami"][1:3] == ["GET", "/function/whoami"]
    assert "secret_sum" not in rows


# --- fields, auth and errors ---------------------------------------------------------------


def test_parameters_are_checked_like_fields_on_both_transports(server):
    async def client():
        async with connect(server.ws("/ws/function/ws_echo")) as ws:
            wrong = await ask(ws, {"message": 5, "colour": "red"})
            missing = await ask(ws, {})
            assert (await ask(ws, {"type": "ping"}))["type"] == "pong"
            return wrong, missing

    wrong, missing = run(client())
    assert wrong["error"]["code"] == "INVALID_PAYLOAD"
    assert wrong["error"]["details"] == [
        {"field": "message", "expected": "str", "message": "expected str, got int"},
        {"field": "colour", "message": "unknown field"}]
    assert missing["error"]["details"][0]["message"] == "missing required field"
    answer = httpx.post(f"{server.http}/function/add", json={"a": True}, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["message"] == "expected int, got bool"
    assert httpx.post(f"{server.http}/function/add", json={"a": 2, "b": 3},
                      timeout=10).json() == {"ok": True, "data": {"result": 5}}


def test_a_private_http_function_takes_a_bearer_token_and_get_takes_the_query(server):
    url = f"{server.http}/function/whoami"
    assert httpx.get(url, params={"note": "x"}, timeout=10).status_code == 401
    answer = httpx.get(url, params={"note": "x"}, headers={"Authorization": f"Bearer {TOKEN}"},
                       timeout=10)
    assert answer.json() == {"ok": True, "data": {"result": {"note": "x"}}}
    assert httpx.post(url, json={}, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=10).status_code == 200
    assert httpx.put(url, json={}, timeout=10).status_code == 405


def test_a_function_that_raises_is_an_execution_error_and_the_socket_stays(server):
    async def client():
        async with connect(server.ws("/ws/function/raises")) as ws:
            first = await ask(ws, {"message": "no"})
            again = await ask(ws, {})
            return first, again

    first, again = run(client())
    assert first == {"ok": False, "error": {"code": "EXECUTION_ERROR",
                                            "message": "RuntimeError: no"}}
    assert again["error"]["message"] == "RuntimeError: boom"
    assert "function raises raised RuntimeError at app.jac:" in server.output()
