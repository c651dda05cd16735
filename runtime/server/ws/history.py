"""Broadcast offsets and history: what `?offsets=1` shows and `?since=` replays (docs/scaling.md).

Every broadcast gets an offset, a stream id in Redis's form `<ms>-<seq>`: the
milliseconds of the wall clock when it was published and a counter within that
millisecond. Both backplanes use that form, so a client cannot tell them apart,
and an offset handed out by a process (or a Redis) that has since restarted
empty is, with overwhelming likelihood, in no history at all: it is refused
rather than taken for a position in a stream it never belonged to.

The resume rule, the same for both backplanes: a client that reconnects with
`since=OFFSET` is replayed what came after OFFSET when OFFSET itself is still in
the history and at most `history` broadcasts came after it. Checking that the
client's last offset is still there, rather than comparing it with the oldest
one kept, makes the rule exact whatever the history was trimmed by (Redis's
approximate `MAXLEN ~` included) and proves the offset belongs to this stream.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..protocol import encode

# (milliseconds, sequence): stream ids compare as pairs of integers, not as text.
StreamId = tuple[int, int]
# One broadcast as history keeps it: its offset and its encoded frame.
Entry = tuple[str, str]

HISTORY_TRIMMED = "history_trimmed"
_OFFSET = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_PART = 2**64 - 1  # Redis's ids are two unsigned 64-bit integers


def parse_offset(text: object) -> StreamId | None:
    """The id of an offset like `1718000000000-3`, or None for anything else."""
    if not isinstance(text, str):
        return None
    match = _OFFSET.fullmatch(text)
    if match is None:
        return None
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > _MAX_PART or seq > _MAX_PART:
        return None
    return ms, seq


def with_offset(frame: str, offset: str) -> str:
    """`frame` (an encoded JSON object) with `"offset"` as its last key.

    Spliced rather than re-encoded: the frame was encoded once for everyone,
    and an offset is digits and a dash, which need no escaping.
    """
    return f'{frame[:-1]},"offset":"{offset}"}}'


def resumed_frame(missed: int | None) -> str:
    """The frame that ends a replay: `missed` broadcasts replayed, or None for none possible."""
    if missed is None:
        return encode({"type": "resumed", "ok": False, "reason": HISTORY_TRIMMED})
    return encode({"type": "resumed", "ok": True, "missed": missed})


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume gets: the broadcasts after the client's offset, oldest first, or
    `ok` False when they are not all in the history any more."""

    ok: bool
    entries: Sequence[Entry] = ()


TRIMMED = Replay(False)


def replay_after(since: str, found: Sequence[Entry], history: int) -> Replay:
    """The resume rule, given `found`: the history's entries from `since` on, oldest first.

    A caller may cut `found` short after `history + 2` entries: one more than
    that already means the client missed too much.
    """
    if history <= 0 or not found or found[0][0] != since:
        return TRIMMED
    missed = found[1:]
    if len(missed) > history:
        return TRIMMED
    return Replay(True, missed)


class IdClock:
    """Stream ids in Redis's form, strictly increasing even when the wall clock steps back."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._last: StreamId = (0, 0)

    def next(self) -> str:
        ms = int(self._clock() * 1000)
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self._last[0]}-{self._last[1]}"


class MemoryHistory:
    """The last broadcasts of each channel, in one process.

    Keeps `history + 1` entries per channel: the one before the oldest a client
    may have missed is the client's own `since`, which the resume rule looks for.
    """

    def __init__(self, history: int) -> None:
        self.history = history
        self._channels: dict[str, deque[tuple[StreamId, str, str]]] = {}

    def add(self, channel: str, offset: str, frame: str) -> None:
        if self.history <= 0:
            return
        kept = self._channels.get(channel)
        if kept is None:
            kept = self._channels[channel] = deque(maxlen=self.history + 1)
        kept.append((parse_offset(offset), offset, frame))

    def replay(self, channel: str, since: str) -> Replay:
        key = parse_offset(since)
        kept = self._channels.get(channel)
        if key is None or not kept:
            return TRIMMED
        # From the newest back: a client that resumes has usually missed little.
        found: list[Entry] = []
        for entry_key, offset, frame in reversed(kept):
            if entry_key < key:
                break
            found.append((offset, frame))
        found.reverse()
        return replay_after(since, found, self.history)
