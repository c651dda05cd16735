"""The broadcast backplane: how a broadcast frame reaches every connection of a walker.

The protocol code publishes an encoded frame on a channel and never looks
further. Each app subscribes its connection registry's `deliver`; the backplane
calls every subscriber with each published frame and its offset, in one order
per channel. `MemoryBackplane` does that in-process, synchronously; the Redis
backplane (redis.py) appends to a Redis stream and calls the subscribers from
its reader task, the same for every worker and host.

A channel is a walker's name today (`channel_of`). Rooms will be one more
channel each (`ChatRoom/lobby`), not a new mechanism: a channel is only a name
to publish on, to read from and to keep history for.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable

from .history import IdClock, MemoryHistory, Replay

if TYPE_CHECKING:
    from ..config import WebSocketConfig
    from .caps import ConnectionCaps
    from .connections import ConnectionRegistry

# deliver(channel, frame, offset)
Deliver = Callable[[str, str, str], None]


def channel_of(walker: str, room: str | None = None) -> str:
    """The channel a walker's broadcasts travel on (a room's, once rooms exist)."""
    return walker if room is None else f"{walker}/{room}"


class BackplaneUnavailable(Exception):
    """The backplane cannot carry broadcasts right now (SERVICE_UNAVAILABLE, 4503)."""


class BackplaneEvents:
    """What a backplane reports to the server's metrics (metrics.py); by default, nothing.

    A backplane that talks to a broker calls `reconnected()` each time it is back
    after a drop, and `lag(seconds)` for each broadcast it delivers: the time from
    its publication (the broker's timestamp) to its delivery here. The app sets
    `Backplane.events`; the publish latency the app measures itself, around `publish`.
    """

    def reconnected(self) -> None:
        pass

    def lag(self, seconds: float) -> None:
        pass


class Backplane(abc.ABC):
    """Fan-out of encoded frames by channel, each with its offset, and their recent history."""

    # The metrics' hooks: a class attribute, so that a subclass needs no change to its
    # __init__; the app replaces it on its own backplane.
    events: BackplaneEvents = BackplaneEvents()

    def __init__(self, history: int = 1000) -> None:
        self.history = history
        self._subscribers: list[Deliver] = []

    def subscribe(self, deliver: Deliver) -> None:
        """Call `deliver(channel, frame, offset)` for every frame published from now on."""
        self._subscribers.append(deliver)

    def unsubscribe(self, deliver: Deliver) -> None:
        self._subscribers.remove(deliver)

    def watch(self, channels: Iterable[str]) -> None:
        """The channels this process delivers, all of them each time (the app's broadcast
        walkers; a dev reload may change them). A backplane that delivers whatever is
        published in-process needs no list."""

    def caps(self, registry: ConnectionRegistry, limits: WebSocketConfig) -> ConnectionCaps:
        """Who counts the connection caps: this process, unless the backplane is shared."""
        from .caps import ConnectionCaps  # here: caps.py imports redis_link.py, which imports this

        return ConnectionCaps(registry, limits)

    async def start(self) -> None:
        """Connect, if there is anything to connect to. Raises BackplaneUnavailable."""

    async def stop(self) -> None:
        """Disconnect and release resources."""

    @abc.abstractmethod
    async def publish(self, channel: str, frame: str) -> str:
        """Send `frame` to every subscriber of every process and return its offset, or raise
        BackplaneUnavailable (then nobody gets it: no partial delivery)."""

    @abc.abstractmethod
    async def replay(self, channel: str, since: str) -> Replay:
        """The broadcasts of `channel` after the offset `since` (history.py's rule).
        Raises BackplaneUnavailable."""


class MemoryBackplane(Backplane):
    """One process: publishing is calling the subscribers, and history is a deque per channel."""

    def __init__(self, history: int = 1000) -> None:
        super().__init__(history)
        self._ids = IdClock()
        self._history = MemoryHistory(history)

    async def publish(self, channel: str, frame: str) -> str:
        offset = self._ids.next()
        self._history.add(channel, offset, frame)
        for deliver in self._subscribers:
            deliver(channel, frame, offset)
        return offset

    async def replay(self, channel: str, since: str) -> Replay:
        return self._history.replay(channel, since)
