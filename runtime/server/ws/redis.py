"""The Redis backplane: one stream per channel, one blocking reader per process (docs/scaling.md).

    link = RedisLink("redis://127.0.0.1:6379/0")
    backplane = RedisBackplane(link, namespace="jacc:chat", history=1000)

Publishing is an `XADD` to the channel's stream, trimmed with `MAXLEN ~`. Every
process, the publisher's included, reads the streams of its channels with one
blocking `XREAD` loop and hands each entry to its subscribers: nobody
short-cuts its own clients, so every client of every worker and host sees one
order per channel, the stream's. A process remembers, per channel, the last id
it delivered (its cursor) and after a drop reads on from there.

The connection's state, up or down, and the way back are `RedisLink`'s
(redis_link.py), shared with the global connection caps (caps.py). Keys are
`<namespace>:stream:<channel>` and `<namespace>:epoch`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .backplane import Backplane, BackplaneUnavailable
from .caps import GlobalCaps
from .history import TRIMMED, Replay, StreamId, parse_offset, replay_after
from .redis_link import (
    COMMAND_TIMEOUT_SECONDS,
    LINK_ERRORS,
    RedisLink,
    describe,
    redis_client,
    stop_task,
)

if TYPE_CHECKING:
    from ..config import WebSocketConfig
    from .connections import ConnectionRegistry

logger = logging.getLogger("jacc.backplane")

# XREAD blocks this long at most, so that a silent network is noticed too.
_BLOCK_MS = 2000
_READ_BATCH = 500
# A stream keeps at least this many entries whatever `history` says, so that a
# worker back from a blip reads on from its cursor rather than past a trimmed hole.
STREAM_FLOOR = 1000
# How long a publish waits for this process's reader to deliver it (see publish).
_READ_BACK_SECONDS = 10.0
_FIELD = "f"


class RedisBackplane(Backplane):
    """Broadcasts through Redis streams, shared by every worker and host on `link`'s Redis.

    `namespace` prefixes every key, so that two apps can share one Redis.
    """

    def __init__(self, link: RedisLink, namespace: str, history: int = 1000) -> None:
        super().__init__(history)
        self.link = link
        self._namespace = namespace
        self._prefix = f"{namespace}:stream:"
        self._maxlen = max(history + 1, STREAM_FLOOR)
        self._watched: set[str] = set()
        # channel -> (id, parsed id) of the last entry this process delivered.
        self._cursors: dict[str, tuple[str, StreamId]] = {}
        self._waiters: dict[str, list[tuple[StreamId, asyncio.Future]]] = {}
        self._epoch: str | None = None
        self._reader_client: aioredis.Redis | None = None
        self._reader: asyncio.Task | None = None
        self._following: asyncio.Task | None = None
        self._stopping = False
        # Set to make the reader start over on the channels now watched (see _read_loop).
        self._restart = False
        link.on_lost(self._fail_waiters)
        link.on_recovered(self._after_reconnect)

    def stream_key(self, channel: str) -> str:
        return f"{self._prefix}{channel}"

    def caps(self, registry: ConnectionRegistry, limits: WebSocketConfig) -> GlobalCaps:
        """The connection caps, counted across every worker and host on this Redis."""
        return GlobalCaps(registry, limits, self.link, self._namespace)

    # --- lifecycle -----------------------------------------------------------------

    def watch(self, channels: Iterable[str]) -> None:
        self._watched = set(channels)
        if self._reader is not None:
            self._following = asyncio.get_running_loop().create_task(self._follow_watched())

    async def start(self) -> None:
        await self.link.open()
        try:
            self._epoch = await self._claim_epoch()
            await self._add_cursors(self._watched)
        except LINK_ERRORS as error:
            await self.link.close()
            raise BackplaneUnavailable(f"cannot reach Redis at {self.link.shown}: "
                                       f"{describe(error)}") from None
        # XREAD BLOCK holds its connection: a client of its own, whose timeout outlasts a block.
        self._reader_client = redis_client(
            self.link.url, client_name=f"{self.link.name}:reader",
            socket_timeout=_BLOCK_MS / 1000 + COMMAND_TIMEOUT_SECONDS)
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def stop(self) -> None:
        self._stopping = True
        await stop_task(self._following, self.link.client)
        await stop_task(self._reader, self._reader_client)
        self._reader = self._following = None
        self._fail_waiters()
        if self._reader_client is not None:
            await self._reader_client.aclose()
        await self.link.close()

    # --- publishing ----------------------------------------------------------------

    async def publish(self, channel: str, frame: str) -> str:
        """XADD `frame`, then wait until this process's reader has delivered it.

        The wait turns "Redis took it" into "delivered here, in the stream's
        order": a sender that did not get SERVICE_UNAVAILABLE knows its
        broadcast reached the clients of its own worker. It costs no extra
        round trip: Redis answers the XADD and the blocked readers together.
        """
        link = self.link
        if not link.up:
            raise BackplaneUnavailable(f"Redis at {link.shown} is unreachable")
        try:
            if channel not in self._cursors:
                await self._add_cursors([channel])  # before the XADD, or it would be skipped
            offset = await link.client.xadd(self.stream_key(channel), {_FIELD: frame},
                                            maxlen=self._maxlen, approximate=True)
        except LINK_ERRORS as error:
            link.failed(error)
            raise BackplaneUnavailable(f"Redis at {link.shown} is unreachable") from None
        except RedisError as error:
            logger.error("backplane: Redis at %s refused a broadcast: %s",
                         link.shown, describe(error))
            raise BackplaneUnavailable(f"Redis refused it: {describe(error)}") from None
        await self._read_back(channel, offset)
        return offset

    async def _read_back(self, channel: str, offset: str) -> None:
        key = parse_offset(offset)
        cursor = self._cursors.get(channel)
        if cursor is not None and cursor[1] >= key:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append((key, waiter))
        try:
            await asyncio.wait_for(waiter, _READ_BACK_SECONDS)
        except asyncio.TimeoutError:
            raise BackplaneUnavailable(f"a broadcast was not read back from Redis within "
                                       f"{_READ_BACK_SECONDS:g} s") from None

    def _fail_waiters(self) -> None:
        # The link went down: whether the waiting broadcasts will ever be read is unknown.
        waiters, self._waiters = self._waiters, {}
        error = BackplaneUnavailable(f"Redis at {self.link.shown} went away")
        for pending in waiters.values():
            for _, waiter in pending:
                if not waiter.done():
                    waiter.set_exception(error)

    # --- reading ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        client = self._reader_client
        while not self._stopping:
            await self.link.wait_up()
            streams = {self.stream_key(c): cursor[0] for c, cursor in self._cursors.items()}
            if not streams:
                await asyncio.sleep(_BLOCK_MS / 1000)  # nothing to read until a watch adds some
                continue
            try:
                response = await client.xread(streams, count=_READ_BATCH, block=_BLOCK_MS)
            except LINK_ERRORS as error:
                if self._stopping:
                    return
                if self._restart:
                    self._restart = False  # its connection was closed on purpose
                else:
                    self.link.failed(error)
                continue
            if self._stopping:
                return
            for key, entries in response or ():
                self._deliver(key[len(self._prefix):], entries)

    def _deliver(self, channel: str, entries: list) -> None:
        if channel not in self._cursors:
            return  # no longer watched (a dev reload removed the walker)
        subscribers = self._subscribers
        lag = self.events.lag
        now = time.time()
        offset = None
        for offset, fields in entries:
            frame = fields.get(_FIELD)
            if frame is None:
                continue  # not one of ours: someone else wrote to the stream
            for deliver in subscribers:
                deliver(channel, frame, offset)
            # An entry's id starts with Redis's clock at the XADD: publication to here.
            lag(max(0.0, now - int(offset.partition("-")[0]) / 1000))
        if offset is not None:
            key = parse_offset(offset)
            self._cursors[channel] = (offset, key)
            self._release_waiters(channel, key)

    def _release_waiters(self, channel: str, cursor: StreamId) -> None:
        pending = self._waiters.get(channel)
        if not pending:
            return
        waiting = []
        for key, waiter in pending:
            if key <= cursor:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((key, waiter))
        self._waiters[channel] = waiting

    # --- cursors and recovery -------------------------------------------------------

    async def _add_cursors(self, channels: Iterable[str]) -> None:
        """Start new channels at their stream's newest entry: live clients get what follows."""
        client = self.link.client
        for channel in channels:
            if channel in self._cursors:
                continue
            newest = await client.xrevrange(self.stream_key(channel), "+", "-", count=1)
            offset = newest[0][0] if newest else "0-0"
            # Whoever fetched first wins: a later answer may already count an entry
            # published here after the first one, which must not be skipped.
            self._cursors.setdefault(channel, (offset, parse_offset(offset)))

    async def _follow_watched(self) -> None:
        watched = self._watched
        for channel in [c for c in self._cursors if c not in watched]:
            del self._cursors[channel]
        try:
            await self._add_cursors(sorted(watched))
        except LINK_ERRORS as error:
            self.link.failed(error)  # the rest are added after the reconnect
            return
        # The reader blocks on the old set of streams: close its connection under it,
        # and it starts over on the new set (cancelling a redis-py read is not reliable).
        self._restart = True
        await self._reader_client.connection_pool.disconnect()

    async def _claim_epoch(self) -> str:
        # A key that lives as long as Redis's data: if it is gone, so are our streams.
        key = f"{self._namespace}:epoch"
        client = self.link.client
        await client.set(key, secrets.token_hex(8), nx=True)
        return await client.get(key)

    async def _after_reconnect(self) -> None:
        self.events.reconnected()
        epoch = await self._claim_epoch()
        if epoch != self._epoch:
            self._epoch = epoch
            await self._reset_lost_cursors()
        await self._add_cursors(self._watched)

    async def _reset_lost_cursors(self) -> None:
        # Redis lost its data (restarted empty, or flushed). A cursor whose entry is
        # still there survived after all; any other stream holds only entries newer
        # than everything delivered, published since: read those from the start.
        client = self.link.client
        reset = []
        for channel, (offset, _) in list(self._cursors.items()):
            if offset != "0-0" and await client.xrange(self.stream_key(channel), offset,
                                                       offset):
                continue
            self._cursors[channel] = ("0-0", (0, 0))
            reset.append(channel)
        logger.warning("backplane: Redis at %s lost its data (restarted empty?); "
                       "reading %s from the start of their new streams",
                       self.link.shown, ", ".join(reset) or "no channel")

    # --- history -------------------------------------------------------------------

    async def replay(self, channel: str, since: str) -> Replay:
        if self.history <= 0:
            return TRIMMED
        link = self.link
        if not link.up:
            raise BackplaneUnavailable(f"Redis at {link.shown} is unreachable")
        try:
            # Enough to tell "missed at most `history`" from "missed more".
            found = await link.client.xrange(self.stream_key(channel), since, "+",
                                             count=self.history + 2)
        except LINK_ERRORS as error:
            link.failed(error)
            raise BackplaneUnavailable(f"Redis at {link.shown} is unreachable") from None
        entries = [(offset, fields[_FIELD]) for offset, fields in found if _FIELD in fields]
        return replay_after(since, entries, self.history)

