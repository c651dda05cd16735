"""Which browser origins may open a WebSocket (`allowed_origins`, docs/configuration.md).

Browsers send `Origin` with every WebSocket handshake and do not apply the
same-origin policy to WebSockets, so without this check any page on the web
could talk to the walkers with the visitor's cookies and network position.
Clients that are not browsers send no `Origin` and are not affected.

This module is the one place that parses and compares origins: the config uses
`allowed_origin` to check and spell the entries it reads, the handshake uses
`origin_allowed`.

    origin_allowed("https://app.example", "app.example", ())           # True: same origin
    origin_allowed("https://evil.example", "app.example", ())          # False
    origin_allowed("https://evil.example", "app.example", ("*",))      # True
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["Origin", "allowed_origin", "origin_allowed", "parse_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class Origin(NamedTuple):
    """An origin with its port made explicit (None for a scheme with no default)."""

    scheme: str
    hostname: str
    port: int | None

    def __str__(self) -> str:
        """Spelled as browsers send it: no default port, an IPv6 address in brackets."""
        shown = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        if self.port is None or self.port == _DEFAULT_PORTS.get(self.scheme):
            return f"{self.scheme}://{shown}"
        return f"{self.scheme}://{shown}:{self.port}"


def parse_origin(text: str) -> Origin | None:
    """`scheme://host[:port]` as an `Origin`; None for `null` (sandboxed pages,
    file://) and anything else that names nobody's origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return Origin(scheme, parts.hostname.lower(),
                  port if port is not None else _DEFAULT_PORTS.get(scheme))


def allowed_origin(entry: object) -> str:
    """An `allowed_origins` entry, checked and spelled as `origin_allowed` compares it.

    Raises ValueError unless it is `*` or exactly `scheme://host[:port]`: a
    trailing slash or a path would never match an `Origin` header, silently.
    """
    if entry == "*":
        return "*"
    if isinstance(entry, str):
        parts = urlsplit(entry.strip())
        origin = parse_origin(entry)
        if origin and not (parts.path or parts.query or parts.fragment or parts.username):
            return str(origin)
    raise ValueError(entry)


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """May a handshake with this `Origin` and `Host` header proceed?

    No `Origin` passes (not a browser); so does `allowed == ("*",)`, an origin
    listed in `allowed` (spelled by `allowed_origin`), and the same origin: the
    `Origin`'s host and port equal the `Host` header's, the port defaulting by
    the origin's scheme. The scheme itself is not compared, as a TLS-terminating
    proxy in front of the server changes it.
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if str(parsed) in allowed:
        return True
    if not host:
        return False
    return _host_port(host, _DEFAULT_PORTS.get(parsed.scheme)) == parsed[1:]


def _host_port(host: str, default_port: int | None) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else default_port
