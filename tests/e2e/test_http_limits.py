"""HTTP limits against a real `jacc serve` (docs/security.md#http): body and head size, 405.

Each attack runs while a bystander WebSocket is open, and the bystander must be
answered before, during and after it: one client's abuse costs nobody else.
"""

from __future__ import annotations

import httpx
import pytest
from e2e_support import Bystander, app_source, start_server
from raw_http import RawHttp, error_of, parse_response, request_head

MAX_BODY = 4096
MAX_HEAD = 8192
CONFIG = f"""\
[server]
max_body_bytes = {MAX_BODY}
max_header_bytes = {MAX_HEAD}
"""
BODY_ROUTES = ["/walker/Add", "/user/login", "/user/register", "/user/refresh-token"]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    (folder / "jacc.toml").write_text(CONFIG)
    running = start_server(folder, app_source("seed", "extras"))
    yield running
    running.stop()


@pytest.fixture
def bystander(server):
    client = Bystander(server)
    yield client
    client.check("after")
    client.close()
    assert server.process.poll() is None
    assert server.health()["status"] == "ok"


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# --- bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_declared_body_over_the_limit_is_refused_from_the_headers(server, bystander, path):
    client = RawHttp(server.port)
    # 50 MiB announced, not a byte of it sent: the answer cannot wait for the body.
    client.send(request_head("POST", path, server.port, Content_Type="application/json",
                             Content_Length=str(50 * MIB)))
    status, error = error_of(client.read_all(timeout=5))
    bystander.check("during")
    client.close()
    assert status == 413
    assert error == {"code": "MESSAGE_TOO_LARGE", "reason": "max_body_bytes",
                     "message": f"the request body is over max_body_bytes ({MAX_BODY} bytes)"}


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_chunked_body_is_read_no_further_than_the_limit(server, bystander, path):
    client = RawHttp(server.port)
    client.send(request_head("POST", path, server.port, Content_Type="application/json",
                             Transfer_Encoding="chunked"))
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"  # 1 KiB of JSON whitespace per chunk
    for _ in range(MAX_BODY // 1024 + 1):
        client.send(chunk)
    # The body never ends: only a server that stopped reading answers, and closes.
    status, error = error_of(client.read_all(timeout=5))
    bystander.check("during")
    assert status == 413 and error["reason"] == "max_body_bytes"
    assert client.send_until_refused(chunk, 64 * MIB) < 64 * MIB  # the server stopped reading
    client.close()


@pytest.mark.parametrize("padding", [0, 1])
def test_a_body_of_exactly_the_limit_is_read(server, padding):
    body = b'{"a": 2}'
    body += b" " * (MAX_BODY - len(body) + padding)
    response = httpx.post(f"{server.http}/walker/Add", content=body,
                          headers={"Content-Type": "application/json"})
    if padding:
        assert response.status_code == 413
    else:
        assert response.status_code == 200 and response.json()["data"]["reports"] == [3]


def test_a_login_body_at_the_limit_is_checked_as_usual(server):
    body = (b'{"identity": {"type": "username", "value": "nobody"}, '
            b'"credential": {"type": "password", "password": "x"}}')
    response = httpx.post(f"{server.http}/user/login", content=body.ljust(MAX_BODY))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"


def test_a_50_mib_post_costs_the_server_no_memory(server, bystander):
    before = peak_rss_mib(server.process.pid)
    for path in BODY_ROUTES:
        # httpx sends the whole body unless the server's early answer stops it.
        try:
            response = httpx.post(f"{server.http}{path}", content=b"x" * (50 * MIB))
        except httpx.TransportError:
            continue  # the server closed while the client was still writing: fine too
        assert response.status_code == 413
    bystander.check("during")
    assert peak_rss_mib(server.process.pid) - before < 8


# --- heads -------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, upgrade", [
    ("GET", "/healthz", False),
    ("POST", "/user/login", False),
    ("POST", "/walker/Add", False),
    ("GET", "/ws/EchoMessage", True),
    ("GET", "/ws/walker/EchoMessage", True),
])
def test_a_head_over_the_limit_is_431_and_never_buffered(server, bystander, method, path,
                                                         upgrade):
    client = RawHttp(server.port)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
    if upgrade:
        head += ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    client.send(head + "X-Big: ")
    # A 20 MiB header, sent until the server hangs up.
    sent = client.send_until_refused(b"a" * 65536, 20 * MIB)
    status, error = error_of(client.read_all(timeout=5))
    bystander.check("during")
    client.close()
    assert status == 431
    assert error["code"] == "MESSAGE_TOO_LARGE" and error["reason"] == "max_header_bytes"
    # Refused after the limit and one socket read (at most 256 KiB), plus what the
    # kernel's socket buffers held meanwhile: nowhere near 20 MiB.
    assert sent < 20 * MIB
    assert "refused: request head over max_header_bytes (8192 bytes), 431" in server.log()


def test_a_head_under_the_limit_is_served(server):
    response = httpx.get(f"{server.http}/healthz", headers={"X-Big": "a" * (MAX_HEAD - 200)})
    assert response.status_code == 200


# --- methods ------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, allow, message", [
    ("GET", "/walker/Add", "POST", "walker `Add` takes POST, got GET"),
    ("OPTIONS", "/walker/Add", "POST", "walker `Add` takes POST, got OPTIONS"),
    ("DELETE", "/walker/Whoami", "POST", "walker `Whoami` takes POST, got DELETE"),
    ("GET", "/user/login", "POST", "/user/login takes POST, got GET"),
    ("PUT", "/user/register", "POST", "/user/register takes POST, got PUT"),
    ("GET", "/user/refresh-token", "POST", "/user/refresh-token takes POST, got GET"),
    ("POST", "/healthz", "GET, HEAD", None),
])
def test_405_says_which_methods_the_route_takes(server, method, path, allow, message):
    response = httpx.request(method, f"{server.http}{path}")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))
    error = response.json()["error"]
    assert error["code"] == "METHOD_NOT_ALLOWED"
    if message is not None:
        assert error["message"] == message
    assert "POST or POST" not in error["message"]


def test_nothing_here_logs_an_error(server):
    # Every refusal above is expected: a line each at most, never an ERROR or a traceback.
    output = server.log()
    assert "ERROR" not in output and "Traceback" not in output, output[-3000:]


def test_the_response_to_a_refused_head_is_whole(server):
    client = RawHttp(server.port)
    client.send(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * (MAX_HEAD * 2)}")
    status, headers, body = parse_response(client.read_all(timeout=5))
    client.close()
    assert status == 431 and headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
