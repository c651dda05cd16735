"""Reading a socket ahead of its session while a walker runs long (docs/protocol.md, Heartbeat).

The WebSocket protocol (websocket.py) stops reading a socket while the app has
64 of its frames untaken, so with frames pipelined behind a long walker run the
peer's pongs would sit unread and the keepalive would drop a live client (1011).
Reading ahead keeps the socket drained: the frames read wait, in order, for the
session's reader.
A client that sends more than `MAX_FRAMES`, or four times `max_message_bytes`,
during one walker run is left to TCP backpressure again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# At most this many frames are read ahead during one walker run.
MAX_FRAMES = 64


class ReadAhead:
    """The frames read ahead of one session's reader, and the task that reads them.

    `frames` holds ASGI messages in arrival order (a list: at most `MAX_FRAMES`, and
    an empty list costs a tenth of an empty deque); the reader takes from it before
    it receives anew. `task` is the reading task while there is one.
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("frames", "task", "_receive", "_budget",)

    def __init__(self, receive: Callable[[], Awaitable[dict]], max_message_bytes: int) -> None:
        self.frames: list[dict] = []
        self.task: asyncio.Task | None = None
        self._receive = receive
        self._budget = 4 * max_message_bytes

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read ahead until `stop`, unless already doing so."""
        if self.task is None:
            self.task = loop.create_task(self._read())

    @property
    def peer_left(self) -> bool:
        """Whether what was read ahead ends with the peer going away (a close, a drop).

        A stream stops at once when it does (ws/streams.py)."""
        frames = self.frames
        return bool(frames) and frames[-1]["type"] != "websocket.receive"

    def stop(self) -> None:
        """Stop reading. Nothing is lost: what was read is in `frames`."""
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _read(self) -> None:
        frames = self.frames
        receive = self._receive
        budget = self._budget
        while len(frames) < MAX_FRAMES and budget > 0:
            message = await receive()
            frames.append(message)
            if message["type"] != "websocket.receive":
                return
            budget -= len(message.get("text") or message.get("bytes") or b"")
