"""Seeing that the event loop is blocked, and by which walker (docs/security.md#walkers).

An async walker that computes without reaching an `await` holds the event loop:
no other connection is served until it gets there, and neither the walker
timeout nor anything else can interrupt it. It can be seen, though: a callback
on the loop marks the time every `BEAT_SECONDS`, and a thread of the monitor
checks the mark as often. When the loop has missed its beat by more than
`BLOCKED_SECONDS`, the thread looks at what the loop's thread is executing
(`sys._current_frames`) and logs one WARNING for the incident, naming the
walker and its `.jac` line; `incidents` counts them.

Cost: one timer callback on the loop and one wake-up of the thread per beat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from types import FrameType

logger = logging.getLogger("jacc.walker")

BEAT_SECONDS = 0.1
BLOCKED_SECONDS = 0.5


class LoopMonitor:
    """Watches one event loop from a thread of its own, between `start` and `stop`.

    `incidents` is the number of times the loop was blocked for over
    `blocked` seconds: one per incident, however long it lasts.
    """

    def __init__(self, *, beat: float = BEAT_SECONDS, blocked: float = BLOCKED_SECONDS) -> None:
        self.incidents = 0
        self._beat = beat
        self._blocked = blocked
        self._marked = 0.0  # time.monotonic() of the loop's latest beat
        self._in_incident = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Watch the running loop; call from its thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopped.clear()
        self._mark()
        self._thread = threading.Thread(target=self._watch, name="jacc-loop-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; call from the loop's thread."""
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _mark(self) -> None:
        self._marked = time.monotonic()
        self._timer = self._loop.call_later(self._beat, self._mark)

    def _watch(self) -> None:
        while not self._stopped.wait(self._beat):
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """Count and log an incident if the loop has not beaten for too long (the thread calls it)."""
        # A beat is due `beat` after the last one; late by more than `blocked`: blocked.
        if now - self._marked <= self._beat + self._blocked:
            self._in_incident = False
            return
        if self._in_incident:
            return
        self._in_incident = True
        self.incidents += 1
        frame = sys._current_frames().get(self._loop_thread)
        logger.warning("event loop blocked for over %g s %s: the server answers no one meanwhile; "
                       "CPU-heavy work belongs in a non-async walker (docs/security.md)",
                       self._blocked, where(frame))


def where(frame: FrameType | None) -> str:
    """`by walker Spin at app.jac:8`, or the innermost Python frame when no walker runs."""
    innermost = outermost = None
    top = frame
    while frame is not None:
        if frame.f_code.co_filename.endswith(".jac"):
            innermost = innermost or frame
            outermost = frame
        frame = frame.f_back
    if innermost is not None:
        # The outermost `.jac` frame is the ability spawn called: `Walker.ability`.
        walker = outermost.f_code.co_qualname.partition(".")[0]
        return (f"by walker {walker} at {os.path.basename(innermost.f_code.co_filename)}:"
                f"{innermost.f_lineno}")
    if top is None:
        return "(the loop's thread was not found)"
    return f"outside any walker, at {top.f_code.co_filename}:{top.f_lineno} in {top.f_code.co_name}"
