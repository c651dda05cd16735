"""The walker timeout of a WebSocket session (docs/protocol.md, Walker timeout and Heartbeat).

One timer per session, armed when a walker starts and none is armed. When it
fires for a walker that has since finished it re-arms for the running one, if
any, so it runs at most twice per `walker_timeout_seconds` (or once a half
beat) per connection, and not at all on an idle one: a walker run costs two
float stores and a comparison, never a timer of its own.
"""

from __future__ import annotations

import asyncio
import logging

from ..protocol import EXECUTION_TIMEOUT, ProtocolError
from .readahead import ReadAhead

# The session's logger: the timeout warning is a session event to whoever reads the log.
logger = logging.getLogger("jacc.session")


class WalkerWatchdog:
    """Cancels a walker run past `walker_timeout_seconds`; reads ahead for one past half a beat.

    Owns the timer, the start time of the running walker and whether it was
    cancelled. `reader` is the task that awaits the walker: the one cancelled.
    """

    # Slots, not a __dict__: one of these per open connection (docs/performance.md).
    __slots__ = ("reader", "_loop", "_walker", "_timeout", "_read_ahead_after", "_read_ahead",
                 "_running_since", "_timed_out", "_timer",)

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        walker: str,
        timeout: float,
        heartbeat: float,
        read_ahead: ReadAhead,
    ) -> None:
        self.reader: asyncio.Task | None = None
        self._loop = loop
        self._walker = walker
        self._timeout = timeout
        # A walker still running after this long makes the session read ahead.
        self._read_ahead_after = min(heartbeat / 2, timeout)
        self._read_ahead = read_ahead
        self._running_since = 0.0  # loop time the running walker started; 0.0: none running
        self._timed_out = False
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, now: float) -> None:
        """A walker starts to run at `now` (the loop's clock)."""
        self._running_since = now
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._read_ahead_after, self._check)

    def end(self) -> None:
        """The walker is over: stop reading ahead; EXECUTION_TIMEOUT if it was cancelled."""
        self._running_since = 0.0
        if self._read_ahead.task is not None:
            self._read_ahead.stop()
        if self._timed_out:
            # Whatever the walker did once cancelled (let the CancelledError out,
            # caught it and returned, raised something else), it ran too long.
            raise self._timeout_error()

    def cancel(self) -> None:
        """Stop the timer; once, as the session ends."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        started = self._running_since
        if not started:
            return
        now = self._loop.time()
        deadline = started + self._timeout
        if now < deadline:
            read_ahead_at = started + self._read_ahead_after
            if now < read_ahead_at:
                self._timer = self._loop.call_at(read_ahead_at, self._check)
                return
            self._read_ahead.start(self._loop)
            self._timer = self._loop.call_at(deadline, self._check)
            return
        self._running_since = 0.0
        self._timed_out = True
        # The reader is the task awaiting the walker: the CancelledError lands at the
        # walker's current `await`. A walker that never awaits cannot be interrupted.
        self.reader.cancel()

    def _timeout_error(self) -> ProtocolError:
        self._timed_out = False
        if self.reader.uncancel():
            # Cancelled for another reason too (the session is ending): let that win.
            raise asyncio.CancelledError
        seconds = self._timeout
        logger.warning("walker %s ran past walker_timeout_seconds (%g s) and was cancelled",
                       self._walker, seconds)
        return ProtocolError(
            EXECUTION_TIMEOUT,
            f"walker `{self._walker}` ran past walker_timeout_seconds ({seconds:g} s) "
            "and was cancelled",
            reason="walker_timeout_seconds",
        )
