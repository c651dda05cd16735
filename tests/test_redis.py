"""The Redis backplane against a real Redis (runtime/server/ws/redis.py, redis_link.py).

Two `RedisBackplane`s in one event loop stand for two processes: each has its
own connections, cursors and reader, as two workers would. Fault tests run
their own `redis-server` (conftest.py) and kill it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis as sync_redis
from services import free_port

from jacc_runtime.server.ws.backplane import BackplaneUnavailable
from jacc_runtime.server.ws.history import TRIMMED, parse_offset
from jacc_runtime.server.ws.redis import STREAM_FLOOR, RedisBackplane
from jacc_runtime.server.ws.redis_link import RedisLink, backoff


class Process:
    """One backplane and what it delivered."""

    def __init__(self, url: str, namespace: str, history: int = 100, name: str = "p",
                 channels: tuple[str, ...] = ("Chat",)) -> None:
        self.got: list[tuple[str, str, str]] = []
        self.backplane = RedisBackplane(RedisLink(url, name=f"{namespace}:{name}"), namespace,
                                        history)
        self.backplane.subscribe(lambda *delivered: self.got.append(delivered))
        self.backplane.watch(channels)

    def frames(self, channel: str = "Chat") -> list[str]:
        return [frame for c, frame, _ in self.got if c == channel]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count} delivered"
            await asyncio.sleep(0.01)


async def started(*processes: Process) -> None:
    for process in processes:
        await process.backplane.start()


async def stopped(*processes: Process) -> None:
    for process in processes:
        await process.backplane.stop()


def test_every_process_delivers_every_broadcast_once_in_the_streams_order(redis_url,
                                                                         redis_namespace):
    async def scenario():
        a, b = Process(redis_url, redis_namespace, name="a"), Process(redis_url, redis_namespace,
                                                                       name="b")
        await started(a, b)
        try:
            async def send(process: Process, tag: str) -> list[str]:
                return [await process.backplane.publish("Chat", f'"{tag}{n}"')
                        for n in range(50)]

            offsets = await asyncio.gather(send(a, "a"), send(b, "b"))
            await a.wait_for(100)
            await b.wait_for(100)
            return a, b, offsets
        finally:
            await stopped(a, b)

    a, b, (from_a, from_b) = asyncio.run(scenario())
    assert a.got == b.got  # the same frames, offsets and order in both processes
    frames = a.frames()
    assert sorted(frames) == sorted([f'"a{n}"' for n in range(50)] + [f'"b{n}"' for n in range(50)])
    assert [f for f in frames if f.startswith('"a')] == [f'"a{n}"' for n in range(50)]
    offsets = [offset for _, _, offset in a.got]
    assert offsets == sorted(offsets, key=parse_offset)
    assert set(offsets) == set(from_a) | set(from_b)  # publish returns the delivered offset


def test_a_publish_returns_once_its_own_process_has_delivered_it(redis_url, redis_namespace):
    async def scenario():
        a = Process(redis_url, redis_namespace)
        await started(a)
        try:
            offset = await a.backplane.publish("Chat", '"x"')
            return a.got, offset
        finally:
            await stopped(a)

    got, offset = asyncio.run(scenario())
    assert got == [("Chat", '"x"', offset)]  # already there: no sleep was needed


def test_channels_and_namespaces_are_apart(redis_url, redis_namespace):
    async def scenario():
        a = Process(redis_url, redis_namespace, channels=("Chat", "News"))
        other = Process(redis_url, redis_namespace + ":other", name="o")
        await started(a, other)
        try:
            await a.backplane.publish("News", '"n"')
            await a.backplane.publish("Chat", '"c"')
            await asyncio.sleep(0.1)
            return a, other
        finally:
            await stopped(a, other)

    a, other = asyncio.run(scenario())
    assert a.frames("News") == ['"n"'] and a.frames("Chat") == ['"c"']
    assert other.got == []


def test_a_process_starts_from_the_newest_entry_not_the_history(redis_url, redis_namespace):
    async def scenario():
        first = Process(redis_url, redis_namespace, name="first")
        await started(first)
        await first.backplane.publish("Chat", '"old"')
        late = Process(redis_url, redis_namespace, name="late")
        await started(late)
        try:
            await first.backplane.publish("Chat", '"new"')
            await late.wait_for(1)
            await asyncio.sleep(0.05)
            return late
        finally:
            await stopped(first, late)

    assert asyncio.run(scenario()).frames() == ['"new"']


def test_replay_follows_the_history_rule(redis_url, redis_namespace):
    async def scenario():
        a = Process(redis_url, redis_namespace, history=3)
        await started(a)
        try:
            offsets = [await a.backplane.publish("Chat", f'"{n}"') for n in range(6)]
            return (offsets, await a.backplane.replay("Chat", offsets[2]),
                    await a.backplane.replay("Chat", offsets[1]),
                    await a.backplane.replay("Chat", offsets[5]),
                    await a.backplane.replay("Chat", "1-0"))
        finally:
            await stopped(a)

    offsets, three, four, none, unknown = asyncio.run(scenario())
    assert three.ok and [offset for offset, _ in three.entries] == offsets[3:]
    assert [frame for _, frame in three.entries] == ['"3"', '"4"', '"5"']
    assert four is TRIMMED  # missed 4 of history 3, though Redis still has them
    assert none.ok and none.entries == []
    assert unknown is TRIMMED


def test_history_zero_replays_nothing(redis_url, redis_namespace):
    async def scenario():
        a = Process(redis_url, redis_namespace, history=0)
        await started(a)
        try:
            first = await a.backplane.publish("Chat", '"0"')
            await a.backplane.publish("Chat", '"1"')
            return await a.backplane.replay("Chat", first)
        finally:
            await stopped(a)

    assert asyncio.run(scenario()) is TRIMMED


def test_streams_are_trimmed_approximately_but_keep_the_floor(redis_url, redis_namespace):
    async def scenario():
        a = Process(redis_url, redis_namespace, history=5)
        await started(a)
        try:
            for n in range(STREAM_FLOOR + 300):
                await a.backplane.publish("Chat", str(n))
            return await a.backplane.link.client.xlen(a.backplane.stream_key("Chat"))
        finally:
            await stopped(a)

    length = asyncio.run(scenario())
    assert STREAM_FLOOR <= length < STREAM_FLOOR + 300


def test_an_unreachable_redis_at_start_names_the_url_without_its_password():
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    async def scenario():
        backplane = RedisBackplane(RedisLink(url), "jacc-test:none")
        with pytest.raises(BackplaneUnavailable) as caught:
            await backplane.start()
        return str(caught.value)

    message = asyncio.run(scenario())
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in message


def test_backoff_is_capped_and_jittered():
    delays = [backoff(n) for n in range(20)]
    assert all(0 < d <= 1.0 for d in delays)
    assert delays[0] <= 0.05 and max(delays[10:]) >= 0.5
    assert len({round(backoff(12), 6) for _ in range(20)}) > 1


# --- faults: a Redis of the test's own ---------------------------------------------------


def kill_clients(url: str, name_prefix: str) -> int:
    """Drop the connections of one process (by client name), as a network blip would."""
    admin = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        killed = 0
        for client in admin.client_list():
            if client.get("name", "").startswith(name_prefix):
                admin.client_kill_filter(_id=client["id"])
                killed += 1
        return killed
    finally:
        admin.close()


def test_a_dropped_connection_reads_on_from_the_last_delivered_id(redis_server, caplog):
    server = redis_server()

    async def scenario():
        a = Process(server.url, "ns", name="a")
        b = Process(server.url, "ns", name="b")
        await started(a, b)
        try:
            await a.backplane.publish("Chat", '"before"')
            assert kill_clients(server.url, "ns:a") >= 2  # a's command and reader connections
            for n in range(5):
                await b.backplane.publish("Chat", f'"while {n}"')
            await a.wait_for(6)
            await asyncio.sleep(0.1)
            return a
        finally:
            await stopped(a, b)

    with caplog.at_level(logging.INFO, logger="jacc.backplane"):
        a = asyncio.run(scenario())
    assert a.frames() == ['"before"'] + [f'"while {n}"' for n in range(5)]  # no gap, no repeat
    lost = [r for r in caplog.records if "lost Redis" in r.getMessage()]
    back = [r for r in caplog.records if "is back after" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1  # each change of state logged once


def test_while_redis_is_down_publish_fails_at_once_and_recovers_after_a_restart(redis_server):
    server = redis_server()

    async def scenario():
        a = Process(server.url, "ns", name="a")
        b = Process(server.url, "ns", name="b")
        await started(a, b)
        try:
            await a.backplane.publish("Chat", '"one"')
            await b.wait_for(1)
            server.kill()
            failures = 0
            started_at = time.monotonic()
            for _ in range(20):
                try:
                    await a.backplane.publish("Chat", '"lost"')
                except BackplaneUnavailable:
                    failures += 1
            failing_took = time.monotonic() - started_at
            server.start()  # empty: no persistence
            restarted = time.monotonic()
            while True:
                try:
                    await b.backplane.publish("Chat", '"two"')
                    break
                except BackplaneUnavailable:
                    assert time.monotonic() - restarted < 5, "not back within 5 s"
                    await asyncio.sleep(0.05)
            back_after = time.monotonic() - restarted
            await a.wait_for(2)
            await asyncio.sleep(0.1)
            return a, b, failures, failing_took, back_after
        finally:
            await stopped(a, b)

    a, b, failures, failing_took, back_after = asyncio.run(scenario())
    assert failures == 20 and failing_took < 2.5
    assert back_after < 5
    # Redis came back empty: the cursors were reset, and the new stream's first
    # entry reached the process that did not publish it, too.
    assert a.frames() == ['"one"', '"two"'] and b.frames() == ['"one"', '"two"']


def test_a_redis_that_kept_its_data_is_read_on_not_from_the_start(redis_server):
    # The epoch key survives with the data: cursors stay, nothing is delivered twice.
    server = redis_server()

    async def scenario():
        a = Process(server.url, "ns", name="a")
        await started(a)
        try:
            for n in range(3):
                await a.backplane.publish("Chat", f'"{n}"')
            kill_clients(server.url, "ns:a")
            await asyncio.sleep(0.2)
            while True:
                try:
                    await a.backplane.publish("Chat", '"3"')
                    break
                except BackplaneUnavailable:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            return a
        finally:
            await stopped(a)

    assert asyncio.run(scenario()).frames() == ['"0"', '"1"', '"2"', '"3"']


def test_a_channel_watched_later_is_read_at_once(redis_url, redis_namespace):
    # A dev reload adds a broadcast walker: its channel joins the blocking read.
    async def scenario():
        a = Process(redis_url, redis_namespace)
        await started(a)
        try:
            await a.backplane.publish("Chat", '"c"')
            a.backplane.watch(["Chat", "News"])
            began = time.monotonic()
            await a.backplane.publish("News", '"n"')
            took = time.monotonic() - began
            a.backplane.watch(["News"])
            await a.backplane.publish("News", '"n2"')
            return a, took
        finally:
            await stopped(a)

    a, took = asyncio.run(scenario())
    assert a.frames("News") == ['"n"', '"n2"'] and a.frames("Chat") == ['"c"']
    assert took < 1.0  # not after the 2 s block of the read that was under way
