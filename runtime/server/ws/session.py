"""One WebSocket connection to a walker, from accept to close (SPEC §6, §7, §8).

A session runs two tasks: the reader, which takes frames one at a time and in
order (so pipelined requests are answered in order), and the connection's
sender, which drains its outbound queue. The session ends when either does:
the reader when the peer goes away or a close has been asked for, the sender
once the close frame is out.

Every frame passes through `_handle`, the one place where a request is
admitted: size, rate, authentication and expiry are checked there, and the
walker run is watched for `walker_timeout_seconds`. Those checks cost one read
of the loop's monotonic clock per frame and a few float operations; timers
(auth timeout, token expiry, walker timeout) are per connection, never per frame.

Limits outside the session: the caps are counted by the registry
(connections.py), `Origin` is checked before the upgrade (app.py), and
WebSocket pings and the protocol-level size limit are uvicorn's (server.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from .admission import NO_TOKEN, Admission
from .backplane import BackplaneUnavailable
from .connections import Connection
from .limits import SizeLimit, TokenBucket
from ..protocol import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_LARGE,
    EXECUTION_TIMEOUT,
    INTERNAL_ERROR,
    MESSAGE_TOO_LARGE,
    PING,
    RATE_LIMITED,
    REFRESH,
    REFRESHED_FRAME,
    SERVICE_UNAVAILABLE,
    ProtocolError,
    decode_object,
    error_frame,
    pong_frame,
    run_walker,
    success_frame,
)

if TYPE_CHECKING:
    from ..auth import TokenService
    from ..config import WebSocketConfig
    from ..protocol import WalkerBinding
    from .connections import ConnectionRegistry

logger = logging.getLogger("jacc.session")

# How many frames the session reads ahead while a walker runs long (see `_read_ahead`).
_READ_AHEAD_FRAMES = 64


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session may use of the server that runs it, and nothing more.

    One per app, shared by all its sessions. `binding` looks a walker up by name
    and is called for every frame, so that an open connection runs the code of
    the latest dev reload (or learns that its walker is gone). `publish` sends a
    broadcast frame on a walker's channel of the backplane.
    """

    limits: WebSocketConfig
    tokens: TokenService
    registry: ConnectionRegistry
    binding: Callable[[str], WalkerBinding | None]
    publish: Callable[[str, str], Awaitable[None]]
    dev: bool


class WebSocketSession:
    """Serves one accepted socket of the walker `walker`, given what it may use in `context`."""

    def __init__(self, context: SessionContext, walker: str, scope: dict, receive, send) -> None:
        self._context = context
        self._binding = context.binding
        self._publish_frame = context.publish
        self._walker = walker
        self._scope = scope
        self._receive = receive
        self._send = send
        self._public = context.binding(walker).spec.public
        self._dev = context.dev
        limits = context.limits
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._clock = self._loop.time
        self._size = SizeLimit(limits.max_message_bytes)
        self._quick_size = limits.max_message_bytes // 4  # SizeLimit's fast path, inlined
        self._bucket = TokenBucket(limits.messages_per_second, now=self._clock())
        self._walker_timeout = limits.walker_timeout_seconds
        self._admission: Admission | None = None
        # The walker watchdog: when the running walker started (0.0: none running).
        self._running_since = 0.0
        self._timed_out = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task | None = None
        # A walker still running after this long makes the session read ahead.
        self._read_ahead_after = min(limits.heartbeat_seconds / 2, self._walker_timeout)
        self._read_ahead_task: asyncio.Task | None = None
        self._ahead: deque[dict] = deque()  # frames read ahead, served before new ones
        self.connection: Connection | None = None

    async def run(self) -> None:
        limits = self._limits
        if (await self._receive())["type"] != "websocket.connect":
            return  # the client left during the handshake
        try:
            await self._send({"type": "websocket.accept"})
        except OSError:  # uvicorn's ClientDisconnected: gone before the 101 went out
            return
        connection = Connection(
            self._send,
            self._walker,
            queue_frames=limits.send_queue_frames,
            send_timeout=limits.send_timeout_seconds,
        )
        self.connection = connection
        admission = self._admission = Admission(
            connection,
            public=self._public,
            tokens=self._context.tokens,
            registry=self._context.registry,
            limits=limits,
            loop=self._loop,
        )
        try:
            admission.open(self._scope.get("query_string", b""))
            await self._serve(connection)
        finally:
            admission.close()
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            connection.dispose()

    async def _serve(self, connection: Connection) -> None:
        sender = connection.start()
        reader = self._reader = self._loop.create_task(self._read())
        try:
            await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and connection.closing and not connection.disconnected:
                # Let the sender flush what is queued and the close frame; its
                # watchdog bounds how long a peer that reads nothing can hold it.
                await asyncio.wait((sender,))
        finally:
            tasks = [reader, sender]
            if self._read_ahead_task is not None:
                tasks.append(self._read_ahead_task)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    # --- frames --------------------------------------------------------------------

    async def _read(self) -> None:
        receive = self._receive
        connection = self.connection
        ahead = self._ahead
        try:
            while not connection.closing:
                message = ahead.popleft() if ahead else await receive()
                if message["type"] != "websocket.receive":
                    connection.disconnected = True
                    return
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                try:
                    await self._handle(data)
                except ProtocolError as error:
                    await connection.reply(error.frame())
                    if error.close_code is not None:
                        connection.close(error.close_code, error.reason or "")
        except Exception:
            # A bug of ours, not the client's: say so, and do not keep a socket in an unknown state.
            logger.exception("unexpected error on a %s connection", self._walker)
            await connection.reply(error_frame(INTERNAL_ERROR, "internal server error"))
            connection.close(CLOSE_INTERNAL_ERROR, "internal error")

    async def _handle(self, data: str | bytes) -> None:
        """Admit one frame and answer it: the single entry point of every request."""
        if self.connection.closing:
            # Closed while this frame was on its way (a dev reload changed the walker's
            # rules): running it under the new binding could skip an authentication.
            return
        binding = self._binding(self._walker)
        if binding is None:
            # The walker went away under a dev reload.
            self.connection.close(CLOSE_SERVICE_RESTART, "walker removed")
            return
        now = self._clock()
        if len(data) > self._quick_size:
            self._check_size(data)
        if not self._bucket.take(now):
            raise self._rate_limited(now)
        payload, token = self._admit(data, now)
        kind = binding.control_type(payload)
        if kind is not None:
            await self._control(kind, token)
            return
        binding.check(payload)
        self._running_since = now
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(now + self._read_ahead_after, self._watch_walker)
        try:
            reports = await run_walker(binding, payload, self._dev)
        finally:
            self._running_since = 0.0
            if self._read_ahead_task is not None:
                self._read_ahead_task.cancel()  # nothing is lost: frames it read are in _ahead
                self._read_ahead_task = None
            if self._timed_out:
                # Whatever the walker did once cancelled (let the CancelledError out,
                # caught it and returned, raised something else), it ran too long.
                raise self._walker_timed_out(binding.name)
        frame = success_frame(reports)
        if binding.spec.broadcast:
            await self._publish(frame)
        else:
            await self.connection.reply(frame)

    def _check_size(self, data: str | bytes) -> None:
        size = self._size.exceeded(data)
        if size:
            limit = self._size.limit
            raise ProtocolError(
                MESSAGE_TOO_LARGE,
                f"a frame of {size} bytes is over max_message_bytes ({limit})",
                reason="max_message_bytes",
                close_code=CLOSE_TOO_LARGE,
            )

    def _rate_limited(self, now: float) -> ProtocolError:
        rate = self._bucket.rate
        wait = self._bucket.retry_after(now)
        return ProtocolError(
            RATE_LIMITED,
            f"over messages_per_second ({rate:g}): retry in {wait:.2f} s",
            reason="messages_per_second",
        )

    # --- the walker timeout --------------------------------------------------------

    def _watch_walker(self) -> None:
        """The watchdog timer: read ahead for a walker that runs long, cancel one past its deadline.

        Armed when a walker starts and none is armed; when it fires for a walker
        that has since finished it re-arms for the running one, if any, so it
        runs at most twice per `walker_timeout_seconds` (or once a half beat)
        per connection, and not at all on an idle one.
        """
        self._watchdog = None
        started = self._running_since
        if not started:
            return
        now = self._clock()
        deadline = started + self._walker_timeout
        if now < deadline:
            read_ahead_at = started + self._read_ahead_after
            if now < read_ahead_at:
                self._watchdog = self._loop.call_at(read_ahead_at, self._watch_walker)
                return
            if self._read_ahead_task is None:
                self._read_ahead_task = self._loop.create_task(self._read_ahead())
            self._watchdog = self._loop.call_at(deadline, self._watch_walker)
            return
        self._running_since = 0.0
        self._timed_out = True
        # The reader is the task awaiting the walker: the CancelledError lands at the
        # walker's current `await`. A walker that never awaits cannot be interrupted.
        self._reader.cancel()

    async def _read_ahead(self) -> None:
        """Go on reading the socket while a walker runs long.

        uvicorn stops reading a socket while a frame it received waits for the
        app, so with a frame pipelined behind a long walker run the peer's pongs
        would sit unread and the keepalive would drop a live client (1011). Frames
        read here wait in `_ahead`, in order, for the reader. A client that sends
        more than _READ_AHEAD_FRAMES, or four times `max_message_bytes`,
        meanwhile is left to TCP backpressure again.
        """
        ahead = self._ahead
        receive = self._receive
        budget = 4 * self._limits.max_message_bytes
        while len(ahead) < _READ_AHEAD_FRAMES and budget > 0:
            message = await receive()
            ahead.append(message)
            if message["type"] != "websocket.receive":
                return
            budget -= len(message.get("text") or message.get("bytes") or b"")

    def _walker_timed_out(self, name: str) -> ProtocolError:
        self._timed_out = False
        if self._reader.uncancel():
            # Cancelled for another reason too (the session is ending): let that win.
            raise asyncio.CancelledError
        seconds = self._walker_timeout
        logger.warning("walker %s ran past walker_timeout_seconds (%g s) and was cancelled",
                       name, seconds)
        return ProtocolError(
            EXECUTION_TIMEOUT,
            f"walker `{name}` ran past walker_timeout_seconds ({seconds:g} s) and was cancelled",
            reason="walker_timeout_seconds",
        )

    # --- parsing and authentication of a frame -------------------------------------

    def _admit(self, data: str | bytes, now: float) -> tuple[dict, object]:
        """Parse a frame and take its `token` out; authenticate or check expiry."""
        connection = self.connection
        admission = self._admission
        try:
            payload = decode_object(data)
        except ProtocolError as error:
            if connection.admitted:
                raise
            raise admission.unreadable_first_frame(error) from None
        token = payload.pop("token", NO_TOKEN)
        if not connection.admitted:
            admission.authenticate(token)
        elif now >= admission.expires_at:  # inline: one comparison per frame, no call
            raise admission.expired()
        return payload, token

    async def _publish(self, frame: str) -> None:
        try:
            await self._publish_frame(self._walker, frame)
        except BackplaneUnavailable as error:
            raise ProtocolError(SERVICE_UNAVAILABLE, f"broadcast unavailable: {error}") from None

    async def _control(self, kind: str, token: object) -> None:
        if kind == PING:
            await self.connection.reply(pong_frame())
        elif kind == REFRESH:
            self._admission.refresh(token)
            await self.connection.reply(REFRESHED_FRAME)
        # A client's `pong` is absorbed.
