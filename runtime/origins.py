"""Which browser origins may open a WebSocket (SPEC §9 `allowed_origins`).

Browsers send `Origin` with every WebSocket handshake and do not apply the
same-origin policy to WebSockets, so without this check any page on the web
could talk to the walkers with the visitor's cookies and network position.
Clients that are not browsers send no `Origin` and are not affected.

    origin_allowed("https://app.example", "app.example", ())           # True: same origin
    origin_allowed("https://evil.example", "app.example", ())          # False
    origin_allowed("https://evil.example", "app.example", ("*",))      # True
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["origin_allowed"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """May a handshake with this `Origin` and `Host` header proceed?

    No `Origin` passes (not a browser); so does `allowed == ("*",)`, an origin
    listed in `allowed` (spelled as `load_config` normalises them), and the same
    origin: the `Origin`'s host and port equal the `Host` header's, the port
    defaulting by the origin's scheme. The scheme itself is not compared, as a
    TLS-terminating proxy in front of the server changes it.
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    normal = _normalise(origin)
    if normal is None:
        return False  # `null` (sandboxed pages, file://) and garbage are nobody's origin
    scheme, hostname, port = normal
    if _spelled(scheme, hostname, port) in allowed:
        return True
    if not host:
        return False
    return _host_port(host, _DEFAULT_PORTS.get(scheme)) == (hostname, port)


def _normalise(origin: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _spelled(scheme: str, hostname: str, port: int | None) -> str:
    """The origin as `config._origin` spells an allowed one: no default port."""
    shown = f"[{hostname}]" if ":" in hostname else hostname
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def _host_port(host: str, default_port: int | None) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else default_port
