"""Connection limits against a real `jacc serve` (docs/security.md#connections).

Connections that never finish their request, too many connections, too many
WebSockets from one address, and refusals the server must answer rather than
hold. A bystander WebSocket is open throughout each attack and must be answered
before, during and after it; the server log must hold one line per refusal and
no traceback.
"""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest
from e2e_support import Bystander, app_source, start_server
from raw_http import RawHttp, error_of, request_head
from raw_ws import OP_CLOSE, OP_TEXT, RawWebSocket, close_code
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TIMEOUT = 1.5
PER_IP = 3
CONFIG = f"""\
[server]
handshake_timeout_seconds = {TIMEOUT}

[websocket]
max_connections_per_ip = {PER_IP}
"""
WS_PATHS = ["/ws/EchoMessage", "/ws/walker/EchoMessage"]
UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    (folder / "jacc.toml").write_text(CONFIG)
    running = start_server(folder, app_source("seed", "extras"))
    yield running
    running.stop()


@pytest.fixture
def bystander(server):
    # From another loopback address, so that it has the per-address cap to itself.
    client = Bystander(server, address="127.0.0.2")
    yield client
    client.check("after")
    client.close()
    assert server.process.poll() is None
    assert server.health()["status"] == "ok"


def log_lines(server, text: str) -> list[str]:
    return [line for line in server.log().splitlines() if text in line]


# --- requests that never finish ---------------------------------------------------------


PARTIAL_REQUESTS = {
    "half a request line": "POST /walker/Ad",
    "half a head": "POST /user/login HTTP/1.1\r\nHost: x\r\nContent-Type: appl",
    "half a body": ("POST /user/register HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                    '{"identities": '),
    "half a chunked body": ("POST /user/refresh-token HTTP/1.1\r\nHost: x\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"tok"),
    "half an upgrade": "GET /ws/EchoMessage HTTP/1.1\r\nHost: x\r\n" + UPGRADE,
    "half an upgrade (walker prefix)": "GET /ws/walker/EchoMessage HTTP/1.1\r\n" + UPGRADE,
}


@pytest.mark.parametrize("partial", PARTIAL_REQUESTS.values(), ids=PARTIAL_REQUESTS.keys())
def test_a_request_not_finished_in_time_gets_408(server, bystander, partial):
    client = RawHttp(server.port)
    client.send(partial)
    bystander.check("during")
    status, error = error_of(client.read_all(timeout=TIMEOUT + 3))
    waited = time.monotonic() - client.opened_at
    client.close()
    assert status == 408
    assert error == {"code": "REQUEST_TIMEOUT", "reason": "handshake_timeout_seconds",
                     "message": "the request was not complete within "
                                f"handshake_timeout_seconds ({TIMEOUT:g} s)"}
    assert TIMEOUT - 0.1 <= waited < TIMEOUT + 1.5


def test_a_silent_socket_is_closed_without_an_answer(server, bystander):
    clients = [RawHttp(server.port) for _ in range(20)]
    bystander.check("during")
    for client in clients:
        assert client.read_all(timeout=TIMEOUT + 3) == b""
        client.close()
    assert len(log_lines(server, "closed: no request within handshake_timeout_seconds")) >= 20


def test_dripping_bytes_does_not_move_the_deadline(server, bystander):
    client = RawHttp(server.port)
    head = request_head("GET", "/healthz", server.port, X_Padding="a" * 200)
    answered = b""
    for byte in head[:-2]:  # never the final CRLF
        if not client.send(byte):
            break
        time.sleep(0.05)
        if time.monotonic() - client.opened_at > TIMEOUT + 0.5:
            break
    answered = client.read_all(timeout=3)
    waited = time.monotonic() - client.opened_at
    client.close()
    assert error_of(answered)[0] == 408
    assert waited < TIMEOUT + 1.5


def test_a_kept_alive_connection_gets_the_deadline_per_request(server):
    # The deadline covers a request, not the connection: a slow client's second
    # request, sent long after the first, is served.
    with httpx.Client(base_url=server.http) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(TIMEOUT + 0.5)  # under uvicorn's keep-alive timeout (5 s)
        assert client.get("/healthz").status_code == 200


# --- refused handshakes are answered ------------------------------------------------------


@pytest.mark.parametrize("path", WS_PATHS)
def test_an_upgrade_with_a_request_line_over_8k_gets_414(server, bystander, path):
    client = RawHttp(server.port)
    client.send(f"GET {path}?q={'a' * 9000} HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n")
    answer = client.read_all(timeout=3)  # answered and closed, not held
    bystander.check("during")
    client.close()
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert log_lines(server, "refused a WebSocket handshake: read 90")


@pytest.mark.parametrize("path, status", [("/ws/Nope", 404), ("/ws/walker/Nope", 404),
                                          ("/ws/Add", 404), ("/elsewhere", 404)])
def test_a_refused_upgrade_logs_one_line_and_no_error(server, bystander, path, status):
    before = server.log()
    ws = RawWebSocket(server.port, path)
    ws.close()
    assert ws.status == status
    bystander.check("during")
    time.sleep(0.2)
    new = server.log()[len(before):]
    assert "ERROR" not in new and "Traceback" not in new, new
    assert len([line for line in new.splitlines() if f" {status}" in line]) == 1, new


@pytest.mark.parametrize("path", WS_PATHS)
def test_a_foreign_origin_logs_one_line_and_no_error(server, bystander, path):
    before = server.log()
    ws = RawWebSocket(server.port, path, {"Origin": "https://evil.example"})
    ws.close()
    assert ws.status == 403
    time.sleep(0.2)
    new = server.log()[len(before):]
    assert "ERROR" not in new and "Traceback" not in new, new
    assert len(new.strip().splitlines()) == 1, new


@pytest.mark.parametrize("path", WS_PATHS)
@pytest.mark.parametrize("payload", [b"\xff\xfe{}", b'{"message": "caf\xc3"}'])
def test_a_text_frame_that_is_not_utf8_closes_1007_in_one_line(server, bystander, path,
                                                               payload):
    before = server.log()
    ws = RawWebSocket(server.port, path)
    ws.send_frame(OP_TEXT, payload)
    frames = list(ws.frames(timeout=5))
    ws.close()
    bystander.check("during")
    assert frames[-1][0] == OP_CLOSE and close_code(frames[-1][1]) == 1007
    time.sleep(0.2)
    new = server.log()[len(before):]
    assert "Traceback" not in new and "ERROR" not in new, new
    assert len([line for line in new.splitlines() if "not UTF-8" in line]) == 1, new


def test_a_client_leaving_mid_body_logs_no_error(server, bystander):
    before = server.log()
    for path in ["/walker/Add", "/user/login"]:
        client = RawHttp(server.port)
        client.send(request_head("POST", path, server.port, Content_Length="100") + '{"a":')
        time.sleep(0.2)
        client.close()
    time.sleep(0.3)
    new = server.log()[len(before):]
    assert "ERROR" not in new and "Traceback" not in new, new


# --- WebSockets per address ---------------------------------------------------------------


def test_one_address_gets_max_connections_per_ip_websockets(server, bystander):
    paths = ["/ws/EchoMessage", "/ws/walker/EchoMessage", "/ws/EchoMessage"]
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect(server.ws(path))) for path in paths]
        for ws in held:
            ws.send(json.dumps({"message": "x"}))
            assert json.loads(ws.recv(timeout=5))["ok"] is True
        for path in WS_PATHS:
            with connect(server.ws(path)) as extra:
                frame = json.loads(extra.recv(timeout=5))
                with pytest.raises(ConnectionClosed) as closed:
                    extra.recv(timeout=5)
            assert frame["error"] == {
                "code": "CAPACITY", "reason": "max_connections_per_ip",
                "message": f"this address has reached max_connections_per_ip ({PER_IP} "
                           "open connections)"}
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                4403, "max_connections_per_ip")
        # Another address is not affected, and the capped one's sockets still work.
        bystander.check("during")
        with connect(server.ws("/ws/PingPong"), source_address=("127.0.0.3", 0)) as other:
            other.send("{}")
            assert json.loads(other.recv(timeout=5))["ok"] is True
        held[0].send(json.dumps({"message": "still"}))
        assert json.loads(held[0].recv(timeout=5))["ok"] is True
    # Slots come back when their sockets close.
    deadline = time.monotonic() + 5
    while server.health()["connections"] > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    with connect(server.ws("/ws/EchoMessage")) as again:
        again.send(json.dumps({"message": "back"}))
        assert json.loads(again.recv(timeout=5))["ok"] is True
    assert len(log_lines(server, "max_connections_per_ip")) == len(WS_PATHS)


# --- max_connections ----------------------------------------------------------------------


def test_past_max_connections_new_sockets_get_503_and_open_ones_go_on(tmp_path):
    (tmp_path / "jacc.toml").write_text(
        "[server]\nmax_connections = 12\nhandshake_timeout_seconds = 2\n")
    server = start_server(tmp_path, app_source("seed", "extras"))
    try:
        bystander = Bystander(server)
        # Eleven silent sockets fill the server up with the bystander's.
        silent = [RawHttp(server.port) for _ in range(11)]
        time.sleep(0.2)
        refused = [RawHttp(server.port) for _ in range(3)]
        for client in refused:
            status, error = error_of(client.read_all(timeout=3))
            client.close()
            assert status == 503
            assert error == {"code": "CAPACITY", "reason": "max_connections",
                             "message": "the server has reached max_connections "
                                        "(12 open connections)"}
        for path in WS_PATHS:
            upgrade = RawWebSocket(server.port, path)
            upgrade.close()
            assert upgrade.status == 503
        assert httpx.post(f"{server.http}/user/login", json={}).status_code == 503
        bystander.check("during")
        # The handshake timeout frees the silent ones; then everyone is served again.
        for client in silent:
            assert client.read_all(timeout=5) == b""
            client.close()
        assert httpx.get(f"{server.http}/healthz").status_code == 200
        bystander.check("after")
        bystander.close()
        output = server.log()
        assert len([line for line in output.splitlines()
                    if "refused: the server has reached max_connections (12), 503" in line]) == 6
        assert "Traceback" not in output and "ERROR" not in output
    finally:
        server.stop()
