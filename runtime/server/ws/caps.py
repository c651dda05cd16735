"""The connection caps `max_connections_per_walker` and `max_connections_per_user`:
who counts them (docs/protocol.md, Connection caps; docs/scaling.md, Connection caps).

`ConnectionCaps` counts in this process, with the registry's counts. With a
Redis backplane, `GlobalCaps` counts across every worker and host: each key
(a walker, a user) is a Redis hash with one field per worker, its count there,
and a claim is one Lua script that sums the fields of live workers and adds one
to its own only if the sum is under the limit. Atomic in Redis, so two hosts
admitting at once cannot both take the last place.

A worker is live while its heartbeat, a score in `<namespace>:workers` set from
Redis's own clock (hosts' clocks may disagree), is under `_LIVE_MS` old: the
share of a worker that died stops counting within a few seconds. Its fields are
deleted once it has been silent for `_FORGET_MS`.

While Redis is down the caps fall back to this process's counts (serving goes
on); once it is back, each worker writes its true counts again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from .redis_link import LINK_ERRORS, RedisLink, describe

if TYPE_CHECKING:
    from ..config import WebSocketConfig
    from .connections import Connection, ConnectionRegistry

logger = logging.getLogger("jacc.caps")

WALKER, USER = "walker", "user"
_LIVE_MS = 3000  # three missed beats (RedisLink beats every second)
_FORGET_MS = 60_000

# KEYS: the count hash, the workers zset. ARGV: this worker, the limit, _LIVE_MS, _FORGET_MS.
_CLAIM = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local worker, count = fields[i], tonumber(fields[i + 1])
  if worker == ARGV[1] then
    total = total + count
  else
    local seen = redis.call('ZSCORE', KEYS[2], worker)
    local age = seen and (now_ms - tonumber(seen)) or nil
    if age and age <= tonumber(ARGV[3]) then
      total = total + count
    elseif (not age) or age > tonumber(ARGV[4]) then
      redis.call('HDEL', KEYS[1], worker)
    end
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""

# KEYS: the count hash. ARGV: this worker.
_RELEASE = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
"""

# KEYS: the workers zset. ARGV: this worker, _FORGET_MS.
_BEAT = """
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZADD', KEYS[1], now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
return now_ms
"""


class ConnectionCaps:
    """The two caps, counted by this process's registry."""

    def __init__(self, registry: ConnectionRegistry, limits: WebSocketConfig) -> None:
        self.registry = registry
        self.limits = limits

    async def enter(self, connection: Connection) -> bool:
        """Count `connection` in its walker; False if the walker is at its cap."""
        if self.registry.count(connection.walker) >= self.limits.max_connections_per_walker:
            return False
        self.registry.add(connection)
        return True

    async def identify(self, connection: Connection, user_id: str) -> bool:
        """Count `connection` as `user_id`'s; False if the user is at its cap."""
        return self.registry.claim_user(connection, user_id,
                                        self.limits.max_connections_per_user)

    def leave(self, connection: Connection) -> None:
        """Count `connection` out of everything; once, as it ends."""
        self.registry.discard(connection)

    async def close(self) -> None:
        """Let go of whatever the caps hold outside this process (nothing, here)."""


class GlobalCaps(ConnectionCaps):
    """The two caps counted across every worker and host of one Redis (see the module doc)."""

    def __init__(self, registry: ConnectionRegistry, limits: WebSocketConfig,
                 link: RedisLink, namespace: str) -> None:
        super().__init__(registry, limits)
        self.worker = uuid.uuid4().hex
        self._link = link
        self._prefix = f"{namespace}:conns:"
        self._workers = f"{namespace}:workers"
        client = link.client
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._beat_script = client.register_script(_BEAT)
        # Keys this worker may have a field in: what a rewrite after a reconnect covers.
        self._touched: set[tuple[str, str]] = set()
        # Keys whose release did not reach Redis: written as they are at the next beat.
        self._dirty: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task] = set()
        link.on_beat(self._beat)
        link.on_recovered(self._rewrite)

    async def enter(self, connection: Connection) -> bool:
        walker = connection.walker
        limit = self.limits.max_connections_per_walker
        if not await self._take(WALKER, walker, limit):
            return False
        self.registry.add(connection)
        return True

    async def identify(self, connection: Connection, user_id: str) -> bool:
        if connection.counted_user == user_id:
            return True
        if not await self._take(USER, user_id, self.limits.max_connections_per_user):
            return False
        previous = connection.counted_user
        if not self.registry.claim_user(connection, user_id, limit=2**62):  # counted above
            self._give_back(USER, user_id)  # the connection ended meanwhile
            return False
        if previous is not None:
            self._give_back(USER, previous)
        return True

    def leave(self, connection: Connection) -> None:
        user = connection.counted_user
        if not self.registry.discard(connection):
            return
        self._give_back(WALKER, connection.walker)
        if user is not None:
            self._give_back(USER, user)

    # --- Redis ---------------------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    def _local_count(self, kind: str, name: str) -> int:
        registry = self.registry
        return registry.count(name) if kind == WALKER else registry.user_count(name)

    async def _take(self, kind: str, name: str, limit: int) -> bool:
        taken = await self._claim_or_local(kind, name, limit)
        if taken:
            self._touched.add((kind, name))
        return taken

    async def _claim_or_local(self, kind: str, name: str, limit: int) -> bool:
        if not self._link.up:
            return self._local_count(kind, name) < limit  # Redis is down: this process's view
        claim = asyncio.get_running_loop().create_task(self._claim(
            keys=[self._key(kind, name), self._workers],
            args=[self.worker, limit, _LIVE_MS, _FORGET_MS]))
        try:
            # Shielded: a claim that Redis made must be given back even if the
            # connection that asked for it is gone before the answer.
            return bool(await asyncio.shield(claim))
        except asyncio.CancelledError:
            claim.add_done_callback(lambda done: self._undo(done, kind, name))
            raise
        except LINK_ERRORS as error:
            self._link.failed(error)
        except RedisError as error:
            logger.error("connection caps: Redis refused a claim: %s", describe(error))
        return self._local_count(kind, name) < limit

    def _undo(self, claim: asyncio.Task, kind: str, name: str) -> None:
        if not claim.cancelled() and claim.exception() is None and claim.result():
            self._touched.add((kind, name))
            self._give_back(kind, name)

    def _give_back(self, kind: str, name: str) -> None:
        if not self._link.up:
            self._dirty.add((kind, name))  # written as it is once Redis is back
            return
        task = asyncio.get_running_loop().create_task(self._release_one(kind, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_one(self, kind: str, name: str) -> None:
        try:
            await self._release(keys=[self._key(kind, name)], args=[self.worker])
        except LINK_ERRORS as error:
            self._dirty.add((kind, name))
            self._link.failed(error)
            return
        except RedisError as error:
            logger.error("connection caps: Redis refused a release: %s", describe(error))
        if self._local_count(kind, name) == 0:
            self._touched.discard((kind, name))

    async def _beat(self) -> None:
        await self._beat_script(keys=[self._workers], args=[self.worker, _FORGET_MS])
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            await self._write(dirty)

    async def _rewrite(self) -> None:
        # After a reconnect: releases while Redis was down went nowhere, and a Redis
        # that restarted empty knows no count at all.
        self._dirty.clear()
        await self._beat()
        await self._write(self._touched)

    async def _write(self, keys: set[tuple[str, str]]) -> None:
        """Set this worker's field of each key to its true count, this process's."""
        if not keys:
            return
        # Counts read before the first await: the pipeline writes one moment's truth.
        counts = {key: self._local_count(*key) for key in keys}
        async with self._link.client.pipeline(transaction=False) as pipe:
            for (kind, name), count in sorted(counts.items()):
                if count:
                    pipe.hset(self._key(kind, name), self.worker, count)
                else:
                    pipe.hdel(self._key(kind, name), self.worker)
            await pipe.execute()
        for key, count in counts.items():
            if not count and not self._local_count(*key):
                self._touched.discard(key)

    async def close(self) -> None:
        """Give this worker's counts back at once rather than let them expire."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._link.up:
            return
        try:
            async with self._link.client.pipeline(transaction=False) as pipe:
                for kind, name in self._touched:
                    pipe.hdel(self._key(kind, name), self.worker)
                pipe.zrem(self._workers, self.worker)
                await pipe.execute()
        except (*LINK_ERRORS, RedisError):
            pass  # they expire with this worker's heartbeat
