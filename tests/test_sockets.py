"""The socket-level limits (runtime/server/sockets.py); tests/e2e/test_connection_limits.py
drives them through a real server."""

from __future__ import annotations

import resource

import pytest
from jacc_runtime.server import sockets
from jacc_runtime.server.protocol import REQUEST_TIMEOUT, ProtocolError


class FakeLimits:
    """resource.getrlimit/setrlimit for RLIMIT_NOFILE, with a hard limit to respect."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        soft, hard = limits
        if hard != self.hard or (self.hard != resource.RLIM_INFINITY and soft > self.hard):
            raise ValueError("not allowed")
        self.soft = soft


@pytest.mark.parametrize("soft, hard, wanted, fits, soft_after", [
    (20000, 20000, 10000, 10000, 20000),    # room already: nothing changes
    (1024, 524288, 10000, 10000, 10064),    # raised as far as needed, no further
    (1024, 4096, 10000, 4032, 4096),        # raised to the hard limit, and that is all
    (300, 300, 10000, 236, 300),            # nothing to raise
    (1024, resource.RLIM_INFINITY, 10000, 10000, 10064),
])
def test_fit_open_files(monkeypatch, soft, hard, wanted, fits, soft_after):
    fake = FakeLimits(soft, hard)
    monkeypatch.setattr(sockets.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(sockets.resource, "setrlimit", fake.setrlimit)
    assert sockets.fit_open_files(wanted) == fits
    assert fake.soft == soft_after


def test_a_refusal_is_a_whole_json_response_that_closes():
    error = ProtocolError(REQUEST_TIMEOUT, "late", reason="handshake_timeout_seconds")
    head, _, body = sockets._response(error).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 408 Request Timeout"
    assert "connection: close" in lines and f"content-length: {len(body)}" in lines
    assert body == error.frame().encode()
