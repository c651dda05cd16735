"""Which browser origins may open a WebSocket (runtime/origins.py)."""

from __future__ import annotations

import pytest

from jacc_runtime.server.origins import origin_allowed


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (None, "127.0.0.1:8000"),  # not a browser
        (None, None),
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("https://app.example", "app.example"),
        ("https://app.example", "app.example:443"),
        ("http://app.example", "app.example:80"),
        ("http://App.Example:8080", "app.example:8080"),
        ("https://app.example", "APP.EXAMPLE"),
        ("http://[::1]:8000", "[::1]:8000"),
        # A TLS-terminating proxy: the browser says https, the server sees plain ws.
        ("https://app.example", "app.example"),
    ],
)
def test_no_origin_and_the_same_origin_pass(origin, host):
    assert origin_allowed(origin, host, ())


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://evil.example", "app.example"),
        ("http://127.0.0.1:8001", "127.0.0.1:8000"),
        ("http://app.example", "app.example:8080"),
        ("https://app.example.evil.example", "app.example"),
        ("null", "app.example"),  # sandboxed frames and file:// pages
        ("", "app.example"),
        ("http://app.example:notaport", "app.example"),
        ("https://app.example", None),
        ("https://app.example", ""),
    ],
)
def test_other_origins_are_refused(origin, host):
    assert not origin_allowed(origin, host, ())


def test_listed_origins_pass_and_only_those():
    allowed = ("https://app.example", "http://localhost:3000", "http://[::1]:5173")
    assert origin_allowed("https://app.example", "api.example", allowed)
    assert origin_allowed("https://app.example:443", "api.example", allowed)
    assert origin_allowed("HTTPS://APP.EXAMPLE", "api.example", allowed)
    assert origin_allowed("http://localhost:3000", "api.example", allowed)
    assert origin_allowed("http://[::1]:5173", "api.example", allowed)
    assert not origin_allowed("http://app.example", "api.example", allowed)  # scheme matters here
    assert not origin_allowed("http://localhost:3001", "api.example", allowed)
    # The same origin passes as well as the listed ones.
    assert origin_allowed("https://api.example", "api.example", allowed)


def test_star_allows_any_origin():
    assert origin_allowed("https://evil.example", "app.example", ("*",))
    assert origin_allowed("null", "app.example", ("*",))
