"""The broadcast backplane: how a broadcast frame reaches every connection of a walker.

The protocol code publishes an encoded frame on a channel (the walker's name)
and never looks further. Each app subscribes its connection registry's
`deliver`; the backplane calls every subscriber with each published frame.
`MemoryBackplane` does that in-process, synchronously, so every subscriber sees
broadcasts in one global order. A Redis backplane will publish to Redis and
call the subscribers from its listener task instead, with no change to callers.
"""

from __future__ import annotations

import abc
from typing import Callable

Deliver = Callable[[str, str], None]


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
    """Fan-out of encoded frames by channel."""

    # The metrics' hooks: a class attribute, so that a subclass needs no change to its
    # __init__; the app replaces it on its own backplane.
    events: BackplaneEvents = BackplaneEvents()

    def __init__(self) -> None:
        self._subscribers: list[Deliver] = []

    def subscribe(self, deliver: Deliver) -> None:
        """Call `deliver(channel, frame)` for every frame published from now on."""
        self._subscribers.append(deliver)

    def unsubscribe(self, deliver: Deliver) -> None:
        self._subscribers.remove(deliver)

    async def start(self) -> None:
        """Connect, if there is anything to connect to. Raises BackplaneUnavailable."""

    async def stop(self) -> None:
        """Disconnect and release resources."""

    @abc.abstractmethod
    async def publish(self, channel: str, frame: str) -> None:
        """Deliver `frame` to every subscriber, or raise BackplaneUnavailable (no partial delivery)."""


class MemoryBackplane(Backplane):
    """One process: publishing is calling the subscribers."""

    async def publish(self, channel: str, frame: str) -> None:
        for deliver in self._subscribers:
            deliver(channel, frame)
