"""Open WebSocket connections: the registry, and each connection's outbound path.

Every frame a connection receives goes out in order through one of two doors:

- `Connection.reply` for the connection's own answers: sent at once when
  nothing is queued (the common case, no task switch), else queued behind
  what is;
- `Connection.enqueue` for broadcasts: never blocks the caller. The frame is
  written at once when nothing is queued and the socket takes output (`write`,
  the socket's `WRITE_TEXT`, websocket.py), else it joins a queue drained by
  the connection's sender task, which is made the first time a frame must wait
  (most connections never need one: a task and its frame are about 1 KB).

A client that stops reading must not hold anyone else up (docs/protocol.md, "Slow consumers"): when its
queue would hold more than `queue_bytes` bytes, or one send has been stuck for
`send_timeout` seconds, the connection is closed with 4408. The bound is in
bytes, not frames, since bytes are what a slow client pins in memory: a
broadcast frame shared by many queues counts in each. A watchdog timer, armed
lazily and re-armed at most once per `send_timeout`, checks for stuck sends so
that the hot path costs one clock read per frame rather than a timer per frame.

Cost of the byte count: a frame's UTF-8 length is `len()` when it is ASCII
(`str.isascii` reads a flag, O(1)); otherwise one encode, done once per frame,
not once per queue (`ConnectionRegistry.deliver` passes it along).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Awaitable, Callable

from ..metrics import NO_WALKER_METRICS
from ..protocol import CLOSE_ABNORMAL, CLOSE_TOO_SLOW
from .history import with_offset

logger = logging.getLogger("jacc.connections")

Send = Callable[[dict], Awaitable[None]]
# write(text) -> bool: write a text frame now, False if the socket takes nothing now.
Write = Callable[[str], bool]
# follow(frame, framed, offset): how a connection that asked for offsets, or is
# resuming, takes a broadcast; `framed` is `frame` with its offset (resume.py).
Follow = Callable[[str, str, str], None]

# Why a connection was closed as a slow consumer: the setting it went past.
QUEUE_FULL = "send_queue_bytes"
SEND_TIMED_OUT = "send_timeout_seconds"


def frame_bytes(frame: str) -> int:
    """The length of `frame` in UTF-8, what it takes on the wire and, roughly, in memory."""
    return len(frame) if frame.isascii() else len(frame.encode())


class Connection:
    """One accepted WebSocket of one walker.

    `send` is the ASGI send callable of the socket. The connection is admitted
    to its walker's broadcasts by the registry once it is authenticated (public
    walkers: at once). `metrics` are its walker's (metrics.py `WalkerMetrics`):
    each frame written to the socket is counted, and the session and admission
    count their errors there. `slow_reason` names the setting a slow consumer went
    past (`QUEUE_FULL` or `SEND_TIMED_OUT`) once it is closed for it.
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("walker", "identity", "admitted", "follow", "counted_user", "disconnected",
                 "slow_reason", "metrics", "_send", "_write", "_sent", "_limit",
                 "_timeout", "_loop", "_queue", "_queued", "_wakeup", "_busy",
                 "_send_started", "_watchdog", "_stuck_once", "_close", "_started",
                 "_on_exit", "_sender", "_room",)

    def __init__(
        self,
        send: Send,
        walker: str,
        *,
        queue_bytes: int,
        send_timeout: float,
        loop: asyncio.AbstractEventLoop | None = None,
        metrics: Any = NO_WALKER_METRICS,
        write: Write | None = None,
    ) -> None:
        self.walker = walker
        self.identity: Any = None
        self.admitted = False
        # Set before admission for `?offsets=1` or `?since=`; None takes frames as they are.
        self.follow: Follow | None = None
        # The user this connection is counted against for max_connections_per_user.
        self.counted_user: str | None = None
        self.disconnected = False
        self.slow_reason: str | None = None
        self.metrics = metrics
        self._send = send
        self._write = write
        self._sent = metrics.frame_out
        self._limit = queue_bytes
        self._timeout = send_timeout
        self._loop = loop or asyncio.get_running_loop()
        # (frame, its UTF-8 length): the length is worked out once, at the door. The
        # deque is made when a first frame must wait: most connections never need one.
        self._queue: deque[tuple[str, int]] | tuple = ()
        self._queued = 0  # bytes in _queue
        self._wakeup: asyncio.Future | None = None
        self._busy = False
        self._send_started = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._stuck_once = False
        self._close: tuple[int, str] | None = None
        # The sender task, made the first time a frame must wait or a close go out
        # (most connections never need one), once `start` has been called.
        self._started = False
        self._on_exit: Callable[[], None] | None = None
        self._sender: asyncio.Task | None = None
        self._room: asyncio.Future | None = None

    @property
    def closing(self) -> bool:
        """True once a close has been asked for: nothing more is sent or processed."""
        return self._close is not None

    @property
    def close_code(self) -> int | None:
        return None if self._close is None else self._close[0]

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in the outbound queue (the frame being sent is no longer in it)."""
        return self._queued

    def queue_fill(self) -> float:
        """How full the outbound queue is, as a fraction of its bound in bytes (0.0 empty,
        1.0 full). A stream waits while this is above one half. One division.
        """
        return self._queued / self._limit

    # --- the two doors in ----------------------------------------------------------

    async def reply(self, frame: str) -> None:
        """Send one of this connection's own answers, in order with what is queued."""
        if self._close is not None:
            return
        if self._busy or self._queue:
            self.enqueue(frame)
            return
        if self._write_now(frame):
            return
        try:
            await self._send_text(frame)
        except Exception:
            self._gone()
            return
        if self._queue or self._close is not None:
            self._wake()

    def enqueue(self, frame: str, size: int | None = None) -> None:
        """Queue a frame for the sender task; past `queue_bytes`, close the connection with 4408.

        `size` is `frame_bytes(frame)`, when the caller has it already (a broadcast).
        A frame larger than the whole bound is still taken into an empty queue, so
        that a client that keeps up is never closed for one large frame.
        """
        if self._close is not None:
            return
        if not self._queue and not self._busy and self._write_now(frame):
            return
        if size is None:
            size = frame_bytes(frame)
        queued = self._queued + size
        if queued > self._limit and self._queue:
            self._too_slow(QUEUE_FULL)
            return
        if not self._queue:
            self._queue = deque(self._queue)
        self._queue.append((frame, size))
        self._queued = queued
        self._wake()

    def _write_now(self, frame: str) -> bool:
        """Write `frame` without a task switch if the socket takes it now; True if done
        (or if the peer turned out to be gone, which leaves nothing to do)."""
        write = self._write
        if write is None:
            return False
        try:
            if not write(frame):
                return False
        except Exception:
            self._gone()
            return True
        self._sent()
        return True

    @property
    def queue_limit(self) -> int:
        """The outbound queue's bound, in bytes (`send_queue_bytes`)."""
        return self._limit

    async def wait_for_room(self, size: int) -> None:
        """Until a frame of `size` bytes fits in half the outbound queue (or the queue is
        empty), or the connection is closing.

        For whoever queues many frames of its own (a resume's replay): it keeps to
        the bound without being closed for it, and leaves the other half for the
        connection's own answers.
        """
        while (self._queue and self._queued + size > self._limit // 2
               and self._close is None):
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            await self._room

    def overflowed(self) -> None:
        """Frames held for this connection went past `send_queue_bytes`: 4408, too slow."""
        self._too_slow(QUEUE_FULL)

    def close(self, code: int, reason: str = "") -> None:
        """Ask for a close: frames already queued go first, later ones are dropped."""
        if self._close is None:
            self._close = (code, reason)
            self._wake()

    # --- the sender task -----------------------------------------------------------

    def start(self, on_exit: Callable[[], None] | None = None) -> None:
        """From now on, frames that must wait are sent by the sender task, made when the
        first one must (or a close must go out); it ends once the close frame is out
        (or cannot be), and then calls `on_exit`."""
        self._started = True
        self._on_exit = on_exit
        if self._queue or self._close is not None:
            self._wake()

    @property
    def sender(self) -> asyncio.Task | None:
        """The sender task, if one was needed."""
        return self._sender

    async def drained(self) -> None:
        """Until the sender task, if there is one, has ended: what was queued and the close
        frame are out, or cannot be. Cancelling the caller does not cancel the sender."""
        if self._sender is not None:
            await asyncio.wait((self._sender,))

    def _sender_exited(self, _task: asyncio.Task) -> None:
        if self._on_exit is not None:
            self._on_exit()

    async def _run_sender(self) -> None:
        try:
            while True:
                while self._queue and not self._busy:
                    frame, size = self._queue.popleft()
                    self._queued -= size
                    await self._send_text(frame)
                    if self._room is not None:
                        self._wake_room()  # a replay waits for room: let it look again
                if self._close is not None and not self._queue and not self._busy:
                    break
                self._wakeup = self._loop.create_future()
                await self._wakeup
                self._wakeup = None
            if self.disconnected:
                return
            code, reason = self._close
            self._busy = True
            self._mark_send_start()
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:
            # The peer is gone (the server raises its own disconnect error, an
            # OSError or a RuntimeError for a socket already closed): stop quietly.
            self._gone()
        finally:
            self._busy = False
            self._send_started = 0.0

    def _gone(self) -> None:
        # A send failed: the peer is gone, so there is nobody to send a close frame to.
        self.disconnected = True
        self._clear()
        if self._close is None:
            self._close = (CLOSE_ABNORMAL, "")
        self._wake()

    def _clear(self) -> None:
        self._queue = ()
        self._queued = 0

    def _wake(self) -> None:
        if self._sender is None:
            if self._started:
                self._sender = self._loop.create_task(self._run_sender())
                self._sender.add_done_callback(self._sender_exited)
        else:
            wakeup = self._wakeup
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)
        if self._close is not None and self._room is not None:
            self._wake_room()  # a closing connection takes nothing more: stop waiting

    def _wake_room(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    async def _send_text(self, frame: str) -> None:
        self._busy = True
        self._mark_send_start()
        try:
            await self._send({"type": "websocket.send", "text": frame})
            self._sent()
        finally:
            self._busy = False
            self._send_started = 0.0

    # --- slow consumers ------------------------------------------------------------

    def _mark_send_start(self) -> None:
        self._send_started = self._loop.time()
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._send_started + self._timeout, self._check)

    def _check(self) -> None:
        self._watchdog = None
        started = self._send_started
        if not started:
            return  # idle: the next send re-arms
        deadline = started + self._timeout
        if self._loop.time() < deadline:
            self._watchdog = self._loop.call_at(deadline, self._check)
        elif not self._stuck_once:
            # First strike: give up on the data, give the close frame one more period.
            self._stuck_once = True
            self._too_slow(SEND_TIMED_OUT)
            self._send_started = self._loop.time()
            self._watchdog = self._loop.call_at(self._send_started + self._timeout, self._check)
        else:
            # The peer reads nothing at all, not even the close frame: let go of it.
            self.disconnected = True
            if self._sender is not None:
                self._sender.cancel()

    def _too_slow(self, reason: str) -> None:
        if self._close is not None and self._close[0] == CLOSE_TOO_SLOW:
            return
        self.slow_reason = reason
        if reason == QUEUE_FULL:
            why = f"its outbound queue went over send_queue_bytes ({self._limit})"
        else:
            why = f"a send took over send_timeout_seconds ({self._timeout:g} s)"
        logger.info("closing a %s connection with %d, too slow: %s", self.walker,
                    CLOSE_TOO_SLOW, why, extra={"close_code": CLOSE_TOO_SLOW})
        self._clear()
        self._close = None
        self.close(CLOSE_TOO_SLOW, "too slow")

    def dispose(self) -> None:
        """Release timers; called once the connection is over."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._clear()
        self._wake_room()


class ConnectionRegistry:
    """Every open connection, and per walker those admitted to its broadcasts.

    It also keeps the counts the connection caps (docs/protocol.md, "Connection caps") are checked
    against: open connections per walker, identified connections per user, and
    WebSockets per client address. Owned by the app, so two apps in one process
    never share connections.
    """

    def __init__(self) -> None:
        self._open: set[Connection] = set()
        # dicts keep insertion order: delivery order is stable and easy to reason about.
        self._listeners: dict[str, dict[Connection, None]] = {}
        # Those that take broadcasts through their `follow` (offsets, resume), apart,
        # so that the common case stays one `enqueue` per connection.
        self._followers: dict[str, dict[Connection, Follow]] = {}
        self._per_walker: dict[str, int] = {}
        self._per_user: dict[str, int] = {}
        self._per_address: dict[str, int] = {}
        self._emptied: asyncio.Event | None = None

    def add(self, connection: Connection) -> None:
        if connection in self._open:
            return
        self._open.add(connection)
        walker = connection.walker
        self._per_walker[walker] = self._per_walker.get(walker, 0) + 1

    def count(self, walker: str) -> int:
        """Open connections of `walker`."""
        return self._per_walker.get(walker, 0)

    def claim_user(self, connection: Connection, user_id: str, limit: int) -> bool:
        """Count `connection` as one of `user_id`'s; False if the user already has `limit`.

        A connection is counted once: claiming again for the same user is a no-op.
        The claim is released when the connection is discarded.
        """
        if connection not in self._open:
            return False
        if connection.counted_user == user_id:
            return True
        count = self._per_user.get(user_id, 0)
        if count >= limit:
            return False
        self._release_user(connection)
        self._per_user[user_id] = count + 1
        connection.counted_user = user_id
        return True

    def user_count(self, user_id: str) -> int:
        """Open connections counted against `user_id`."""
        return self._per_user.get(user_id, 0)

    def _release_user(self, connection: Connection) -> None:
        user = connection.counted_user
        if user is None:
            return
        connection.counted_user = None
        left = self._per_user[user] - 1
        if left:
            self._per_user[user] = left
        else:
            del self._per_user[user]

    def claim_address(self, address: str, limit: int) -> bool:
        """Count one more WebSocket from `address`; False if it already has `limit`.

        Claimed at the upgrade, before the session (and its `Connection`) exists,
        so that an address over its cap costs no session; the caller releases the
        claim with `release_address` once the socket is over, however it ends.
        """
        count = self._per_address.get(address, 0)
        if count >= limit:
            return False
        self._per_address[address] = count + 1
        return True

    def release_address(self, address: str) -> None:
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def address_count(self, address: str) -> int:
        """Open WebSockets claimed by `address`."""
        return self._per_address.get(address, 0)

    def admit(self, connection: Connection) -> None:
        """From now on `connection` receives its walker's broadcasts (through its `follow`
        if it has one)."""
        if connection in self._open and not connection.admitted:
            connection.admitted = True
            if connection.follow is None:
                self._listeners.setdefault(connection.walker, {})[connection] = None
            else:
                self._followers.setdefault(connection.walker, {})[connection] = connection.follow

    def discard(self, connection: Connection) -> bool:
        """Count `connection` out; False if it was not counted in (or already out)."""
        if connection not in self._open:
            return False
        self._open.remove(connection)
        self._release_user(connection)
        walker = connection.walker
        left = self._per_walker[walker] - 1
        if left:
            self._per_walker[walker] = left
        else:
            del self._per_walker[walker]
        for table in (self._listeners, self._followers):
            listeners = table.get(walker)
            if listeners is not None:
                listeners.pop(connection, None)
                if not listeners:
                    del table[walker]
        if not self._open and self._emptied is not None:
            self._emptied.set()
        return True

    def deliver(self, walker: str, frame: str, offset: str) -> None:
        """Queue one broadcast frame, the same object, to every admitted connection.

        The variant with `"offset"` is made once, and only if someone follows.
        """
        listeners = self._listeners.get(walker)
        if listeners:
            size = frame_bytes(frame)  # once per broadcast, counted in every queue
            # `enqueue` never blocks and never changes the registry: no copy needed.
            for connection in listeners:
                connection.enqueue(frame, size)
        followers = self._followers.get(walker)
        if followers:
            framed = with_offset(frame, offset)
            for follow in followers.values():
                follow(frame, framed, offset)

    def connections(self, walker: str | None = None) -> list[Connection]:
        if walker is None:
            return list(self._open)
        return [c for c in self._open if c.walker == walker]

    def __len__(self) -> int:
        return len(self._open)

    def counts(self) -> dict[str, int]:
        """Open connections per walker, for /healthz."""
        return dict(sorted(self._per_walker.items()))

    def queued_bytes(self) -> tuple[int, int]:
        """(total, largest) bytes waiting in outbound queues, for the metrics; O(connections)."""
        total = largest = 0
        for connection in self._open:
            queued = connection.queued_bytes
            total += queued
            if queued > largest:
                largest = queued
        return total, largest

    async def close_all(self, code: int, reason: str = "", timeout: float = 5.0) -> None:
        """Close every connection with `code` and wait (up to `timeout`) until they are gone."""
        for connection in list(self._open):
            connection.close(code, reason)
        if not self._open:
            return
        self._emptied = asyncio.Event()
        try:
            await asyncio.wait_for(self._emptied.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("%d connection(s) did not close in time", len(self._open))
        finally:
            self._emptied = None
