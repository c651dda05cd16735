"""Login throttling: failed logins per user name and per client address (docs/security.md).

    throttle = LoginThrottle(LoginLimits())
    attempt = throttle.admit(username_key(name), client_address)  # or raises Throttled
    ... check the password ...
    attempt.end(ok)     # True: correct; False: wrong; None: neither (the request failed)

Each name and each address has an allowance of failed logins that refills over
a window (a leaky bucket: `attempts` failures, forgotten one every
`window / attempts` seconds), so that the occasional typo never adds up to a
lockout. A failure that finds the allowance used up locks the name or the
address for `backoff`, and each such failure doubles the lockout, up to
`window`; the doubling starts over once every failure is forgotten. While
locked, logins are refused before any password is hashed, which is what makes
throttling cheap: a refused login costs a dictionary lookup. A correct password
resets its name's record, never its address's (one account of the attacker's
own must not wipe the address's record).

Attempts in flight count too: with the allowance nearly used up, a second
concurrent attempt waits for the first to finish, so 200 simultaneous guesses
get as far as `attempts` sequential ones.

Memory is bounded: at most `max_entries` names and as many addresses, each
entry about 200 bytes (a name is kept as a 16-byte digest, never as text). An
entry goes once its count has drained; past the bound the least recently seen
goes first.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Attempt", "LoginLimits", "LoginThrottle", "Throttled", "address_key"]

# While attempts are in flight, the next one for that name or address is told to
# come back after about one password hash, rounded up to what Retry-After can say.
_IN_FLIGHT_RETRY_SECONDS = 1.0
# 2**30 backoffs are far past any window; a bound keeps the power a float.
_MAX_DOUBLINGS = 30


@dataclass(frozen=True)
class LoginLimits:
    """The `[auth]` login settings (docs/configuration.md)."""

    attempts: int = 5
    address_attempts: int = 20
    window_seconds: float = 900.0
    backoff_seconds: float = 1.0
    max_entries: int = 10000


class Throttled(Exception):
    """Refused before the password is checked.

    `retry_after` is in whole seconds (at least 1); `reason` names the setting
    that was hit, `login_attempts` (the user name) or `login_address_attempts`.
    """

    def __init__(self, retry_after: float, reason: str) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        self.reason = reason
        whose = "for this user name" if reason == "login_attempts" else "from this address"
        super().__init__(f"too many failed logins {whose}: retry in {self.retry_after} s")


class _Entry:
    __slots__ = ("level", "at", "strikes", "pending", "until")

    def __init__(self, now: float) -> None:
        self.level = 0.0  # failures not yet forgotten, as of `at`
        self.at = now
        self.strikes = 0  # lockouts since every failure was last forgotten
        self.pending = 0  # attempts admitted and not yet ended
        self.until = 0.0  # locked until this clock time


class _Table:
    """Failure counts for one kind of key (names, or addresses)."""

    def __init__(self, attempts: int, limits: LoginLimits, reset_on_success: bool) -> None:
        self.attempts = attempts
        self._leak = attempts / limits.window_seconds  # failures forgotten per second
        self._window = limits.window_seconds
        self._backoff = limits.backoff_seconds
        self._max = limits.max_entries
        self._reset_on_success = reset_on_success
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, key: bytes, now: float) -> float:
        """Seconds before `key` may try again; 0.0 if it may now."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        self._entries.move_to_end(key)
        if now < entry.until:
            return entry.until - now
        if entry.pending and self._unforgotten(entry, now) + entry.pending >= self.attempts:
            return _IN_FLIGHT_RETRY_SECONDS
        return 0.0

    def begin(self, key: bytes, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None:
            self._make_room(now)
            entry = self._entries[key] = _Entry(now)
        entry.pending += 1

    def end(self, key: bytes, now: float, ok: bool | None) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return  # pushed out by a flood of other keys meanwhile
        entry.pending = max(0, entry.pending - 1)
        if ok is False:
            level = self._level(entry, now)
            if not level:
                entry.strikes = 0
            entry.level = level + 1
            entry.at = now
            if self._unforgotten(entry, now) >= self.attempts:
                entry.strikes += 1
                doublings = min(entry.strikes - 1, _MAX_DOUBLINGS)
                entry.until = now + min(self._window, self._backoff * 2**doublings)
        elif ok and self._reset_on_success:
            entry.level = 0.0
            entry.strikes = 0
            entry.until = 0.0

    def _level(self, entry: _Entry, now: float) -> float:
        return max(0.0, entry.level - (now - entry.at) * self._leak)

    def _unforgotten(self, entry: _Entry, now: float) -> int:
        # A failure counts until it is forgotten in full: two failures a second
        # apart are two, not 1.998 of them.
        return math.ceil(self._level(entry, now))

    def _make_room(self, now: float) -> None:
        entries = self._entries
        # The oldest-seen entries first: most have drained and can go for free.
        while entries:
            key, oldest = next(iter(entries.items()))
            drained = not oldest.pending and now >= oldest.until and not self._level(oldest, now)
            if not drained and len(entries) < self._max:
                return
            del entries[key]


class Attempt:
    """One admitted login; `end` it exactly once with its outcome."""

    __slots__ = ("_throttle", "_keys", "_ended")

    def __init__(self, throttle: LoginThrottle, keys: tuple[bytes, bytes]) -> None:
        self._throttle = throttle
        self._keys = keys
        self._ended = False

    def end(self, ok: bool | None) -> None:
        """True: the password was right; False: wrong or unknown user; None: not checked."""
        if self._ended:
            return
        self._ended = True
        self._throttle._end(self._keys, ok)


class LoginThrottle:
    """Throttles failed logins per user name and per client address. Not thread-safe:
    it lives on the event loop, and every call is a few dictionary operations."""

    def __init__(
        self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._names = _Table(limits.attempts, limits, reset_on_success=True)
        self._addresses = _Table(limits.address_attempts, limits, reset_on_success=False)

    def __len__(self) -> int:
        """Entries held, names and addresses together."""
        return len(self._names) + len(self._addresses)

    def admit(self, name_key: str, address: str) -> Attempt:
        """Admit a login for the user name key `name_key` from `address`, or raise Throttled."""
        now = self._clock()
        keys = (_digest(name_key), _digest(address_key(address)))
        by_name = self._names.wait(keys[0], now)
        by_address = self._addresses.wait(keys[1], now)
        if by_name or by_address:
            if by_name >= by_address:
                raise Throttled(by_name, "login_attempts")
            raise Throttled(by_address, "login_address_attempts")
        self._names.begin(keys[0], now)
        self._addresses.begin(keys[1], now)
        return Attempt(self, keys)

    def _end(self, keys: tuple[bytes, bytes], ok: bool | None) -> None:
        now = self._clock()
        self._names.end(keys[0], now, ok)
        self._addresses.end(keys[1], now, ok)


def address_key(address: str) -> str:
    """The part of a client address that one party controls: an IPv4 address, an IPv6 /64.

    One host is commonly given a whole IPv6 /64, so counting single IPv6
    addresses would let it try 2**64 times. Anything that is not an IP address
    (a Unix socket, a test client) counts as itself.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _digest(text: str) -> bytes:
    # 16 bytes whatever the name's length: memory per entry stays fixed.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
