"""The drain of a graceful shutdown (runtime/server/drain.py), on its own."""

from __future__ import annotations

import asyncio

import pytest

from jacc_runtime.server.drain import Drain
from jacc_runtime.server.protocol import SERVICE_UNAVAILABLE, ProtocolError


def run(coroutine):
    return asyncio.run(coroutine)


def test_with_nothing_running_the_drain_ends_at_once_and_refuses_new_runs():
    drain = Drain()

    async def scenario():
        left = await drain.run(5)
        with pytest.raises(ProtocolError) as refused:
            drain.enter()
        return left, refused.value

    left, refused = run(scenario())
    assert left == 0 and drain.active
    assert (refused.code, refused.message, refused.reason) == (
        SERVICE_UNAVAILABLE, "server shutting down", "draining")
    assert refused.status == 503


def test_the_drain_waits_for_the_runs_in_progress():
    drain = Drain()

    async def scenario():
        drain.enter()
        drain.enter()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, drain.leave)
        loop.call_later(0.1, drain.leave)
        started = loop.time()
        left = await drain.run(5)
        return left, loop.time() - started

    left, took = run(scenario())
    assert left == 0 and 0.1 <= took < 1


def test_the_drain_gives_up_after_its_seconds_and_says_how_many_are_left(caplog):
    drain = Drain()

    async def scenario():
        drain.enter()
        return await drain.run(0.05)

    assert run(scenario()) == 1
    assert "1 walker run(s) cut off" in caplog.text


def test_an_http_walker_timeout_is_brought_forward_to_the_end_of_the_drain():
    drain = Drain()

    async def scenario():
        async def http_walker():
            async with asyncio.timeout(30) as limit:
                drain.enter(limit)
                try:
                    await asyncio.sleep(30)
                finally:
                    drain.leave(limit)

        task = asyncio.ensure_future(http_walker())
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await drain.run(0.1)
        with pytest.raises(TimeoutError):
            await task
        return loop.time() - started

    assert run(scenario()) < 1


def test_cut_off_tells_the_drains_end_from_the_walker_timeout():
    drain = Drain()

    async def scenario():
        own = asyncio.Timeout(asyncio.get_running_loop().time() + 0.1)  # ends before the drain
        async with asyncio.timeout(30) as forward:
            drain.enter(forward)
            draining = asyncio.ensure_future(drain.run(0.2))
            await asyncio.sleep(0)
            seen = drain.cut_off(own), drain.cut_off(forward)
            drain.leave(forward)
            await draining
            return seen

    assert run(scenario()) == (False, True)
