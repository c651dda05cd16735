"""Operations against a real `jacc serve` (docs/operations.md): /metrics, parsed with
prometheus_client's own parser, and the JSON log.

Each test scrapes before and after what it does and checks the difference, so that
the tests of this module do not depend on one another's order.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import jwt
import pytest
from e2e_support import (
    SECRET,
    StalledClient,
    app_source,
    ask,
    login,
    run,
    server_env,
    start_server,
)
from jacc_runtime.server.auth import TokenService
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

QUEUE_BYTES = 65536
CONFIG = f"""\
[server]
log_format = "json"

[websocket]
send_queue_bytes = {QUEUE_BYTES}
send_timeout_seconds = 30
messages_per_second = 1000000
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    (folder / "jacc.toml").write_text(CONFIG)
    running = start_server(folder, app_source("seed", "extras"))
    yield running
    running.stop()


def scrape(server) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{server.http}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_messages_on_a_walker_move_its_frame_and_run_counters(server):
    before = scrape(server)
    messages = 7

    async def scenario():
        async with connect(server.ws("/ws/EchoMessage")) as ws:
            for i in range(messages):
                assert (await ask(ws, {"message": f"m{i}"}))["ok"] is True
            return scrape(server)  # while it is open

    during = run(scenario())
    assert delta(before, during, "jacc_ws_connections", walker="EchoMessage") == 1
    server.wait_connections(0)
    after = scrape(server)
    assert delta(before, after, "jacc_ws_frames_received_total", walker="EchoMessage") == messages
    assert delta(before, after, "jacc_ws_frames_sent_total", walker="EchoMessage") == messages
    assert delta(before, after, "jacc_walker_run_seconds_count", walker="EchoMessage") == messages
    assert delta(before, after, "jacc_ws_connections", walker="EchoMessage") == 0
    assert delta(before, after, "jacc_ws_closes_total", code="1000", by="client") == 1


def test_an_error_is_counted_by_its_code(server):
    before = scrape(server)

    async def scenario():
        async with connect(server.ws("/ws/Boom")) as ws:
            assert (await ask(ws, {"message": "x"}))["error"]["code"] == "EXECUTION_ERROR"
            assert (await ask(ws, "not json"))["error"]["code"] == "INVALID_PAYLOAD"

    run(scenario())
    after = scrape(server)
    assert delta(before, after, "jacc_errors_total", code="EXECUTION_ERROR", transport="ws") == 1
    assert delta(before, after, "jacc_errors_total", code="INVALID_PAYLOAD", transport="ws") == 1
    assert delta(before, after, "jacc_walker_run_seconds_count", walker="Boom") == 1


def test_a_slow_consumer_closed_with_4408_is_counted(server):
    before = scrape(server)
    frames, size = 40, 256 * 1024  # past the kernel's buffers (a few MB), then the queue
    stalled = StalledClient(server.port, "/ws/Firehose")

    async def scenario():
        async with connect(server.ws("/ws/Firehose"), max_size=None) as sender:
            for seq in range(frames):  # one at a time: the sender reads as it goes
                assert (await ask(sender, {"seq": seq, "size": size}))["ok"] is True

    try:
        run(scenario())
        _texts, close = stalled.read_all(timeout=10)
    finally:
        stalled.close()
    assert close is not None and close.code == 4408
    server.wait_connections(0)
    after = scrape(server)
    assert delta(before, after, "jacc_ws_closes_total", code="4408", by="server") == 1
    assert delta(before, after, "jacc_ws_slow_consumer_closes_total",
                 reason="send_queue_bytes") == 1
    assert delta(before, after, "jacc_broadcast_fanout_seconds_count") == frames
    assert delta(before, after, "jacc_backplane_publish_seconds_count") == frames


def test_failed_authentications_are_counted_by_reason(server):
    before = scrape(server)
    now = int(time.time())
    expired = jwt.encode({"sub": "ann", "user_id": "ann", "iat": now - 120, "exp": now - 60},
                         SECRET, "HS256")

    async def scenario():
        for token, reason in (("garbage", "invalid"), (expired, "expired")):
            async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
                frame = json.loads(await ws.recv())
                assert frame["error"]["reason"] == reason
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd.code == 4401

    run(scenario())
    assert login(server, "nobody-registered-this", "wrong").status_code == 401
    server.wait_connections(0)
    after = scrape(server)
    assert delta(before, after, "jacc_auth_failures_total", reason="invalid") == 1
    assert delta(before, after, "jacc_auth_failures_total", reason="expired") == 1
    assert delta(before, after, "jacc_auth_failures_total", reason="credentials") == 1
    assert delta(before, after, "jacc_ws_closes_total", code="4401", by="server") == 2
    assert delta(before, after, "jacc_errors_total", code="UNAUTHORIZED", transport="ws") == 2
    assert delta(before, after, "jacc_http_requests_total", route="/user/login",
                 status="401") == 1


def test_http_requests_are_counted_by_route_template(server):
    before = scrape(server)
    assert httpx.post(f"{server.http}/walker/Add", json={"a": 2}, timeout=10).status_code == 200
    assert httpx.get(f"{server.http}/not/a/route", timeout=10).status_code == 404
    after = scrape(server)
    assert delta(before, after, "jacc_http_requests_total", route="/walker/{name}",
                 status="200") == 1
    assert delta(before, after, "jacc_http_requests_total", route="none", status="404") == 1
    assert delta(before, after, "jacc_walker_run_seconds_count", walker="Add") == 1


def test_no_label_carries_a_user_a_token_an_address_or_a_message(server):
    token = TokenService(SECRET).issue("zelda-the-user")

    async def scenario():
        url = server.ws(f"/ws/SecureChat?token={token}")
        async with connect(url) as ws:
            assert (await ask(ws, {"message": "a-private-message"}))["ok"] is True

    run(scenario())
    text = httpx.get(f"{server.http}/metrics", timeout=10).text
    for secret in ("zelda-the-user", token, "a-private-message", "127.0.0.1"):
        assert secret not in text


def test_the_log_is_json_lines_with_the_connection_id_and_close_code(server):
    start = len(server.log())
    token = TokenService(SECRET).issue("ann")

    async def scenario():
        async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
            assert (await ask(ws, {"message": "the body of a message"}))["ok"] is True
        async with connect(server.ws("/ws/SecureChat?token=garbage")) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()

    run(scenario())
    server.wait_connections(0)
    lines = [json.loads(line) for line in server.log()[start:].splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "event"} <= line.keys()
    accepted = [line for line in lines if "[accepted]" in line["event"]]
    closed = [line for line in lines if "connection closed" in line["event"]]
    assert len(accepted) == 2 and len(closed) == 2
    # Each connection's lines carry its id and walker; the two ids differ.
    assert {line["conn"] for line in accepted} == {line["conn"] for line in closed}
    assert len({line["conn"] for line in accepted}) == 2
    assert all(line["walker"] == "SecureChat" for line in accepted + closed)
    assert sorted(line["close_code"] for line in closed) == [1000, 4401]
    text = server.log()[start:]
    assert token not in text and "garbage" not in text
    assert "the body of a message" not in text
    # The banner is a line of the log too, and standard output (the access lines) is
    # JSON lines only: no table in the middle of them.
    banner = json.loads(server.log().splitlines()[0])
    assert banner["event"].startswith("jacc serving app.jac at http://127.0.0.1:")
    assert {"walker": "SecureChat", "route": "/ws/SecureChat", "protocol": "websocket",
            "public": "no", "broadcast": "no", "stream": "no"} in banner["walkers"]
    out = (server.folder / "stdout.txt").read_text().splitlines()
    assert out and all(json.loads(line)["logger"] == "uvicorn.access" for line in out)


def test_metrics_can_be_turned_off(tmp_path):
    env = server_env(JACC_SERVER_METRICS="false")
    off = start_server(tmp_path, app_source("seed"), env=env)
    try:
        assert httpx.get(f"{off.http}/metrics", timeout=10).status_code == 404
    finally:
        off.stop()


@pytest.mark.parametrize("walker", ["EchoMessage"])
def test_the_scrape_stays_small(server, walker):
    # One child per walker and code seen, never per connection: 100 connections add nothing.
    async def scenario():
        sockets = [await connect(server.ws(f"/ws/{walker}")) for _ in range(20)]
        try:
            before = len(httpx.get(f"{server.http}/metrics", timeout=10).text.splitlines())
            await asyncio.gather(*(ask(ws, {"message": "x"}) for ws in sockets))
            return before
        finally:
            for ws in sockets:
                await ws.close()

    before = run(scenario())
    server.wait_connections(0)
    after = len(httpx.get(f"{server.http}/metrics", timeout=10).text.splitlines())
    assert after - before < 10


def test_at_log_level_warning_the_access_and_connection_lines_go(tmp_path):
    quiet = start_server(tmp_path, app_source("seed"), args=("--log-level", "warning"))
    try:
        async def scenario():
            async with connect(quiet.ws("/ws/EchoMessage")) as ws:
                assert (await ask(ws, {"message": "hi"}))["ok"] is True

        run(scenario())
        quiet.wait_connections(0)
        out = quiet.output()
        assert '"GET /healthz' not in out and "[accepted]" not in out
        assert "connection closed" not in out
    finally:
        quiet.stop()
