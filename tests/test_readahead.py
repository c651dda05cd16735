"""Reading a socket ahead while a walker runs long (runtime/server/ws/readahead.py)."""

from __future__ import annotations

import asyncio

from jacc_runtime.server.ws.readahead import MAX_FRAMES, ReadAhead


def frames_of(texts: list[str], then_wait: bool = True):
    """An ASGI receive that hands out `texts` as frames, then waits (or disconnects)."""
    pending = [{"type": "websocket.receive", "text": text} for text in texts]

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        if then_wait:
            await asyncio.Event().wait()
        return {"type": "websocket.disconnect", "code": 1000}

    return receive


def read_ahead(receive, max_message_bytes: int = 1000) -> list[dict]:
    async def scenario() -> list[dict]:
        ahead = ReadAhead(receive, max_message_bytes)
        ahead.start(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        ahead.stop()
        assert ahead.task is None
        return list(ahead.frames)

    return asyncio.run(scenario())


def test_frames_are_kept_in_order_and_stop_keeps_them():
    frames = read_ahead(frames_of(["a", "b", "c"]))
    assert [f["text"] for f in frames] == ["a", "b", "c"]


def test_at_most_max_frames_are_read():
    frames = read_ahead(frames_of(["x"] * (MAX_FRAMES + 10)))
    assert len(frames) == MAX_FRAMES


def test_reading_stops_once_four_times_max_message_bytes_are_read():
    # 10 bytes a frame against a budget of 4 × 25: the tenth frame uses it up.
    frames = read_ahead(frames_of(["0123456789"] * 20), max_message_bytes=25)
    assert len(frames) == 10


def test_a_disconnect_is_kept_and_ends_the_reading():
    frames = read_ahead(frames_of(["a"], then_wait=False))
    assert [f["type"] for f in frames] == ["websocket.receive", "websocket.disconnect"]
