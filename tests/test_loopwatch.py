"""The blocked-loop monitor (runtime/server/loopwatch.py): one WARNING per incident, naming the walker."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from jacc.compiler import compile_source
from jacc_runtime import spawn
from jacc_runtime.server.loopwatch import LoopMonitor

# Starts with a blank line, so that "line 1" is never right by accident.
HOG = """
import time;

def spin(seconds: float) -> None {
    end = time.monotonic() + seconds;
    while time.monotonic() < end { }
}

async walker : pub Hog {
    has seconds: float;
    async can go with Root entry { spin(self.seconds); }
}
"""
SPIN_LINE = next(n for n, line in enumerate(HOG.splitlines(), 1) if "while time." in line)


def _hog():
    namespace: dict = {}
    exec(compile_source(HOG, "app.jac", "/srv/app/app.jac").code, namespace)
    return namespace["Hog"]


def watch(body) -> tuple[LoopMonitor, object]:
    """Run `body()` on a fresh loop under a fast monitor (50 ms beat, blocked after 200 ms)."""
    monitor = LoopMonitor(beat=0.05, blocked=0.2)

    async def main():
        monitor.start()
        try:
            result = await body()
            await asyncio.sleep(0.2)  # the monitor sees the loop beat again
            return result
        finally:
            monitor.stop()

    return monitor, asyncio.run(main())


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]


def test_an_async_walker_that_blocks_the_loop_is_named_once_per_incident(caplog):
    hog = _hog()

    async def body():
        await spawn(hog(seconds=0.6))
        await asyncio.sleep(0.3)
        await spawn(hog(seconds=0.6))

    with caplog.at_level(logging.WARNING, logger="jacc.walker"):
        monitor, _ = watch(body)
    lines = warnings_of(caplog)
    assert monitor.incidents == 2 and len(lines) == 2, lines
    # The line where it computes, the walker from the ability that called it; no server path.
    assert re.search(rf"by walker Hog at app\.jac:{SPIN_LINE}:", lines[0]), lines[0]
    assert "/srv/app" not in lines[0]
    assert all(r.levelname == "WARNING" for r in caplog.records if "blocked" in r.getMessage())


def test_a_loop_that_awaits_is_not_blocked(caplog):
    async def body():
        for _ in range(20):
            await asyncio.sleep(0.02)

    with caplog.at_level(logging.WARNING, logger="jacc.walker"):
        monitor, _ = watch(body)
    assert monitor.incidents == 0 and warnings_of(caplog) == []


def test_a_block_outside_any_walker_names_the_python_line(caplog):
    async def body():
        time.sleep(0.5)

    with caplog.at_level(logging.WARNING, logger="jacc.walker"):
        monitor, _ = watch(body)
    (line,) = warnings_of(caplog)
    assert monitor.incidents == 1
    assert "outside any walker, at " in line and "test_loopwatch.py" in line and "in body" in line


def test_a_short_stall_is_no_incident(caplog):
    async def body():
        time.sleep(0.05)  # well under `blocked`

    with caplog.at_level(logging.WARNING, logger="jacc.walker"):
        monitor, _ = watch(body)
    assert monitor.incidents == 0
