"""Behind a proxy, against a real `jacc serve` (docs/operations.md#behind-a-proxy).

The "proxy" is a client bound to 127.0.0.2, the only address in
`forwarded_allow_ips`; another client on 127.0.0.3 plays someone who sends the
same headers without being a trusted proxy. With `proxy_headers` the per-address
cap counts the address in `X-Forwarded-For`, from the trusted proxy only; by
default (`proxy_headers = false`) the header is ignored, even from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from e2e_support import app_source, ask, run, start_server
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

PER_IP = 2
PROXY, STRANGER = "127.0.0.2", "127.0.0.3"
CAPPED = f"[websocket]\nmax_connections_per_ip = {PER_IP}\n"
BEHIND_PROXY = f'[server]\nproxy_headers = true\nforwarded_allow_ips = ["{PROXY}"]\n\n' + CAPPED


def serve(tmp_path_factory, config: str):
    folder = tmp_path_factory.mktemp("app")
    (folder / "jacc.toml").write_text(config)
    return start_server(folder, app_source("seed"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = serve(tmp_path_factory, BEHIND_PROXY)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    running = serve(tmp_path_factory, CAPPED)
    yield running
    running.stop()


def open_socket(server, source: str, forwarded_for: str | None, **options):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return connect(server.ws("/ws/EchoMessage"), source_address=(source, 0),
                   additional_headers=headers, open_timeout=5, **options)


def served(ws) -> bool:
    """True if the socket is served; False if it was refused by a connection cap (4403)."""
    with contextlib.suppress(ConnectionClosed):  # a refused one may be closed already
        ws.send(json.dumps({"message": "hi"}))
    frame = json.loads(ws.recv(timeout=5))
    if frame["ok"]:
        return True
    assert frame["error"]["reason"] == "max_connections_per_ip", frame
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4403
    return False


def test_from_the_trusted_proxy_the_forwarded_address_is_counted(server):
    with contextlib.ExitStack() as stack:
        first = [stack.enter_context(open_socket(server, PROXY, "203.0.113.7"))
                 for _ in range(PER_IP)]
        assert all(served(ws) for ws in first)
        # The same client once more: its own cap, although the proxy's address is shared.
        with open_socket(server, PROXY, "203.0.113.7") as extra:
            assert not served(extra)
        # Another client behind the same proxy has a cap of its own.
        with open_socket(server, PROXY, "203.0.113.8") as other:
            assert served(other)
    server.wait_connections(0)


def test_from_any_other_address_the_header_is_ignored(server):
    with contextlib.ExitStack() as stack:
        # Each claims another address; all are counted as 127.0.0.3.
        held = [stack.enter_context(open_socket(server, STRANGER, f"198.51.100.{i}"))
                for i in range(PER_IP)]
        assert all(served(ws) for ws in held)
        with open_socket(server, STRANGER, "198.51.100.99") as extra:
            assert not served(extra)
    server.wait_connections(0)


def test_the_forwarded_address_is_the_one_logged(server):
    with httpx.Client(transport=httpx.HTTPTransport(local_address=PROXY)) as client:
        response = client.get(f"{server.http}/healthz", timeout=5,
                              headers={"X-Forwarded-For": "203.0.113.50"})
    assert response.status_code == 200
    logged = server.output()
    assert '203.0.113.50:0 - "GET /healthz' in logged
    assert f"{PROXY}:" not in logged  # not for this request, nor any of the proxy's sockets


def test_the_origin_check_passes_a_page_served_through_a_tls_proxy(server):
    # The proxy ends TLS: the page is https://chat.example, the socket arrives as plain ws
    # with the public Host; same origin, whatever the scheme.
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "wss",
               "Host": "chat.example"}
    with connect(server.ws("/ws/EchoMessage"), source_address=(PROXY, 0), open_timeout=5,
                 additional_headers=headers, origin="https://chat.example") as ws:
        assert served(ws)
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws("/ws/EchoMessage"), source_address=(PROXY, 0), open_timeout=5,
                additional_headers=headers, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    server.wait_connections(0)


def test_by_default_no_one_can_choose_the_address_counted(direct):
    # uvicorn's own default trusts X-Forwarded-For from 127.0.0.1, so that any local
    # client could claim a fresh address per socket and dodge the cap; jacc's does not.
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(open_socket(direct, "127.0.0.1", f"198.51.100.{i}"))
                for i in range(PER_IP)]
        assert all(served(ws) for ws in held)
        with open_socket(direct, "127.0.0.1", "198.51.100.99") as extra:
            assert not served(extra)
    direct.wait_connections(0)


def test_under_a_root_path_the_stripped_requests_are_served(tmp_path):
    # A proxy serving the app at /chat/ strips the prefix; --root-path tells the app.
    prefixed = start_server(tmp_path, app_source("seed"), args=("--root-path", "/chat"))
    try:
        assert f"at http://127.0.0.1:{prefixed.port}/chat " in prefixed.output()

        async def scenario():
            async with connect_async(prefixed.ws("/ws/EchoMessage")) as ws:
                return await ask(ws, {"message": "hi"})

        assert run(scenario())["ok"] is True
        assert 'route="/healthz"' in httpx.get(f"{prefixed.http}/metrics", timeout=5).text
    finally:
        prefixed.stop()
