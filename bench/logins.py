"""Benchmark: password hashing as a weapon. A flood of bad logins against `jacc serve`.

Starts `jacc serve bench/app.jac` on a free loopback port, registers one account,
then sends N concurrent logins for unknown user names and reports:

- the server's RSS before, at its peak during the flood, and 2 s after;
- the status codes the flood got (200, 401, 429, ...) and how long it took;
- how a bystander fared meanwhile: `/healthz` and one WebSocket round trip
  (latency, answered or not), and whether the registered user could still log in.

    python bench/logins.py [--logins 200] [--same-name] [--no-throttle]

`--same-name` sends every login for one unknown name; by default each login
has a name of its own. Every login comes from 127.0.0.1, so the per-address
throttle stops most of them: `--no-throttle` raises both throttles' allowance
out of reach, to see what the cap on concurrent hashing alone does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from ws import free_port, rss_mb, wait_until_listening  # noqa: E402


def body(user: str, password: str) -> dict:
    return {"identity": {"type": "username", "value": user},
            "credential": {"type": "password", "password": password}}


class PeakRss:
    """Samples a process's RSS every 10 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)


async def bystander(base: str, ws_url: str, done: asyncio.Event) -> dict:
    """What another client sees while the flood runs: health and a WebSocket echo."""
    worst = 0.0
    answered = failed = 0
    async with httpx.AsyncClient(timeout=30) as client, connect(ws_url) as ws:
        while not done.is_set():
            start = time.perf_counter()
            try:
                health = await client.get(f"{base}/healthz")
                await ws.send(json.dumps({"message": "still there?"}))
                reply = json.loads(await ws.recv())
                ok = health.status_code == 200 and reply["ok"]
            except Exception:
                ok = False
            worst = max(worst, time.perf_counter() - start)
            answered, failed = (answered + 1, failed) if ok else (answered, failed + 1)
            await asyncio.sleep(0.05)
    return {"answered": answered, "failed": failed, "worst ms": round(worst * 1e3)}


async def flood(base: str, count: int, same_name: bool) -> tuple[Counter, float, dict]:
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    done = asyncio.Event()
    watcher = asyncio.create_task(bystander(base, base.replace("http", "ws") + "/ws/EchoMessage",
                                            done))
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:
        async def one(i: int) -> int:
            name = "nobody" if same_name else f"nobody-{i}"
            response = await client.post(f"{base}/user/login", json=body(name, "wrong"))
            return response.status_code

        start = time.perf_counter()
        codes = Counter(await asyncio.gather(*(one(i) for i in range(count))))
        elapsed = time.perf_counter() - start
    done.set()
    return codes, elapsed, await watcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--same-name", action="store_true")
    parser.add_argument("--no-throttle", action="store_true")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "app.jac"
        app.write_text((BENCH / "app.jac").read_text())
        env = dict(os.environ, JACC_JWT_SECRET="bench-secret-" + "x" * 40)
        if args.no_throttle:
            env.update(JACC_AUTH_LOGIN_ATTEMPTS="1000000",
                       JACC_AUTH_LOGIN_ADDRESS_ATTEMPTS="1000000")
        process = subprocess.Popen(
            [sys.executable, "-m", "jacc", "serve", str(app), "--port", str(port)],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_listening(port, process)
            registered = {"identities": [{"type": "username", "value": "owner"}],
                          "credential": {"type": "password", "password": "right"}}
            httpx.post(f"{base}/user/register", json=registered, timeout=30)
            before = rss_mb(process.pid)
            with PeakRss(process.pid) as peak:
                codes, elapsed, seen = asyncio.run(flood(base, args.logins, args.same_name))
                time.sleep(2)
            after = rss_mb(process.pid)
            owner = httpx.post(f"{base}/user/login", json=body("owner", "right"), timeout=30)
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(timeout=10)
    names = "one name" if args.same_name else "distinct names"
    throttle = ", no throttle" if args.no_throttle else ""
    print(f"{args.logins} concurrent bad logins ({names}{throttle}, {os.cpu_count()} cores): "
          f"{dict(sorted(codes.items()))} in {elapsed:.1f} s")
    print(f"server RSS: before {before:.0f} MB, peak {peak.peak:.0f} MB, 2 s after {after:.0f} MB")
    print(f"bystander: {seen}; owner's login afterwards: {owner.status_code}; "
          f"server running: {alive}")


if __name__ == "__main__":
    main()
