"""Benchmark: what a stream holds in the server for a slow reader (docs/protocol.md, "Streams").

Serves tests/e2e/apps/functions.jac in this process (uvicorn on a free loopback port,
the same protocol classes as `jacc serve`) so that the outbound queue can be watched,
and reads `firehose` (N items of SIZE bytes, produced as fast as the generator can)
with a client that sleeps DELAY seconds after every frame. Prints:

- the outbound queue's peak, in frames and bytes (what `Connection` held);
- the peak of the transport's write buffer (what asyncio held for the socket);
- whether the connection was closed (4408 would be a stream overflowing a reader);
- items per second, and the server process's RSS growth.

    python bench/streams.py [--items 10000] [--size 4096] [--delay 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import uvicorn
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jacc_runtime.server.app import JaccApp, default_config
from jacc_runtime.server.auth import TokenService
from jacc_runtime.server.sockets import SocketLimits, protocol_classes
from jacc_runtime.server.ws import connections

from jacc.cli import load_program


class Peak:
    """The most the outbound queues held at once, in frames and in bytes."""

    frames = 0
    bytes = 0


def watch_queues() -> None:
    """Record each queue's fill after every frame that joins it (`Connection.enqueue`)."""
    enqueue = connections.Connection.enqueue

    def watched(self, frame: str, size: int | None = None) -> None:
        enqueue(self, frame, size)
        Peak.frames = max(Peak.frames, len(self._queue))
        Peak.bytes = max(Peak.bytes, self.queued_bytes)

    connections.Connection.enqueue = watched


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def main(items: int, size: int, delay: float) -> None:
    watch_queues()
    config = default_config()
    # 10,000 frames 10 ms apart take 100 s: the walker timeout must allow that.
    config = replace(config, websocket=replace(config.websocket, walker_timeout_seconds=3600))
    program = load_program(REPO / "tests" / "e2e" / "apps" / "functions.jac")
    app = JaccApp(program, tokens=TokenService("bench-" + "x" * 40), config=config)
    port = free_port()
    limits = SocketLimits(max_connections=100, max_header_bytes=65536,
                          handshake_timeout_seconds=10)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", ws_per_message_deflate=False,
                                           **protocol_classes(limits)))
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    transport_peak = 0

    async def sample_transports() -> None:
        nonlocal transport_peak
        while True:
            for protocol in list(server.server_state.connections):
                transport = getattr(protocol, "transport", None)
                if transport is not None:
                    transport_peak = max(transport_peak, transport.get_write_buffer_size())
            await asyncio.sleep(0.005)

    sampler = asyncio.get_running_loop().create_task(sample_transports())
    before = rss_kib()
    start = time.monotonic()
    received, outcome = 0, "done"
    try:
        async with connect(f"ws://127.0.0.1:{port}/ws/function/firehose", max_size=None,
                           max_queue=1) as ws:
            await ws.send(json.dumps({"count": items, "size": size}))
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "done":
                    break
                received += 1
                await asyncio.sleep(delay)
    except Exception as error:  # noqa: BLE001 - the outcome is what is measured
        outcome = f"closed: {error}"
    took = time.monotonic() - start
    sampler.cancel()
    server.should_exit = True
    await serving
    print(f"{received} of {items} chunks of {size} bytes, {delay * 1000:g} ms per frame: "
          f"{outcome}")
    print(f"  outbound queue peak: {Peak.frames} frames, {Peak.bytes} bytes")
    print(f"  transport write buffer peak: {transport_peak} bytes")
    print(f"  {received / took:.0f} chunks/s; RSS of this process (server and client) "
          f"grew {max(0, rss_kib() - before) / 1024:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--delay", type=float, default=0.01)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.size, args.delay))
