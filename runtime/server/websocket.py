"""The WebSocket protocol `jacc serve` runs under uvicorn (docs/security.md, docs/performance.md).

uvicorn's sans-I/O protocol (on the `websockets` library) does the handshake,
the control frames, the closing handshake and every error; this subclass
answers what it leaves unanswered, logs less, and gives the common frame a
shorter way in and out:

- In: once the socket is open, a complete, final, unfragmented text or binary
  frame within `max_size` is read here (head, mask, payload, unmasked by
  `websockets.speedups`) and handed to the app. Every other frame (ping, pong,
  close, a fragment, a reserved bit, an unmasked or oversized frame) is handed
  to `websockets` whole, so the library's parser only ever starts at a frame
  boundary and decides as it always does. A frame split across reads waits
  here until it is complete; its head is read first, so an announced length over
  `max_size` goes to the library at once (1009), never into a buffer.
- Out: a data frame of the server (final, unmasked) is a 2-to-10-byte head and
  the payload, written in one `transport.write`. The app may also write a text
  frame without an ASGI message and an `await` (the scope extension
  `WRITE_TEXT`), which a connection does whenever nothing of its own is queued:
  a broadcast to 100 sockets is then 100 writes, not 100 task switches.
- Flow: uvicorn stops reading the socket after every message until the app
  takes it, which costs two system calls per message. Here reading pauses only
  while the app has `_INBOX_BYTES` or `_INBOX_FRAMES` untaken, so a client
  still cannot make the server buffer without bound.
- The inbox and the writable flag are a list and a bool with a future made
  only when someone must wait (uvicorn's `asyncio.Queue` and `asyncio.Event`
  hold about 3.8 KB per connection, and `asyncio.Queue.get` asks the OS for the
  process id on every wait).

Frames on the wire are the same bytes as the library's: tests/test_websocket.py
checks both ways against `websockets`' own parser and serializer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

from .protocol import CLOSE_INVALID_DATA

logger = logging.getLogger("jacc.sockets")

__all__ = ["LIMIT_UNSENT", "WRITE_TEXT", "WebSocketProtocol", "server_frame"]

# The ASGI scope extension of a WebSocket: a callable, no arguments, that limits
# what the kernel holds unsent for this socket (`_limit_unsent`).
LIMIT_UNSENT = "jacc.limit_unsent"
# The ASGI scope extension of a WebSocket: `write_text(text) -> bool`, which writes
# a text frame at once if the socket takes output (`WebSocketProtocol.write_text`).
WRITE_TEXT = "jacc.write_text"

# What a WebSocket may hold in the kernel, written but not yet sent (`_limit_unsent`).
_UNSENT_BYTES = 131072
# Reading pauses while the app has this much of a socket's input untaken.
_INBOX_BYTES = 65536
_INBOX_FRAMES = 64

# Modes of the reading side (`WebSocketProtocol._mode`).
_HANDSHAKE = 0  # the request head goes to the library
_OPENING = 1  # the head is parsed, nothing read since: the library stands at a frame boundary
_FRAMES = 2  # open: frames are read here, and the unusual ones handed to the library whole
_LIBRARY = 3  # everything goes to the library from now on

_TEXT, _BINARY = 0x1, 0x2
# The first byte of a frame read here: FIN, no reserved bit, text or binary.
_FAST_FIRST = {0x80 | _TEXT: "text", 0x80 | _BINARY: "bytes"}


def server_frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame of `opcode` carrying `payload` (RFC 6455, section 5.2)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def _frame_length(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(head size, payload size) of the masked client frame at `start`, or None
    while its head is not all there. The head includes the 4-byte mask key when the
    mask bit is set."""
    available = len(data) - start
    if available < 2:
        return None
    second = data[start + 1]
    size = second & 0x7F
    head = 2
    if size == 126:
        head = 4
        if available < head:
            return None
        (size,) = struct.unpack_from("!H", data, start + 2)
    elif size == 127:
        head = 10
        if available < head:
            return None
        (size,) = struct.unpack_from("!Q", data, start + 2)
    if second & 0x80:
        head += 4
    return head, size


class _Inbox:
    """What the socket has received and the app has not taken: uvicorn's queue, lighter.

    `put_nowait` and `empty` are the `asyncio.Queue` methods uvicorn calls;
    `size` is the bytes of a data message, counted in `bytes` until the app takes
    it. The app's one reader waits in `WebSocketProtocol.receive` (one coroutine
    frame while it waits, not two).
    """

    __slots__ = ("items", "_waiter", "_loop", "bytes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[tuple[dict, int]] = []
        self._waiter: asyncio.Future | None = None
        self._loop = loop
        self.bytes = 0

    def put_nowait(self, message: dict, size: int = 0) -> bool:
        """Add `message`; True once the app has so much untaken that reading should pause."""
        items = self.items
        items.append((message, size))
        self.bytes += size
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return self.bytes >= _INBOX_BYTES or len(items) >= _INBOX_FRAMES

    def arrival(self) -> asyncio.Future:
        """A future done when the next message arrives (for the one reader)."""
        waiter = self._waiter = self._loop.create_future()
        return waiter

    def take(self) -> dict:
        """The oldest message; the inbox is not empty."""
        message, size = self.items.pop(0)
        self.bytes -= size
        return message

    def empty(self) -> bool:
        return not self.items


class _Writable:
    """Whether the transport takes more output: uvicorn's `asyncio.Event`, lighter."""

    __slots__ = ("flag", "_waiter", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flag = True
        self._waiter: asyncio.Future | None = None
        self._loop = loop

    def set(self) -> None:
        self.flag = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    async def wait(self) -> None:
        while not self.flag:
            if self._waiter is None:
                self._waiter = self._loop.create_future()
            await asyncio.shield(self._waiter)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, answering what it leaves unanswered, logging less,
    and reading and writing the common data frame itself (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets logs "connection open", "connection closed" and "connection rejected"
        # for every socket at INFO, after uvicorn's own line: keep its warnings only.
        self.conn.logger = logging.getLogger("jacc.sockets.websockets")
        self.queue = self._inbox = _Inbox(self.loop)  # type: ignore[assignment]
        self.writable = _Writable(self.loop)  # type: ignore[assignment]
        self._mode = _HANDSHAKE
        self._partial = b""  # the start of a frame whose end has not arrived

    # --- the handshake -----------------------------------------------------------------

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none for a handshake refused by the parser
        if scope is not None:
            extensions = scope["extensions"]
            extensions[LIMIT_UNSENT] = functools.partial(_limit_unsent, self.transport)
            extensions[WRITE_TEXT] = self.write_text

    def _refused_by_parser(self) -> None:
        # websockets refused the request (a request line or a header line over 8 KiB,
        # too many headers, not HTTP) and queued its answer. uvicorn 0.55 sends it
        # (and closes); before, it never did.
        logger.info("%s - refused a WebSocket handshake: %s", _peer(self.client),
                    self.conn.handshake_exc)
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    # --- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        mode = self._mode
        if mode == _FRAMES or (mode == _OPENING and self._opened()):
            self._read_frames(data)
            return
        if mode == _OPENING:
            self._mode = _LIBRARY  # bytes before the 101: the library's buffer, not ours
        self._to_library(data)
        if mode == _HANDSHAKE:
            # uvicorn hands the request head over in one call: the library has read all of
            # it and stands at the first frame, unless it refused it.
            refused = self.conn.handshake_exc is not None
            clean = self.handshake_initiated and not refused and not self.conn.reader.buffer
            self._mode = _OPENING if clean else _LIBRARY
            if refused and not self.handshake_initiated:
                self._refused_by_parser()

    def _opened(self) -> bool:
        if self.handshake_complete and self.conn.state is State.OPEN and not self.close_sent:
            self._mode = _FRAMES
            return True
        return False

    def _to_library(self, data: bytes | bytearray) -> None:
        super().data_received(bytes(data))

    def _read_frames(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        start, end = 0, len(data)
        limit = self.conn.max_message_size
        while start < end:
            length = _frame_length(data, start)
            if length is None:
                break
            head, size = length
            if limit is not None and size > limit:
                # Over max_size: the library refuses it from its head (1009) and is done.
                self._mode = _LIBRARY
                self._to_library(data[start:])
                return
            stop = start + head + size
            if stop > end:
                break
            kind = _FAST_FIRST.get(data[start])
            if (kind is None or not data[start + 1] & 0x80
                    or self.conn.current_size is not None or self.close_sent
                    or self.conn.state is not State.OPEN):
                # Anything unusual, whole, to the library: it starts and ends on a boundary.
                self._to_library(data[start:stop])
            else:
                self._deliver(kind, apply_mask(data[start + head:stop],
                                               data[start + head - 4:start + head]))
            start = stop
            if self.transport.is_closing():
                return
        if start < end:
            self._partial = data[start:]

    def send_receive_event_to_app(self) -> None:
        """Give the app the message the library read, in `self.frames`."""
        frames, self.frames = self.frames, []
        self._deliver(self.curr_msg_data_type, frames[0] if len(frames) == 1 else b"".join(frames))

    def _deliver(self, kind: str, data: bytes) -> None:
        """Give the app a `text` or `bytes` message; pause reading while it has a lot."""
        if self.close_sent:
            # Past `websocket.close`: drop it, and read on until the peer's close arrives.
            return
        inbox = self._inbox
        if kind == "text":
            try:
                message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                logger.info("%s - closed a WebSocket with %d: a text frame that is not UTF-8",
                            _peer(self.client), CLOSE_INVALID_DATA)
                self.conn.send_close(CLOSE_INVALID_DATA, "invalid UTF-8")
                self.handle_parser_exception()  # tells the app, sends the close, drops the socket
                return
        else:
            message = {"type": "websocket.receive", "bytes": bytes(data)}
        if inbox.put_nowait(message, len(data)) and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        inbox = self._inbox
        while not inbox.items:
            await inbox.arrival()
        message = inbox.take()
        if self.read_paused and not inbox.items:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    # --- writing -----------------------------------------------------------------------

    async def send(self, message: Any) -> None:
        if (message["type"] == "websocket.send" and self.handshake_complete
                and not self.close_sent and self.initial_response is None):
            await self._send_data(message)
            return
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response, headers and all, are not read again.
            self.request = self.response = None
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # The refusal is complete; without this, uvicorn logs an ERROR that the
            # app "returned without completing handshake".
            self.handshake_complete = True

    def write_text(self, text: str) -> bool:
        """Write a text frame now; False, writing nothing, while the transport is full.

        Raises `ClientDisconnected` once the socket is gone or closing, as `send` does.
        """
        if not self.writable.flag:
            return False
        self._write_data(_TEXT, text.encode())
        return True

    async def _send_data(self, message: Any) -> None:
        if not self.writable.flag:
            await self.writable.wait()
        text = message.get("text")
        if text is not None:
            self._write_data(_TEXT, text.encode())
        else:
            self._write_data(_BINARY, bytes(message.get("bytes") or b""))

    def _write_data(self, opcode: int, payload: bytes) -> None:
        if (self.disconnected or self.close_sent or not self.handshake_complete
                or self.conn.state is not State.OPEN):
            raise ClientDisconnected()
        self.transport.write(server_frame(opcode, payload))


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


def _limit_unsent(transport: Any) -> None:
    """Let the kernel hold at most `_UNSENT_BYTES` of a WebSocket's output unsent.

    Without it Linux grows a socket's send buffer to megabytes and reports it
    writable again only once a third of that has gone: a client that reads a
    stream slowly but steadily (250 KB/s) then sees one send wait longer than
    `send_timeout_seconds` and is closed with 4408. With the limit, a stream's
    chunks go out at the reader's pace, so `send_timeout_seconds` measures the
    reader. A stream asks for it (ws/streams.py); other sockets keep the kernel's
    buffering, which absorbs a client that pipelines megabytes before it reads
    (docs/protocol.md, "Streams")."""
    sock = transport.get_extra_info("socket")
    if sock is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, _UNSENT_BYTES)
        except OSError:  # not TCP (a Unix socket): nothing to limit
            pass
