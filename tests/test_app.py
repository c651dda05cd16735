"""The ASGI app (runtime/app.py, runtime/session.py) through Starlette's TestClient.

These are in-process unit tests; tests/e2e/ proves the same against a real
`jacc serve` process.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from dataclasses import replace

import jwt
import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from jacc_runtime import Walker, entry, field, report
from jacc_runtime.server.accounts import AccountStore
from jacc_runtime.server.app import JaccApp, default_config
from jacc_runtime.server.auth import TokenService
from jacc_runtime.server.ws.backplane import MemoryBackplane

with warnings.catch_warnings():
    # Starlette 1.x prefers `httpx2`; the test extra installs httpx, which still works.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse

SECRET = "unit-test-secret-of-at-least-32-bytes!"


class EchoMessage(Walker, protocol="websocket", public=True):
    message = field("str")
    client_id = field("str", lambda: "anonymous")

    @entry
    async def echo(self):
        report(self, {"echo": self.message, "client_id": self.client_id})


class SecureChat(Walker, protocol="websocket"):
    message = field("str")

    @entry
    async def respond(self):
        report(self, {"echo": self.message, "authenticated": True})


class Typed(Walker, protocol="websocket", public=True):
    type = field("str")

    @entry
    async def respond(self):
        report(self, {"type": self.type})


class Boom(Walker, protocol="websocket", public=True):
    @entry
    async def explode(self):
        raise ValueError("boom")


class Add(Walker, public=True):
    a = field("int")
    b = field("int", lambda: 1)

    @entry
    def add(self):
        report(self, self.a + self.b)


class Lookup(Walker, public=True, method="GET", path="/lookup"):
    key = field("str")
    limit = field("int", lambda: 10)

    @entry
    def find(self):
        report(self, {"key": self.key, "limit": self.limit})


class Private(Walker):
    note = field("str | None", lambda: None)

    @entry
    def run(self):
        report(self, "secret")


class Fails(Walker, public=True):
    @entry
    def fail(self):
        raise KeyError("nope")


WALKERS = [EchoMessage, SecureChat, Typed, Boom, Add, Lookup, Private, Fails]


@pytest.fixture
def tokens():
    return TokenService(SECRET, ttl_seconds=3600)


@pytest.fixture
def client(tokens, tmp_path):
    with AccountStore(tmp_path / "users.db") as accounts:
        app = JaccApp(WALKERS, tokens=tokens, accounts=accounts)
        with TestClient(app) as test_client:
            yield test_client


def send(ws, value) -> dict:
    ws.send_text(value if isinstance(value, str) else json.dumps(value))
    return json.loads(ws.receive_text())


# --- WebSocket routes ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/EchoMessage", "/ws/walker/EchoMessage"])
def test_websocket_walker_answers_with_reports_only(client, path):
    with client.websocket_connect(path) as ws:
        assert send(ws, {"message": "Hello!", "client_id": "py"}) == {
            "ok": True,
            "data": {"reports": [{"echo": "Hello!", "client_id": "py"}]},
        }


@pytest.mark.parametrize("path", ["/ws/Nobody", "/ws/Add", "/ws/walker/Add", "/ws/a/b/c", "/other"])
def test_upgrades_to_what_is_not_a_websocket_walker_get_404(client, path):
    with pytest.raises(WebSocketDenialResponse) as caught:
        with client.websocket_connect(path):
            pass
    assert caught.value.status_code == 404
    assert caught.value.json()["error"]["code"] == "NOT_FOUND"


def test_bad_frames_get_errors_and_the_socket_keeps_serving(client):
    with client.websocket_connect("/ws/EchoMessage") as ws:
        for bad in ["not json", "[1]", '"x"', "3", {"message": 1}, {"message": "a", "x": 1}, {}]:
            assert send(ws, bad)["error"]["code"] == "INVALID_PAYLOAD"
            assert send(ws, {"message": "still here"})["ok"] is True
        ws.send_bytes(b"\xff\x00\x13")
        assert json.loads(ws.receive_text())["error"]["code"] == "INVALID_PAYLOAD"
        ws.send_bytes(json.dumps({"message": "bytes é"}).encode())
        assert json.loads(ws.receive_text())["data"]["reports"][0]["echo"] == "bytes é"


def test_execution_error_keeps_the_socket(client):
    with client.websocket_connect("/ws/Boom") as ws:
        error = send(ws, {})["error"]
        assert error == {"code": "EXECUTION_ERROR", "message": "ValueError: boom"}
        assert send(ws, {"type": "ping"})["type"] == "pong"


def test_control_frames(client):
    with client.websocket_connect("/ws/EchoMessage") as ws:
        pong = send(ws, {"type": "ping"})
        assert pong["type"] == "pong" and isinstance(pong["ts"], int)
        ws.send_text('{"type": "pong"}')  # absorbed: the next answer is the echo's
        assert send(ws, {"message": "after pong"})["ok"] is True
    with client.websocket_connect("/ws/Typed") as ws:
        # The walker owns `type`: a ping is an ordinary request.
        assert send(ws, {"type": "ping"}) == {"ok": True, "data": {"reports": [{"type": "ping"}]}}


def test_pipelined_frames_are_answered_in_order(client):
    with client.websocket_connect("/ws/EchoMessage") as ws:
        for i in range(20):
            ws.send_text(json.dumps({"message": str(i)}) if i % 3 else "bad")
        for i in range(20):
            frame = json.loads(ws.receive_text())
            if i % 3:
                assert frame["data"]["reports"][0]["echo"] == str(i)
            else:
                assert frame["error"]["code"] == "INVALID_PAYLOAD"


# --- authentication ------------------------------------------------------------------


def closed_with(ws) -> int:
    with pytest.raises(WebSocketDisconnect) as caught:
        ws.receive_text()
    return caught.value.code


def test_private_walker_with_query_token(client, tokens):
    with client.websocket_connect(f"/ws/SecureChat?token={tokens.issue('alice')}") as ws:
        assert send(ws, {"message": "hi"})["data"]["reports"][0]["authenticated"] is True
        # A token on a later frame is removed and ignored.
        assert send(ws, {"message": "again", "token": "garbage"})["ok"] is True


def test_private_walker_with_token_in_first_frame(client, tokens):
    with client.websocket_connect("/ws/SecureChat") as ws:
        assert send(ws, {"message": "hi", "token": tokens.issue("alice")})["ok"] is True
        assert send(ws, {"message": "no token needed now"})["ok"] is True


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "missing"), ("?token=garbage", "invalid")],
)
def test_unauthenticated_private_connection_gets_unauthorized_then_4401(client, query, reason):
    with client.websocket_connect(f"/ws/SecureChat{query}") as ws:
        if not query:
            ws.send_text(json.dumps({"message": "hi"}))
        error = json.loads(ws.receive_text())["error"]
        assert error["code"] == "UNAUTHORIZED" and error["reason"] == reason
        assert closed_with(ws) == 4401


def test_a_first_frame_that_is_not_json_is_a_missing_token(client):
    with client.websocket_connect("/ws/SecureChat") as ws:
        error = send(ws, "garbage")["error"]
        assert error["code"] == "UNAUTHORIZED" and error["reason"] == "missing"
        assert error["message"].startswith("the first frame must be a JSON object with a token")
        assert closed_with(ws) == 4401


def test_expired_token_is_refused_with_reason(client):
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    with client.websocket_connect("/ws/SecureChat") as ws:
        error = send(ws, {"message": "hi", "token": expired})["error"]
        assert error["reason"] == "expired"
        assert closed_with(ws) == 4401


def test_public_walker_ignores_a_bad_token(client):
    with client.websocket_connect("/ws/EchoMessage?token=garbage") as ws:
        assert send(ws, {"message": "anonymous is fine"})["ok"] is True


def test_refresh_same_user_then_another_user_closes(client, tokens):
    with client.websocket_connect(f"/ws/SecureChat?token={tokens.issue('alice')}") as ws:
        assert send(ws, {"type": "refresh", "token": tokens.issue("alice")}) == {
            "type": "refreshed",
            "ok": True,
        }
        error = send(ws, {"type": "refresh", "token": "garbage"})["error"]
        assert error["code"] == "UNAUTHORIZED"  # refused, but the old token still holds
        assert send(ws, {"message": "still open"})["ok"] is True
        error = send(ws, {"type": "refresh", "token": tokens.issue("mallory")})["error"]
        assert error["code"] == "UNAUTHORIZED"
        assert closed_with(ws) == 4401


def test_token_expiry_closes_the_connection(tokens):
    app = JaccApp(WALKERS, tokens=tokens)
    short = tokens.issue("alice", ttl_seconds=1)
    with TestClient(app) as client:
        with client.websocket_connect(f"/ws/SecureChat?token={short}") as ws:
            assert send(ws, {"message": "hi"})["ok"] is True
            error = json.loads(ws.receive_text())["error"]  # the expiry timer's frame
            assert error == {"code": "UNAUTHORIZED", "message": "token expired", "reason": "expired"}
            assert closed_with(ws) == 4401


# --- HTTP walkers ----------------------------------------------------------------------


def test_http_walker(client):
    response = client.post("/walker/Add", json={"a": 2})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "data": {"reports": [3]}}


@pytest.mark.parametrize(
    ("body", "status"),
    [("not json", 400), ("[1]", 400), ('{"a": "x"}', 422), ('{"a": 1, "c": 2}', 422), ("{}", 422)],
)
def test_http_walker_bad_bodies(client, body, status):
    response = client.post("/walker/Add", content=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "INVALID_PAYLOAD"


def test_http_walker_errors(client):
    assert client.post("/walker/EchoMessage", json={"message": "x"}).status_code == 404
    assert client.post("/walker/Nobody", json={}).json()["error"]["code"] == "NOT_FOUND"
    failed = client.post("/walker/Fails")
    assert failed.status_code == 500
    assert failed.json()["error"] == {"code": "EXECUTION_ERROR", "message": "KeyError: 'nope'"}


def test_http_walker_with_method_and_path(client):
    assert client.get("/walker/Lookup?key=k&limit=3").json()["data"]["reports"] == [
        {"key": "k", "limit": 3}
    ]
    assert client.get("/lookup?key=5").json()["data"]["reports"] == [{"key": "5", "limit": 10}]
    assert client.put("/walker/Lookup", json={"key": "k"}).status_code == 405


def test_private_http_walker_needs_bearer(client, tokens):
    missing = client.post("/walker/Private", json={})
    assert missing.status_code == 401 and missing.json()["error"]["reason"] == "missing"
    bad = client.post("/walker/Private", json={}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["reason"] == "invalid"
    good = client.post(
        "/walker/Private", headers={"Authorization": f"Bearer {tokens.issue('alice')}"}
    )
    assert good.json() == {"ok": True, "data": {"reports": ["secret"]}}


def test_openapi_lists_http_walkers_only(client):
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert "/walker/Add" in paths and "/walker/Private" in paths and "/lookup" in paths
    assert not any("EchoMessage" in path or path.startswith("/ws") for path in paths)
    body = paths["/walker/Add"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert body["required"] == ["a"]
    private = paths["/walker/Private"]["post"]
    assert private["security"] == [{"bearerAuth": []}]
    note = private["requestBody"]["content"]["application/json"]["schema"]["properties"]["note"]
    assert note == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert {"/user/register", "/user/login", "/user/refresh-token"} <= set(paths)


def test_unknown_http_route_is_an_envelope_404(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.json()["ok"] is False


# --- accounts ------------------------------------------------------------------------


def register(client, username, password="pw-123456"):
    return client.post(
        "/user/register",
        json={
            "identities": [{"type": "username", "value": username}],
            "credential": {"type": "password", "password": password},
        },
    )


def login(client, username, password="pw-123456"):
    return client.post(
        "/user/login",
        json={
            "identity": {"type": "username", "value": username},
            "credential": {"type": "password", "password": password},
        },
    )


def test_register_login_refresh(client, tokens):
    created = register(client, "alice")
    assert created.status_code == 201
    data = created.json()["data"]
    assert data["message"] == "User registered successfully" and data["user_id"]
    taken = register(client, "alice")
    assert taken.status_code == 400 and taken.json()["error"]["code"] == "IDENTITY_TAKEN"
    assert login(client, "alice", "wrong").status_code == 401
    assert login(client, "nobody").status_code == 401
    logged_in = login(client, "alice").json()["data"]
    assert logged_in["user_id"] == data["user_id"]
    identity = tokens.verify(logged_in["token"])
    assert identity.user == "alice" and identity.user_id == data["user_id"]
    refreshed = client.post("/user/refresh-token", json={"token": logged_in["token"]})
    assert refreshed.status_code == 200
    assert tokens.verify(refreshed.json()["data"]["token"]).user_id == data["user_id"]
    assert client.post("/user/refresh-token", json={"token": "nope"}).status_code == 401
    with client.websocket_connect(f"/ws/SecureChat?token={logged_in['token']}") as ws:
        assert send(ws, {"message": "hi"})["ok"] is True


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        "{}",
        '{"identities": [], "credential": {"type": "password", "password": "x"}}',
        '{"identities": [{"type": "email", "value": "a"}], "credential": {"type": "password", "password": "x"}}',
        '{"identities": [{"type": "username", "value": 3}], "credential": {"type": "password", "password": "x"}}',
        '{"identities": [{"type": "username", "value": "a"}], "credential": {"type": "pin", "password": "x"}}',
        '{"identities": [{"type": "username", "value": "a"}], "credential": {"type": "password", "password": ""}}',
        '{"identities": [{"type": "username", "value": "' + "a" * 300 + '"}], "credential": {"type": "password", "password": "x"}}',
    ],
)
def test_malformed_account_bodies_are_400_or_422(client, body):
    for route in ("/user/register", "/user/login", "/user/refresh-token"):
        response = client.post(route, content=body)
        assert response.status_code in (400, 401, 422), (route, response.text)
        assert response.json()["ok"] is False


def _accounts_app(tmp_path, tokens, **auth):
    config = default_config()
    config = replace(config, auth=replace(config.auth, **auth))
    accounts = AccountStore(tmp_path / "users.db")
    return JaccApp(WALKERS, tokens=tokens, config=config, accounts=accounts), accounts


def test_failed_logins_are_throttled_with_retry_after(tmp_path, tokens):
    app, accounts = _accounts_app(tmp_path, tokens, login_attempts=2, login_backoff_seconds=1.0)
    with accounts, TestClient(app) as client:
        register(client, "alice")
        assert [login(client, "ALICE", "wrong").status_code for _ in range(2)] == [401, 401]
        throttled = login(client, "alice")  # right password, but during the lockout
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
        assert throttled.json()["error"]["code"] == "RATE_LIMITED"
        assert throttled.json()["error"]["reason"] == "login_attempts"
        time.sleep(1.05)
        assert login(client, "alice").status_code == 200  # at once after the lockout


def test_names_are_unique_by_their_look_alike_key(client, tokens):
    user_id = register(client, "Alice").json()["data"]["user_id"]
    taken = register(client, "\uff41lice ")
    assert taken.status_code == 400 and taken.json()["error"]["code"] == "IDENTITY_TAKEN"
    refused = register(client, "al\u200bice")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert "U+200B" in refused.json()["error"]["message"]
    logged_in = login(client, "ALICE").json()["data"]
    assert logged_in["user_id"] == user_id
    assert tokens.verify(logged_in["token"]).user == "Alice"  # as registered


def test_refresh_rotates_and_a_deleted_account_ends_its_tokens(tmp_path, tokens):
    app, accounts = _accounts_app(tmp_path, tokens, refresh_grace_seconds=0)
    with accounts, TestClient(app) as client:
        user_id = register(client, "alice").json()["data"]["user_id"]
        first = login(client, "alice").json()["data"]["token"]
        second = client.post("/user/refresh-token", json={"token": first})
        assert second.status_code == 200
        again = client.post("/user/refresh-token", json={"token": first})
        assert again.status_code == 401 and "refreshed" in again.json()["error"]["message"]
        bearer = {"Authorization": f"Bearer {first}"}
        assert client.post("/walker/Private", json={}, headers=bearer).status_code == 401
        fresh = second.json()["data"]["token"]
        bearer = {"Authorization": f"Bearer {fresh}"}
        assert client.post("/walker/Private", json={}, headers=bearer).status_code == 200
        accounts.delete(user_id)
        assert client.post("/walker/Private", json={}, headers=bearer).status_code == 401
        gone = client.post("/user/refresh-token", json={"token": fresh})
        assert gone.status_code == 401 and "no account" in gone.json()["error"]["message"]
        # An operator token (`jacc token`) needs no account.
        operator = {"Authorization": f"Bearer {tokens.issue('tester')}"}
        assert client.post("/walker/Private", json={}, headers=operator).status_code == 200


def test_without_accounts_refresh_is_not_served(tokens):
    with TestClient(JaccApp(WALKERS, tokens=tokens)) as client:
        response = client.post("/user/refresh-token", json={"token": tokens.issue("alice")})
        assert response.status_code == 404


def test_healthz_counts_connections(client):
    assert client.get("/healthz").json()["data"]["connections"] == 0
    with client.websocket_connect("/ws/EchoMessage") as ws:
        send(ws, {"type": "ping"})
        data = client.get("/healthz").json()["data"]
        assert data["connections"] == 1 and data["by_walker"] == {"EchoMessage": 1}
    # The session cleans up right after the close; give it a moment.
    for _ in range(100):
        if client.get("/healthz").json()["data"]["connections"] == 0:
            break
        time.sleep(0.01)
    assert client.get("/healthz").json()["data"]["connections"] == 0


def test_two_apps_in_one_process_share_nothing(tokens):
    first, second = JaccApp([EchoMessage], tokens=tokens), JaccApp([Add], tokens=tokens)
    assert first.registry is not second.registry and first.backplane is not second.backplane
    assert set(first.bindings) == {"EchoMessage"} and set(second.bindings) == {"Add"}


# --- identity and broadcast through the backplane --------------------------------------


class Room(Walker, protocol="websocket", public=True, broadcast=True):
    message = field("str")

    @entry
    async def say(self):
        report(self, self.message)


def test_a_valid_token_identifies_the_user_of_a_public_walker(tokens):
    app = JaccApp([EchoMessage], tokens=tokens)
    with TestClient(app) as client:
        with client.websocket_connect(f"/ws/EchoMessage?token={tokens.issue('alice')}") as ws:
            send(ws, {"type": "ping"})
            (connection,) = app.registry.connections("EchoMessage")
            assert connection.identity.user == "alice"
        with client.websocket_connect("/ws/EchoMessage?token=junk") as ws:
            send(ws, {"type": "ping"})
            (connection,) = app.registry.connections("EchoMessage")
            assert connection.identity is None


class RecordingBackplane(MemoryBackplane):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, str]] = []

    async def publish(self, channel: str, frame: str) -> str:
        self.published.append((channel, frame))
        return await super().publish(channel, frame)


def test_two_apps_sharing_a_backplane_broadcast_to_each_others_clients(tokens):
    """Two apps on one backplane behave like two workers: one publish per broadcast."""
    backplane = RecordingBackplane()
    first = JaccApp([Room], tokens=tokens, backplane=backplane)
    second = JaccApp([Room], tokens=tokens, backplane=backplane)
    both = Starlette(routes=[Mount("/one", first), Mount("/two", second)])
    with TestClient(both) as client:
        with client.websocket_connect("/one/ws/Room") as a, \
                client.websocket_connect("/two/ws/Room") as b:
            a.send_text('{"message": "from one"}')
            b.send_text('{"message": "from two"}')
            got_a = [json.loads(a.receive_text()) for _ in range(2)]
            got_b = [json.loads(b.receive_text()) for _ in range(2)]
    assert got_a == got_b  # the same frames, in the same order, on both "workers"
    assert sorted(frame["data"]["reports"][0] for frame in got_a) == ["from one", "from two"]
    assert [channel for channel, _ in backplane.published] == ["Room", "Room"]


class SecretRoom(Walker, protocol="websocket", public=False, broadcast=True):
    message = field("str")

    @entry
    async def say(self):
        report(self, self.message)


def test_offsets_are_added_only_for_who_asks_and_frames_stay_as_they_were(tokens):
    app = JaccApp([Room], tokens=tokens)
    with TestClient(app) as client:
        with client.websocket_connect("/ws/Room?offsets=1") as counted, \
                client.websocket_connect("/ws/Room") as plain:
            plain.send_text('{"message": "hi"}')
            with_offset, without = counted.receive_text(), plain.receive_text()
    assert without == '{"ok":true,"data":{"reports":["hi"]}}'  # byte for byte as before
    offset = json.loads(with_offset)["offset"]
    assert with_offset == without[:-1] + f',"offset":"{offset}"}}'


def test_a_reconnect_with_since_gets_what_it_missed_then_resumed_then_live(tokens):
    app = JaccApp([Room], tokens=tokens)
    with TestClient(app) as client:
        with client.websocket_connect("/ws/Room") as talker:
            with client.websocket_connect("/ws/Room?offsets=1") as leaver:
                talker.send_text('{"message": "seen"}')
                talker.receive_text()
                last = json.loads(leaver.receive_text())["offset"]
            for n in range(3):
                talker.send_text(json.dumps({"message": f"missed {n}"}))
                talker.receive_text()
            with client.websocket_connect(f"/ws/Room?offsets=1&since={last}") as back:
                got = [json.loads(back.receive_text()) for _ in range(4)]
                talker.send_text('{"message": "live"}')
                after = json.loads(back.receive_text())
    assert [frame["data"]["reports"][0] for frame in got[:3]] == ["missed 0", "missed 1",
                                                                   "missed 2"]
    assert got[3] == {"type": "resumed", "ok": True, "missed": 3}
    assert after["data"]["reports"] == ["live"] and after["offset"] > got[2]["offset"]


def test_a_since_older_than_the_history_gets_history_trimmed(tokens):
    from dataclasses import replace

    from jacc_runtime.server.app import default_config

    config = default_config()
    config = replace(config, websocket=replace(config.websocket, history=2))
    app = JaccApp([Room], tokens=tokens, config=config)
    with TestClient(app) as client:
        with client.websocket_connect("/ws/Room?offsets=1") as talker:
            offsets = []
            for n in range(4):
                talker.send_text(json.dumps({"message": str(n)}))
                offsets.append(json.loads(talker.receive_text())["offset"])
            with client.websocket_connect(f"/ws/Room?since={offsets[0]}") as old, \
                    client.websocket_connect(f"/ws/Room?since={offsets[1]}") as recent:
                assert json.loads(old.receive_text()) == {
                    "type": "resumed", "ok": False, "reason": "history_trimmed"}
                assert [json.loads(recent.receive_text()) for _ in range(3)] == [
                    {"ok": True, "data": {"reports": ["2"]}},
                    {"ok": True, "data": {"reports": ["3"]}},
                    {"type": "resumed", "ok": True, "missed": 2}]


def test_a_private_walker_replays_nothing_before_the_token(tokens):
    app = JaccApp([SecretRoom], tokens=tokens)
    token = tokens.issue("ada")
    with TestClient(app) as client:
        with client.websocket_connect(f"/ws/SecretRoom?offsets=1&token={token}") as talker:
            talker.send_text('{"message": "one"}')
            first = json.loads(talker.receive_text())["offset"]
            talker.send_text('{"message": "two"}')
            talker.receive_text()
            with client.websocket_connect(f"/ws/SecretRoom?since={first}") as back:
                back.send_text(json.dumps({"token": token, "message": "three"}))
                got = [json.loads(back.receive_text()) for _ in range(3)]
    # The first frame's own broadcast went out before the replay read the history,
    # so it comes with the replay, once.
    assert got == [{"ok": True, "data": {"reports": ["two"]}},
                   {"ok": True, "data": {"reports": ["three"]}},
                   {"type": "resumed", "ok": True, "missed": 2}]


# --- limits (issue 4; tests/e2e/ proves each against a real server) ----------------------


def _limited_app(tokens, **websocket) -> JaccApp:
    from dataclasses import replace

    from jacc_runtime.server.app import default_config

    config = default_config()
    config = replace(config, websocket=replace(config.websocket, **websocket))
    return JaccApp(WALKERS, tokens=tokens, config=config)


def test_a_foreign_origin_is_refused_before_the_upgrade(tokens):
    app = _limited_app(tokens, allowed_origins=("https://app.example",))
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenialResponse) as caught:
            with client.websocket_connect("/ws/EchoMessage", headers={"origin": "https://evil.example"}):
                pass
        assert caught.value.status_code == 403
        assert caught.value.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
        for origin in ("https://app.example", "http://testserver"):
            with client.websocket_connect("/ws/EchoMessage", headers={"origin": origin}) as ws:
                assert send(ws, {"message": "hi"})["ok"] is True


def test_size_rate_and_walker_cap_in_process(tokens):
    app = _limited_app(tokens, max_message_bytes=64, messages_per_second=2,
                       max_connections_per_walker=1)
    with TestClient(app) as client:
        with client.websocket_connect("/ws/EchoMessage") as ws:
            assert send(ws, {"type": "ping"})["type"] == "pong"
            assert send(ws, {"message": "x"})["ok"] is True
            assert send(ws, {"message": "x"})["error"]["code"] == "RATE_LIMITED"
            with client.websocket_connect("/ws/EchoMessage") as second:
                assert json.loads(second.receive_text())["error"]["code"] == "CAPACITY"
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_text()
                assert closed.value.code == 4403
        with client.websocket_connect("/ws/EchoMessage") as ws:  # the slot was released
            ws.send_text(json.dumps({"message": "x" * 64}))
            assert json.loads(ws.receive_text())["error"]["code"] == "MESSAGE_TOO_LARGE"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 4413


# --- HTTP limits and methods (docs/security.md) -----------------------------------------


def _server_limited_app(tokens, tmp_path, **server) -> tuple[JaccApp, AccountStore]:
    from dataclasses import replace

    from jacc_runtime.server.app import default_config

    config = default_config()
    config = replace(config, server=replace(config.server, **server))
    accounts = AccountStore(tmp_path / "users.db")
    return JaccApp(WALKERS, tokens=tokens, config=config, accounts=accounts), accounts


@pytest.mark.parametrize("method, path, allow, message", [
    ("GET", "/walker/Add", {"POST"}, "walker `Add` takes POST, got GET"),
    ("PUT", "/walker/Lookup", {"POST", "GET"}, "walker `Lookup` takes POST or GET, got PUT"),
    ("HEAD", "/walker/Add", {"POST"}, None),
    ("GET", "/user/login", {"POST"}, "/user/login takes POST, got GET"),
    ("PUT", "/lookup", {"GET", "HEAD"}, None),
])
def test_405_names_the_methods_in_allow(client, method, path, allow, message):
    response = client.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == allow
    if message is not None:
        assert response.json()["error"] == {"code": "METHOD_NOT_ALLOWED", "message": message}


@pytest.mark.parametrize("path", ["/walker/Add", "/user/login", "/user/register",
                                  "/user/refresh-token"])
def test_a_body_over_max_body_bytes_is_413_declared_or_streamed(tokens, tmp_path, path):
    app, accounts = _server_limited_app(tokens, tmp_path, max_body_bytes=64)
    with accounts, TestClient(app) as client:
        declared = client.post(path, content=b" " * 65)
        streamed = client.post(path, content=iter([b" " * 40, b" " * 40]))  # chunked
        at_limit = client.post(path, content=b"{}".ljust(64))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["connection"] == "close"
        assert response.json()["error"] == {
            "code": "MESSAGE_TOO_LARGE", "reason": "max_body_bytes",
            "message": "the request body is over max_body_bytes (64 bytes)"}
    assert at_limit.status_code != 413


def test_one_address_gets_max_connections_per_ip_websockets(tokens):
    app = _limited_app(tokens, max_connections_per_ip=1)
    with TestClient(app) as client:
        with client.websocket_connect("/ws/EchoMessage") as ws:
            with client.websocket_connect("/ws/walker/EchoMessage") as second:
                assert json.loads(second.receive_text())["error"] == {
                    "code": "CAPACITY", "reason": "max_connections_per_ip",
                    "message": "this address has reached max_connections_per_ip "
                               "(1 open connections)"}
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_text()
                assert (closed.value.code, closed.value.reason) == (4403,
                                                                    "max_connections_per_ip")
            assert send(ws, {"message": "still here"})["ok"] is True
        assert app.registry.address_count("testclient") == 0
        with client.websocket_connect("/ws/EchoMessage") as ws:  # the slot was released
            assert send(ws, {"message": "x"})["ok"] is True


# --- walker threads, the loop monitor and the drain ---------------------------------------


class WhichThread(Walker, public=True):
    @entry
    def which(self):
        report(self, threading.current_thread().name)


class WhichThreadWs(Walker, protocol="websocket", public=True):
    @entry
    def which(self):
        report(self, threading.current_thread().name)


def test_non_async_walkers_run_in_the_apps_threads_on_both_transports(tokens):
    app = JaccApp([WhichThread, WhichThreadWs], tokens=tokens)
    with TestClient(app) as client:
        http = client.post("/walker/WhichThread", json={}).json()["data"]["reports"]
        with client.websocket_connect("/ws/WhichThreadWs") as ws:
            ws_reports = send(ws, {})["data"]["reports"]
        threads = list(app.threads._threads)
    assert http[0].startswith("jacc-walker-") and ws_reports[0].startswith("jacc-walker-")
    for thread in threads:  # the lifespan's end lets them go
        thread.join(5)
        assert not thread.is_alive()


def test_the_lifespan_runs_the_loop_monitor(tokens):
    app = JaccApp([EchoMessage], tokens=tokens)
    with TestClient(app):
        assert app.loop_monitor._thread.is_alive()
        assert app.loop_monitor.incidents == 0
    assert app.loop_monitor._thread is None


def test_during_a_drain_new_requests_and_sockets_get_503(client):
    app = client.app
    app.drain.active = True  # what drain_walkers starts with
    for response in (client.post("/walker/Add", json={"a": 1}), client.get("/healthz")):
        assert response.status_code == 503
        assert response.json()["error"] == {"code": "SERVICE_UNAVAILABLE",
                                            "message": "server shutting down"}
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("/ws/EchoMessage"):
            pass
    assert denied.value.status_code == 503
    assert denied.value.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_a_frame_on_an_open_socket_during_a_drain_gets_service_unavailable(client):
    with client.websocket_connect("/ws/EchoMessage") as ws:
        assert send(ws, {"message": "hi"})["ok"] is True
        client.app.drain.active = True
        assert send(ws, {"message": "hi"})["error"] == {
            "code": "SERVICE_UNAVAILABLE", "message": "server shutting down", "reason": "draining"}
        assert send(ws, {"type": "ping"})["type"] == "pong"
