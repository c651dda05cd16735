"""Benchmark: password hashing as a weapon. A flood of bad logins against `jacc serve`.

Starts `jacc serve bench/app.jac` on a free loopback port, registers one account,
then sends N concurrent logins for unknown user names and reports:

- the server's RSS before, at its peak during the flood, and 2 s after;
- the status codes the flood got (200, 401, 429, ...) and how long it took;
- how a bystander (a process of its own) fared meanwhile: `/healthz` and one
  WebSocket round trip every 50 ms, answered or not and the slowest, from 1 s
  before the flood to 2 s after; and whether the registered user could log in
  afterwards.

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


async def bystander(base: str) -> dict:
    """What another client sees until its stdin closes: `/healthz` and a WebSocket echo."""
    worst = 0.0
    answered = failed = 0
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    ws_url = base.replace("http", "ws", 1) + "/ws/EchoMessage"
    async with httpx.AsyncClient(timeout=30) as client, connect(ws_url) as ws:
        while not stop.is_set():
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


def start_bystander(base: str) -> subprocess.Popen:
    # A process of its own: in the flood's process it would share the client's CPU and
    # event loop, and measure the client's queueing rather than the server's.
    return subprocess.Popen([sys.executable, __file__, "--bystander", base],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def flood(base: str, count: int, same_name: bool) -> tuple[Counter, float]:
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:
        async def one(i: int) -> int:
            name = "nobody" if same_name else f"nobody-{i}"
            response = await client.post(f"{base}/user/login", json=body(name, "wrong"))
            return response.status_code

        start = time.perf_counter()
        codes = Counter(await asyncio.gather(*(one(i) for i in range(count))))
        elapsed = time.perf_counter() - start
    return codes, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--same-name", action="store_true")
    parser.add_argument("--no-throttle", action="store_true")
    parser.add_argument("--bystander", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bystander:
        print(json.dumps(asyncio.run(bystander(args.bystander))))
        return
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
            watcher = start_bystander(base)
            time.sleep(1.0)  # the bystander is connected and answered before the flood
            with PeakRss(process.pid) as peak:
                codes, elapsed = asyncio.run(flood(base, args.logins, args.same_name))
                time.sleep(2)
            after = rss_mb(process.pid)
            seen = json.loads(watcher.communicate("", timeout=60)[0])
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
