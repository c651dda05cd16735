"""One process's connection to Redis, shared by the backplane (redis.py) and the global
connection caps (caps.py): whether it is up, logged once per change, and the way back.

A user of the link reports a command that failed for want of Redis with
`failed`; the link is then down until a probe, a PING with capped and jittered
backoff, gets through and every `on_recovered` hook has run. While it is down,
a broadcast fails at once (`BackplaneUnavailable`: SERVICE_UNAVAILABLE to its
sender) and everything else goes on. redis-py retries nothing: a retried XADD
that Redis had applied the first time would broadcast twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import redacted_url
from .backplane import BackplaneUnavailable

logger = logging.getLogger("jacc.backplane")

# Errors that mean "the link is down", as opposed to a command Redis refused.
LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

_CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 5.0
BEAT_SECONDS = 1.0
_BACKOFF_FIRST_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0
# Publishes, claims and heartbeats of one process share this many connections.
_POOL_SIZE = 16

Hook = Callable[[], Awaitable[None]]


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def backoff(attempt: int) -> float:
    """Seconds before reconnect attempt `attempt` (0, 1, ...): doubling, capped, jittered
    (half fixed, half random), so that the workers of a fleet spread out."""
    delay = min(_BACKOFF_CAP_SECONDS, _BACKOFF_FIRST_SECONDS * 2**attempt)
    return delay * (0.5 + random.random() / 2)


async def stop_task(task: asyncio.Task | None, client: aioredis.Redis | None = None,
                    timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
    """Cancel `task`, which may be inside a redis-py command, and wait for it to end.

    On Python 3.11 a cancel that lands while redis-py writes a command can be
    lost (`asyncio.wait_for`'s race, fixed in 3.12), so the loops here also
    check a flag of their own; closing `client`'s connections ends a blocking
    read that would otherwise go on until its timeout.
    """
    if task is None or task.done():
        return
    task.cancel()
    if client is not None:
        await client.connection_pool.disconnect()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        logger.warning("backplane: a Redis task did not stop within %g s", timeout)


def redis_client(url: str, *, pool_size: int = 1, **options: object) -> aioredis.Redis:
    """A client for `url` that retries nothing (see the module doc), with at most
    `pool_size` connections: commands past that wait for one, rather than open more."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=COMMAND_TIMEOUT_SECONDS,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        protocol=2,  # XREAD's answer is then a list of [key, entries], on every redis-py
        **options,
    )
    return aioredis.Redis.from_pool(pool)


class RedisLink:
    """A command client for `url`, whether Redis answers, and recovery (see the module doc).

    `on_lost` hooks run at once when the link goes down, `on_recovered` hooks
    before it is up again (and when Redis restarted unnoticed, see `_beat`),
    `on_beat` hooks every second while it is up.
    """

    def __init__(self, url: str, name: str | None = None) -> None:
        self.url = url
        self.shown = redacted_url(url)
        # CLIENT LIST shows which process a connection belongs to.
        self.name = name or f"jacc:{os.getpid()}"
        self.client = redis_client(url, pool_size=_POOL_SIZE, client_name=self.name,
                                   socket_timeout=COMMAND_TIMEOUT_SECONDS)
        self.up = False
        self._up = asyncio.Event()
        self._wake = asyncio.Event()
        self._lost: list[Callable[[], None]] = []
        self._recovered: list[Hook] = []
        self._beats: list[Hook] = []
        self._down_since = 0.0
        self._task: asyncio.Task | None = None
        self._closed = False
        # INFO's run_id: it changes when Redis restarts, even if no command of ours failed.
        self._run_id: str | None = None

    def on_lost(self, hook: Callable[[], None]) -> None:
        self._lost.append(hook)

    def on_recovered(self, hook: Hook) -> None:
        self._recovered.append(hook)

    def on_beat(self, hook: Hook) -> None:
        self._beats.append(hook)

    async def open(self) -> None:
        """Connect and beat once; BackplaneUnavailable, naming the URL, if Redis is not there."""
        try:
            self._run_id = await self._server_run_id()
            for beat in self._beats:
                await beat()
        except (*LINK_ERRORS, RedisError) as error:
            raise BackplaneUnavailable(f"cannot reach Redis at {self.shown}: "
                                       f"{describe(error)}") from None
        self.up = True
        self._up.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closed = True
        self._up.set()  # nobody waits for a link that is closed
        await stop_task(self._task, self.client)
        self._task = None
        await self.client.aclose()

    def failed(self, error: BaseException) -> None:
        """A command failed for want of Redis: the link is down until a probe gets through."""
        if not self.up:
            return
        self.up = False
        self._up.clear()
        self._down_since = asyncio.get_running_loop().time()
        logger.warning("backplane: lost Redis at %s (%s); broadcasts answer "
                       "SERVICE_UNAVAILABLE until it is back", self.shown, describe(error))
        for hook in self._lost:
            hook()
        self._wake.set()

    async def wait_up(self) -> None:
        await self._up.wait()

    async def _run(self) -> None:
        while not self._closed:
            if not self.up:
                await self._reconnect()
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), BEAT_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self.up:
                await self._beat()

    async def _beat(self) -> None:
        try:
            run_id = await self._server_run_id()
            if run_id != self._run_id:
                # redis-py reconnects stale sockets by itself, so a quick restart may
                # fail nothing of ours: recover all the same.
                logger.warning("backplane: Redis at %s restarted (run_id changed)", self.shown)
                self._run_id = run_id
                for hook in self._recovered:
                    await hook()
            for beat in self._beats:
                await beat()
        except LINK_ERRORS as error:
            self.failed(error)

    async def _server_run_id(self) -> str:
        return (await self.client.info("server")).get("run_id", "")

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed:
            await asyncio.sleep(backoff(attempt))
            attempt += 1
            try:
                # Sockets to the Redis that went away are stale: a command on one
                # would fail once more, after Redis is back.
                await self.client.connection_pool.disconnect()
                self._run_id = await self._server_run_id()
                for hook in self._recovered:
                    await hook()
            except LINK_ERRORS:
                continue
            break
        if self._closed:
            return
        seconds = asyncio.get_running_loop().time() - self._down_since
        logger.info("backplane: Redis at %s is back after %.1f s (%d attempts)",
                    self.shown, seconds, attempt)
        self.up = True
        self._up.set()
