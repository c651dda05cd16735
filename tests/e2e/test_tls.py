"""TLS against a real `jacc serve` (docs/operations.md#tls): a certificate made in the test
(trustme), a wss:// client that exchanges a frame, and https:// /healthz."""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest
import trustme
from e2e_support import app_source, ask, run, server_env, start_server
from websockets.asyncio.client import connect


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server(tmp_path_factory, authority):
    folder = tmp_path_factory.mktemp("app")
    issued = authority.issue_cert("127.0.0.1", "localhost")
    with open(folder / "cert.pem", "wb") as chain:  # the server's, then the CA's
        for blob in issued.cert_chain_pems:
            chain.write(blob.bytes())
    issued.private_key_pem.write_to_path(str(folder / "key.pem"))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    running = start_server(folder, app_source("seed"), tls=client,
                           args=("--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem"))
    yield running
    running.stop()


def test_a_wss_client_exchanges_a_frame(server):
    assert server.ws("/x").startswith("wss://")

    async def scenario():
        async with connect(server.ws("/ws/EchoMessage"), ssl=server.tls) as ws:
            return await ask(ws, {"message": "over TLS"})

    answer = run(scenario())
    assert answer == {"ok": True, "data": {"reports": [{"echo": "over TLS",
                                                        "client_id": "anonymous"}]}}


def test_https_healthz_answers(server):
    response = httpx.get(f"{server.http}/healthz", verify=server.tls, timeout=10)
    assert server.http.startswith("https://")
    assert response.status_code == 200 and response.json()["data"]["status"] == "ok"


def test_plain_http_is_not_served_on_the_tls_port(server):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)


def test_a_client_that_does_not_trust_the_certificate_is_refused(server):
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.http}/healthz", timeout=5)  # the system's CAs only


def test_the_banner_shows_https_and_wss(server):
    out = server.output()
    assert f"at https://127.0.0.1:{server.port}" in out
    assert f"wss://127.0.0.1:{server.port}/ws/NAME" in out


@pytest.mark.parametrize("args, names", [
    (("--ssl-certfile", "missing.pem"), "missing.pem"),
    (("--ssl-keyfile", "key.pem"), "server.ssl_keyfile is set without server.ssl_certfile"),
])
def test_a_certificate_that_cannot_be_loaded_exits_1_with_one_line(tmp_path, args, names):
    (tmp_path / "app.jac").write_text(app_source("seed"), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "jacc", "serve", "app.jac", *args],
                            cwd=tmp_path, env=server_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and names in result.stderr
    assert "Traceback" not in result.stderr
