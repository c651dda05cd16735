"""Non-async walkers run off the event loop, in a bounded pool of threads (docs/security.md#walkers).

A walker none of whose abilities is async never reaches an `await`, so on the
event loop a CPU-bound one would hold every connection of the server for as long
as it computes, and the walker timeout could not interrupt it. In a thread it
holds the GIL only in turns (CPython hands it over every 5 ms), so the loop
goes on serving everyone else, and a timeout is answered on time.

Python cannot stop a thread from outside: a walker whose caller gave up on it
(walker timeout, disconnect, shutdown) runs on in its thread to its end, and
what it returns is dropped. The threads are daemons, so one that never ends
does not hold up the exit of the process; it does keep its place in the pool.

Cost: a thread hop per walker run (tens of microseconds), which async walkers,
run on the loop, do not pay.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future

from ..walker import Walker, walk

# Threads of one app's pool. Under the GIL, CPU-bound walkers go no faster in
# more threads, and every thread that computes lengthens the loop's wait for the
# GIL, which it is not handed fairly: another client's ping took a median 0.1 ms
# beside one spinning walker, 18 ms beside four, 80 ms (and up to half a second)
# beside sixteen. Four keep the loop responsive and still let a few walkers that
# block on I/O overlap (I/O belongs in async walkers). Work beyond them waits
# its turn in a queue, the wait counting toward its walker timeout.
POOL_SIZE = 4

# What a thread hands back: the reports, or what the walker raised. A value,
# never raised across the thread boundary: a StopIteration cannot go into an
# asyncio future, and a KeyboardInterrupt is the walker's, not the process's.
Outcome = tuple[list | None, BaseException | None]


class WalkerPool:
    """At most `size` daemon threads running walkers; more work waits in a queue.

    Owned by an app. `run` and `lane` are for the event loop's thread; threads
    start as the first walkers need them and stay until `stop`.
    """

    def __init__(self, size: int = POOL_SIZE, name: str = "jacc-walker") -> None:
        self.size = size
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def lane(self) -> Lane:
        """Runs for one connection: one at a time, in order."""
        return Lane(self)

    async def run(self, cls: type[Walker], fields: dict) -> Outcome:
        """Run one walker in a thread, in no order with any other (an HTTP request)."""
        return await Lane(self).run(cls, fields)

    def submit(self, cls: type[Walker], fields: dict) -> Future:
        """Queue a run of `cls(**fields)`; the future's result is its `Outcome`."""
        future: Future = Future()
        self._queue.put((future, cls, fields))
        if len(self._threads) < self.size:
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        return future

    def stop(self) -> None:
        """Let every thread go once the work queued before is done; a later `submit` starts anew."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, cls, fields = item
            del item
            if future.set_running_or_notify_cancel():  # False: given up on while queued
                future.set_result(_outcome(cls, fields))
            del future


def _outcome(cls: type[Walker], fields: dict) -> Outcome:
    try:
        return walk(cls(**fields)), None
    except BaseException as error:  # everything the walker raises is its own failure
        return None, error


class Lane:
    """The walker runs of one WebSocket connection: one at a time, in order.

    A run whose caller gave up on it while its thread was at work keeps the
    lane until the thread is done: the next run waits for it first, so that two
    walkers of one connection never run at the same time (docs/protocol.md, Frames).
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("_pool", "_straggler",)

    def __init__(self, pool: WalkerPool) -> None:
        self._pool = pool
        self._straggler: asyncio.Future | None = None

    async def run(self, cls: type[Walker], fields: dict) -> Outcome:
        """Run `cls(**fields)` in a thread of the pool and return its `Outcome`.

        Cancelling the caller cancels the wait, not the walker: one still queued
        never starts, one already running runs on and holds the lane.
        """
        if self._straggler is not None:
            # Cancellable: a frame waiting here is under its own walker timeout.
            await asyncio.shield(self._straggler)
            self._straggler = None
        job = self._pool.submit(cls, fields)
        done = asyncio.wrap_future(job)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            if not job.cancel():
                self._straggler = done
            raise

