"""Open WebSocket connections: the registry, and each connection's outbound path.

Every frame a connection receives goes out in order through one of two doors:

- `Connection.reply` for the connection's own answers: sent at once when
  nothing is queued (the common case, no task switch), else queued behind
  what is;
- `Connection.enqueue` for broadcasts: never blocks the caller. The frame
  joins a bounded queue drained by the connection's sender task.

A client that stops reading must not hold anyone else up (docs/protocol.md, "Slow consumers"): when its
queue is full, or one send has been stuck for `send_timeout` seconds, the
connection is closed with 4408. A watchdog timer, armed lazily and re-armed
at most once per `send_timeout`, checks for stuck sends so that the hot path
costs one clock read per frame rather than a timer per frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Awaitable, Callable

from ..protocol import CLOSE_ABNORMAL, CLOSE_TOO_SLOW

logger = logging.getLogger("jacc.connections")

Send = Callable[[dict], Awaitable[None]]


class Connection:
    """One accepted WebSocket of one walker.

    `send` is the ASGI send callable of the socket. The connection is admitted
    to its walker's broadcasts by the registry once it is authenticated (public
    walkers: at once).
    """

    def __init__(
        self,
        send: Send,
        walker: str,
        *,
        queue_frames: int,
        send_timeout: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.walker = walker
        self.identity: Any = None
        self.admitted = False
        # The user this connection is counted against for max_connections_per_user.
        self.counted_user: str | None = None
        self.disconnected = False
        self._send = send
        self._limit = queue_frames
        self._timeout = send_timeout
        self._loop = loop or asyncio.get_running_loop()
        self._queue: deque[str] = deque()
        self._wakeup: asyncio.Future | None = None
        self._busy = False
        self._send_started = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._stuck_once = False
        self._close: tuple[int, str] | None = None
        self._sender: asyncio.Task | None = None

    @property
    def closing(self) -> bool:
        """True once a close has been asked for: nothing more is sent or processed."""
        return self._close is not None

    @property
    def close_code(self) -> int | None:
        return None if self._close is None else self._close[0]

    # --- the two doors in ----------------------------------------------------------

    async def reply(self, frame: str) -> None:
        """Send one of this connection's own answers, in order with what is queued."""
        if self._close is not None:
            return
        if self._busy or self._queue:
            self.enqueue(frame)
            return
        try:
            await self._send_text(frame)
        except Exception:
            self._gone()
            return
        if self._queue or self._close is not None:
            self._wake()

    def enqueue(self, frame: str) -> None:
        """Queue a frame for the sender task; overflow closes the connection with 4408."""
        if self._close is not None:
            return
        if len(self._queue) >= self._limit:
            self._too_slow("outbound queue full")
            return
        self._queue.append(frame)
        self._wake()

    def close(self, code: int, reason: str = "") -> None:
        """Ask for a close: frames already queued go first, later ones are dropped."""
        if self._close is None:
            self._close = (code, reason)
            self._wake()

    # --- the sender task -----------------------------------------------------------

    def start(self) -> asyncio.Task:
        """Start the sender task; it ends once the close frame is out (or cannot be)."""
        self._sender = self._loop.create_task(self._run_sender())
        return self._sender

    async def _run_sender(self) -> None:
        queue = self._queue
        try:
            while True:
                while queue and not self._busy:
                    await self._send_text(queue.popleft())
                if self._close is not None and not queue and not self._busy:
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
        self._queue.clear()
        if self._close is None:
            self._close = (CLOSE_ABNORMAL, "")
        self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _send_text(self, frame: str) -> None:
        self._busy = True
        self._mark_send_start()
        try:
            await self._send({"type": "websocket.send", "text": frame})
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
            self._too_slow("send timed out")
            self._send_started = self._loop.time()
            self._watchdog = self._loop.call_at(self._send_started + self._timeout, self._check)
        else:
            # The peer reads nothing at all, not even the close frame: let go of it.
            self.disconnected = True
            if self._sender is not None:
                self._sender.cancel()

    def _too_slow(self, why: str) -> None:
        if self._close is not None and self._close[0] == CLOSE_TOO_SLOW:
            return
        logger.info("closing a %s connection with %d: %s", self.walker, CLOSE_TOO_SLOW, why)
        self._queue.clear()
        self._close = None
        self.close(CLOSE_TOO_SLOW, "too slow")

    def dispose(self) -> None:
        """Release timers; called once the connection is over."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._queue.clear()


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
        """From now on `connection` receives its walker's broadcasts."""
        if connection in self._open and not connection.admitted:
            connection.admitted = True
            self._listeners.setdefault(connection.walker, {})[connection] = None

    def discard(self, connection: Connection) -> None:
        if connection not in self._open:
            return
        self._open.remove(connection)
        self._release_user(connection)
        walker = connection.walker
        left = self._per_walker[walker] - 1
        if left:
            self._per_walker[walker] = left
        else:
            del self._per_walker[walker]
        listeners = self._listeners.get(connection.walker)
        if listeners is not None:
            listeners.pop(connection, None)
            if not listeners:
                del self._listeners[connection.walker]
        if not self._open and self._emptied is not None:
            self._emptied.set()

    def deliver(self, walker: str, frame: str) -> None:
        """Queue one broadcast frame, the same object, to every admitted connection."""
        listeners = self._listeners.get(walker)
        if listeners:
            # `enqueue` never blocks and never changes the registry: no copy needed.
            for connection in listeners:
                connection.enqueue(frame)

    def connections(self, walker: str | None = None) -> list[Connection]:
        if walker is None:
            return list(self._open)
        return [c for c in self._open if c.walker == walker]

    def __len__(self) -> int:
        return len(self._open)

    def counts(self) -> dict[str, int]:
        """Open connections per walker, for /healthz."""
        return dict(sorted(self._per_walker.items()))

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
