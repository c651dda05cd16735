"""How one connection takes its walker's broadcasts when it asked for offsets or to resume
(`?offsets=1`, `?since=OFFSET`; docs/scaling.md, Resume).

The seam between replay and live frames is the whole difficulty:

1. the connection is registered for live delivery *before* the history is read,
   so nothing published meanwhile can fall between the two;
2. live frames that arrive while the history is read and replayed are held back;
3. after the replay and the `resumed` frame, the held frames follow, and any live
   frame whose offset is not past the last one replayed is dropped: the history
   read may run ahead of this worker's live delivery, so the same broadcast can
   come both ways, and offsets increase along a channel.

The replay keeps to the outbound queue's bound (it waits for room rather than
overflow it), and the held frames are bounded by the same number: a client that
cannot take them is too slow, 4408, like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from starlette.datastructures import QueryParams

from ..protocol import CLOSE_BACKPLANE_DOWN, SERVICE_UNAVAILABLE, error_frame
from .backplane import BackplaneUnavailable
from .connections import Connection, frame_bytes
from .history import TRIMMED, Replay, StreamId, parse_offset, resumed_frame, with_offset

logger = logging.getLogger("jacc.resume")

ReplayCall = Callable[[str, str], Awaitable[Replay]]

_YES = frozenset({"1", "true", "yes", "on"})


def follower_for(connection: Connection, query_string: bytes, channel: str,
                 replay: ReplayCall) -> Follower | None:
    """A `Follower` for a connection whose URL asks for offsets or a resume, else None."""
    query = QueryParams(query_string)
    offsets = query.get("offsets", "").lower() in _YES
    since = query.get("since")
    if not offsets and since is None:
        return None
    return Follower(connection, channel, since=since, offsets=offsets, replay=replay)


class Follower:
    """Takes one connection's broadcasts in place of a plain `enqueue` (see the module doc)."""

    def __init__(self, connection: Connection, channel: str, *, since: str | None,
                 offsets: bool, replay: ReplayCall) -> None:
        self._connection = connection
        self._channel = channel
        self._since = since
        self._offsets = offsets
        self._replay = replay
        # Live frames held back during the replay: (offset, frame as this client takes it),
        # and their bytes, bounded as the outbound queue is.
        self._held: deque[tuple[str, str]] | None = deque() if since is not None else None
        self._held_bytes = 0
        # Live frames up to here came with the replay already.
        self._floor: StreamId | None = None
        self.task: asyncio.Task | None = None

    def __call__(self, frame: str, framed: str, offset: str) -> None:
        """A live broadcast (the registry's `deliver`)."""
        chosen = framed if self._offsets else frame
        held = self._held
        if held is not None:
            if self._connection.closing:
                return
            self._held_bytes += frame_bytes(chosen)
            if self._held_bytes > self._connection.queue_limit:
                self._connection.overflowed()  # live frames piled up during the replay
                held.clear()
                return
            held.append((offset, chosen))
            return
        if self._floor is not None:
            if parse_offset(offset) <= self._floor:
                return
            self._floor = None  # offsets only grow from here: stop comparing
        self._connection.enqueue(chosen)

    def admitted(self) -> None:
        """The connection now takes broadcasts: start the replay, if one was asked for."""
        if self._since is not None and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        connection = self._connection
        since = self._since
        try:
            replay = await self._read(since)
        except BackplaneUnavailable as error:
            # The client keeps its offset and tries again later: better than live frames
            # with a hole it would not know about.
            connection.enqueue(error_frame(SERVICE_UNAVAILABLE, f"cannot resume: {error}"))
            connection.close(CLOSE_BACKPLANE_DOWN, "backplane unavailable")
            return
        last = since
        for offset, frame in replay.entries:
            shown = self._shown(frame, offset)
            size = frame_bytes(shown)
            await connection.wait_for_room(size)
            connection.enqueue(shown, size)
            last = offset
        connection.enqueue(resumed_frame(len(replay.entries) if replay.ok else None))
        self._floor = parse_offset(last) if replay.ok else None
        await self._release_held()

    async def _read(self, since: str) -> Replay:
        if parse_offset(since) is None:
            return TRIMMED  # not an offset this server hands out: in no history
        return await self._replay(self._channel, since)

    async def _release_held(self) -> None:
        held = self._held
        while held:
            offset, frame = held.popleft()
            if self._floor is not None:
                if parse_offset(offset) <= self._floor:
                    continue
                self._floor = None
            size = frame_bytes(frame)
            self._held_bytes -= size
            await self._connection.wait_for_room(size)
            self._connection.enqueue(frame, size)
        # No await since the loop's last look: nothing can slip in between.
        self._held = None

    def _shown(self, frame: str, offset: str) -> str:
        return with_offset(frame, offset) if self._offsets else frame

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
