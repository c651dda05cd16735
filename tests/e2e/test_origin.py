"""`allowed_origins` (docs/configuration.md) against a real `jacc serve`: a foreign browser origin gets 403.

With `allowed_origins = ["https://app.example"]`: no Origin (not a browser), the
same origin, and the listed one pass; any other is refused before any 101.
With `["*"]` every origin passes.
"""

from __future__ import annotations

import httpx
import pytest
from e2e_support import app_source, ask, run, server_env, start_server
from raw_ws import RawWebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    (folder / "jacc.toml").write_text('[websocket]\nallowed_origins = ["https://app.example"]\n')
    running = start_server(folder, app_source("seed"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def anyone(tmp_path_factory):
    env = server_env(JACC_WEBSOCKET_ALLOWED_ORIGINS="*")
    running = start_server(tmp_path_factory.mktemp("app"), app_source("seed"), env=env)
    yield running
    running.stop()


async def echo(server, origin: str | None) -> dict:
    async with connect(server.ws("/ws/EchoMessage"), origin=origin) as ws:
        return await ask(ws, {"message": "hi"})


async def refused(server, origin: str, path: str = "/ws/EchoMessage"):
    with pytest.raises(InvalidStatus) as caught:
        async with connect(server.ws(path), origin=origin):
            pass
    return caught.value.response


def same_origin(server) -> str:
    return f"http://127.0.0.1:{server.port}"  # the client's Host header is 127.0.0.1:PORT


@pytest.mark.parametrize("origin", [None, "same", "https://app.example"],
                         ids=["no origin", "same origin", "listed"])
def test_these_origins_pass(listed, origin):
    origin = same_origin(listed) if origin == "same" else origin
    assert run(echo(listed, origin))["ok"] is True


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "http://app.example",  # the listed host with another scheme is another origin
    "https://app.example:8443",
    "http://127.0.0.1:1",  # the same host on another port
    "http://localhost",
    "null",
])
def test_other_origins_get_403_before_any_101(listed, origin):
    response = run(refused(listed, origin))
    assert response.status_code == 403
    assert b'"code":"ORIGIN_NOT_ALLOWED"' in response.body
    assert b"101" not in response.body


def test_the_origin_is_checked_before_the_walker_is_looked_up(listed):
    # A foreign page learns nothing, not even which walkers exist.
    assert run(refused(listed, "https://evil.example", "/ws/Nobody")).status_code == 403
    assert run(refused(listed, "https://evil.example", "/ws/SecureChat")).status_code == 403


def test_a_raw_handshake_from_a_foreign_origin_gets_no_upgrade(listed):
    raw = RawWebSocket(listed.port, "/ws/EchoMessage", {"Origin": "https://evil.example"})
    raw.close()
    assert raw.status == 403


def test_http_routes_are_not_affected(listed):
    response = httpx.get(f"{listed.http}/healthz", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200


@pytest.mark.parametrize("origin", [None, "https://evil.example", "null", "http://localhost:3000"])
def test_star_lets_every_origin_in(anyone, origin):
    assert run(echo(anyone, origin))["ok"] is True


def test_the_refusals_are_logged_without_a_traceback(listed):
    output = listed.output()
    assert '"WebSocket /ws/EchoMessage" 403' in output
    assert "Traceback" not in output
