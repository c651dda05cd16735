"""The walker runs in progress, and the drain of a graceful shutdown (docs/security.md#shutdown).

On SIGTERM the server first drains: walkers already running, on both
transports, finish and are answered, for up to `[server] drain_seconds`; a
walker that would start meanwhile is refused with SERVICE_UNAVAILABLE. Only
then are sockets closed with 1001. At the end of the drain an HTTP walker
still running is cut off and answered 503; a WebSocket one is cancelled by the
close of its socket.

Cost: two integer updates per walker run; nothing per connection.
"""

from __future__ import annotations

import asyncio
import logging

from .protocol import SERVICE_UNAVAILABLE, ProtocolError

logger = logging.getLogger("jacc.app")

SHUTTING_DOWN = "server shutting down"


class Drain:
    """Counts walker runs in progress; once `run` has started, refuses new ones.

    An HTTP walker run registers its `asyncio.Timeout`, so that a drain can
    bring it forward to the drain's deadline.
    """

    def __init__(self) -> None:
        self.active = False
        self.deadline = float("inf")  # loop time the drain ends at, once active
        self._running = 0
        self._limits: set[asyncio.Timeout] = set()
        self._idle: asyncio.Event | None = None

    def enter(self, limit: asyncio.Timeout | None = None) -> None:
        """A walker run starts; SERVICE_UNAVAILABLE once the server drains."""
        if self.active:
            raise ProtocolError(SERVICE_UNAVAILABLE, SHUTTING_DOWN, reason="draining")
        self._running += 1
        if limit is not None:
            self._limits.add(limit)

    def leave(self, limit: asyncio.Timeout | None = None) -> None:
        """The run that `enter` admitted is over (answered or queued)."""
        self._running -= 1
        if limit is not None:
            self._limits.discard(limit)
        if not self._running and self._idle is not None:
            self._idle.set()

    def cut_off(self, limit: asyncio.Timeout) -> bool:
        """Whether `limit` expired because the drain ended, not by the walker timeout."""
        when = limit.when()
        return self.active and when is not None and when >= self.deadline

    async def run(self, seconds: float) -> int:
        """Refuse new runs and wait up to `seconds` for those in progress; return how many are left."""
        loop = asyncio.get_running_loop()
        self.active = True
        self.deadline = loop.time() + seconds
        for limit in self._limits:
            when = limit.when()
            if when is None or when > self.deadline:
                limit.reschedule(self.deadline)
        if self._running:
            logger.info("draining: %d walker run(s) in progress, waiting up to %g s",
                        self._running, seconds)
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), seconds)
            except TimeoutError:
                logger.warning("drain_seconds (%g s) are over: %d walker run(s) cut off",
                               seconds, self._running)
        return self._running
