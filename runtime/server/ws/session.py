"""One WebSocket connection to a walker, from accept to close (docs/protocol.md).

A session runs the reader, a task which takes frames one at a time and in
order (so pipelined requests are answered in order), and, once a frame must
wait, the connection's sender task, which drains its outbound queue. The
session ends when either does: the reader when the peer goes away or a close
has been asked for, the sender once the close frame is out.

Every frame passes through `_handle`, the one place where a request is
admitted: size, rate, authentication and expiry are checked there, and the
walker run is watched for `walker_timeout_seconds`. Those checks cost one read
of the loop's monotonic clock per frame and a few float operations; timers
(auth timeout, token expiry, walker timeout) are per connection, never per frame.

The session wires small parts, each owning its own state and timers:
`Admission` (admission.py: authentication, caps, auth timeout, token expiry),
`WalkerWatchdog` (watchdog.py: the walker timeout), `ReadAhead`
(readahead.py: reading on while a walker runs long) and `TargetRunner`
(streams.py: served functions and streams). It sees the server only through a
`SessionContext`.

Limits outside the session: the caps are counted by the registry
(connections.py), `Origin` is checked before the upgrade (app.py), and
WebSocket pings and the protocol-level size limit are uvicorn's (main.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from ..logs import connection_closed, connection_opened
from ..websocket import LIMIT_UNSENT, WRITE_TEXT
from ..protocol import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_LARGE,
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
from .admission import NO_TOKEN, Admission
from .backplane import BackplaneUnavailable, channel_of
from .connections import Connection
from .limits import SizeLimit, TokenBucket
from .readahead import ReadAhead
from .resume import follower_for
from .streams import TargetRunner
from .watchdog import WalkerWatchdog

if TYPE_CHECKING:
    from ..auth import TokenService
    from ..config import WebSocketConfig
    from ..drain import Drain
    from ..metrics import Metrics, NoMetrics
    from ..protocol import WalkerBinding
    from ..threads import WalkerPool
    from .caps import ConnectionCaps
    from .connections import ConnectionRegistry
    from .history import Replay

logger = logging.getLogger("jacc.session")


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session may use of the server that runs it, and nothing more.

    One per app, shared by all its sessions. `binding` looks a walker up by name
    and is called for every frame, so that an open connection runs the code of
    the latest dev reload (or learns that its walker is gone). `publish` sends a
    broadcast frame on a walker's channel of the backplane, and `replay` reads
    back a channel's history for a resume. `caps` counts connections against
    the connection caps. `threads` runs the non-async walkers; `drain` counts
    walker runs and refuses them on shutdown; `metrics` are the app's (metrics.py).
    """

    limits: WebSocketConfig
    tokens: TokenService
    registry: ConnectionRegistry
    binding: Callable[[str], WalkerBinding | None]
    publish: Callable[[str, str], Awaitable[object]]
    dev: bool
    threads: WalkerPool
    drain: Drain
    metrics: Metrics | NoMetrics
    replay: Callable[[str, str], Awaitable[Replay]] | None = None
    caps: ConnectionCaps | None = None


class WebSocketSession:
    """Serves one accepted socket of the walker `walker`, given what it may use in `context`.

    Owns the socket's reader task, the per-frame limits (size and rate) and the
    order of checks in `_handle`; the rest belongs to the parts it wires.
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("_context", "_walker", "_scope", "_receive", "_send", "_public", "_broadcasts",
                 "_binding", "_publish", "_dev", "_drain", "_metrics", "_peer_code",
                 "_lane", "_clock", "_size", "_quick_size", "_bucket",
                 "_read_ahead", "_watchdog", "_admission", "_targets", "connection",)

    def __init__(self, context: SessionContext, walker: str, scope: dict, receive, send) -> None:
        self._context = context
        self._walker = walker
        self._scope = scope
        self._receive = receive
        self._send = send
        # As the upgrade found it: the rules this connection is admitted under.
        spec = context.binding(walker).spec
        self._public = spec.public
        self._broadcasts = spec.broadcast
        # Kept apart from the context: each is used for every frame.
        self._binding = context.binding
        self._publish = context.publish
        self._dev = context.dev
        self._drain = context.drain
        self._metrics = context.metrics.walker(walker)
        self._peer_code: int | None = None  # the client's close code, once it has gone
        self._lane = context.threads.lane()
        limits = context.limits
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._size = SizeLimit(limits.max_message_bytes)
        self._quick_size = limits.max_message_bytes // 4  # SizeLimit's fast path, inlined
        self._bucket = TokenBucket(limits.messages_per_second, now=self._clock())
        self._read_ahead = ReadAhead(receive, limits.max_message_bytes)
        self._watchdog = WalkerWatchdog(
            loop,
            walker=walker,
            timeout=limits.walker_timeout_seconds,
            heartbeat=limits.heartbeat_seconds,
            read_ahead=self._read_ahead,
        )
        self._admission: Admission | None = None
        self._targets: TargetRunner | None = None
        self.connection: Connection | None = None

    async def run(self) -> None:
        if (await self._receive())["type"] != "websocket.connect":
            return  # the client left during the handshake
        connection_opened(self._walker)  # before the accept: uvicorn's line of it carries the id
        try:
            await self._send({"type": "websocket.accept"})
        except OSError:  # uvicorn's ClientDisconnected: gone before the 101 went out
            return
        context = self._context
        connection = self.connection = Connection(
            self._send,
            self._walker,
            queue_bytes=context.limits.send_queue_bytes,
            send_timeout=context.limits.send_timeout_seconds,
            metrics=self._metrics,
            write=self._scope.get("extensions", {}).get(WRITE_TEXT),
        )
        opened_at = self._clock()
        self._metrics.opened()
        query_string = self._scope.get("query_string", b"")
        follower = None
        if self._broadcasts and context.replay is not None:
            # Before admission: the connection must follow from its first broadcast on.
            follower = connection.follow = follower_for(
                connection, query_string, channel_of(self._walker), context.replay)
        admission = self._admission = Admission(
            connection,
            public=self._public,
            tokens=context.tokens,
            registry=context.registry,
            limits=context.limits,
            loop=asyncio.get_running_loop(),
            caps=context.caps,
            admitted=follower.admitted if follower is not None else None,
        )
        self._targets = TargetRunner(
            connection,
            watchdog=self._watchdog,
            read_ahead=self._read_ahead,
            broadcast=self._broadcast,
            dev=self._dev,
            cleanup_seconds=context.limits.walker_timeout_seconds,
            loop=asyncio.get_running_loop(),
            limit_unsent=self._scope.get("extensions", {}).get(LIMIT_UNSENT),
            metrics=self._metrics,
        )
        try:
            await admission.open(query_string)
            await self._serve(connection)
        finally:
            if follower is not None:
                follower.cancel()
            admission.close()
            self._watchdog.cancel()
            connection.dispose()
            self._ended(connection, self._clock() - opened_at)

    def _ended(self, connection: Connection, seconds: float) -> None:
        # The close code jacc sent, or else the client's (1006 if it just dropped).
        code = connection.close_code
        by_server = code is not None and code != CLOSE_ABNORMAL
        if not by_server and self._peer_code is not None:
            code = self._peer_code
        self._metrics.closed(code, by_server, connection.slow_reason)
        connection_closed(self._walker, code, by_server, seconds)

    async def _serve(self, connection: Connection) -> None:
        # Ends when the reader or the sender does: a future and two callbacks, not
        # asyncio.wait, whose machinery would stay allocated for the socket's whole life.
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def end(*_: object) -> None:
            if not ended.done():
                ended.set_result(None)

        connection.start(on_exit=end)
        reader = self._watchdog.reader = loop.create_task(self._read())
        reader.add_done_callback(end)
        try:
            await ended
            if reader.done() and connection.closing and not connection.disconnected:
                # Let the sender flush what is queued and the close frame; its
                # watchdog bounds how long a peer that reads nothing can hold it.
                await connection.drained()
        finally:
            tasks = [task for task in (reader, connection.sender, self._read_ahead.task)
                     if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    # --- frames --------------------------------------------------------------------

    async def _read(self) -> None:
        receive = self._receive
        connection = self.connection
        ahead = self._read_ahead.frames
        try:
            while not connection.closing:
                message = ahead.pop(0) if ahead else await receive()
                if message["type"] != "websocket.receive":
                    self._peer_code = message.get("code")
                    connection.disconnected = True
                    return
                self._metrics.frame_in()
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                try:
                    await self._handle(data)
                except ProtocolError as error:
                    self._metrics.error(error.code, error.reason)
                    await connection.reply(error.frame())
                    if error.close_code is not None:
                        connection.close(error.close_code, error.reason or "")
        except Exception:
            # A bug of ours, not the client's: say so, and do not keep a socket in an unknown state.
            logger.exception("unexpected error on a %s connection", self._walker)
            self._metrics.error(INTERNAL_ERROR)
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
        payload, token = self._admit(data, now, binding.max_keys)
        if not self.connection.admitted:
            await self._admission.authenticate(token)
        kind = binding.control_type(payload)
        if kind is not None:
            await self._control(kind, token)
            return
        binding.check(payload)
        drain = self._drain
        drain.enter()  # SERVICE_UNAVAILABLE once the server drains
        try:
            await self._run(binding, payload, now)
        finally:
            # An error answer goes out from `_read` before the reader next yields, so
            # the close that ends a drain still finds it queued or being sent.
            drain.leave()

    async def _run(self, binding: WalkerBinding, payload: dict, now: float) -> None:
        if binding.kind == "function" or binding.spec.stream:
            # A served function, or a walker that streams its reports (streams.py).
            await self._targets.run(binding, payload, now)
            return
        watchdog = self._watchdog
        watchdog.begin(now)
        started = perf_counter()  # not the loop's clock: uvloop's is cached, to the ms
        try:
            reports = await run_walker(binding, payload, self._dev, self._lane, watchdog.reader)
        finally:
            self._metrics.ran(perf_counter() - started)
            watchdog.end()  # raises EXECUTION_TIMEOUT for a walker it cancelled
        frame = success_frame(reports, binding.name, self._dev)
        if binding.spec.broadcast:
            await self._broadcast(frame)
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

    def _admit(self, data: str | bytes, now: float, max_keys: int | None) -> tuple[dict, object]:
        """Parse a frame and take its `token` out; check the expiry of an admitted one."""
        connection = self.connection
        admission = self._admission
        try:
            payload = decode_object(data, max_keys)
        except ProtocolError as error:
            if connection.admitted:
                raise
            raise admission.unreadable_first_frame(error) from None
        token = payload.pop("token", NO_TOKEN)
        if connection.admitted and now >= admission.expires_at:  # inline: one comparison per frame, no call
            raise admission.expired()
        return payload, token

    async def _broadcast(self, frame: str) -> None:
        try:
            await self._publish(self._walker, frame)
        except BackplaneUnavailable as error:
            raise ProtocolError(SERVICE_UNAVAILABLE, f"broadcast unavailable: {error}") from None

    async def _control(self, kind: str, token: object) -> None:
        if kind == PING:
            await self.connection.reply(pong_frame())
        elif kind == REFRESH:
            await self._admission.refresh(token)
            await self.connection.reply(REFRESHED_FRAME)
        # A client's `pong` is absorbed.
