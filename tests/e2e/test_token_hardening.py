"""Hostile tokens, refresh rotation and missing accounts against a real `jacc serve`.

Every hostile token is tried on each way a token reaches the server: a Bearer
header, `/user/refresh-token`, `?token=`, the first frame, and a `refresh` frame
on an authenticated socket. Each must be UNAUTHORIZED (401; over WebSocket a
frame, then 4401 where docs/protocol.md says so), never a 500 or a bare close,
and a bystander's sockets stay open and answered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from e2e_support import (
    SECRET,
    AsyncBystander,
    app_source,
    ask,
    jacc_token,
    login,
    refresh,
    register,
    run,
    server_env,
    start_server,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jacc_runtime.server.accounts import AccountStore
from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def signed(payload: str, header: str = '{"alg":"HS256","typ":"JWT"}') -> str:
    """A token signed with the server's secret whose payload is exactly this JSON text."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def claims(**overrides: object) -> str:
    now = int(time.time())
    values = {"sub": "mallory", "user_id": "mallory", "iat": now, "exp": now + 600,
              "operator": True}
    values.update(overrides)
    return json.dumps({key: value for key, value in values.items() if value is not None})


def raw_claims(**overrides: str) -> str:
    """Claims with values written as raw JSON text (numbers json.dumps cannot make)."""
    now = int(time.time())
    values = {"sub": '"mallory"', "iat": str(now), "exp": str(now + 600), "operator": "true"}
    values.update(overrides)
    return "{" + ",".join(f'"{key}":{value}' for key, value in values.items()) + "}"


HOSTILE = {
    "exp 10**400": lambda: signed(raw_claims(exp=str(10**400))),
    "exp 1e400": lambda: signed(raw_claims(exp="1e400")),
    "exp -1e400": lambda: signed(raw_claims(exp="-1e400")),
    "exp negative": lambda: signed(claims(exp=-1)),
    "exp fractional": lambda: signed(raw_claims(exp=f"{int(time.time()) + 600}.5")),
    "exp string": lambda: signed(claims(exp=str(int(time.time()) + 600))),
    "exp true": lambda: signed(claims(exp=True)),
    "exp null": lambda: signed(raw_claims(exp="null")),
    "exp object": lambda: signed(claims(exp={"at": int(time.time()) + 600})),
    "iat 10**400": lambda: signed(raw_claims(iat=str(10**400))),
    "iat 1e400": lambda: signed(raw_claims(iat="1e400")),
    "iat string": lambda: signed(claims(iat="yesterday")),
    "nbf 10**400": lambda: signed(raw_claims(nbf=str(10**400))),
    "sub object": lambda: signed(claims(sub={"name": {"nested": ["mallory"]}})),
    "sub nested deep": lambda: signed(raw_claims(sub="[" * 1100 + "]" * 1100)),
    "user_id list": lambda: signed(claims(user_id=["mallory"])),
    "jti object": lambda: signed(claims(jti={"id": 1})),
    "operator string": lambda: signed(claims(operator="yes")),
    "payload an array": lambda: signed("[1, 2]"),
    "header nested deep": lambda: signed(claims(), header="[" * 1100 + "]" * 1100),
    "header alg list": lambda: signed(claims(), header='{"alg":["HS256"]}'),
    # Over MAX_TOKEN_CHARS, under the 8 KiB request line that the WebSocket layer answers 414.
    "over-long": lambda: signed(claims(padding="x" * 3500)),
}

TRANSPORTS = ["bearer", "refresh route", "query", "first frame", "refresh frame"]


async def refused(ws) -> tuple[dict, int]:
    """The UNAUTHORIZED frame, then the close code."""
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    with pytest.raises(ConnectionClosed) as caught:
        await asyncio.wait_for(ws.recv(), 10)
    return frame, caught.value.rcvd.code


async def try_token(server, transport: str, token: str) -> tuple[int | None, dict]:
    """Present `token` one way; return (HTTP status or close code, the error object)."""
    if transport in ("bearer", "refresh route"):
        async with httpx.AsyncClient(timeout=30) as client:
            if transport == "bearer":
                answer = await client.post(f"{server.http}/walker/Whoami", json={},
                                           headers={"Authorization": f"Bearer {token}"})
                assert answer.headers.get("www-authenticate") == "Bearer"
            else:
                answer = await client.post(f"{server.http}/user/refresh-token",
                                           json={"token": token})
        return answer.status_code, answer.json()["error"]
    if transport == "query":
        async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
            frame, code = await refused(ws)
        return code, frame["error"]
    if transport == "first frame":
        async with connect(server.ws("/ws/SecureChat")) as ws:
            await ws.send(json.dumps({"message": "hi", "token": token}))
            frame, code = await refused(ws)
        return code, frame["error"]
    async with connect(server.ws(f"/ws/SecureChat?token={TOKENS.issue('refresher')}")) as ws:
        error = (await ask(ws, {"type": "refresh", "token": token}))["error"]
        # The connection keeps its own token and goes on (docs/protocol.md).
        assert (await ask(ws, {"message": "after"}))["ok"] is True
        return None, error


# --- B: hostile tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_token_is_unauthorized_on_every_path(server, kind, transport):
    token = HOSTILE[kind]()
    logged_before = len(server.output())

    async def attack():
        async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
            outcome = await try_token(server, transport, token)
            await bystander.still_served()
        return outcome

    status, error = run(attack())
    assert error["code"] == "UNAUTHORIZED" and error["reason"] == "invalid", error
    assert status == {"bearer": 401, "refresh route": 401, "query": 4401,
                      "first frame": 4401, "refresh frame": None}[transport]
    assert "Traceback" not in server.output()[logged_before:]


@pytest.mark.parametrize("kind", ["exp 10**400", "sub object", "header nested deep"])
def test_a_public_walker_takes_a_hostile_token_as_no_token(server, kind):
    async def client():
        async with connect(server.ws(f"/ws/EchoMessage?token={HOSTILE[kind]()}")) as ws:
            return await ask(ws, {"message": "anonymous"})

    assert run(client())["ok"] is True


# --- C: refresh rotation -----------------------------------------------------------------


def account_token(server, name: str) -> tuple[str, str]:
    """Register `name` and log in: (user_id, token)."""
    assert register(server, name).status_code == 201
    data = login(server, name).json()["data"]
    return data["user_id"], data["token"]


def test_refresh_rotates_and_a_rotated_token_is_refused(server):
    user_id, first = account_token(server, "rotating")

    async def check():
        async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
            second = refresh(server, first)
            assert second.status_code == 200 and second.json()["data"]["user_id"] == user_id
            second = second.json()["data"]["token"]
            reused = refresh(server, first)
            assert reused.status_code == 401
            assert reused.json()["error"]["code"] == "UNAUTHORIZED"
            assert "refreshed already" in reused.json()["error"]["message"]
            third = refresh(server, second)
            assert third.status_code == 200
            assert refresh(server, second).status_code == 401
            await bystander.still_served()

    run(check())


def test_concurrent_refreshes_of_one_token_admit_exactly_one(server):
    _, token = account_token(server, "racing")

    async def race():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(
                client.post(f"{server.http}/user/refresh-token", json={"token": token})
                for _ in range(12)))

    codes = sorted(answer.status_code for answer in run(race()))
    assert codes == [200] + [401] * 11


def test_a_retired_token_serves_requests_during_the_grace(server):
    _, first = account_token(server, "graceful")
    assert refresh(server, first).status_code == 200
    bearer = {"Authorization": f"Bearer {first}"}
    assert httpx.post(f"{server.http}/walker/Whoami", json={}, headers=bearer).status_code == 200

    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={first}")) as ws:
            return await ask(ws, {"message": "within the grace"})

    assert run(client())["ok"] is True


def test_the_refresh_frame_takes_the_rotated_token(server):
    _, first = account_token(server, "framed")

    async def client():
        async with connect(server.ws(f"/ws/SecureChat?token={first}")) as ws:
            second = refresh(server, first).json()["data"]["token"]
            assert await ask(ws, {"type": "refresh", "token": second}) == {
                "type": "refreshed", "ok": True}
            return await ask(ws, {"message": "on the new token"})

    assert run(client())["ok"] is True


@pytest.fixture(scope="module")
def no_grace(tmp_path_factory):
    env = server_env(JACC_AUTH_REFRESH_GRACE_SECONDS="0")
    running = start_server(tmp_path_factory.mktemp("no-grace"), app_source("seed", "extras"),
                           env=env)
    yield running
    running.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_without_a_grace_a_retired_token_is_refused_at_once(no_grace, transport):
    _, first = account_token(no_grace, f"retired-{transport.replace(' ', '-')}")
    second = refresh(no_grace, first).json()["data"]["token"]

    async def attack():
        async with AsyncBystander(no_grace, second) as bystander:
            outcome = await try_token(no_grace, transport, first)
            await bystander.still_served()  # the new token serves a socket
        return outcome

    status, error = run(attack())
    assert error["code"] == "UNAUTHORIZED" and error["reason"] == "invalid"
    assert "refreshed" in error["message"]
    assert status in (401, 4401, None)


def test_retired_tokens_outlive_a_restart(tmp_path):
    folder = tmp_path / "app"
    server = start_server(folder, app_source("seed", "extras"))
    try:
        _, first = account_token(server, "persistent")
        second = refresh(server, first).json()["data"]["token"]
    finally:
        assert server.stop() == 0
    again = start_server(folder, app_source("seed", "extras"))
    try:
        assert refresh(again, first).status_code == 401
        assert refresh(again, second).status_code == 200
    finally:
        assert again.stop() == 0


# --- D: tokens of missing accounts ------------------------------------------------------------


def test_a_token_for_an_account_that_never_existed_is_refused(server):
    token = TOKENS.issue("ghost", user_id="no-such-account")

    async def attack():
        outcomes = []
        async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
            for transport in TRANSPORTS:
                outcomes.append(await try_token(server, transport, token))
            await bystander.still_served()
        return outcomes

    for status, error in run(attack()):
        assert error["code"] == "UNAUTHORIZED" and "no account" in error["message"]
        assert status in (401, 4401, None)


def test_a_deleted_account_ends_its_tokens_for_new_requests(server):
    user_id, token = account_token(server, "leaving")
    with AccountStore(server.folder / ".jacc" / "users.db") as store:
        assert store.delete(user_id)

    async def attack():
        async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
            for transport in ("bearer", "refresh route", "query", "first frame"):
                status, error = await try_token(server, transport, token)
                assert error["code"] == "UNAUTHORIZED" and "no account" in error["message"]
            await bystander.still_served()

    run(attack())


def test_an_operator_token_needs_no_account_and_refreshes_as_one(server):
    token = jacc_token(server.folder, "--user", "tester", env=server_env())
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{server.http}/walker/Whoami", json={}, headers=bearer).status_code == 200
    fresh = refresh(server, token)
    assert fresh.status_code == 200
    claims = jwt.decode(fresh.json()["data"]["token"], SECRET, algorithms=["HS256"])
    assert claims["operator"] is True and claims["sub"] == "tester"
    assert refresh(server, token).status_code == 401
