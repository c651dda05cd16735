"""Who may use one WebSocket connection, and until when (docs/protocol.md, Authentication
and Connection caps).

A connection is counted against its walker's cap when it opens, and against its
user's cap once a token identifies it. A private connection is admitted to its
walker (frames and broadcasts) once authenticated: by `?token=` at the upgrade,
or by the token of its first frame. Two timers per connection, never one per
frame: the auth timeout of a private connection still without a token, and the
expiry of the token it presented. The session checks `expires_at` on every
frame as well, which costs one float comparison.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.datastructures import QueryParams

from ..accounts import AccountError
from ..auth import AuthError, Identity
from ..protocol import (
    CAPACITY,
    CLOSE_CAPACITY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_UNAUTHORIZED,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    ProtocolError,
)
from .caps import ConnectionCaps
from .connections import Connection, ConnectionRegistry

if TYPE_CHECKING:
    from ..auth import TokenService
    from ..config import WebSocketConfig

# The `token` of a frame that had none; `TokenService.verify(None)` says `missing`.
NO_TOKEN = object()


class Admission:
    """The authentication of one connection and its place in the connection caps.

    Owns the connection's registration in the registry (from `open` to `close`),
    its identity, the auth-timeout timer and the token-expiry timer.
    `expires_at` is when the token runs out, on the loop's clock (`inf` for
    none), for the session's per-frame check. `caps` counts the connection
    against the caps (this process's counts by default, every worker's with
    Redis); `admitted` is called once the connection takes broadcasts.
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("expires_at", "_connection", "_public", "_tokens", "_registry", "_caps",
                 "_admitted", "_limits", "_loop", "_expiry", "_auth_timer",)

    def __init__(
        self,
        connection: Connection,
        *,
        public: bool,
        tokens: TokenService,
        registry: ConnectionRegistry,
        limits: WebSocketConfig,
        loop: asyncio.AbstractEventLoop,
        caps: ConnectionCaps | None = None,
        admitted: Callable[[], None] | None = None,
    ) -> None:
        self.expires_at = math.inf
        self._connection = connection
        self._public = public
        self._tokens = tokens
        self._registry = registry
        self._caps = caps or ConnectionCaps(registry, limits)
        self._admitted = admitted
        self._limits = limits
        self._loop = loop
        self._expiry: asyncio.TimerHandle | None = None
        self._auth_timer: asyncio.TimerHandle | None = None

    async def open(self, query_string: bytes) -> None:
        """Count the connection in, take its `?token=`, and start its auth timeout."""
        connection = self._connection
        if not await self._caps.enter(connection):
            # Accepted all the same, so that a browser client can read why.
            limit = self._limits.max_connections_per_walker
            self._refuse(_capacity("max_connections_per_walker", limit,
                                   f"walker `{connection.walker}`"))
            return
        await self._authenticate_from_query(query_string)
        if not connection.admitted and not connection.closing:
            self._auth_timer = self._loop.call_later(
                self._limits.auth_timeout_seconds, self._auth_timed_out)

    def close(self) -> None:
        """Stop both timers and count the connection out; once, as the session ends."""
        self._cancel_expiry()
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self._caps.leave(self._connection)

    async def authenticate(self, token: object) -> None:
        """The first frame of a private connection that came without `?token=`."""
        try:
            identity = self._verify(None if token is NO_TOKEN else token)
        except AuthError as error:
            raise _unauthorized(error, close=True) from None
        await self._identify(identity)
        self._admit()
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    async def refresh(self, token: object) -> None:
        """A `refresh` frame: take `token` instead, if it is valid and of the same user."""
        try:
            identity = self._verify(None if token is NO_TOKEN else token)
        except AuthError as error:
            # The connection keeps the token it has; only that one's expiry can end it.
            raise _unauthorized(error) from None
        current = self._connection.identity
        if current is not None and current.user_id != identity.user_id:
            raise ProtocolError(
                UNAUTHORIZED,
                "the new token belongs to another user",
                reason="invalid",
                close_code=CLOSE_UNAUTHORIZED,
            )
        await self._identify(identity)

    @staticmethod
    def unreadable_first_frame(error: ProtocolError) -> ProtocolError:
        """The error of a first frame that is not a JSON object: it had no token either."""
        # An unauthenticated connection gets one chance, and this frame was it.
        return ProtocolError(
            UNAUTHORIZED,
            f"the first frame must be a JSON object with a token: {error.message}",
            reason="missing",
            close_code=CLOSE_UNAUTHORIZED,
        )

    @staticmethod
    def expired() -> ProtocolError:
        """The error of a frame that arrives after `expires_at`."""
        return _unauthorized(AuthError("expired"), close=True)

    async def _authenticate_from_query(self, query_string: bytes) -> None:
        token = QueryParams(query_string).get("token")
        connection = self._connection
        if token is not None:
            try:
                identity = self._verify(token)
            except ProtocolError as error:  # the account store cannot answer
                self._refuse(error)
                return
            except AuthError as error:
                if not self._public:
                    self._refuse(_unauthorized(error, close=True))
                    return
                # A public walker serves anonymous clients: a bad token just identifies nobody.
            else:
                try:
                    await self._identify(identity)
                except ProtocolError as error:
                    self._refuse(error)
                    return
        if self._public or connection.identity is not None:
            self._admit()

    def _verify(self, token: object) -> Identity:
        try:
            return self._tokens.verify(token)
        except AccountError as error:
            # The account store cannot say whether the token's account exists (PostgreSQL
            # down): neither a yes nor a no, and the client should come back later.
            raise ProtocolError(SERVICE_UNAVAILABLE, f"cannot check the token now: "
                                f"{error.message}", close_code=CLOSE_INTERNAL_ERROR) from None

    def _admit(self) -> None:
        self._registry.admit(self._connection)
        if self._admitted is not None and self._connection.admitted:
            self._admitted()

    async def _identify(self, identity: Identity) -> None:
        """Take `identity` as the connection's user; CAPACITY if that user has too many."""
        if not await self._caps.identify(self._connection, identity.user_id):
            limit = self._limits.max_connections_per_user
            raise _capacity("max_connections_per_user", limit, "this user")
        self._connection.identity = identity
        self._cancel_expiry()
        if identity.expires_at is None:
            self.expires_at = math.inf
        else:
            # `exp` is wall-clock time; the loop's clock is monotonic, so convert once here.
            delay = max(0.0, identity.expires_at - time.time())
            self.expires_at = self._loop.time() + delay
            self._expiry = self._loop.call_later(delay, self._expired)

    def _refuse(self, error: ProtocolError) -> None:
        """Answer with `error`'s frame and close with its code, outside the reader."""
        self._connection.metrics.error(error.code, error.reason)
        self._connection.enqueue(error.frame())
        self._connection.close(error.close_code, error.reason or "")

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        connection = self._connection
        if not connection.admitted and not connection.closing:
            seconds = self._limits.auth_timeout_seconds
            self._refuse(ProtocolError(
                UNAUTHORIZED,
                f"no token within auth_timeout_seconds ({seconds:g} s)",
                reason="missing",
                close_code=CLOSE_UNAUTHORIZED,
            ))

    def _expired(self) -> None:
        self._expiry = None
        self._refuse(self.expired())

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


def _capacity(key: str, limit: int, whom: str) -> ProtocolError:
    return ProtocolError(
        CAPACITY,
        f"{whom} has reached {key} ({limit} open connections)",
        reason=key,
        close_code=CLOSE_CAPACITY,
    )


def _unauthorized(error: AuthError, close: bool = False) -> ProtocolError:
    return ProtocolError(
        UNAUTHORIZED,
        error.message,
        reason=error.reason,
        close_code=CLOSE_UNAUTHORIZED if close else None,
    )
