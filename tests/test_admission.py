"""Authentication and caps of one connection (runtime/server/ws/admission.py)."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from jacc_runtime.server.auth import TokenService
from jacc_runtime.server.config import WebSocketConfig
from jacc_runtime.server.protocol import CLOSE_CAPACITY, CLOSE_UNAUTHORIZED, ProtocolError
from jacc_runtime.server.ws.admission import NO_TOKEN, Admission
from jacc_runtime.server.ws.connections import Connection, ConnectionRegistry

TOKENS = TokenService("admission-test-secret-of-32-bytes-or-more")


def admit(query: bytes = b"", *, public: bool = False, others: int = 0, then=None, **limits):
    """Open one connection's admission after `others` of the same walker; run `then(admission)`.

    Returns (admitted, identity, seconds until expiry), what the peer got, and
    the walker's count right after `open`.
    """

    async def scenario():
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        registry = ConnectionRegistry()
        for _ in range(others):
            registry.add(Connection(send, "Chat", queue_bytes=1, send_timeout=1.0))
        connection = Connection(send, "Chat", queue_bytes=1024, send_timeout=1.0)
        loop = asyncio.get_running_loop()
        admission = Admission(
            connection,
            public=public,
            tokens=TOKENS,
            registry=registry,
            limits=WebSocketConfig(**limits),
            loop=loop,
        )
        admission.open(query)
        count = registry.count("Chat")
        try:
            if then is not None:
                await then(admission)
            left = admission.expires_at - loop.time()
            state = (connection.admitted, connection.identity, left)
            connection.close(1000)
            await asyncio.wait_for(connection.start(), 1)
        finally:
            admission.close()
        assert registry.count("Chat") == others  # counted out at close
        return state, sent, count

    return asyncio.run(scenario())


def error_and_close(sent: list[dict]) -> tuple[dict, tuple[int, str]]:
    frame, close = sent
    return json.loads(frame["text"])["error"], (close["code"], close["reason"])


def test_a_public_connection_without_a_token_is_admitted_anonymously():
    (admitted, identity, left), _, count = admit(public=True)
    assert admitted and identity is None and left == math.inf and count == 1


def test_a_query_token_admits_a_private_connection_until_it_expires():
    token = TOKENS.issue("ada", ttl_seconds=60)
    (admitted, identity, left), _, _ = admit(b"token=" + token.encode())
    assert admitted and identity.user == "ada"
    assert 58 < left <= 60


def test_a_bad_query_token_on_a_private_walker_is_refused_with_4401():
    _, sent, _ = admit(b"token=nonsense")
    error, close = error_and_close(sent)
    assert error["code"] == "UNAUTHORIZED" and close == (CLOSE_UNAUTHORIZED, "invalid")


def test_no_token_within_the_auth_timeout_closes_with_4401():
    _, sent, _ = admit(then=lambda admission: asyncio.sleep(0.1), auth_timeout_seconds=0.02)
    error, close = error_and_close(sent)
    assert error == {
        "code": "UNAUTHORIZED",
        "message": "no token within auth_timeout_seconds (0.02 s)",
        "reason": "missing",
    }
    assert close == (CLOSE_UNAUTHORIZED, "missing")


def test_the_first_frame_token_authenticates_and_stops_the_auth_timeout():
    async def first_frame(admission: Admission) -> None:
        admission.authenticate(TOKENS.issue("ada"))
        await asyncio.sleep(0.05)

    (admitted, identity, _), sent, _ = admit(then=first_frame, auth_timeout_seconds=0.02)
    assert admitted and identity.user == "ada"
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


def test_a_first_frame_without_a_token_is_unauthorized_and_closes():
    async def first_frame(admission: Admission) -> None:
        with pytest.raises(ProtocolError) as caught:
            admission.authenticate(NO_TOKEN)
        assert (caught.value.reason, caught.value.close_code) == ("missing", CLOSE_UNAUTHORIZED)

    admit(then=first_frame)


def test_a_refresh_with_another_users_token_closes_with_4401():
    async def refresh(admission: Admission) -> None:
        with pytest.raises(ProtocolError) as caught:
            admission.refresh(TOKENS.issue("bob"))
        assert caught.value.message == "the new token belongs to another user"
        assert caught.value.close_code == CLOSE_UNAUTHORIZED

    admit(b"token=" + TOKENS.issue("ada").encode(), then=refresh)


def test_the_walker_cap_refuses_with_4403_and_does_not_count_the_connection():
    (admitted, _, _), sent, count = admit(public=True, others=1, max_connections_per_walker=1)
    error, close = error_and_close(sent)
    assert error["message"] == (
        "walker `Chat` has reached max_connections_per_walker (1 open connections)"
    )
    assert close == (CLOSE_CAPACITY, "max_connections_per_walker")
    assert count == 1 and not admitted
