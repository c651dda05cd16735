"""The load client of bench/ws.py: raw WebSocket frames over asyncio streams, in
several processes, so that the server, not the client, is what runs out.

A `websockets` client costs more CPU per message than the server it measures,
and on a 2-core machine it shares the cores with it: its figures say where the
client runs out. This one sends frames built once per message (masked with a
zero key, which RFC 6455 allows and which leaves the payload as it is) and reads
a frame as a 2-byte head and its payload. Each scenario runs in client processes
that connect first, then wait at a barrier with the parent, which reads the
server's CPU time once all are ready and again once all are done.

Only the stdlib, and uvloop when it is there (it comes with `uvicorn[standard]`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import uvloop
except ImportError:  # the stdlib loop: slower, still correct
    uvloop = None

TICKS = os.sysconf("SC_CLK_TCK")
_FORK = multiprocessing.get_context("fork")
_ZERO_MASK = b"\x00\x00\x00\x00"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- one socket ----------------------------------------------------------------------


def text_frame(payload: bytes) -> bytes:
    """A client's final text frame carrying `payload`, masked with the zero key."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 65536:
        head = bytes((0x81, 0x80 | 126)) + struct.pack("!H", size)
    else:
        head = bytes((0x81, 0x80 | 127)) + struct.pack("!Q", size)
    return head + _ZERO_MASK + payload


CLOSE_FRAME = bytes((0x88, 0x82)) + _ZERO_MASK + struct.pack("!H", 1000)


class Socket:
    """One client WebSocket: open with `open`, then `send` and `receive` frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str) -> "Socket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    async def receive(self) -> bytes:
        """The payload of the next text frame (pings are answered, not returned)."""
        while True:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(size) if size else b""
            opcode = first & 0x0F
            if opcode == 0x1:
                return payload
            if opcode == 0x9:  # ping: pong with the same data
                self.writer.write(bytes((0x8A, 0x80 | size)) + _ZERO_MASK + payload)
            elif opcode == 0x8:
                raise ConnectionError(f"closed by the server: {payload[:2].hex()}")

    async def close(self) -> None:
        try:
            self.writer.write(CLOSE_FRAME)
            await self.writer.drain()
        except OSError:
            pass
        self.writer.close()


def _ok(reply: bytes) -> None:
    if not reply.startswith(b'{"ok":true') and not reply.startswith(b'{"ok": true'):
        raise AssertionError(reply[:200])


# --- scenarios, in each client process ----------------------------------------------


async def _round_trips(socket: Socket, requests, latencies: list[float]) -> None:
    """Send each request once the previous answer is back; time each send to its answer."""
    clock = time.perf_counter
    for request in requests:
        frame = text_frame(json.dumps(request).encode())
        start = clock()
        socket.send(frame)
        _ok(await socket.receive())
        latencies.append(clock() - start)


async def _echo_connection(socket: Socket, count: int, latencies: list[float]) -> None:
    requests = ({"message": f"hello {i}", "client_id": "bench"} for i in range(count))
    await _round_trips(socket, requests, latencies)


async def _echo(port: int, path: str, connections: int, count: int, barrier) -> dict:
    sockets = [await Socket.open(port, path) for _ in range(connections)]
    for socket in sockets:  # warm up: the first frame of a connection costs more
        await _echo_connection(socket, 5, [])
    latencies: list[float] = []
    await asyncio.to_thread(barrier.wait)
    await asyncio.gather(*(_echo_connection(s, count, latencies) for s in sockets))
    for socket in sockets:
        await socket.close()
    return {"messages": connections * count, "latencies": latencies}


async def _listen(port: int, path: str, connections: int, messages: int, barrier) -> dict:
    sockets = [await Socket.open(port, path) for _ in range(connections)]
    await asyncio.to_thread(barrier.wait)

    async def drain(socket: Socket) -> int:
        for _ in range(messages):
            _ok(await socket.receive())
        return messages

    delivered = sum(await asyncio.gather(*(drain(s) for s in sockets)))
    for socket in sockets:
        await socket.close()
    return {"messages": delivered, "latencies": []}


async def _speak(port: int, path: str, messages: int, barrier) -> dict:
    """The broadcast's sender: one message at a time, each once its own copy is back."""
    socket = await Socket.open(port, path)
    await asyncio.to_thread(barrier.wait)
    latencies: list[float] = []
    requests = ({"message": f"m{i}", "sender": "bench"} for i in range(messages))
    await _round_trips(socket, requests, latencies)
    await socket.close()
    return {"messages": messages, "latencies": latencies}


def _run_in_process(scenario, args: tuple, results) -> None:
    try:
        outcome = (uvloop.run if uvloop else asyncio.run)(scenario(*args))
    except BaseException as error:  # told to the parent, which raises it there
        outcome = {"error": repr(error)}
    results.put(outcome)


# --- the parent ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What a scenario did: messages (round trips or deliveries), seconds, server CPU."""

    messages: int
    seconds: float
    server_cpu: float
    latencies: list[float] = field(default_factory=list)

    def figures(self, rate_name: str = "msg/s") -> dict[str, float]:
        return {rate_name: self.messages / self.seconds,
                "p50 ms": percentile(self.latencies, 0.5) * 1e3,
                "p99 ms": percentile(self.latencies, 0.99) * 1e3,
                "cpu µs/msg": self.server_cpu / self.messages * 1e6}


def _drive(pid: int, jobs: list[tuple]) -> Outcome:
    """Run `jobs` (scenario, args) in one process each; time them from a shared barrier."""
    barrier = _FORK.Barrier(len(jobs) + 1)
    results = _FORK.Queue()
    processes = [_FORK.Process(target=_run_in_process, args=(scenario, args + (barrier,), results),
                               daemon=True) for scenario, args in jobs]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=120)  # every client connected
    except Exception:
        raise SystemExit("a client process did not get ready: " + _first_error(results, processes))
    cpu, start = cpu_seconds(pid), time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in processes]
    seconds, server_cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu
    for process in processes:
        process.join(timeout=10)
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        raise SystemExit("a client process failed: " + errors[0])
    return Outcome(messages=sum(o["messages"] for o in outcomes), seconds=seconds,
                   server_cpu=server_cpu,
                   latencies=[x for o in outcomes for x in o["latencies"]])


def _first_error(results, processes) -> str:
    for process in processes:
        process.kill()
    try:
        return results.get(timeout=1).get("error", "?")
    except Exception:
        return "no answer"


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def round_trips(port: int, pid: int, *, connections: int, count: int, processes: int) -> Outcome:
    """`connections` sockets of the echo walker, each doing `count` round trips in turn."""
    jobs = [(_echo, (port, "/ws/EchoMessage", share, count))
            for share in _split(connections, processes) if share]
    return _drive(pid, jobs)


def broadcast(port: int, pid: int, *, listeners: int, messages: int, processes: int) -> Outcome:
    """`listeners` sockets of the broadcast walker, one of which sends `messages`
    messages; counts every delivery, the sender's own copies included."""
    jobs = [(_listen, (port, "/ws/ChatRoom", share, messages))
            for share in _split(listeners - 1, processes) if share]
    jobs.append((_speak, (port, "/ws/ChatRoom", messages)))
    outcome = _drive(pid, jobs)
    return outcome


def _hold_idle(port: int, count: int, opened, release, results) -> None:
    async def hold() -> None:
        sockets = [await Socket.open(port, "/ws/EchoMessage") for _ in range(count)]
        opened.set()
        await asyncio.to_thread(release.wait)
        for socket in sockets:
            await socket.close()
        results.put(len(sockets))

    (uvloop.run if uvloop else asyncio.run)(hold())


def idle(port: int, pid: int, count: int) -> dict[str, float]:
    """Server RSS before, while `count` idle sockets are open, and after they close."""
    opened, release, results = _FORK.Event(), _FORK.Event(), _FORK.Queue()
    before = rss_mb(pid)
    holder = _FORK.Process(target=_hold_idle, args=(port, count, opened, release, results),
                           daemon=True)
    holder.start()
    if not opened.wait(timeout=120):
        holder.kill()
        raise SystemExit("the idle client did not open its sockets")
    time.sleep(0.5)
    during = rss_mb(pid)
    release.set()
    results.get(timeout=60)
    holder.join(timeout=10)
    time.sleep(1.0)
    return {"RSS before MB": before, f"RSS {count} idle MB": during,
            "KB per idle conn": (during - before) * 1024 / count, "RSS after MB": rss_mb(pid)}
