"""How `jacc serve` takes its configuration (docs/configuration.md): jacc.toml < JACC_* < flags, checked at start.

The effect of each `[websocket]` limit is tested where the limit is
(test_ws_limits.py, test_liveness.py, test_origin.py, test_ws_broadcast.py); here:
which layer wins, the `[auth]` keys, and the one-line exit 1 for a bad value.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import jwt
import pytest
from e2e_support import app_source, ask, free_port, run, server_env, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TOML_SECRET = "secret-from-jacc-toml-" + "abcdef0123456789" * 2


async def frame_outcome(server, size: int) -> str:
    """"ok" or the error code for an EchoMessage frame of `size` bytes."""
    text = json.dumps({"message": "x" * (size - len('{"message": ""}'))})
    assert len(text) == size
    async with connect(server.ws("/ws/EchoMessage")) as ws:
        answer = await ask(ws, text)
        if answer.get("ok"):
            return "ok"
        try:
            await ws.recv()
        except ConnectionClosed:
            pass
        return answer["error"]["code"]


def sizes(server, *frame_sizes: int) -> list[str]:
    return [run(frame_outcome(server, size)) for size in frame_sizes]


# --- which layer wins --------------------------------------------------------------------


def test_jacc_toml_beside_the_app_is_read(tmp_path):
    (tmp_path / "jacc.toml").write_text("[websocket]\nmax_message_bytes = 100\n")
    server = start_server(tmp_path, app_source("seed"))
    try:
        assert sizes(server, 100, 101) == ["ok", "MESSAGE_TOO_LARGE"]
    finally:
        server.stop()


def test_environment_overrides_the_file_and_flags_override_the_environment(tmp_path):
    (tmp_path / "jacc.toml").write_text("[websocket]\nmax_message_bytes = 100\n")
    # JACC_SERVER_PORT=0 is a bad value, but --port (always given by the test harness)
    # wins over it, and only the value that wins is checked.
    env = server_env(JACC_WEBSOCKET_MAX_MESSAGE_BYTES="200", JACC_SERVER_PORT="0")
    server = start_server(tmp_path, app_source("seed"), env=env)
    try:
        assert sizes(server, 150, 200, 201) == ["ok", "ok", "MESSAGE_TOO_LARGE"]
    finally:
        server.stop()


def test_config_names_another_file_and_the_one_beside_the_app_is_not_read(tmp_path):
    (tmp_path / "jacc.toml").write_text("[websocket]\nmax_message_bytes = 0\n")  # bad, unread
    (tmp_path / "staging.toml").write_text("[websocket]\nmax_message_bytes = 300\n")
    server = start_server(tmp_path, app_source("seed"), args=("--config", "staging.toml"))
    try:
        assert sizes(server, 300, 301) == ["ok", "MESSAGE_TOO_LARGE"]
    finally:
        server.stop()


def test_the_auth_keys_are_honoured(tmp_path):
    (tmp_path / "jacc.toml").write_text(
        f'[auth]\nsecret = "{TOML_SECRET}"\ntoken_ttl_seconds = 120\ndatabase = "data/users.db"\n')
    server = start_server(tmp_path, app_source("seed"), env=server_env(secret=None))
    try:
        credential = {"type": "password", "password": "correct horse battery"}
        registered = httpx.post(f"{server.http}/user/register", json={
            "identities": [{"type": "username", "value": "frank"}], "credential": credential})
        assert registered.status_code == 201
        login = httpx.post(f"{server.http}/user/login", json={
            "identity": {"type": "username", "value": "frank"}, "credential": credential})
        token = login.json()["data"]["token"]
        claims = jwt.decode(token, TOML_SECRET, algorithms=["HS256"])  # signed with [auth] secret
        assert claims["exp"] - claims["iat"] == 120
        assert (tmp_path / "data" / "users.db").is_file()
        assert not (tmp_path / ".jacc" / "secret").exists()  # none generated

        async def client():
            async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
                return await ask(ws, {"message": "hi"})

        assert run(client())["ok"] is True
    finally:
        server.stop()


# --- bad values: exit 1, one line naming the key -------------------------------------------


def serve_once(folder, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (folder / "app.jac").write_text(app_source("seed"))
    return subprocess.run(
        [sys.executable, "-m", "jacc", "serve", "app.jac", *args],
        cwd=folder, env=env or server_env(), capture_output=True, text=True, timeout=60,
    )


BAD_ENV = [
    ("JACC_WEBSOCKET_MAX_MESSAGE_BYTES", "0", "websocket.max_message_bytes"),
    ("JACC_WEBSOCKET_MESSAGES_PER_SECOND", "-5", "websocket.messages_per_second"),
    ("JACC_WEBSOCKET_MAX_CONNECTIONS_PER_WALKER", "many", "websocket.max_connections_per_walker"),
    ("JACC_WEBSOCKET_HEARTBEAT_SECONDS", "0", "websocket.heartbeat_seconds"),
    ("JACC_WEBSOCKET_SEND_QUEUE_BYTES", "1.5", "websocket.send_queue_bytes"),
    ("JACC_WEBSOCKET_BACKPLANE", "kafka://127.0.0.1:9092", "websocket.backplane"),
    ("JACC_AUTH_TOKEN_TTL_SECONDS", "-1", "auth.token_ttl_seconds"),
    ("JACC_SERVER_WORKERS", "0", "server.workers"),
]

BAD_TOML = [
    ("[websocket]\nmax_connections_per_user = 0\n", "websocket.max_connections_per_user"),
    ("[websocket]\nwalker_timeout_seconds = -0.5\n", "websocket.walker_timeout_seconds"),
    ('[websocket]\nauth_timeout_seconds = "ten"\n', "websocket.auth_timeout_seconds"),
    ("[websocket]\nsend_timeout_seconds = 0\n", "websocket.send_timeout_seconds"),
    ('[websocket]\nallowed_origins = ["https://app.example/"]\n', "websocket.allowed_origins"),
    ('[websocket]\nbackplane = "mqtt://broker"\n', "websocket.backplane"),
    ("[auth]\ndatabase = \"\"\n", "auth.database"),
    ("[websocket]\nmax_mesage_bytes = 10\n", "websocket.max_mesage_bytes"),
]


def assert_one_line_naming(result: subprocess.CompletedProcess, key: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""  # stopped before the banner: nothing was served


@pytest.mark.parametrize(("variable", "value", "key"), BAD_ENV, ids=[v for v, _, _ in BAD_ENV])
def test_a_bad_environment_value(tmp_path, variable, value, key):
    result = serve_once(tmp_path, "--port", str(free_port()), env=server_env(**{variable: value}))
    assert_one_line_naming(result, key)
    assert variable in result.stderr  # where the value came from


@pytest.mark.parametrize(("toml", "key"), BAD_TOML, ids=[k for _, k in BAD_TOML])
def test_a_bad_file_value(tmp_path, toml, key):
    (tmp_path / "jacc.toml").write_text(toml)
    result = serve_once(tmp_path, "--port", str(free_port()))
    assert_one_line_naming(result, key)
    assert "jacc.toml" in result.stderr


def test_a_bad_value_in_the_file_named_by_config(tmp_path):
    (tmp_path / "prod.toml").write_text("[websocket]\nmessages_per_second = 0\n")
    result = serve_once(tmp_path, "--port", str(free_port()), "--config", "prod.toml")
    assert_one_line_naming(result, "websocket.messages_per_second")
    assert "prod.toml" in result.stderr


@pytest.mark.parametrize(("flag", "value", "key"), [("--port", "0", "server.port"),
                                                     ("--port", "70000", "server.port")])
def test_a_bad_flag(tmp_path, flag, value, key):
    result = serve_once(tmp_path, flag, value)
    assert_one_line_naming(result, key)
    assert flag in result.stderr


def test_a_missing_config_file(tmp_path):
    result = serve_once(tmp_path, "--port", str(free_port()), "--config", "nowhere.toml")
    assert_one_line_naming(result, "nowhere.toml")


def test_an_unreachable_postgresql_exits_1_in_one_line_naming_it(tmp_path):
    env = server_env(JACC_AUTH_DATABASE=f"postgresql://jacc:hunter2@127.0.0.1:{free_port()}/x")
    result = serve_once(tmp_path, "--port", str(free_port()), env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot reach PostgreSQL at postgresql://jacc:***@")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_an_unreachable_redis_exits_1_in_one_line_naming_it(tmp_path):
    env = server_env(JACC_WEBSOCKET_BACKPLANE=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    result = serve_once(tmp_path, "--port", str(free_port()), env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Redis at redis://:***@")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing was served
    assert time.monotonic() - started < 30


