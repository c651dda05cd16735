"""Connection caps counted across workers through Redis (runtime/server/ws/caps.py).

Each `Worker` is a registry with its own Redis link and `GlobalCaps`, as one
worker process has; several in one event loop stand for several processes.
"""

from __future__ import annotations

import asyncio
import time

import redis as sync_redis

from jacc_runtime.server.config import WebSocketConfig
from jacc_runtime.server.ws.caps import GlobalCaps
from jacc_runtime.server.ws.connections import Connection, ConnectionRegistry
from jacc_runtime.server.ws.redis_link import RedisLink

LIMITS = WebSocketConfig(max_connections_per_walker=3, max_connections_per_user=2)


async def _send(message: dict) -> None:
    pass


class Worker:
    def __init__(self, url: str, namespace: str, limits: WebSocketConfig = LIMITS) -> None:
        self.registry = ConnectionRegistry()
        self.link = RedisLink(url)
        self.caps = GlobalCaps(self.registry, limits, self.link, namespace)

    async def open(self) -> Worker:
        await self.link.open()
        return self

    async def close(self, clean: bool = True) -> None:
        if clean:
            await self.caps.close()
        await self.link.close()

    async def enter(self, walker: str = "Chat") -> Connection | None:
        connection = Connection(_send, walker, queue_bytes=4096, send_timeout=1.0)
        return connection if await self.caps.enter(connection) else None

    async def user(self, name: str) -> Connection | None:
        connection = await self.enter()
        assert connection is not None
        if await self.caps.identify(connection, name):
            return connection
        self.caps.leave(connection)
        return None

    async def settle(self) -> None:
        if self.caps._tasks:
            await asyncio.gather(*self.caps._tasks)


def test_the_user_cap_counts_across_workers(redis_url, redis_namespace):
    async def scenario():
        a, b = [await Worker(redis_url, redis_namespace).open() for _ in range(2)]
        try:
            first, second = await a.user("ada"), await b.user("ada")
            third = await a.user("ada")  # a holds one, b one: the cap of 2 is reached
            a.caps.leave(first)
            await a.settle()
            fourth = await b.user("ada")
            return first, second, third, fourth
        finally:
            await a.close()
            await b.close()

    first, second, third, fourth = asyncio.run(scenario())
    assert first and second and third is None and fourth


def test_the_walker_cap_counts_across_workers(redis_url, redis_namespace):
    async def scenario():
        a, b = [await Worker(redis_url, redis_namespace).open() for _ in range(2)]
        try:
            held = [await a.enter(), await b.enter(), await a.enter()]
            refused = [await b.enter(), await a.enter()]
            other = await b.enter("News")  # another walker has its own count
            return held, refused, other, a.registry.count("Chat"), b.registry.count("Chat")
        finally:
            await a.close()
            await b.close()

    held, refused, other, on_a, on_b = asyncio.run(scenario())
    assert all(held) and refused == [None, None] and other is not None
    assert (on_a, on_b) == (2, 1)


def test_concurrent_claims_for_the_last_place_admit_exactly_one(redis_url, redis_namespace):
    limits = WebSocketConfig(max_connections_per_user=1)

    async def scenario():
        workers = [await Worker(redis_url, redis_namespace, limits).open() for _ in range(4)]
        try:
            tries = [workers[n % 4].user("ada") for n in range(20)]
            return await asyncio.gather(*tries)
        finally:
            for worker in workers:
                await worker.close()

    admitted = [c for c in asyncio.run(scenario()) if c is not None]
    assert len(admitted) == 1


def test_a_dead_workers_share_stops_counting_within_a_few_seconds(redis_url, redis_namespace):
    async def scenario():
        dead, alive = [await Worker(redis_url, redis_namespace).open() for _ in range(2)]
        try:
            assert await dead.user("ada") and await dead.user("ada")
            assert await alive.user("ada") is None
            await dead.close(clean=False)  # no goodbye: its heartbeat just stops
            began = time.monotonic()
            while await alive.user("ada") is None:
                await asyncio.sleep(0.2)
            return time.monotonic() - began
        finally:
            await alive.close()

    assert asyncio.run(scenario()) < 6


def test_a_clean_close_gives_the_counts_back_at_once(redis_url, redis_namespace):
    async def scenario():
        leaving, staying = [await Worker(redis_url, redis_namespace).open() for _ in range(2)]
        try:
            assert await leaving.user("ada") and await leaving.user("ada")
            await leaving.close()
            return await staying.user("ada")
        finally:
            await staying.close()

    assert asyncio.run(scenario()) is not None


def field(url: str, key: str, name: str) -> bytes | None:
    client = sync_redis.Redis.from_url(url)
    try:
        return client.hget(key, name)
    finally:
        client.close()


def test_after_redis_restarts_empty_each_worker_writes_its_counts_again(redis_server):
    server = redis_server()

    async def scenario():
        a, b = [await Worker(server.url, "ns").open() for _ in range(2)]
        try:
            assert await a.user("ada") and await a.user("ada")
            server.restart()
            # Until a has noticed (within a beat) b cannot know: wait for a's rewrite.
            deadline = time.monotonic() + 10
            while field(server.url, "ns:conns:user:ada", a.caps.worker) != b"2":
                assert time.monotonic() < deadline, "a did not write its counts again"
                await asyncio.sleep(0.05)
            return await b.user("ada")
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(scenario()) is None  # a's two connections count again


def test_while_redis_is_down_the_caps_fall_back_to_this_process(redis_server):
    server = redis_server()

    async def scenario():
        a = await Worker(server.url, "ns").open()
        try:
            server.kill()
            a.link.failed(ConnectionError("test"))
            got = [await a.user("ada") for _ in range(3)]
            server.start()
            return got
        finally:
            await a.close()

    got = asyncio.run(scenario())
    assert [c is not None for c in got] == [True, True, False]
