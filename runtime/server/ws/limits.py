"""Per-connection limits (docs/protocol.md, "Limits and liveness") that are worked out per frame: rate and size.

Both sit on the hot path, so each costs a few integer or float operations per
frame and no clock of its own: the session reads the loop's monotonic clock once
per frame and hands the reading in.

    bucket = TokenBucket(rate=50, now=loop.time())
    if not bucket.take(loop.time()):
        ...  # RATE_LIMITED
"""

from __future__ import annotations

__all__ = ["TokenBucket", "SizeLimit", "protocol_max_size"]


class TokenBucket:
    """A token bucket holding up to `burst` tokens, refilled at `rate` tokens a second.

    `burst` defaults to `rate` (a second's worth), and is never below 1 so that
    a rate under one message a second still lets a message through now and then.
    The bucket starts full. Times are seconds on any monotonic clock.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, float(rate if burst is None else burst))
        self._tokens = self.burst
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False (and nothing spent) if there is none."""
        tokens = self._tokens + (now - self._stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    def retry_after(self, now: float) -> float:
        """Seconds from `now` until a token is available (0.0 if one is)."""
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


class SizeLimit:
    """`max_message_bytes` for frames that arrive as `str` (decoded UTF-8) or `bytes`.

    Measuring a `str` in UTF-8 bytes means encoding it; `exceeded` does so only
    for text longer than a quarter of the limit, since no code point takes more
    than four bytes: a typical small frame costs one `len`.
    """

    __slots__ = ("limit", "_surely_fits")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._surely_fits = limit // 4

    def exceeded(self, data: str | bytes) -> int:
        """The frame's size in bytes if it is over the limit, else 0."""
        if len(data) <= self._surely_fits:
            return 0
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        return size if size > self.limit else 0


def protocol_max_size(max_message_bytes: int) -> int:
    """The largest message the WebSocket layer buffers (uvicorn's `ws_max_size`).

    Frames up to twice `max_message_bytes` (at least 64 KiB more) are read
    whole, so the client gets a MESSAGE_TOO_LARGE frame and close 4413 that say
    why; anything larger is refused by the WebSocket parser from the frame
    header alone (close 1009), before its payload is buffered.
    """
    return max(2 * max_message_bytes, max_message_bytes + 65536)
