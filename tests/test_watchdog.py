"""The walker timeout of a session (runtime/server/ws/watchdog.py)."""

from __future__ import annotations

import asyncio

import pytest

from jacc_runtime.server.protocol import EXECUTION_TIMEOUT, ProtocolError
from jacc_runtime.server.ws.readahead import ReadAhead
from jacc_runtime.server.ws.watchdog import WalkerWatchdog


async def never_receive() -> dict:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def run_walker(seconds: float, timeout: float, heartbeat: float = 30.0):
    """Run a walker sleeping `seconds` under a watchdog: its outcome, whether it read ahead."""

    async def scenario():
        loop = asyncio.get_running_loop()
        ahead = ReadAhead(never_receive, 1000)
        watchdog = WalkerWatchdog(
            loop, walker="Sleepy", timeout=timeout, heartbeat=heartbeat, read_ahead=ahead
        )
        read_ahead = []

        async def reader():
            watchdog.begin(loop.time())
            try:
                await asyncio.sleep(seconds)
                read_ahead.append(ahead.task is not None)
            finally:
                watchdog.end()
            return "done"

        task = watchdog.reader = loop.create_task(reader())
        try:
            return await task, read_ahead, ahead.task
        finally:
            watchdog.cancel()

    return asyncio.run(scenario())


def test_a_quick_walker_neither_reads_ahead_nor_times_out():
    assert run_walker(0.01, timeout=1.0) == ("done", [False], None)


def test_a_walker_past_half_a_beat_reads_ahead_until_it_ends():
    outcome, read_ahead, task_after = run_walker(0.1, timeout=1.0, heartbeat=0.05)
    assert (outcome, read_ahead, task_after) == ("done", [True], None)


def test_a_walker_past_its_timeout_is_cancelled_with_execution_timeout(caplog):
    with pytest.raises(ProtocolError) as caught:
        run_walker(5.0, timeout=0.05)
    assert caught.value.code == EXECUTION_TIMEOUT
    assert caught.value.reason == "walker_timeout_seconds"
    assert caught.value.message == (
        "walker `Sleepy` ran past walker_timeout_seconds (0.05 s) and was cancelled"
    )
    assert "walker Sleepy ran past walker_timeout_seconds" in caplog.text
