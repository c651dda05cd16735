"""Benchmark: what scaling out costs and gives, both sides of each comparison from one run.

Broadcast to 100 listeners of `ChatRoom` while one client sends messages one
after the other, each once every listener has received the previous one (so
that latency is never queueing behind a slower side): deliveries per second
and the p50/p99 latency from send to receipt, over every listener.

1. one process: the memory backplane vs the Redis backplane;
2. on Redis: 1 worker vs 2 workers (`--workers 2`, listeners spread by the kernel);
3. two hosts on one Redis: send on A, 100 listeners on B;
4. where the time goes: the backplanes alone, in this process, without sockets:
   publish to local delivery, and a bare Redis PING for the round trip it holds.

Targets (docs/scaling.md): on one process Redis costs at most 1.5x the memory
backplane's p50 latency and keeps at least 0.7x its deliveries/s. The CPU the
jacc processes and Redis spend per broadcast is printed beside, as latency on
a shared machine says as much about its other load as about jacc.

Redis is a `redis-server` the benchmark starts for itself, unless `--redis` names one.

    python bench/scale.py [--messages 200] [--rounds 7] [--listeners 100]
                          [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import redis
import uvloop
from processes import app_folder, free_port, wait_until_listening
from websockets.asyncio.client import connect

SECRET = "bench-secret-" + "x" * 40
TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(folder: Path, backplane: str, namespace: str, *args: str):
    """`jacc serve` on a free port; yields its ws:// base."""
    port = free_port()
    env = {**os.environ, "JACC_JWT_SECRET": SECRET, "JACC_WEBSOCKET_BACKPLANE": backplane,
           "JACC_WEBSOCKET_BACKPLANE_NAMESPACE": namespace}
    process = subprocess.Popen(
        [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(port), *args],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, process)
        time.sleep(0.5 if args else 0.1)  # let every worker finish starting
        yield f"ws://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def own_redis():
    """A redis-server of the benchmark's own on a free port, without persistence."""
    port = free_port()
    folder = tempfile.mkdtemp()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its children (a `--workers` parent's workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / TICKS
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return own + sum(tree_cpu(int(child)) for child in children)


def redis_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def broadcast(sender_base: str, listener_base: str, listeners: int, messages: int,
                    servers: list[int], redis_server: int) -> dict:
    sockets = [await connect(listener_base + "/ws/ChatRoom") for _ in range(listeners)]
    sender = await connect(sender_base + "/ws/ChatRoom")
    await asyncio.sleep(0.5)  # every listener admitted before the first message
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    heard: dict[str, int] = {}
    everyone = asyncio.Event()

    async def listen(ws) -> None:
        while True:
            reply = json.loads(await ws.recv())
            content = reply["data"]["reports"][0]["content"]
            latencies.append(time.perf_counter() - sent_at[content])
            heard[content] += 1
            if heard[content] == listeners:
                everyone.set()

    async def send(count: int, prefix: str) -> None:
        for i in range(count):
            content = f"{prefix}{i}"
            heard[content] = 0
            everyone.clear()
            sent_at[content] = time.perf_counter()
            await sender.send(json.dumps({"message": content, "sender": "bench"}))
            await everyone.wait()
            while json.loads(await sender.recv())["data"]["reports"][0]["content"] != content:
                pass

    try:
        readers = [asyncio.create_task(listen(ws)) for ws in sockets]
        await send(20, "warm")
        latencies.clear()
        jacc_cpu, redis_cpu = sum(map(tree_cpu, servers)), tree_cpu(redis_server)
        start = time.perf_counter()
        await send(messages, "m")
        elapsed = time.perf_counter() - start
        jacc_cpu = sum(map(tree_cpu, servers)) - jacc_cpu
        redis_cpu = tree_cpu(redis_server) - redis_cpu
        for reader in readers:
            reader.cancel()
    finally:
        for ws in [*sockets, sender]:
            await ws.close()
    return {"deliveries/s": listeners * messages / elapsed,
            "p50 ms": percentile(latencies, 0.5) * 1e3, "p99 ms": percentile(latencies, 0.99) * 1e3,
            "jacc CPU ms/msg": jacc_cpu / messages * 1e3,
            "Redis CPU ms/msg": redis_cpu / messages * 1e3}


def run_pair(folder: Path, args: argparse.Namespace, sides: dict[str, tuple]) -> dict:
    """Serve both sides at once and measure them in alternate rounds, so that a machine
    busy with something else now and then weighs on both alike; the median round wins."""
    rounds: dict[str, list[dict]] = {name: [] for name in sides}
    namespaces = []
    with contextlib.ExitStack() as stack:
        bases = {}
        for name, (backplane, extra, cross) in sides.items():
            namespace = f"jacc-bench:{uuid.uuid4().hex[:8]}"
            namespaces.append(namespace)
            sender, pid = stack.enter_context(serving(folder, backplane, namespace, *extra))
            listener, other = (stack.enter_context(serving(folder, backplane, namespace))
                               if cross else (sender, None))
            bases[name] = (sender, listener, [pid] + ([other] if other else []))
        redis_server = redis_pid(args.redis)
        try:
            for _ in range(args.rounds):
                for name, (sender, listener, pids) in bases.items():
                    # uvloop, as the servers use: the client is the busier side.
                    rounds[name].append(uvloop.run(broadcast(
                        sender, listener, args.listeners, args.messages, pids, redis_server)))
        finally:
            for namespace in namespaces:
                drop(args.redis, namespace)
    return {name: {key: statistics.median(r[key] for r in measured) for key in measured[0]}
            for name, measured in rounds.items()}


async def hop(backplane_name: str, url: str, count: int = 2000) -> dict:
    """Publish to local delivery on a backplane alone: what it adds to every broadcast."""
    from jacc_runtime.server.ws.backplane import MemoryBackplane
    from jacc_runtime.server.ws.redis import RedisBackplane
    from jacc_runtime.server.ws.redis_link import RedisLink

    namespace = f"jacc-bench:{uuid.uuid4().hex[:8]}"
    if backplane_name == "memory":
        backplane = MemoryBackplane(1000)
    else:
        backplane = RedisBackplane(RedisLink(url), namespace, 1000)
    delivered: dict[str, float] = {}
    backplane.subscribe(lambda channel, frame, offset: delivered.__setitem__(
        frame, time.perf_counter()))
    backplane.watch(["Chat"])
    await backplane.start()
    latencies, pings = [], []
    try:
        for i in range(count):
            frame = f'"{i}"'
            start = time.perf_counter()
            await backplane.publish("Chat", frame)
            latencies.append(delivered[frame] - start)
        if backplane_name != "memory":
            for _ in range(count):
                start = time.perf_counter()
                await backplane.link.client.ping()
                pings.append(time.perf_counter() - start)
    finally:
        await backplane.stop()
        drop(url, namespace)
    result = {"p50 ms": percentile(latencies, 0.5) * 1e3,
              "p99 ms": percentile(latencies, 0.99) * 1e3}
    result["PING p50 ms"] = percentile(pings, 0.5) * 1e3 if pings else 0.0
    return result


def drop(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def print_pair(title: str, results: dict) -> None:
    (left, a), (right, b) = results.items()
    print(f"\n{title}")
    print(f"  {'':16}{left:>16}{right:>16}{'ratio':>9}")
    for key in a:
        if not a[key]:
            print(f"  {key:16}{'-':>16}{shown(b[key]):>16}")
            continue
        print(f"  {key:16}{shown(a[key]):>16}{shown(b[key]):>16}{b[key] / a[key]:>8.2f}x")


def shown(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--redis", default=None,
                        help="a Redis to use (default: a redis-server of the benchmark's own)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.redis is None:
            args.redis = stack.enter_context(own_redis())
        try:
            redis.Redis.from_url(args.redis, socket_connect_timeout=2).ping()
        except (redis.RedisError, OSError) as error:
            raise SystemExit(f"bench/scale.py needs Redis at {args.redis}: {error}") from None
        measure(args)


def measure(args: argparse.Namespace) -> None:
    url = args.redis
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        app_folder(folder)
        one = run_pair(folder, args, {"memory": ("memory", (), False),
                                      "Redis": (url, (), False)})
        workers = run_pair(folder, args, {"1 worker": (url, (), False),
                                          "2 workers": (url, ("--workers", "2"), False)})
        cross = run_pair(folder, args, {"on A": (url, (), False),
                                        "A -> B": (url, (), True)})
        alone = {name: uvloop.run(hop(name, url)) for name in ("memory", "Redis")}
    print(f"broadcast to {args.listeners} listeners, {args.messages} messages sent one after "
          f"another, median of {args.rounds} alternating rounds; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; client and servers on one machine")
    print_pair("one process: memory vs Redis backplane", one)
    print_pair("Redis: 1 worker vs 2 workers", workers)
    print_pair("Redis: listeners on the sender's host A vs on another host B", cross)
    print_pair("where the time goes: publish to local delivery, backplane alone", alone)
    memory, on_redis = one["memory"], one["Redis"]
    latency = on_redis["p50 ms"] / memory["p50 ms"]
    rate = on_redis["deliveries/s"] / memory["deliveries/s"]
    print(f"\ntargets: Redis p50 {latency:.2f}x memory's (at most 1.50x: "
          f"{'met' if latency <= 1.5 else 'MISSED'}), deliveries/s {rate:.2f}x "
          f"(at least 0.70x: {'met' if rate >= 0.7 else 'MISSED'})")


if __name__ == "__main__":
    main()
