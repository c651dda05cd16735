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
        await admission.open(query)
        count = registry.count("Chat")
        try:
            if then is not None:
                await then(admission)
            left = admission.expires_at - loop.time()
            state = (connection.admitted, connection.identity, left)
            connection.close(1000)
            connection.start()
            await asyncio.wait_for(connection.drained(), 1)
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
        await admission.authenticate(TOKENS.issue("ada"))
        await asyncio.sleep(0.05)

    (admitted, identity, _), sent, _ = admit(then=first_frame, auth_timeout_seconds=0.02)
    assert admitted and identity.user == "ada"
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


def test_a_first_frame_without_a_token_is_unauthorized_and_closes():
    async def first_frame(admission: Admission) -> None:
        with pytest.raises(ProtocolError) as caught:
            await admission.authenticate(NO_TOKEN)
        assert (caught.value.reason, caught.value.close_code) == ("missing", CLOSE_UNAUTHORIZED)

    admit(then=first_frame)


def test_a_refresh_with_another_users_token_closes_with_4401():
    async def refresh(admission: Admission) -> None:
        with pytest.raises(ProtocolError) as caught:
            await admission.refresh(TOKENS.issue("bob"))
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


class _StoreDown:
    """A token store that cannot answer, as PostgreSQL while it is down."""

    def has_account(self, user_id: str) -> bool:
        from jacc_runtime.server.accounts_pg import AccountStoreUnavailable

        raise AccountStoreUnavailable("the account store at postgresql://db is unavailable")

    def retired_at(self, token_id: str) -> float | None:
        return None

    def retire(self, token_id: str, expires_at: int) -> bool:
        return True


def test_a_token_that_the_account_store_cannot_check_is_service_unavailable():
    bound = TOKENS.bound(_StoreDown())

    async def scenario():
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        registry = ConnectionRegistry()
        connection = Connection(send, "Chat", queue_bytes=4096, send_timeout=1.0)
        admission = Admission(connection, public=False, tokens=bound, registry=registry,
                              limits=WebSocketConfig(), loop=asyncio.get_running_loop())
        # An account's token (an operator's has no account to look up).
        await admission.open(b"token=" + TOKENS.issue("ada", user_id="ada-id").encode())
        try:
            connection.start()
            await asyncio.wait_for(connection.drained(), 1)
        finally:
            admission.close()
        return sent

    error, close = error_and_close(asyncio.run(scenario()))
    assert error["code"] == "SERVICE_UNAVAILABLE" and "cannot check the token now" in error["message"]
    assert close[0] == 1011
