"""Real servers for end-to-end tests: `jacc serve` as a subprocess on a free loopback port.

`JaccServer` runs `python -m jacc serve app.jac --port P` in a folder of its
own, waits until `/healthz` answers, and keeps the process's output in files
so that a test can read everything the server printed. Module-scoped fixtures
share one server per test module (conftest.py); tests that need special
settings start their own with `start_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

APPS = Path(__file__).parent / "apps"
# Long enough for HS512 too, so that a test can sign with another algorithm than allowed.
SECRET = "e2e-secret-" + "0123456789abcdef" * 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_source(*names: str) -> str:
    """The text of `apps/NAME.jac` files, one after the other."""
    return "\n".join((APPS / f"{name}.jac").read_text(encoding="utf-8") for name in names)


class JaccServer:
    """One `jacc serve` process in `folder`, talking on 127.0.0.1:`port`.

    `tls` (an `ssl.SSLContext` that trusts the server's certificate) means the server
    serves https:// and wss://: `http`, `ws` and the health checks use it.
    """

    def __init__(self, folder: Path, env: dict[str, str], args: tuple[str, ...] = (),
                 port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.folder = folder
        self.tls = tls
        self.port = port or free_port()
        self._stdout = open(folder / "stdout.txt", "wb")
        self._stderr = open(folder / "stderr.txt", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(self.port), *args],
            cwd=folder,
            env=env,
            stdout=self._stdout,
            stderr=self._stderr,
        )

    @property
    def http(self) -> str:
        return f"http{'s' if self.tls else ''}://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws{'s' if self.tls else ''}://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"jacc serve exited with {self.process.returncode}:\n"
                                     f"{self.output()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=1,
                             verify=self.tls or True).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"jacc serve did not answer /healthz:\n{self.output()}")

    def health(self) -> dict:
        return httpx.get(f"{self.http}/healthz", timeout=5, verify=self.tls or True).json()["data"]

    def wait_connections(self, count: int, timeout: float = 5.0) -> dict:
        """Poll /healthz until it reports `count` open connections; return its data."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.health()
            if data["connections"] == count or time.monotonic() > deadline:
                return data
            time.sleep(0.02)

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        for stream in (self._stdout, self._stderr):
            if not stream.closed:
                stream.flush()
        return ((self.folder / "stdout.txt").read_text(errors="replace")
                + (self.folder / "stderr.txt").read_text(errors="replace"))

    def log(self) -> str:
        """What the server wrote to stderr so far: its log, all but the HTTP access lines."""
        if not self._stderr.closed:
            self._stderr.flush()
        return (self.folder / "stderr.txt").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.close()
        self._stderr.close()
        return self.process.returncode


def server_env(secret: str | None = SECRET, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("JACC_")}
    if secret is not None:
        env["JACC_JWT_SECRET"] = secret
    env.update(extra)
    return env


def start_server(folder: Path, source: str, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), port: int | None = None,
                 tls: ssl.SSLContext | None = None) -> JaccServer:
    """Serve `source` from `folder`; `port` reuses a port, to restart a server in place."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.jac").write_text(source, encoding="utf-8")
    server = JaccServer(folder, env if env is not None else server_env(), args, port, tls)
    try:
        server.wait_ready()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


def run(coroutine):
    """pytest-asyncio is not used: each test drives its own event loop."""
    return asyncio.run(coroutine)


async def ask(ws, frame) -> dict:
    """Send one frame (a dict is JSON-encoded) and return the decoded answer."""
    await ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))
    return json.loads(await ws.recv())


class Bystander:
    """A well-behaved client of `EchoMessage` that must go on being answered while others attack.

    A blocking client (websockets' sync one answers pings in a thread of its own),
    so that a test can hold it open across attacks made with raw sockets.
    """

    def __init__(self, server: JaccServer, path: str = "/ws/EchoMessage",
                 address: str = "127.0.0.1") -> None:
        from websockets.sync.client import connect

        self._open = contextlib.ExitStack()
        self.ws = self._open.enter_context(
            connect(server.ws(path), source_address=(address, 0), open_timeout=5))
        self.check("hello")

    def check(self, note: str) -> None:
        """One round trip: the server still answers this connection, and promptly."""
        self.ws.send(json.dumps({"message": note}))
        answer = json.loads(self.ws.recv(timeout=5))
        assert answer == {"ok": True, "data": {"reports": [{"echo": note,
                                                            "client_id": "anonymous"}]}}

    def close(self) -> None:
        self._open.close()


# --- accounts, and what an attack must leave alone ---------------------------------------


def register(server: JaccServer, username: str, password: str = "correct horse",
             **client: object) -> httpx.Response:
    return httpx.post(f"{server.http}/user/register", timeout=30, **client, json={
        "identities": [{"type": "username", "value": username}],
        "credential": {"type": "password", "password": password},
    })


def login(server: JaccServer, username: str, password: str = "correct horse",
          **client: object) -> httpx.Response:
    return httpx.post(f"{server.http}/user/login", timeout=30, **client, json={
        "identity": {"type": "username", "value": username},
        "credential": {"type": "password", "password": password},
    })


def jacc_token(folder: Path, *args: str, env: dict) -> str:
    """What `jacc token ARGS` prints, run in `folder`."""
    result = subprocess.run(
        [sys.executable, "-m", "jacc", "token", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout.strip()


def refresh(server: JaccServer, token: str) -> httpx.Response:
    return httpx.post(f"{server.http}/user/refresh-token", json={"token": token}, timeout=30)


class AsyncBystander:
    """Another client that an attack must not disturb: an authenticated socket and a public one
    (the asyncio counterpart of `Bystander`).

        async with AsyncBystander(server, token) as bystander:
            ... the attack ...
            await bystander.still_served()   # both sockets open and answered
    """

    def __init__(self, server: JaccServer, token: str) -> None:
        self._server = server
        self._token = token
        self._sockets: list = []

    async def __aenter__(self) -> AsyncBystander:
        from websockets.asyncio.client import connect

        for path in (f"/ws/SecureChat?token={self._token}", "/ws/EchoMessage"):
            self._sockets.append(await connect(self._server.ws(path)))
        await self.still_served()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self._sockets:
            await ws.close()

    async def still_served(self) -> None:
        for ws in self._sockets:
            answer = await asyncio.wait_for(ask(ws, {"message": "still there?"}), 10)
            assert answer["ok"] is True, answer
        assert self._server.process.poll() is None, "the server stopped"


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid`, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


class StalledClient:
    """A raw-socket WebSocket client with a tiny receive buffer that stops reading at will."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        events = []
        while not any(isinstance(event, Response) for event in events):
            self.protocol.receive_data(self.sock.recv(65536))
            events += self.protocol.events_received()

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.sock.sendall(data)

    def read_all(self, timeout: float) -> tuple[int, Close | None]:
        """Resume reading: count the text frames that arrive, up to the close frame."""
        texts = 0
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                self.protocol.receive_eof()
            else:
                self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    texts += 1
            self._flush()
            if self.protocol.close_rcvd is not None or not data:
                return texts, self.protocol.close_rcvd

    def close(self) -> None:
        self.sock.close()
