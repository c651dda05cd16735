"""The server's Prometheus metrics, served at `GET /metrics` (docs/operations.md#metrics).

    metrics = Metrics(state=lambda: ServerState(queued_bytes=..., loop_blocked=...))
    chat = metrics.walker("ChatRoom")   # children bound once per walker
    chat.frame_in(); chat.ran(0.002)
    body, content_type = metrics.expose()

Each `JaccApp` owns one `Metrics` and its `CollectorRegistry`: nothing is
registered in prometheus_client's global registry, so tests can build several
apps in one process. `[server] metrics = false` gives `NoMetrics`, whose
methods do nothing.

Several worker processes share one set of metrics through prometheus_client's
multiprocess mode: the parent calls `shared_across_workers()` before it starts
the workers, which then record into files of that folder, and whichever worker
answers a scrape reads them all. Gauges of live state (queued bytes) are
sampled: at every scrape in the process that answers it, and once a second in
each worker under multiprocess mode, so that the others' are at most a second old.

Cost on the hot path: what happens per frame is tallied in plain integers
and lists, and added to the Prometheus metrics when they are sampled (at each
scrape, and once a second under multiprocess mode). prometheus_client's own
`Counter.inc` takes a lock, about 0.5 µs, and `Histogram.observe` walks the
buckets in Python, about 1.2 µs: three of them per round trip, and one
`inc` per client of a broadcast, were 5 to 15 % of the server's CPU per
message (bench/ws.py). A tally is an addition (a frame) or a `bisect` in C and
two additions (a run), under 0.2 µs, and per walker, not per label lookup.

No label carries a user name, a token, an address or message content: label
values are walker names, route templates and codes of the server's own, and a
client's close code outside the known ones is `other`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import values as prometheus_values

from .accounts import InvalidCredentials
from .protocol import CLOSE_MEANINGS, UNAUTHORIZED
from .ws.backplane import BackplaneEvents

Publish = Callable[..., Awaitable[Any]]

__all__ = ["NO_WALKER_METRICS", "Metrics", "NoMetrics", "ServerState", "WalkerMetrics",
           "metrics_for", "multiprocess_dir", "shared_across_workers", "worker_exited"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Under multiprocess mode, how often each worker writes its sampled gauges.
SAMPLE_SECONDS = 1.0

# Close codes a client may send that mean something; any other is `other`, so that a
# client cannot grow the label set by closing with each of 4,000 codes.
_PEER_CODES = frozenset(CLOSE_MEANINGS) | {1002, 1003, 1005, 1008, 1009, 1010}
# Reasons of an authentication failure: those of docs/protocol.md's UNAUTHORIZED, a
# wrong password (`credentials`) and a refused login (`throttled`).
AUTH_REASONS = frozenset({"missing", "invalid", "expired", "credentials", "throttled"})
# Error codes that are a failed authentication too, with the reason to count it under
# (None: the error's own reason).
_AUTH_CODES = {UNAUTHORIZED: None, InvalidCredentials.code: "credentials"}

_RUN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)
_FANOUT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 1.0)
_BACKPLANE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                      2.5, 5.0, 10.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                 30.0)


@dataclass(frozen=True)
class ServerState:
    """What the sampled metrics read from the app: queued bytes and the loop monitor's count."""

    queued_bytes: int = 0
    largest_queue: int = 0
    loop_blocked: int = 0


class Tally:
    """A histogram's observations, tallied cheaply and added to `histogram` by `flush`.

    `histogram` is a prometheus_client `Histogram` without labels, or one labelled
    child. `flush` adds the counts to its buckets and sum directly (their
    `_buckets` and `_sum`, the values `observe` adds to), so that a thousand
    observations cost one addition per bucket; tests/test_metrics.py holds the
    result equal to `observe`'s.
    """

    __slots__ = ("_histogram", "_bounds", "_counts", "_sum")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds = tuple(histogram._upper_bounds)  # the last is +Inf
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def flush(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        buckets = self._histogram._buckets
        for i, count in enumerate(counts):
            if count:
                buckets[i].inc(count)
                counts[i] = 0
        self._histogram._sum.inc(self._sum)
        self._sum = 0.0


class WalkerMetrics:
    """The metrics of one walker, with its labelled children bound once.

    `frame_in`, `frame_out` and `ran(seconds)` are called for every frame: each
    tallies in this object, and `flush` adds the tallies to the Prometheus
    metrics when they are sampled.
    """

    __slots__ = ("_metrics", "_open", "_in", "_out", "_frames_in", "_frames_out", "_runs", "ran")

    def __init__(self, metrics: Metrics, walker: str) -> None:
        self._metrics = metrics
        self._open = metrics.connections.labels(walker)
        self._in = metrics.frames_in.labels(walker)
        self._out = metrics.frames_out.labels(walker)
        self._frames_in = 0
        self._frames_out = 0
        self._runs = Tally(metrics.run_seconds.labels(walker))
        # `ran(seconds)`: a walker run took `seconds`; the tally's own method, one call a run.
        self.ran = self._runs.observe

    def frame_in(self) -> None:
        self._frames_in += 1

    def frame_out(self) -> None:
        self._frames_out += 1

    def flush(self) -> None:
        if self._frames_in:
            self._in.inc(self._frames_in)
            self._frames_in = 0
        if self._frames_out:
            self._out.inc(self._frames_out)
            self._frames_out = 0
        self._runs.flush()

    def opened(self) -> None:
        self._open.inc()

    def closed(self, code: int | None, by_server: bool, slow_reason: str | None) -> None:
        """The socket is over: `code` is the server's close code, or else the client's."""
        self._open.dec()
        self._metrics.closed(code, by_server, slow_reason)

    def error(self, code: str, reason: str | None = None) -> None:
        self._metrics.error(code, "ws", reason)


class Metrics:
    """Every metric of one app, in a registry of its own (docs/operations.md#metrics).

    `state` returns what the sampled gauges show; it is called at each scrape
    (and once a second under multiprocess mode).
    """

    enabled = True

    def __init__(self, state: Callable[[], ServerState] = ServerState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._state = state
        self._walkers: dict[str, WalkerMetrics] = {}
        self._loop_blocked_seen = 0
        self._sampler: asyncio.Task | None = None
        self._errors: dict[tuple[str, str], Callable[[], None]] = {}
        self._define()

    def _define(self) -> None:
        r = self.registry
        # --- WebSocket connections and frames
        self.connections = Gauge(
            "jacc_ws_connections", "Open WebSocket connections, by walker.", ["walker"],
            registry=r, multiprocess_mode="livesum")
        self.frames_in = Counter(
            "jacc_ws_frames_received", "Frames received from WebSocket clients, by walker.",
            ["walker"], registry=r)
        self.frames_out = Counter(
            "jacc_ws_frames_sent", "Frames written to WebSocket clients (replies, errors and "
            "broadcasts, one per client), by walker.", ["walker"], registry=r)
        self.closes = Counter(
            "jacc_ws_closes", "WebSocket connections closed, by close code and by which side "
            "closed first (server or client).", ["code", "by"], registry=r)
        self.slow_closes = Counter(
            "jacc_ws_slow_consumer_closes", "Connections closed with 4408 as too slow, by the "
            "setting they went past (send_queue_bytes or send_timeout_seconds).", ["reason"],
            registry=r)
        self.queued = Gauge(
            "jacc_ws_outbound_queue_bytes", "Bytes waiting in the outbound queues of all "
            "connections (sampled).", registry=r, multiprocess_mode="livesum")
        self.largest_queue = Gauge(
            "jacc_ws_outbound_queue_largest_bytes", "Bytes waiting in the fullest outbound "
            "queue of one connection (sampled).", registry=r, multiprocess_mode="livemax")
        # --- walkers, errors, authentication
        self.run_seconds = Histogram(
            "jacc_walker_run_seconds", "Time a walker run takes, WebSocket or HTTP, failures "
            "included, by walker.", ["walker"], registry=r, buckets=_RUN_BUCKETS)
        self.errors = Counter(
            "jacc_errors", "Error answers, by error code and transport (ws or http).",
            ["code", "transport"], registry=r)
        self.auth_failures = Counter(
            "jacc_auth_failures", "Failed authentications: tokens (missing, invalid, expired), "
            "logins (credentials, throttled).", ["reason"], registry=r)
        # --- broadcast and backplane
        self.fanout_seconds = Histogram(
            "jacc_broadcast_fanout_seconds", "Time to queue one broadcast frame on every "
            "connection of its walker in this process.", registry=r, buckets=_FANOUT_BUCKETS)
        self.publish_seconds = Histogram(
            "jacc_backplane_publish_seconds", "Time a broadcast takes to publish on the "
            "backplane, as the sending walker waits for it.", registry=r,
            buckets=_BACKPLANE_BUCKETS)
        self.backplane_reconnects = Counter(
            "jacc_backplane_reconnects", "Times the backplane reconnected to its broker after "
            "a drop.", registry=r)
        self.backplane_lag = Histogram(
            "jacc_backplane_lag_seconds", "Time from the publication of a broadcast to its "
            "delivery in this process, as the backplane measures it.", registry=r,
            buckets=_BACKPLANE_BUCKETS)
        # --- HTTP and the event loop
        self.http_requests = Counter(
            "jacc_http_requests", "HTTP requests, by route template and status.",
            ["route", "status"], registry=r)
        self.http_seconds = Histogram(
            "jacc_http_request_seconds", "Time to answer an HTTP request, by route template.",
            ["route"], registry=r, buckets=_HTTP_BUCKETS)
        self.loop_blocked = Counter(
            "jacc_event_loop_blocked", "Incidents of the event loop blocked for over 0.5 s "
            "(an async walker that does not await).", registry=r)
        # Once per broadcast: tallied, like the per-frame metrics.
        self._fanout = Tally(self.fanout_seconds)
        self._publish = Tally(self.publish_seconds)

    # --- what the server calls --------------------------------------------------------

    def walker(self, name: str) -> WalkerMetrics:
        """The metrics of walker `name`, made once."""
        bound = self._walkers.get(name)
        if bound is None:
            bound = self._walkers[name] = WalkerMetrics(self, name)
        return bound

    def error(self, code: str, transport: str, reason: str | None = None) -> None:
        """An error answer with `code`; an UNAUTHORIZED one is a failed authentication too."""
        count = self._errors.get((code, transport))
        if count is None:
            count = self._errors[code, transport] = self.errors.labels(code, transport).inc
        count()
        if code in _AUTH_CODES:
            self.auth_failure(_AUTH_CODES[code] or reason)

    def auth_failure(self, reason: str | None) -> None:
        self.auth_failures.labels(reason if reason in AUTH_REASONS else "other").inc()

    def closed(self, code: int | None, by_server: bool, slow_reason: str | None) -> None:
        if code is None:
            shown = "none"
        elif by_server or code in _PEER_CODES:
            shown = str(code)
        else:
            shown = "other"
        self.closes.labels(shown, "server" if by_server else "client").inc()
        if slow_reason is not None:
            self.slow_closes.labels(slow_reason).inc()

    def timed_deliver(self, deliver: Callable[..., None]) -> Callable[..., None]:
        """`deliver` (the registry's, subscribed to the backplane), timed as the fan-out."""
        observe = self._fanout.observe
        clock = time.perf_counter

        def timed(*args: Any) -> None:
            start = clock()
            deliver(*args)
            observe(clock() - start)

        return timed

    def timed_publish(self, publish: Publish) -> Publish:
        """`publish` (the backplane's), timed as the sender waits for it, failures included."""
        observe = self._publish.observe
        clock = time.perf_counter

        async def timed(*args: Any) -> Any:
            start = clock()
            try:
                return await publish(*args)
            finally:
                observe(clock() - start)

        return timed

    def backplane_events(self) -> BackplaneMetrics:
        return BackplaneMetrics(self)

    def http(self, app: Callable) -> Callable:
        """`app` (ASGI), counting each HTTP request by route template and status."""
        return _HttpMetrics(app, self)

    # --- sampling and the scrape ------------------------------------------------------

    def sample(self) -> None:
        """Add the tallies to the metrics, and set the sampled gauges from the app's state."""
        for walker in self._walkers.values():
            walker.flush()
        self._fanout.flush()
        self._publish.flush()
        state = self._state()
        self.queued.set(state.queued_bytes)
        self.largest_queue.set(state.largest_queue)
        if state.loop_blocked > self._loop_blocked_seen:
            self.loop_blocked.inc(state.loop_blocked - self._loop_blocked_seen)
            self._loop_blocked_seen = state.loop_blocked

    def expose(self) -> tuple[bytes, str]:
        """The body and content type of a scrape: this app's metrics, or every worker's."""
        self.sample()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        # Every worker's files; this app's registry is left out, or it would count twice.
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)
        return generate_latest(merged), CONTENT_TYPE_LATEST

    def start(self) -> None:
        """Under multiprocess mode, sample once a second (call from the event loop)."""
        if multiprocess_dir() is not None and self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_often())

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
            self.sample()  # the last second's tallies, into the files the others read

    async def _sample_often(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)


class BackplaneMetrics(BackplaneEvents):
    """The backplane's hooks (ws/backplane.py), into the metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.reconnected: Callable[[], None] = metrics.backplane_reconnects.inc
        self.lag: Callable[[float], None] = metrics.backplane_lag.observe


class _HttpMetrics:
    """ASGI middleware: one count and one duration per HTTP request, by route template."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self._app = app
        self._requests = metrics.http_requests
        self._seconds = metrics.http_seconds

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500  # the app raised before it answered: the server answers 500
        start = time.perf_counter()

        async def send_and_see(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_see)
        finally:
            # Starlette's router leaves the route it matched in the scope; its `path` is
            # the template (`/walker/{name}`), never the path asked for.
            route = getattr(scope.get("route"), "path", None) or "none"
            self._requests.labels(route, str(status)).inc()
            self._seconds.labels(route).observe(time.perf_counter() - start)


class _NoWalkerMetrics:
    """`WalkerMetrics` that records nothing."""

    @staticmethod
    def frame_in() -> None:
        pass

    frame_out = frame_in

    @staticmethod
    def ran(seconds: float) -> None:
        pass

    def opened(self) -> None:
        pass

    def closed(self, code: int | None, by_server: bool, slow_reason: str | None) -> None:
        pass

    def error(self, code: str, reason: str | None = None) -> None:
        pass


NO_WALKER_METRICS = _NoWalkerMetrics()


class NoMetrics:
    """`[server] metrics = false`: the same calls, doing nothing, and no /metrics route."""

    enabled = False

    def walker(self, name: str) -> _NoWalkerMetrics:
        return NO_WALKER_METRICS

    def error(self, code: str, transport: str, reason: str | None = None) -> None:
        pass

    def auth_failure(self, reason: str | None) -> None:
        pass

    def closed(self, code: int | None, by_server: bool, slow_reason: str | None) -> None:
        pass

    def timed_deliver(self, deliver: Callable[..., None]) -> Callable[..., None]:
        return deliver

    def timed_publish(self, publish: Publish) -> Publish:
        return publish

    def backplane_events(self) -> BackplaneEvents:
        return BackplaneEvents()

    def http(self, app: Callable) -> Callable:
        return app

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def metrics_for(enabled: bool, state: Callable[[], ServerState]) -> Metrics | NoMetrics:
    return Metrics(state) if enabled else NoMetrics()


# --- several worker processes -----------------------------------------------------------


def multiprocess_dir() -> str | None:
    """The folder every worker records into, when the metrics are shared across workers."""
    return os.environ.get(MULTIPROC_ENV) or None


@contextlib.contextmanager
def shared_across_workers(environ: Any = os.environ) -> Iterator[Path]:
    """In the parent of several workers: record the metrics in files every worker shares.

    Call it before the workers start, and keep it open while they run. Uses the
    folder in `PROMETHEUS_MULTIPROC_DIR` if the operator set one, emptied of an
    earlier run's files; otherwise a temporary folder, removed at the end.
    prometheus_client picks its mode when it is first imported, which in jacc's
    parent is before the folder is known, and the workers are forked from it
    (workers.py): so it is made to pick again here, for every metric made after.
    """
    given = environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # counts of an earlier run would add up
            stale.unlink()
        with _values_picked_again():
            yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="jacc-metrics-"))
    environ[MULTIPROC_ENV] = str(folder)
    try:
        with _values_picked_again():
            yield folder
    finally:
        environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _values_picked_again() -> Iterator[None]:
    previous = prometheus_values.ValueClass
    prometheus_values.ValueClass = prometheus_values.get_value_class()
    try:
        yield
    finally:
        prometheus_values.ValueClass = previous


def worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges (connections, queued bytes) stop counting."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, directory)
