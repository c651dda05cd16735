"""Offsets and the bounded history of broadcasts (runtime/server/ws/history.py)."""

from __future__ import annotations

import json

import pytest

from jacc_runtime.server.protocol import encode, success_frame
from jacc_runtime.server.ws.history import (
    TRIMMED,
    IdClock,
    MemoryHistory,
    Replay,
    parse_offset,
    replay_after,
    resumed_frame,
    with_offset,
)


@pytest.mark.parametrize(("text", "parsed"), [
    ("1718000000000-0", (1718000000000, 0)),
    ("0-0", (0, 0)),
    ("18446744073709551615-18446744073709551615", (2**64 - 1, 2**64 - 1)),
])
def test_offsets_are_stream_ids(text, parsed):
    assert parse_offset(text) == parsed


@pytest.mark.parametrize("text", ["", "12", "1-", "-1", "1-2-3", "a-1", " 1-2", "1-2\n",
                                  "18446744073709551616-0", "١-٢", None, 12, ["1-2"]])
def test_anything_else_is_no_offset(text):
    assert parse_offset(text) is None


def test_offsets_compare_as_numbers_not_text():
    assert parse_offset("10-0") > parse_offset("9-0")
    assert parse_offset("9-10") > parse_offset("9-9")


def test_the_offset_variant_is_the_frame_with_one_more_key():
    frame = success_frame([{"content": "héllo \"x\" }"}])
    spliced = with_offset(frame, "1718000000000-7")
    assert spliced == encode({**json.loads(frame), "offset": "1718000000000-7"})


def test_resumed_frames():
    assert resumed_frame(3) == '{"type":"resumed","ok":true,"missed":3}'
    assert resumed_frame(None) == '{"type":"resumed","ok":false,"reason":"history_trimmed"}'


def test_ids_grow_strictly_even_when_the_clock_steps_back():
    times = iter([1.0, 1.0, 1.0005, 0.5, 2.0])
    clock = IdClock(lambda: next(times))
    ids = [clock.next() for _ in range(5)]
    assert ids == ["1000-0", "1000-1", "1000-2", "1000-3", "2000-0"]


def entries(n: int, start: int = 1) -> list[tuple[str, str]]:
    return [(f"{i}-0", f"frame {i}") for i in range(start, start + n)]


def test_the_rule_replays_what_came_after_an_offset_still_kept():
    assert replay_after("3-0", entries(3, 3), history=5) == Replay(True, entries(2, 4))
    assert replay_after("3-0", entries(1, 3), history=5) == Replay(True, [])


def test_the_rule_refuses_an_offset_no_longer_kept_or_never_seen():
    assert replay_after("2-0", entries(3, 3), history=5) is TRIMMED
    assert replay_after("3-0", [], history=5) is TRIMMED


def test_the_rule_refuses_more_missed_than_the_history_holds():
    assert replay_after("1-0", entries(6), history=5) == Replay(True, entries(5, 2))
    assert replay_after("1-0", entries(7), history=5) is TRIMMED


def test_the_rule_with_no_history():
    assert replay_after("1-0", entries(1), history=0) is TRIMMED


def test_memory_history_keeps_exactly_history_after_the_offset():
    history = MemoryHistory(3)
    for offset, frame in entries(10):
        history.add("Chat", offset, frame)
    assert history.replay("Chat", "7-0") == Replay(True, entries(3, 8))  # missed 3: all there
    assert history.replay("Chat", "6-0") is TRIMMED  # missed 4 of 3 kept
    assert history.replay("Chat", "10-0") == Replay(True, [])
    assert history.replay("Chat", "11-0") is TRIMMED  # never handed out
    assert history.replay("Other", "7-0") is TRIMMED
    assert history.replay("Chat", "junk") is TRIMMED


def test_memory_history_zero_keeps_nothing():
    history = MemoryHistory(0)
    history.add("Chat", "1-0", "frame")
    assert history.replay("Chat", "1-0") is TRIMMED
