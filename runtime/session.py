"""One WebSocket connection to a walker, from accept to close (SPEC §6, §7, §8).

A session runs two tasks: the reader, which takes frames one at a time and in
order (so pipelined requests are answered in order), and the connection's
sender, which drains its outbound queue. The session ends when either does:
the reader when the peer goes away or a close has been asked for, the sender
once the close frame is out.

Every frame passes through `_handle`, the one place where a request is
admitted; limits (size, rate, timeouts) slot in there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from starlette.datastructures import QueryParams

from .auth import AuthError, Identity
from .backplane import BackplaneUnavailable
from .connections import Connection
from .protocol import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_UNAUTHORIZED,
    INTERNAL_ERROR,
    PING,
    REFRESH,
    REFRESHED_FRAME,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    ProtocolError,
    decode_object,
    error_frame,
    pong_frame,
    run_walker,
    success_frame,
)

if TYPE_CHECKING:
    from .app import JaccApp

logger = logging.getLogger("jacc.session")

_NO_TOKEN = object()


class WebSocketSession:
    """Serves one accepted socket of the walker `walker` of `app`."""

    def __init__(self, app: JaccApp, walker: str, scope: dict, receive, send) -> None:
        self._app = app
        self._walker = walker
        self._scope = scope
        self._receive = receive
        self._send = send
        self._public = app.bindings[walker].spec.public
        self._expires_at: float | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.connection: Connection | None = None

    async def run(self) -> None:
        app = self._app
        limits = app.config.websocket
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
        app.registry.add(connection)
        try:
            self._authenticate_from_query()
            await self._serve(connection)
        finally:
            self._cancel_expiry()
            app.registry.discard(connection)
            connection.dispose()

    async def _serve(self, connection: Connection) -> None:
        sender = connection.start()
        reader = asyncio.get_running_loop().create_task(self._read())
        try:
            await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and connection.closing and not connection.disconnected:
                # Let the sender flush what is queued and the close frame; its
                # watchdog bounds how long a peer that reads nothing can hold it.
                await asyncio.wait((sender,))
        finally:
            for task in (reader, sender):
                task.cancel()
            await asyncio.wait((reader, sender))

    # --- authentication ------------------------------------------------------------

    def _authenticate_from_query(self) -> None:
        token = QueryParams(self._scope.get("query_string", b"")).get("token")
        connection = self.connection
        if token is not None:
            try:
                self._identify(self._app.tokens.verify(token))
            except AuthError as error:
                if not self._public:
                    connection.enqueue(_unauthorized(error).frame())
                    connection.close(CLOSE_UNAUTHORIZED, error.reason)
                    return
                # A public walker serves anonymous clients: a bad token just identifies nobody.
        if self._public or connection.identity is not None:
            self._app.registry.admit(connection)

    def _authenticate(self, token: object) -> None:
        """The first frame of a private connection that came without `?token=`."""
        try:
            identity = self._app.tokens.verify(None if token is _NO_TOKEN else token)
        except AuthError as error:
            raise _unauthorized(error, close=True) from None
        self._identify(identity)
        self._app.registry.admit(self.connection)

    def _identify(self, identity: Identity) -> None:
        self.connection.identity = identity
        self._expires_at = identity.expires_at
        self._cancel_expiry()
        if identity.expires_at is not None:
            delay = max(0.0, identity.expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        connection = self.connection
        connection.enqueue(error_frame(UNAUTHORIZED, "token expired", reason="expired"))
        connection.close(CLOSE_UNAUTHORIZED, "expired")

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    # --- frames --------------------------------------------------------------------

    async def _read(self) -> None:
        receive = self._receive
        connection = self.connection
        try:
            while not connection.closing:
                message = await receive()
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
        binding = self._app.bindings.get(self._walker)
        if binding is None:
            # The walker went away under a dev reload.
            self.connection.close(CLOSE_SERVICE_RESTART, "walker removed")
            return
        payload, token = self._admit(data)
        kind = binding.control_type(payload)
        if kind is not None:
            await self._control(kind, token)
            return
        binding.check(payload)
        reports = await run_walker(binding, payload)
        frame = success_frame(reports)
        if binding.spec.broadcast:
            await self._publish(frame)
        else:
            await self.connection.reply(frame)

    def _admit(self, data: str | bytes) -> tuple[dict, object]:
        """Parse a frame and take its `token` out; authenticate or check expiry."""
        connection = self.connection
        try:
            payload = decode_object(data)
        except ProtocolError as error:
            if connection.admitted:
                raise
            # An unauthenticated connection gets one chance, and this frame was it.
            raise ProtocolError(
                UNAUTHORIZED,
                f"the first frame must be a JSON object with a token: {error.message}",
                reason="missing",
                close_code=CLOSE_UNAUTHORIZED,
            ) from None
        token = payload.pop("token", _NO_TOKEN)
        if not connection.admitted:
            self._authenticate(token)
        elif self._expires_at is not None and time.time() >= self._expires_at:
            raise _unauthorized(AuthError("expired"), close=True)
        return payload, token

    async def _publish(self, frame: str) -> None:
        try:
            await self._app.backplane.publish(self._walker, frame)
        except BackplaneUnavailable as error:
            raise ProtocolError(SERVICE_UNAVAILABLE, f"broadcast unavailable: {error}") from None

    async def _control(self, kind: str, token: object) -> None:
        if kind == PING:
            await self.connection.reply(pong_frame())
        elif kind == REFRESH:
            self._refresh(token)
            await self.connection.reply(REFRESHED_FRAME)
        # A client's `pong` is absorbed.

    def _refresh(self, token: object) -> None:
        try:
            identity = self._app.tokens.verify(None if token is _NO_TOKEN else token)
        except AuthError as error:
            # The connection keeps the token it has; only that one's expiry can end it.
            raise _unauthorized(error) from None
        current = self.connection.identity
        if current is not None and current.user_id != identity.user_id:
            raise ProtocolError(
                UNAUTHORIZED,
                "the new token belongs to another user",
                reason="invalid",
                close_code=CLOSE_UNAUTHORIZED,
            )
        self._identify(identity)


def _unauthorized(error: AuthError, close: bool = False) -> ProtocolError:
    return ProtocolError(
        UNAUTHORIZED,
        error.message,
        reason=error.reason,
        close_code=CLOSE_UNAUTHORIZED if close else None,
    )

