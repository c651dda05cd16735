"""Offsets and resume on one connection (runtime/server/ws/resume.py), the seam above all."""

from __future__ import annotations

import asyncio
import json

from jacc_runtime.server.protocol import CLOSE_BACKPLANE_DOWN, CLOSE_TOO_SLOW
from jacc_runtime.server.ws.backplane import BackplaneUnavailable
from jacc_runtime.server.ws.connections import Connection, ConnectionRegistry
from jacc_runtime.server.ws.history import TRIMMED, Replay, with_offset
from jacc_runtime.server.ws.resume import Follower, follower_for


def frame(n: int) -> str:
    return json.dumps({"ok": True, "data": {"reports": [n]}}, separators=(",", ":"))


def entry(n: int) -> tuple[str, str]:
    return (f"{n}-0", frame(n))


class Peer:
    """The socket end: what the connection sent, decoded."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, message: dict) -> None:
        await asyncio.sleep(0)  # a real socket yields to the loop on every send
        self.sent.append(message)

    def frames(self) -> list:
        out = []
        for message in self.sent:
            if message["type"] != "websocket.send":
                continue
            decoded = json.loads(message["text"])
            out.append(decoded.get("type") == "resumed" and decoded or decoded["data"]["reports"][0])
        return out

    def close(self) -> tuple[int, str] | None:
        closes = [m for m in self.sent if m["type"] == "websocket.close"]
        return (closes[0]["code"], closes[0]["reason"]) if closes else None


class Gate:
    """A replay call that waits until the test lets it answer."""

    def __init__(self, answer: Replay | Exception) -> None:
        self.answer = answer
        self.asked = asyncio.Event()
        self.open = asyncio.Event()
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, channel: str, since: str) -> Replay:
        self.calls.append((channel, since))
        self.asked.set()
        await self.open.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def resuming(query: bytes, gate: Gate, queue_bytes: int = 1 << 20):
    peer = Peer()
    connection = Connection(peer.send, "Chat", queue_bytes=queue_bytes, send_timeout=5.0)
    registry = ConnectionRegistry()
    registry.add(connection)
    follower = follower_for(connection, query, "Chat", gate)
    connection.follow = follower
    registry.admit(connection)
    follower.admitted()
    connection.start()
    return peer, connection, registry, follower


def live(registry: ConnectionRegistry, *numbers: int) -> None:
    for n in numbers:
        registry.deliver("Chat", frame(n), f"{n}-0")


async def settle(connection: Connection, follower: Follower) -> None:
    if follower.task is not None:
        await asyncio.wait_for(follower.task, 5)
    for _ in range(50):
        await asyncio.sleep(0)
    connection.close(1000)
    await asyncio.sleep(0.01)


def test_no_query_no_follower():
    assert follower_for(None, b"token=x", "Chat", None) is None
    assert follower_for(None, b"offsets=0", "Chat", None) is None


def test_the_seam_has_no_gap_and_no_duplicate():
    async def scenario():
        # The history read answers 3..6; 5 and 6 also come live (the reader lags the
        # read), 5 while the read is under way and 6 after the replay; 7 is new.
        gate = Gate(Replay(True, [entry(3), entry(4), entry(5), entry(6)]))
        peer, connection, registry, follower = await resuming(b"since=2-0", gate)
        await gate.asked.wait()
        live(registry, 5)
        gate.open.set()
        await follower.task
        live(registry, 6, 7)
        await settle(connection, follower)
        return peer, gate

    peer, gate = asyncio.run(scenario())
    assert gate.calls == [("Chat", "2-0")]
    assert peer.frames() == [3, 4, 5, 6, {"type": "resumed", "ok": True, "missed": 4}, 7]


def test_live_frames_held_during_the_replay_follow_it():
    async def scenario():
        gate = Gate(Replay(True, [entry(3)]))
        peer, connection, registry, follower = await resuming(b"since=2-0&offsets=1", gate)
        await gate.asked.wait()
        live(registry, 3, 4, 5)  # 3 came with the replay as well
        gate.open.set()
        await settle(connection, follower)
        return peer

    peer = asyncio.run(scenario())
    texts = [m["text"] for m in peer.sent if m["type"] == "websocket.send"]
    assert texts == [with_offset(frame(3), "3-0"), '{"type":"resumed","ok":true,"missed":1}',
                     with_offset(frame(4), "4-0"), with_offset(frame(5), "5-0")]


def test_an_offset_out_of_history_gets_history_trimmed_then_live_frames():
    async def scenario():
        gate = Gate(TRIMMED)
        peer, connection, registry, follower = await resuming(b"since=1-0", gate)
        await gate.asked.wait()
        live(registry, 8)
        gate.open.set()
        await follower.task
        live(registry, 9)
        await settle(connection, follower)
        return peer

    peer = asyncio.run(scenario())
    assert peer.frames() == [{"type": "resumed", "ok": False, "reason": "history_trimmed"}, 8, 9]


def test_a_malformed_offset_is_in_no_history():
    async def scenario():
        gate = Gate(Replay(True, [entry(1)]))
        gate.open.set()
        peer, connection, registry, follower = await resuming(b"since=yesterday", gate)
        await settle(connection, follower)
        return peer, gate

    peer, gate = asyncio.run(scenario())
    assert gate.calls == []  # never asked the backplane
    assert peer.frames() == [{"type": "resumed", "ok": False, "reason": "history_trimmed"}]


def test_a_long_replay_waits_for_room_instead_of_overflowing():
    # 40 frames of about 35 bytes through a queue bounded at 120 bytes.
    async def scenario():
        gate = Gate(Replay(True, [entry(n) for n in range(2, 42)]))
        gate.open.set()
        peer, connection, registry, follower = await resuming(b"since=1-0", gate, queue_bytes=120)
        await settle(connection, follower)
        return peer

    peer = asyncio.run(scenario())
    assert peer.frames() == [*range(2, 42), {"type": "resumed", "ok": True, "missed": 40}]
    assert peer.close() == (1000, "")  # not 4408


def test_live_frames_piling_up_during_a_replay_close_the_connection_too_slow():
    async def scenario():
        gate = Gate(Replay(True, []))
        peer, connection, registry, follower = await resuming(b"since=1-0", gate, queue_bytes=120)
        await gate.asked.wait()
        live(registry, *range(2, 10))
        gate.open.set()
        await follower.task
        await asyncio.sleep(0.05)
        return peer

    peer = asyncio.run(scenario())
    assert peer.close() == (CLOSE_TOO_SLOW, "too slow")


def test_a_backplane_that_is_down_closes_with_4503_so_the_client_tries_again():
    async def scenario():
        gate = Gate(BackplaneUnavailable("Redis at redis://h is unreachable"))
        gate.open.set()
        peer, connection, registry, follower = await resuming(b"since=1-0", gate)
        await follower.task
        await asyncio.sleep(0.05)
        return peer

    peer = asyncio.run(scenario())
    error = json.loads(peer.sent[0]["text"])["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert peer.close() == (CLOSE_BACKPLANE_DOWN, "backplane unavailable")


def test_offsets_alone_add_the_offset_to_every_live_frame():
    async def scenario():
        peer, connection, registry, follower = await resuming(b"offsets=1", Gate(TRIMMED))
        live(registry, 1, 2)
        await settle(connection, follower)
        return peer

    peer = asyncio.run(scenario())
    texts = [m["text"] for m in peer.sent if m["type"] == "websocket.send"]
    assert texts == [with_offset(frame(1), "1-0"), with_offset(frame(2), "2-0")]
