"""The walker threads (runtime/server/threads.py): a bounded pool, and a lane per connection."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server.threads import POOL_SIZE, Lane, WalkerPool


class Where(Walker):
    @entry
    def go(self):
        report(self, threading.current_thread().name)


class Raises(Walker):
    kind = field("str")

    @entry
    def go(self):
        raise {"stop": StopIteration("done"), "interrupt": KeyboardInterrupt()}[self.kind]


def run(coroutine):
    return asyncio.run(coroutine)


async def with_pool(body, size: int = POOL_SIZE):
    pool = WalkerPool(size)
    try:
        return await body(pool)
    finally:
        pool.stop()


def test_a_walker_runs_in_a_daemon_thread_of_the_pool():
    async def body(pool):
        return await pool.run(Where, {}), pool._threads[0].daemon

    (reports, failure), daemon = run(with_pool(body))
    assert failure is None
    assert reports[0].startswith("jacc-walker-") and daemon


@pytest.mark.parametrize(("kind", "kind_of"), [("stop", StopIteration),
                                                ("interrupt", KeyboardInterrupt)])
def test_what_a_walker_raises_comes_back_as_a_value(kind, kind_of):
    # Neither can be raised into an asyncio future safely: StopIteration is refused there.
    reports, failure = run(with_pool(lambda pool: pool.run(Raises, {"kind": kind})))
    assert reports is None and type(failure) is kind_of


def test_no_more_than_size_walkers_run_at_once():
    running, most, lock = [0], [0], threading.Lock()

    class Busy(Walker):
        @entry
        def go(self):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    async def body(pool):
        outcomes = await asyncio.gather(*(pool.run(Busy, {}) for _ in range(3 * 2)))
        return outcomes, len(pool._threads)

    outcomes, threads = run(with_pool(body, size=2))
    assert all(failure is None for _, failure in outcomes)
    assert most[0] == 2 and threads == 2


def test_a_walker_given_up_on_while_queued_never_runs():
    release, ran = threading.Event(), []

    class Blocker(Walker):
        @entry
        def go(self):
            release.wait(5)

    class Queued(Walker):
        @entry
        def go(self):
            ran.append(True)

    async def body(pool):
        blocker = asyncio.ensure_future(pool.run(Blocker, {}))
        queued = asyncio.ensure_future(pool.run(Queued, {}))
        await asyncio.sleep(0.05)
        queued.cancel()
        await asyncio.wait((queued,))  # the lane has given the job up
        release.set()
        await blocker
        await asyncio.sleep(0.05)
        return queued.cancelled()

    assert run(with_pool(body, size=1)) is True
    assert ran == []


def test_a_lane_waits_for_a_walker_it_gave_up_on():
    # A cancelled run keeps the lane until its thread is done: the next one starts after.
    release, order = threading.Event(), []

    class Slow(Walker):
        @entry
        def go(self):
            release.wait(5)
            order.append("slow done")

    class Next(Walker):
        @entry
        def go(self):
            order.append("next")

    async def body(pool):
        lane: Lane = pool.lane()
        slow = asyncio.ensure_future(lane.run(Slow, {}))
        await asyncio.sleep(0.05)
        slow.cancel()
        await asyncio.wait((slow,))
        following = asyncio.ensure_future(lane.run(Next, {}))
        await asyncio.sleep(0.05)
        assert order == []  # the slow walker still runs, so the next one waits
        release.set()
        await following
        return slow.cancelled()

    assert run(with_pool(body)) is True
    assert order == ["slow done", "next"]


def test_waiting_for_the_lane_can_be_given_up_too():
    release = threading.Event()

    class Slow(Walker):
        @entry
        def go(self):
            release.wait(5)

    async def body(pool):
        lane = pool.lane()
        slow = asyncio.ensure_future(lane.run(Slow, {}))
        await asyncio.sleep(0.05)
        slow.cancel()
        await asyncio.wait((slow,))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await lane.run(Where, {})
        release.set()
        return await lane.run(Where, {})

    reports, failure = run(with_pool(body))
    assert failure is None and reports


def test_stop_lets_the_threads_go_and_the_pool_can_start_again():
    async def body(pool):
        await pool.run(Where, {})
        threads = list(pool._threads)
        pool.stop()
        for thread in threads:
            thread.join(5)
        again = await pool.run(Where, {})
        return [thread.is_alive() for thread in threads], again

    alive, (reports, _) = run(with_pool(body))
    assert alive == [False] and reports
