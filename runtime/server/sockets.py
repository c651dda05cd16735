"""The socket side of `jacc serve`: what happens before the app sees a request (docs/security.md).

uvicorn's protocols, as they come, hold a socket for as long as the peer likes
until its request is complete, take request heads of any size, and let anyone
open sockets until the process runs out of file descriptors. `serve` runs
uvicorn with the two protocol classes of this module instead:

    uvicorn.Config(app, **protocol_classes(limits))

- `HttpProtocol` (uvicorn's httptools protocol) refuses a connection past
  `max_connections` (503), a request head over `max_header_bytes` (431), and
  closes a connection whose request is not complete within
  `handshake_timeout_seconds` (408, or nothing if it sent nothing).
- `WebSocketProtocol` (websocket.py, uvicorn's websockets sans-I/O protocol)
  sends the answer of a handshake its parser refused (414, 431, 400), closes a
  text frame that is not UTF-8 with 1007 in one log line, stops logging an ERROR
  after an upgrade the app refused on purpose (404, 403), offers the app a way to
  keep a socket's unsent output small (`LIMIT_UNSENT`), and reads and writes the
  common data frame on a shorter path than uvicorn's.

Costs: one timer per connection while a request is incomplete, one integer
addition per chunk read while a request head is incomplete; nothing once a
request is in.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

try:
    import resource
except ImportError:  # Windows: no open-file limit to fit
    resource = None

from .websocket import WebSocketProtocol
from .protocol import (
    CAPACITY,
    MESSAGE_TOO_LARGE,
    REQUEST_TIMEOUT,
    ProtocolError,
)

logger = logging.getLogger("jacc.sockets")

__all__ = ["HttpProtocol", "SocketLimits", "fit_open_files", "protocol_classes"]

# File descriptors kept for what is not a client socket: the listening socket,
# the event loop, logs, the account store, the dev-mode watcher, threads.
_SPARE_FILES = 64
# After a refusal the server reads (and drops) what the client still sends for at
# most this long, or this much: closing with unread data makes the kernel send a
# reset, and a client that is still writing its request may then never read why.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 65536


@dataclass(frozen=True)
class SocketLimits:
    """The `[server]` limits enforced on sockets (docs/configuration.md)."""

    max_connections: int
    max_header_bytes: int
    handshake_timeout_seconds: float


def protocol_classes(limits: SocketLimits) -> dict[str, Any]:
    """The `http` and `ws` arguments of `uvicorn.Config` that enforce `limits`."""
    return {
        "http": functools.partial(HttpProtocol, limits=limits),
        "ws": WebSocketProtocol,
    }


def fit_open_files(max_connections: int) -> int:
    """How many connections this process can hold open: `max_connections`, if it can.

    Raises the soft limit on open files up to the hard one as far as
    `max_connections` needs; if that is not enough, returns the number that
    fits, so that the excess is answered 503 instead of failing in accept().
    """
    if resource is None:
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    return max(1, soft - _SPARE_FILES)


# --- HTTP ------------------------------------------------------------------------------


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, with a connection cap, a head size limit and a deadline."""

    def __init__(self, *args: Any, limits: SocketLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        # Bytes read of a request head still incomplete; None outside a head.
        self._head_bytes: int | None = None
        self._in_request = False
        # Bytes the client may still send after a refusal, before the socket is closed.
        self._linger: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self._limits.max_connections
        # `connections` holds every open HTTP and WebSocket protocol, this one included.
        if len(self.connections) > limit:
            logger.warning("%s - refused: the server has reached max_connections (%d), 503",
                           _peer(self.client), limit)
            self._answer(ProtocolError(
                CAPACITY, f"the server has reached max_connections ({limit} open connections)",
                reason="max_connections", status=503), linger=False)
            return
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            self._drop(data)
            return
        super().data_received(data)
        if self._head_bytes is None or self.transport.is_closing():
            return
        # The head is still incomplete after this chunk, so all of it was head (or, with
        # pipelining, the end of the request before): httptools buffers it, count it.
        self._head_bytes += len(data)
        limit = self._limits.max_header_bytes
        if self._head_bytes > limit:
            logger.warning("%s - refused: request head over max_header_bytes (%d bytes), 431",
                           _peer(self.client), limit)
            self._answer(ProtocolError(
                MESSAGE_TOO_LARGE, f"the request head is over max_header_bytes ({limit} bytes)",
                reason="max_header_bytes", status=431))

    # --- httptools' callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._in_request = True
        self._start_deadline()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_request = False
        self._stop_deadline()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the socket over; its pings watch it from now on.
        self._stop_deadline()
        super().handle_websocket_upgrade()

    # --- the deadline ------------------------------------------------------------------

    def _start_deadline(self) -> None:
        # From the connection (or the first byte of the next request on a kept-alive
        # one) to the end of the request: idle keep-alive is uvicorn's timeout_keep_alive.
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._limits.handshake_timeout_seconds,
                                                  self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        seconds = self._limits.handshake_timeout_seconds
        peer = _peer(self.client)
        if not self._in_request:
            # Nothing to answer: a socket opened and never used (a scanner, an attack,
            # or a browser's speculative connection).
            logger.info("%s - closed: no request within handshake_timeout_seconds (%g s)",
                        peer, seconds)
            self.transport.close()
            return
        logger.info("%s - closed: request not complete within handshake_timeout_seconds "
                    "(%g s), 408", peer, seconds)
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app is answering already: it cannot be a 408 now
            return
        self._answer(ProtocolError(
            REQUEST_TIMEOUT,
            f"the request was not complete within handshake_timeout_seconds ({seconds:g} s)",
            reason="handshake_timeout_seconds"))

    def _answer(self, error: ProtocolError, linger: bool = True) -> None:
        """Answer `error` as JSON and close, whatever the app is doing with this request.

        With `linger`, the socket stays open for a moment after the answer (see
        _LINGER_SECONDS); a refusal for want of sockets closes at once instead.
        """
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # An app still reading the body gets a disconnect, and its answer goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        self._stop_deadline()
        self.transport.write(_response(error))
        if not linger:
            self.transport.close()
            return
        # The answer says `connection: close`: the client closes once it has read it, and
        # the last deadline is the end of the linger.
        self._linger = _LINGER_BYTES
        self._deadline = self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    def _drop(self, data: bytes) -> None:
        self._linger -= len(data)
        if self._linger < 0:
            self.transport.close()


def _response(error: ProtocolError) -> bytes:
    body = error.frame().encode()
    phrase = http.HTTPStatus(error.status).phrase
    head = (f"HTTP/1.1 {error.status} {phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode() + body


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"
