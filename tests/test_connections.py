"""The registry and per-connection outbound queues (runtime/connections.py)."""

from __future__ import annotations

import asyncio

from jacc_runtime.server.ws import connections as connections_module
from jacc_runtime.server.ws.connections import (
    QUEUE_FULL,
    SEND_TIMED_OUT,
    Connection,
    ConnectionRegistry,
    frame_bytes,
)
from jacc_runtime.server.protocol import CLOSE_GOING_AWAY, CLOSE_TOO_SLOW


class FakeSocket:
    """An ASGI send that records messages and can be made to block like a full buffer."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.writable = asyncio.Event()
        self.writable.set()

    async def send(self, message: dict) -> None:
        await self.writable.wait()
        self.sent.append(message)

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    @property
    def close(self) -> dict | None:
        closes = [m for m in self.sent if m["type"] == "websocket.close"]
        return closes[0] if closes else None


def connection(socket: FakeSocket, walker="Chat", queue_bytes=1024, send_timeout=5.0,
               **options) -> Connection:
    return Connection(socket.send, walker, queue_bytes=queue_bytes, send_timeout=send_timeout,
                      **options)


def test_replies_and_broadcasts_keep_their_order():
    async def scenario():
        socket = FakeSocket()
        conn = connection(socket)
        conn.start()
        await conn.reply("1")
        conn.enqueue("2")
        await conn.reply("3")  # queued behind "2", not sent ahead of it
        conn.close(CLOSE_GOING_AWAY, "bye")
        await asyncio.wait_for(conn.drained(), 1)
        return socket

    socket = asyncio.run(scenario())
    assert socket.texts == ["1", "2", "3"]
    assert socket.close == {"type": "websocket.close", "code": 1001, "reason": "bye"}


def test_overflow_closes_with_4408_and_drops_the_backlog():
    async def scenario():
        socket = FakeSocket()
        socket.writable.clear()  # the peer stopped reading
        conn = connection(socket, queue_bytes=3)
        conn.start()
        for i in range(10):
            conn.enqueue(str(i))
            await asyncio.sleep(0)
        assert conn.close_code == CLOSE_TOO_SLOW
        socket.writable.set()  # the peer reads again: it gets what was in flight, then the close
        await asyncio.wait_for(conn.drained(), 1)
        return socket

    socket = asyncio.run(scenario())
    assert socket.texts == ["0"]
    assert socket.close == {"type": "websocket.close", "code": 4408, "reason": "too slow"}


def test_a_stuck_send_times_out_with_4408_then_lets_go():
    async def scenario():
        socket = FakeSocket()
        socket.writable.clear()
        conn = connection(socket, send_timeout=0.05)
        conn.start()
        conn.enqueue("never delivered")
        await asyncio.sleep(0.08)
        assert conn.close_code == CLOSE_TOO_SLOW and conn.slow_reason == SEND_TIMED_OUT
        # It cannot even take the close frame: the sender gives up after one more period.
        await asyncio.wait((conn.sender,), timeout=1)
        assert conn.sender.done() and conn.disconnected
        conn.dispose()

    asyncio.run(scenario())


def test_the_bound_is_in_bytes_of_utf8():
    async def scenario():
        socket = FakeSocket()
        socket.writable.clear()
        conn = connection(socket, queue_bytes=10)
        conn.start()
        conn.enqueue("in flight")
        await asyncio.sleep(0)  # the sender took it: being sent, it is no longer in the queue
        conn.enqueue("ééé")  # 3 characters, 6 bytes
        conn.enqueue("abcd")
        assert conn.queued_bytes == 10 and conn.queue_fill() == 1.0
        assert conn.close_code is None  # exactly at the bound is within it
        conn.enqueue("x")
        assert conn.close_code == CLOSE_TOO_SLOW and conn.slow_reason == QUEUE_FULL
        assert conn.queued_bytes == 0  # the backlog is dropped
        socket.writable.set()
        await asyncio.wait_for(conn.drained(), 1)
        return socket

    socket = asyncio.run(scenario())
    assert socket.texts == ["in flight"]
    assert socket.close["code"] == CLOSE_TOO_SLOW


def test_a_frame_larger_than_the_bound_fits_an_empty_queue():
    async def scenario():
        socket = FakeSocket()
        socket.writable.clear()
        conn = connection(socket, queue_bytes=10)
        conn.start()
        conn.enqueue("in flight")
        await asyncio.sleep(0)
        conn.enqueue("y" * 50)  # a reader that keeps up is never closed for one frame
        assert conn.close_code is None and conn.queue_fill() == 5.0
        conn.enqueue("z")  # but nothing more until it is read
        assert conn.close_code == CLOSE_TOO_SLOW
        socket.writable.set()
        await asyncio.wait_for(conn.drained(), 1)

    asyncio.run(scenario())


def test_queue_fill_falls_as_frames_go_out():
    async def scenario():
        socket = FakeSocket()
        socket.writable.clear()
        conn = connection(socket, queue_bytes=100)
        conn.start()
        conn.enqueue("busy")
        await asyncio.sleep(0)
        for _ in range(5):
            conn.enqueue("x" * 10)
        assert conn.queue_fill() == 0.5
        socket.writable.set()
        await asyncio.sleep(0.01)
        assert conn.queue_fill() == 0.0 and conn.queued_bytes == 0
        conn.close(CLOSE_GOING_AWAY)
        await asyncio.wait_for(conn.drained(), 1)

    asyncio.run(scenario())


def test_frame_bytes_counts_utf8():
    assert frame_bytes("abc") == 3
    assert frame_bytes("é") == 2 and frame_bytes("€") == 3 and frame_bytes("😀") == 4


def test_a_broadcast_is_measured_once_and_counted_in_every_queue(monkeypatch):
    measured = []

    def counting(frame: str) -> int:
        measured.append(frame)
        return frame_bytes(frame)

    async def scenario():
        registry = ConnectionRegistry()
        sockets = [FakeSocket() for _ in range(5)]
        conns = [connection(s, queue_bytes=10_000) for s in sockets]
        for socket, conn in zip(sockets, conns):
            socket.writable.clear()
            registry.add(conn)
            registry.admit(conn)
        monkeypatch.setattr(connections_module, "frame_bytes", counting)
        registry.deliver("Chat", "ü" * 1000, "1-0")
        assert len(measured) == 1  # not once per queue
        assert [c.queued_bytes for c in conns] == [2000] * 5
        assert registry.queued_bytes() == (10_000, 2000)
        for conn in conns:
            conn.dispose()

    asyncio.run(scenario())


def test_each_frame_written_is_counted():
    class Counted:
        sent = 0

        def frame_out(self) -> None:
            self.sent += 1

    async def scenario():
        socket = FakeSocket()
        metrics = Counted()
        conn = connection(socket, metrics=metrics)
        conn.start()
        await conn.reply("1")
        conn.enqueue("2")
        conn.close(CLOSE_GOING_AWAY)
        await asyncio.wait_for(conn.drained(), 1)
        assert conn.metrics is metrics
        return metrics.sent

    assert asyncio.run(scenario()) == 2  # the close frame is not a frame of the walker's


def test_frames_after_a_close_are_dropped():
    async def scenario():
        socket = FakeSocket()
        conn = connection(socket)
        conn.start()
        conn.close(CLOSE_GOING_AWAY)
        conn.enqueue("late")
        await conn.reply("late too")
        await asyncio.wait_for(conn.drained(), 1)
        return socket

    socket = asyncio.run(scenario())
    assert socket.texts == []
    assert socket.close["code"] == CLOSE_GOING_AWAY


def test_registry_delivers_one_frame_object_to_admitted_connections_only():
    async def scenario():
        registry = ConnectionRegistry()
        sockets = [FakeSocket() for _ in range(3)]
        conns = [connection(s) for s in sockets]
        other = connection(FakeSocket(), walker="Other")
        for conn in [*conns, other]:
            registry.add(conn)
        registry.admit(conns[0])
        registry.admit(conns[1])
        registry.admit(other)
        frame = "x" * 1000
        for conn in conns:
            conn.start()
        registry.deliver("Chat", frame, "1-0")
        await asyncio.sleep(0.01)
        assert sockets[0].sent[0]["text"] is frame and sockets[1].sent[0]["text"] is frame
        assert sockets[2].sent == []  # never admitted: never receives
        assert len(registry) == 4 and registry.counts() == {"Chat": 3, "Other": 1}
        closing = asyncio.create_task(registry.close_all(CLOSE_GOING_AWAY, timeout=1))
        await asyncio.sleep(0.01)
        for conn in [*conns, other]:
            registry.discard(conn)
        await closing
        assert len(registry) == 0 and registry.counts() == {}
        registry.deliver("Chat", frame, "2-0")  # no listeners left: a no-op

    asyncio.run(scenario())


def test_registry_counts_connections_per_walker_and_per_user():
    async def scenario():
        registry = ConnectionRegistry()
        a, b, c = (connection(FakeSocket()) for _ in range(3))
        other = connection(FakeSocket(), walker="Other")
        for conn in (a, b, c, other):
            registry.add(conn)
        registry.add(a)  # adding twice counts once
        assert (registry.count("Chat"), registry.count("Other"), registry.count("None")) == (3, 1, 0)
        assert registry.claim_user(a, "alice", 2)
        assert registry.claim_user(a, "alice", 2)  # the same connection counts once
        assert registry.claim_user(other, "alice", 2)  # across walkers
        assert not registry.claim_user(b, "alice", 2)
        assert b.counted_user is None
        assert registry.claim_user(b, "bob", 2)
        assert registry.user_count("alice") == 2 and registry.user_count("bob") == 1
        registry.discard(a)
        registry.discard(a)  # discarding twice releases once
        assert registry.user_count("alice") == 1 and registry.count("Chat") == 2
        assert registry.claim_user(c, "alice", 2)  # the slot was released
        for conn in (b, c, other):
            registry.discard(conn)
        assert registry.counts() == {} and registry.user_count("alice") == 0

    asyncio.run(scenario())


def test_a_connection_not_in_the_registry_claims_nothing():
    async def scenario():
        registry = ConnectionRegistry()
        conn = connection(FakeSocket())
        assert not registry.claim_user(conn, "alice", 5)
        registry.discard(conn)  # never added: a no-op
        assert registry.user_count("alice") == 0 and registry.counts() == {}

    asyncio.run(scenario())


def test_registry_counts_websockets_per_address():
    registry = ConnectionRegistry()
    assert registry.claim_address("10.0.0.1", 2)
    assert registry.claim_address("10.0.0.1", 2)
    assert not registry.claim_address("10.0.0.1", 2)
    assert registry.claim_address("10.0.0.2", 2)  # each address has its own count
    assert registry.address_count("10.0.0.1") == 2
    registry.release_address("10.0.0.1")
    assert registry.address_count("10.0.0.1") == 1
    assert registry.claim_address("10.0.0.1", 2)
    for _ in range(2):
        registry.release_address("10.0.0.1")
    registry.release_address("10.0.0.2")
    assert registry.address_count("10.0.0.1") == registry.address_count("10.0.0.2") == 0
    assert not registry._per_address  # no address is remembered once its sockets are gone


class WritableSocket(FakeSocket):
    """A FakeSocket that also offers the direct write of websocket.py (`WRITE_TEXT`)."""

    def __init__(self) -> None:
        super().__init__()
        self.direct = 0
        self.gone = False

    def write(self, text: str) -> bool:
        if self.gone:
            raise OSError("gone")
        if not self.writable.is_set():
            return False
        self.sent.append({"type": "websocket.send", "text": text})
        self.direct += 1
        return True


def test_frames_are_written_directly_while_the_socket_takes_them_and_keep_their_order():
    async def scenario():
        socket = WritableSocket()
        conn = connection(socket, write=socket.write)
        conn.start()
        await conn.reply("1")
        conn.enqueue("2")
        assert socket.direct == 2 and conn.queued_bytes == 0  # no queue, no task switch
        socket.writable.clear()  # the transport is full: frames wait in the queue
        conn.enqueue("3")
        await conn.reply("4")
        assert conn.queued_bytes == 2
        socket.writable.set()
        conn.enqueue("5")  # behind the queued ones, not written ahead of them
        await asyncio.sleep(0.01)
        await conn.reply("6")
        conn.close(CLOSE_GOING_AWAY, "bye")
        await asyncio.wait_for(conn.drained(), 1)
        return socket

    socket = asyncio.run(scenario())
    assert socket.texts == ["1", "2", "3", "4", "5", "6"]
    assert socket.close["code"] == CLOSE_GOING_AWAY


def test_a_direct_write_to_a_gone_peer_ends_the_connection_quietly():
    async def scenario():
        socket = WritableSocket()
        conn = connection(socket, write=socket.write)
        conn.start()
        socket.gone = True
        conn.enqueue("lost")
        await asyncio.wait_for(conn.drained(), 1)
        return conn

    conn = asyncio.run(scenario())
    assert conn.disconnected and conn.closing
