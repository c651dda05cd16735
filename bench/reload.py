"""Benchmark: save-to-new-code latency of `jacc serve --dev`.

Starts `jacc serve app.jac --dev` in a temporary folder, keeps one WebSocket
open, and N times: saves a new version of app.jac, then sends frames back to
back on that socket until one is answered by the new code. The latency is the
time from the write to that answer: the watcher noticing the save, its quiet
period, the rebuild and the swap, plus at most one round trip.

    python bench/reload.py [--saves 20] [--atomic] [--walkers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(version: int, walkers: int) -> str:
    """`Echo` reporting `version`, plus `walkers - 1` others to make the file bigger."""
    parts = []
    for index in range(walkers):
        name = "Echo" if index == 0 else f"Other{index}"
        parts.append(f"""
@restspec(protocol=APIProtocol.WEBSOCKET)
async walker : pub {name} {{
    has message: str = "";

    async can answer with Root entry {{
        report {{"v": {version}, "echo": self.message}};
    }}
}}
""")
    return "".join(parts)


def save(path: Path, text: str, atomic: bool) -> None:
    if atomic:
        temporary = path.with_name(".app.jac.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    else:
        path.write_text(text, encoding="utf-8")


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"jacc serve exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit("jacc serve did not start")


async def measure(port: int, path: Path, saves: int, walkers: int, atomic: bool) -> list[float]:
    latencies = []
    async with connect(f"ws://127.0.0.1:{port}/ws/Echo") as ws:
        for version in range(1, saves + 1):
            started = time.perf_counter()
            save(path, program(version, walkers), atomic)
            while True:
                await ws.send('{"message": "x"}')
                reply = json.loads(await ws.recv())
                if reply["ok"] and reply["data"]["reports"][0]["v"] == version:
                    latencies.append(time.perf_counter() - started)
                    break
            await asyncio.sleep(0.3)  # let each save be a burst of its own
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--walkers", type=int, default=1, help="walkers in the program")
    parser.add_argument("--atomic", action="store_true",
                        help="save by renaming a new file over app.jac, as many editors do")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "app.jac"
        path.write_text(program(0, args.walkers), encoding="utf-8")
        port = free_port()
        env = {**os.environ, "JACC_JWT_SECRET": "bench-secret-" + "0" * 32,
               # Frames go back to back while polling: no rate limit in the way.
               "JACC_WEBSOCKET_MESSAGES_PER_SECOND": "1000000"}
        process = subprocess.Popen(
            [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(port), "--dev"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, process)
            latencies = asyncio.run(measure(port, path, args.saves, args.walkers, args.atomic))
        finally:
            process.terminate()
            process.wait(15)

    ms = sorted(1000 * value for value in latencies)
    lines = len(program(0, args.walkers).splitlines())
    how = "renamed over" if args.atomic else "written in place"
    print(f"save-to-new-code latency, {len(ms)} saves ({how}), {lines}-line program:")
    print(f"  median {statistics.median(ms):.0f} ms   p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms"
          f"   min {ms[0]:.0f} ms   max {ms[-1]:.0f} ms")


if __name__ == "__main__":
    main()
