"""Functions and streams on a WebSocket (docs/protocol.md, "Functions and streams").

A session hands every frame for a served function, or for a `stream=True` walker,
to its `TargetRunner`. A function's result is one frame, `{"ok":true,"data":
{"result":...}}`. A stream is one `chunk` frame per item, then exactly one `done`:

    {"ok":true,"type":"chunk","data":ITEM}   ...
    {"ok":true,"type":"done"}                 or, failed part way,
    {"ok":false,"type":"done","error":{"code":"STREAM_ERROR","message":"ValueError: boom"}}

Where the items come from (a `Source`): an async generator, read on the event loop;
a sync generator, stepped in a worker thread so that one that blocks holds up no
other client; a streaming walker, whose `report`s arrive through the sink of its
`Reports` (runtime/walker.py) while its abilities run in a task of their own (in a
worker thread, for a walker none of whose abilities is async).

How a stream behaves on its connection:

- **Flow.** Each chunk goes out through `Connection.reply`, which writes at once
  when nothing is queued and so waits for the socket (the transport's flow
  control); while the outbound queue is above half its bound the stream waits
  first. The first stream of a connection also asks the server to keep little
  of the socket's output unsent in the kernel (websocket.py, `LIMIT_UNSENT`), so
  that the socket is writable again as soon as the reader takes more. A generator is paused meanwhile; a walker, whose `report` cannot wait,
  keeps its reports here until they can go, as a walker that does not stream
  keeps them in its list.
- **Cancel.** The session reads on while a stream runs (readahead.py), so a close
  frame or a dropped peer is seen at once: the stream is cancelled, the
  generator closed, and its `finally` blocks run. A sync generator busy in its
  thread is closed as soon as the step it is taking returns.
- **Time.** `walker_timeout_seconds` covers the whole stream; past it the stream
  ends with a `done` frame carrying EXECUTION_TIMEOUT.
- **Order.** Frames pipelined behind a stream are read ahead and answered after
  its `done`, in order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...walker import spawn, walk
from ..functions import FunctionBinding, result_frame
from ..metrics import NO_WALKER_METRICS
from ..protocol import (
    STREAM_ERROR,
    ProtocolError,
    cancel_requested,
    encode,
    error_frame,
    execution_error,
)

if TYPE_CHECKING:
    from ..protocol import WalkerBinding
    from .connections import Connection
    from .readahead import ReadAhead
    from .watchdog import WalkerWatchdog

logger = logging.getLogger("jacc.session")

__all__ = ["DONE_FRAME", "TargetRunner", "chunk_frame", "done_frame"]

DONE_FRAME = '{"ok":true,"type":"done"}'
# A stream waits while the outbound queue is fuller than this (a fraction of its bound).
QUEUE_HIGH = 0.5
# How often a waiting stream looks at the queue again. Streaming connections get no
# broadcasts (a stream cannot broadcast, E0111) and their own chunks are written
# directly, so the queue is seldom over half full: polling the one accessor the
# queue offers (`queue_fill`) keeps the stream out of its internals.
_ROOM_POLL_SECONDS = 0.005

_END = object()  # what a source's `next` returns once it has nothing more


def chunk_frame(item: object) -> str:
    """One item of a stream: `{"ok":true,"type":"chunk","data":ITEM}`."""
    return '{"ok":true,"type":"chunk","data":' + encode(item, "a chunk") + "}"


def done_frame(error: ProtocolError | None = None) -> str:
    """The end of a stream: ok, or failed with `error`'s code and message."""
    if error is None:
        return DONE_FRAME
    body = error_frame(error.code, error.message, details=error.details, reason=error.reason,
                       line=error.line)
    # error_frame writes {"ok":false,"error":{...}}; a done frame has its type between.
    return '{"ok":false,"type":"done",' + body[len('{"ok":false,'):]


# --- sources ---------------------------------------------------------------------------


class _AsyncSource:
    """An async generator's items, read on the event loop."""

    def __init__(self, generator: Any) -> None:
        self._generator = generator

    async def next(self) -> Any:
        try:
            return await self._generator.__anext__()
        except StopAsyncIteration:
            return _END

    async def close(self) -> None:
        await self._generator.aclose()

    def site(self) -> tuple[str, int] | None:
        return None


class _ThreadSource:
    """A sync generator's items, each step taken in a worker thread.

    The lock keeps `close` from running while a step is under way (a generator
    cannot be closed while it executes): a cancelled stream's close waits for the
    step in its own thread, then raises GeneratorExit at the `yield`.
    """

    def __init__(self, generator: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._generator = generator
        self._loop = loop
        self._lock = threading.Lock()

    async def next(self) -> Any:
        return await self._loop.run_in_executor(None, self._step)

    async def close(self) -> None:
        await self._loop.run_in_executor(None, self._close)

    def site(self) -> tuple[str, int] | None:
        return None

    def _step(self) -> Any:
        with self._lock:
            # A sentinel, not StopIteration: that cannot cross into an asyncio future.
            return next(self._generator, _END)

    def _close(self) -> None:
        with self._lock:
            self._generator.close()


class _ReportSource:
    """A `stream=True` walker's reports, each handed over by `report` as it is made.

    The walker runs in a task of its own, started by the first `next`; its reports
    wait here, in order, until the stream takes them. A walker none of whose
    abilities is async runs in a worker thread instead (as threads.py runs such
    walkers), its reports handed to the loop's thread; Python cannot stop it, so a
    cancelled stream stops listening and lets it run to its end.
    """

    def __init__(self, walker: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._walker = walker
        self._loop = loop
        self._items: deque[tuple[Any, tuple[str, int]]] = deque()
        self._site: tuple[str, int] | None = None
        self._task: asyncio.Future | None = None
        self._wakeup: asyncio.Future | None = None
        self._closed = False
        self._threaded = not walker.__jacc_spec__.is_async
        walker._jacc_reports.sink = self._from_thread if self._threaded else self._take

    def _from_thread(self, value: Any, site: tuple[str, int]) -> None:
        self._loop.call_soon_threadsafe(self._take, value, site)

    def _take(self, value: Any, site: tuple[str, int]) -> None:
        if not self._closed:
            self._items.append((value, site))
            self._wake()

    def _wake(self, *_: object) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def next(self) -> Any:
        if self._task is None:
            if self._threaded:
                self._task = self._loop.run_in_executor(None, walk, self._walker)
            else:
                self._task = self._loop.create_task(spawn(self._walker))
            self._task.add_done_callback(self._wake)
        while not self._items:
            if self._task.done():
                self._task.result()  # the walker's own exception, if it raised
                return _END
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        value, self._site = self._items.popleft()
        return value

    async def close(self) -> None:
        self._closed = True
        task = self._task
        if task is not None and not task.done() and not self._threaded:
            task.cancel()  # its `finally` blocks run at the `await` it is waiting in
            await asyncio.wait((task,))
        self._items.clear()

    def site(self) -> tuple[str, int] | None:
        """Where the last item was reported: a chunk that cannot be sent names its line."""
        return self._site


# --- the runner --------------------------------------------------------------------------


class TargetRunner:
    """Runs the functions and streams of one WebSocket session and answers them.

    Given the few things it uses of the session: its connection, its walker watchdog
    (the timeout, which also cancels the reader task running this), its read-ahead
    (to see the peer leave while a stream runs), how to broadcast a frame, the
    server's `limit_unsent` for the socket (None where the server offers none), and
    the walker's (here: the target's) metrics: run time, and the errors a `done`
    frame carries, which no error frame counts.
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("_connection", "_watchdog", "_read_ahead", "_broadcast", "_dev", "_cleanup_seconds",
                 "_loop", "_limit_unsent", "_metrics",)

    def __init__(
        self,
        connection: Connection,
        *,
        watchdog: WalkerWatchdog,
        read_ahead: ReadAhead,
        broadcast: Callable[[str], Awaitable[None]],
        dev: bool,
        cleanup_seconds: float,
        loop: asyncio.AbstractEventLoop,
        limit_unsent: Callable[[], None] | None = None,
        metrics: Any = NO_WALKER_METRICS,
    ) -> None:
        self._connection = connection
        self._watchdog = watchdog
        self._read_ahead = read_ahead
        self._broadcast = broadcast
        self._dev = dev
        self._cleanup_seconds = cleanup_seconds
        self._loop = loop
        self._limit_unsent = limit_unsent
        self._metrics = metrics

    async def run(self, binding: WalkerBinding, payload: dict, now: float) -> None:
        """Run a function or a streaming walker with checked fields; answer on the connection.

        Raises ProtocolError for what is answered with an error frame (the function
        raised, or ran past the timeout, before any stream began).
        """
        watchdog = self._watchdog
        watchdog.begin(now)
        streaming = False
        clock = time.perf_counter()  # not the loop's clock: uvloop's is cached, to the ms
        try:
            try:
                started = await self._start(binding, payload)
                if isinstance(started, str):
                    final: str | None = started
                else:
                    streaming = True
                    final = await self._stream(binding, started)
            finally:
                self._metrics.ran(time.perf_counter() - clock)
                watchdog.end()  # raises EXECUTION_TIMEOUT if it cancelled the run
        except ProtocolError as error:
            if not streaming:
                raise
            final = done_frame(error)  # the timeout: a stream always ends with `done`
            self._metrics.error(error.code, error.reason)
        if final is None:
            return  # the peer left mid-stream: nobody to tell
        if binding.spec.broadcast and not streaming:
            await self._broadcast(final)
        else:
            await self._connection.reply(final)

    async def _start(self, binding: WalkerBinding, payload: dict) -> str | Any:
        """The result frame of a function, or the source of a stream."""
        if not isinstance(binding, FunctionBinding):
            try:
                walker = binding.cls(**payload)  # a field's default expression may raise
            except Exception as error:  # noqa: BLE001 - the program's own failure
                raise execution_error(binding.name, error, self._dev) from None
            return _ReportSource(walker, self._loop)
        value = await binding.call(payload, self._dev)
        if inspect.isasyncgen(value):
            return _AsyncSource(value)
        if inspect.isgenerator(value):
            return _ThreadSource(value, self._loop)
        return result_frame(value, binding.name)

    async def _stream(self, binding: WalkerBinding, source: Any) -> str | None:
        """Send the stream; its `done` frame, or None if the peer left meanwhile."""
        read_ahead = self._read_ahead
        if read_ahead.peer_left:
            await self._close(binding, source)
            return None
        if self._limit_unsent is not None:
            self._limit_unsent()  # once: the socket keeps it
            self._limit_unsent = None
        # Read on from the start, not after half a beat as for a walker: a stream is
        # long by nature, and a close frame must stop it at once.
        read_ahead.start(self._loop)
        pump = self._loop.create_task(self._pump(binding, source))
        watch = read_ahead.task

        def peer_left(_: asyncio.Task) -> None:
            if read_ahead.peer_left:
                pump.cancel()

        if watch is not None:
            watch.add_done_callback(peer_left)
        try:
            await asyncio.wait((pump,))
        except asyncio.CancelledError:
            # The timeout (or the session ending) cancelled the reader running this.
            pump.cancel()
            await asyncio.shield(asyncio.wait((pump,)))
            raise
        finally:
            if watch is not None:
                watch.remove_done_callback(peer_left)
        return None if pump.cancelled() else pump.result()

    async def _pump(self, binding: WalkerBinding, source: Any) -> str | None:
        connection = self._connection
        try:
            while True:
                try:
                    item = await source.next()
                except BaseException as error:  # a failure of any kind is the program's own
                    if cancel_requested():
                        raise  # the peer left, or the timeout: not the generator's doing
                    return self._failed(execution_error(
                        binding.name, error, self._dev, kind=binding.kind, code=STREAM_ERROR))
                if item is _END:
                    return DONE_FRAME
                try:
                    frame = chunk_frame(item)
                except ProtocolError as error:
                    return self._failed(self._unsendable(binding, source, error))
                if connection.queue_fill() > QUEUE_HIGH:
                    await self._room()
                if connection.closing:
                    return None
                await connection.reply(frame)
        finally:
            await self._close(binding, source)

    def _failed(self, error: ProtocolError) -> str:
        self._metrics.error(error.code, error.reason)
        return done_frame(error)

    async def _room(self) -> None:
        connection = self._connection
        while connection.queue_fill() > QUEUE_HIGH and not connection.closing:
            await asyncio.sleep(_ROOM_POLL_SECONDS)

    def _unsendable(self, binding: WalkerBinding, source: Any,
                    error: ProtocolError) -> ProtocolError:
        site = source.site()
        where = f" at {site[0]}:{site[1]}" if site else ""
        logger.error("%s %s: %s%s", binding.kind, binding.name, error.message, where)
        if self._dev and site:
            frame = {"file": site[0], "line": site[1], "function": binding.name}
            return ProtocolError(STREAM_ERROR, error.message, line=site[1], details=[frame])
        return ProtocolError(STREAM_ERROR, error.message)

    async def _close(self, binding: WalkerBinding, source: Any) -> None:
        """Close the generator (or cancel the walker): its `finally` blocks run now.

        Shielded, so that a second cancel cannot cut it short; bounded, so that a
        `finally` that never ends cannot hold the session.
        """
        closing = self._loop.create_task(source.close())
        try:
            await asyncio.wait_for(asyncio.shield(closing), self._cleanup_seconds)
        except TimeoutError:
            logger.warning("%s %s: its stream did not close within %g s", binding.kind,
                           binding.name, self._cleanup_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # the generator's own `finally` raised
            logger.exception("%s %s: closing its stream raised", binding.kind, binding.name)

