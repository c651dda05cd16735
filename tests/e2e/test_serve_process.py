"""`jacc serve` as a process (README, "Commands"): banner, graceful shutdown, user errors, exit status."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
from e2e_support import app_source, ask, free_port, run, server_env, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def test_banner_names_the_url_and_every_walker(server):
    output = server.output()
    assert f"http://127.0.0.1:{server.port}" in output
    lines = output.splitlines()
    header = next(line for line in lines if "route" in line and "broadcast" in line)
    assert header.split() == ["name", "route", "protocol", "public", "broadcast", "stream"]
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("  ")}
    assert rows["EchoMessage"] == ["EchoMessage", "/ws/EchoMessage", "websocket", "yes", "no",
                                   "no"]
    assert rows["SecureChat"] == ["SecureChat", "/ws/SecureChat", "websocket", "no", "no", "no"]
    assert rows["TeamChat"] == ["TeamChat", "/ws/TeamChat", "websocket", "no", "yes", "no"]
    assert rows["Add"] == ["Add", "POST", "/walker/Add", "http", "yes", "no", "no"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_closes_open_sockets_with_1001_and_exits_0(tmp_path, sig):
    server = start_server(tmp_path / "app", app_source("seed"))

    async def scenario():
        sockets = [await connect(server.ws(path)) for path in
                   ("/ws/EchoMessage", "/ws/ChatRoom", "/ws/ChatRoom")]
        assert (await ask(sockets[0], {"message": "hi"}))["ok"] is True
        assert server.wait_connections(3)["connections"] == 3
        server.process.send_signal(sig)
        codes = []
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as caught:
                await asyncio.wait_for(ws.recv(), 10)
            codes.append(caught.value.rcvd.code)
        return codes

    try:
        codes = run(scenario())
        status = server.process.wait(15)
    finally:
        server.stop(signal.SIGKILL)  # only if it is still running: a second signal forces
    assert codes == [1001, 1001, 1001]
    assert status == 0
    assert "Traceback" not in server.output()


def serve_once(folder, source: str | None, *args: str, env=None) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None:
        (folder / "app.jac").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(free_port()), *args],
        cwd=folder, env=env or server_env(), capture_output=True, text=True, timeout=60,
    )


def test_a_program_with_errors_exits_1_with_diagnostics(tmp_path):
    source = "@restspec(protocol=APIProtocol.WEBSOCKET)\nwalker : pub Chat { has m: str; }\n"
    result = serve_once(tmp_path, source)
    assert result.returncode == 1
    assert "error[" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_config_value_exits_1_with_one_line(tmp_path):
    env = server_env(JACC_WEBSOCKET_SEND_QUEUE_BYTES="0")
    result = serve_once(tmp_path, app_source("seed"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "websocket.send_queue_bytes" in result.stderr


def test_a_missing_app_exits_1(tmp_path):
    result = serve_once(tmp_path, None)
    assert result.returncode == 1 and "no such file" in result.stderr


SECRET_FOR_REFUSALS = "refusals-" + "0123456789abcdef" * 3


@pytest.mark.parametrize(("args", "env", "says"), [
    (("--workers", "2"), {}, "--workers 2 with the memory backplane would split the "
                             "broadcasts of ChatRoom, TeamChat"),
    (("--workers", "2", "--dev"), {}, "--dev reloads one process"),
    ((), {"JACC_WEBSOCKET_BACKPLANE": "redis://127.0.0.1:6379/0"},
     "a Redis backplane needs an explicit JWT secret"),
], ids=["memory-broadcast", "dev", "no-secret"])
def test_scale_out_refusals_say_why_in_one_line(tmp_path, args, env, says):
    (tmp_path / "app.jac").write_text(app_source("seed"))
    result = subprocess.run(
        [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(free_port()), *args],
        cwd=tmp_path, env=server_env(secret=None if env else SECRET_FOR_REFUSALS, **env),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert result.stdout == ""


def test_a_port_in_use_exits_1(server, tmp_path):
    (tmp_path / "app.jac").write_text(app_source("seed"))
    result = subprocess.run(
        [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(server.port)],
        cwd=tmp_path, env=server_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_a_program_whose_top_level_raises_exits_1_naming_the_jac_line(tmp_path):
    result = serve_once(tmp_path, "\nglob ratio = 1 / 0;\n")
    assert result.returncode == 1
    assert 'app.jac", line 2' in result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "internal" not in result.stderr
