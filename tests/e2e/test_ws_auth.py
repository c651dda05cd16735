"""Authentication (docs/protocol.md) against a real `jacc serve`: tokens, refresh, expiry, secrets, logs."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import stat
import time

import jwt
import pytest
from e2e_support import SECRET, app_source, ask, jacc_token, run, server_env, start_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(user: str = "alice", ttl: int = 3600) -> dict:
    now = int(time.time())
    return {"sub": user, "user_id": user, "iat": now, "exp": now + ttl}


def tampered() -> str:
    header, _, signature = TOKENS.issue("alice").split(".")
    return f"{header}.{b64(claims('admin'))}.{signature}"


REFUSED = {
    "wrong signature": lambda: jwt.encode(claims(), "another-secret-" + "x" * 40, "HS256"),
    "tampered payload": tampered,
    "expired": lambda: jwt.encode(claims(ttl=-60), SECRET, "HS256"),
    "alg none": lambda: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}.",
    "other algorithm": lambda: jwt.encode(claims(), SECRET, "HS512"),
    "garbage": lambda: "not-a-token",
}


async def refused(ws) -> tuple[dict, int, str]:
    """The UNAUTHORIZED frame, then the close code and reason."""
    frame = json.loads(await ws.recv())
    with pytest.raises(ConnectionClosed) as caught:
        await ws.recv()
    return frame, caught.value.rcvd.code, caught.value.rcvd.reason


def test_private_walker_with_query_token_and_with_first_frame_token(server):
    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={TOKENS.issue('alice')}")) as ws:
            assert await ask(ws, {"message": "hi"}) == {
                "ok": True,
                "data": {"reports": [{"echo": "hi", "authenticated": True}]},
            }
            # Later `token` keys are removed and ignored, even bad ones.
            assert (await ask(ws, {"message": "x", "token": "junk"}))["ok"] is True
        async with connect(server.ws("/ws/SecureChat")) as ws:
            first = await ask(ws, {"message": "first", "token": TOKENS.issue("bob")})
            assert first["data"]["reports"][0]["echo"] == "first"
            assert (await ask(ws, {"message": "second"}))["ok"] is True

    run(client())


@pytest.mark.parametrize("kind", sorted(REFUSED))
@pytest.mark.parametrize("where", ["query", "first frame"])
def test_refused_tokens_get_unauthorized_then_4401(server, kind, where):
    token = REFUSED[kind]()

    async def client():
        if where == "query":
            async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
                return await refused(ws)
        async with connect(server.ws("/ws/SecureChat")) as ws:
            await ws.send(json.dumps({"message": "hi", "token": token}))
            return await refused(ws)

    frame, code, reason = run(client())
    expected = "expired" if kind == "expired" else "invalid"
    assert frame["ok"] is False
    assert frame["error"]["code"] == "UNAUTHORIZED" and frame["error"]["reason"] == expected
    assert (code, reason) == (4401, expected)


def test_no_token_at_all_is_refused(server):
    async def client():
        async with connect(server.ws("/ws/SecureChat")) as ws:
            await ws.send(json.dumps({"message": "hi"}))
            return await refused(ws)

    frame, code, reason = run(client())
    assert frame["error"]["reason"] == "missing" and (code, reason) == (4401, "missing")


def test_public_walker_accepts_valid_invalid_and_no_token(server):
    async def client():
        for query in (f"?token={TOKENS.issue('alice')}", "?token=junk", ""):
            async with connect(server.ws(f"/ws/EchoMessage{query}")) as ws:
                assert (await ask(ws, {"message": "hi"}))["ok"] is True

    run(client())


def test_refresh_same_user_then_other_user_closes_4401(server):
    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={TOKENS.issue('alice')}")) as ws:
            fresh = TOKENS.issue("alice", ttl_seconds=7200)
            assert await ask(ws, {"type": "refresh", "token": fresh}) == {
                "type": "refreshed",
                "ok": True,
            }
            bad = await ask(ws, {"type": "refresh", "token": "junk"})
            assert bad["error"]["code"] == "UNAUTHORIZED"  # refused; the old token still holds
            assert (await ask(ws, {"message": "still here"}))["ok"] is True
            await ws.send(json.dumps({"type": "refresh", "token": TOKENS.issue("mallory")}))
            return await refused(ws)

    frame, code, _ = run(client())
    assert frame["error"]["code"] == "UNAUTHORIZED" and code == 4401


def test_expiry_closes_with_4401_expired(server):
    async def client():
        token = TOKENS.issue("alice", ttl_seconds=2)
        async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
            assert (await ask(ws, {"message": "hi"}))["ok"] is True
            started = time.monotonic()
            frame, code, reason = await refused(ws)
            return frame, code, reason, time.monotonic() - started

    frame, code, reason, waited = run(client())
    assert frame["error"] == {"code": "UNAUTHORIZED", "message": "token expired", "reason": "expired"}
    assert (code, reason) == (4401, "expired")
    assert waited < 4


def test_refresh_before_expiry_keeps_the_connection(server):
    async def client():
        token = TOKENS.issue("alice", ttl_seconds=2)
        async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
            refreshed = await ask(ws, {"type": "refresh", "token": TOKENS.issue("alice")})
            assert refreshed == {"type": "refreshed", "ok": True}
            await asyncio.sleep(2.5)  # past the first token's expiry
            return await ask(ws, {"message": "after the old expiry"})

    assert run(client())["ok"] is True


def test_no_token_reaches_the_server_output(server):
    token = TOKENS.issue("carol")

    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
            assert (await ask(ws, {"message": "hi"}))["ok"] is True
        async with connect(server.ws(f"/ws/SecureChat?token={token}x")) as ws:  # refused one
            await refused(ws)

    run(client())
    output = server.output()
    assert "token=[redacted]" in output
    assert token not in output and token.split(".")[2] not in output


def test_jacc_token_is_accepted_by_serve(server):
    token = jacc_token(server.folder, "--user", "dave", env=server_env())

    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
            return await ask(ws, {"message": "from jacc token"})

    assert run(client())["ok"] is True


def test_generated_secret_is_private_and_reused(tmp_path):
    folder = tmp_path / "app"
    env = server_env(secret=None)
    first = start_server(folder, app_source("seed"), env=env)
    try:
        secret_file = folder / ".jacc" / "secret"
        assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
        # `jacc token` in the app's folder signs with the same generated secret.
        token = jacc_token(folder, "--user", "erin", "--ttl", "600", env=env)
        with_app = jacc_token(tmp_path, "--user", "erin", "--app", "app/app.jac", env=env)

        async def client(server, token):
            async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
                return await ask(ws, {"message": "hi"})

        assert run(client(first, token))["ok"] is True
        assert run(client(first, with_app))["ok"] is True
    finally:
        assert first.stop() == 0
    written = secret_file.read_text()
    second = start_server(folder, app_source("seed"), env=env)
    try:
        assert secret_file.read_text() == written
        assert run(client(second, token))["ok"] is True  # a restart keeps tokens valid
    finally:
        second.stop(signal.SIGTERM)
