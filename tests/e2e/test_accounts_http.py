"""Accounts and HTTP walkers (docs/protocol.md) against a real `jacc serve`."""

from __future__ import annotations

import json

import httpx
import pytest
from e2e_support import ask, run
from websockets.asyncio.client import connect


def register(server, username: str, password: str = "correct horse") -> httpx.Response:
    return httpx.post(f"{server.http}/user/register", json={
        "identities": [{"type": "username", "value": username}],
        "credential": {"type": "password", "password": password},
    })


def login(server, username: str, password: str = "correct horse") -> httpx.Response:
    return httpx.post(f"{server.http}/user/login", json={
        "identity": {"type": "username", "value": username},
        "credential": {"type": "password", "password": password},
    })


def test_register_login_refresh_and_open_a_private_walker(server):
    created = register(server, "alice")
    assert created.status_code == 201
    body = created.json()
    assert body["ok"] is True and body["data"]["message"] == "User registered successfully"
    user_id = body["data"]["user_id"]

    taken = register(server, "alice", "another password")
    assert taken.status_code == 400
    assert taken.json()["error"]["code"] == "IDENTITY_TAKEN"

    assert login(server, "alice", "wrong").status_code == 401
    assert login(server, "nobody").status_code == 401

    logged_in = login(server, "alice")
    assert logged_in.status_code == 200
    data = logged_in.json()["data"]
    assert data["user_id"] == user_id and data["token"]

    refreshed = httpx.post(f"{server.http}/user/refresh-token", json={"token": data["token"]})
    assert refreshed.status_code == 200
    fresh = refreshed.json()["data"]["token"]
    bad = httpx.post(f"{server.http}/user/refresh-token", json={"token": data["token"] + "x"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "UNAUTHORIZED"

    async def client():
        for token in (data["token"], fresh):
            async with connect(server.ws(f"/ws/SecureChat?token={token}")) as ws:
                answer = await ask(ws, {"message": "logged in"})
                assert answer["data"]["reports"] == [{"echo": "logged in", "authenticated": True}]

    run(client())
    assert (server.folder / ".jacc" / "users.db").is_file()


MALFORMED = [
    "",
    "not json",
    "[]",
    '"text"',
    "{}",
    '{"identities": "alice", "credential": {"type": "password", "password": "p"}}',
    '{"identities": [], "credential": {"type": "password", "password": "p"}}',
    '{"identities": [{"type": "email", "value": "a@b"}], '
    '"credential": {"type": "password", "password": "p"}}',
    '{"identities": [{"type": "username", "value": 1}], '
    '"credential": {"type": "password", "password": "p"}}',
    '{"identity": {"type": "username", "value": "a"}, "credential": {"type": "password"}}',
    '{"identity": {"type": "username", "value": "a"}, "credential": "p"}',
    '{"token": 12}',
]


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize("route", ["register", "login", "refresh-token"])
def test_malformed_account_bodies_get_400_or_422_never_500(server, route, body):
    response = httpx.post(f"{server.http}/user/{route}", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["ok"] is False
    assert response.json()["error"]["code"] == "INVALID_PAYLOAD"


def test_http_walker(server):
    response = httpx.post(f"{server.http}/walker/Add", json={"a": 41})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "data": {"reports": [42]}}


@pytest.mark.parametrize(
    ("body", "status"),
    [("nope", 400), ("[1]", 400), ('{"a": "1"}', 422), ('{"a": 1, "z": 0}', 422), ("{}", 422)],
)
def test_http_walker_bad_bodies(server, body, status):
    response = httpx.post(f"{server.http}/walker/Add", content=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "INVALID_PAYLOAD"


def test_private_http_walker_takes_a_bearer_token(server):
    assert httpx.post(f"{server.http}/walker/Whoami", json={}).status_code == 401
    token = login_token(server)
    response = httpx.post(f"{server.http}/walker/Whoami", json={"note": "hi"},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.json() == {"ok": True, "data": {"reports": [{"note": "hi"}]}}


def login_token(server) -> str:
    register(server, "bearer-user")
    return login(server, "bearer-user").json()["data"]["token"]


def test_openapi_has_http_walkers_and_accounts_only(server):
    document = httpx.get(f"{server.http}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {
        "/walker/Add", "/walker/Whoami", "/user/register", "/user/login", "/user/refresh-token",
    }
    schema = document["paths"]["/walker/Add"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert schema["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert schema["required"] == ["a"]
    assert json.dumps(document)  # plain JSON throughout
