"""Servers the benchmarks start: their folder, a free loopback port, and waiting until one listens."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    """Return once 127.0.0.1:`port` accepts; exit the benchmark if `process` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def app_folder(folder: Path) -> None:
    """Put bench/app.jac in `folder`, with a jacc.toml whose limits stay out of the way.

    jacc's limits are for the internet; the benchmarks measure the hot path. Every
    client here is 127.0.0.1, so the per-address cap would refuse the idle test.
    """
    (folder / "app.jac").write_text((BENCH / "app.jac").read_text())
    (folder / "jacc.toml").write_text(
        "[websocket]\nmessages_per_second = 1000000\nmax_connections_per_user = 100000\n"
        "max_connections_per_ip = 100000\n")
