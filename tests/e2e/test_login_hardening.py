"""Logins and user names against a real `jacc serve`: hashing floods, throttling, look-alikes.

Each attack is checked three ways: the attacker gets a clear answer (401, 429
with Retry-After, 400 naming the problem), a bystander's sockets stay open and
answered, and the server keeps running.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import statistics
import threading
import time

import httpx
import jwt
import pytest
from e2e_support import (
    SECRET,
    AsyncBystander,
    app_source,
    login,
    register,
    rss_mb,
    run,
    server_env,
    start_server,
)

from jacc_runtime.server.auth import TokenService

TOKENS = TokenService(SECRET)
CORES = os.cpu_count() or 1
SCRYPT_MIB = 16

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                reason="reads RSS from /proc")


def throttle_env(**settings: str) -> dict[str, str]:
    return server_env(**{f"JACC_AUTH_{key.upper()}": value for key, value in settings.items()})


@pytest.fixture(scope="module")
def throttled(tmp_path_factory):
    """Three failures per name, lockouts from one second; the address limit out of the way."""
    env = throttle_env(login_attempts="3", login_address_attempts="100000",
                       login_backoff_seconds="1", login_window_seconds="60")
    running = start_server(tmp_path_factory.mktemp("throttled"), app_source("seed", "extras"),
                           env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def unthrottled(tmp_path_factory):
    """No login throttle at all: what the cap on concurrent hashing does alone."""
    env = throttle_env(login_attempts="100000", login_address_attempts="100000")
    running = start_server(tmp_path_factory.mktemp("unthrottled"), app_source("seed", "extras"),
                           env=env)
    yield running
    running.stop()


class PeakRss:
    """The largest RSS of a process while the block runs, sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak = rss_mb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb(self._pid))
            time.sleep(0.005)


async def flood(server, names: list[str], password: str = "wrong") -> list[httpx.Response]:
    """All these logins at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(names) + 1)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        return await asyncio.gather(*(
            client.post(f"{server.http}/user/login", json={
                "identity": {"type": "username", "value": name},
                "credential": {"type": "password", "password": password},
            }) for name in names))


# --- A: password hashing as a weapon -------------------------------------------------------


def test_a_flood_for_one_unknown_name_is_refused_before_hashing(tmp_path):
    server = start_server(tmp_path / "app", app_source("seed", "extras"))
    try:
        assert register(server, "owner").status_code == 201
        before = rss_mb(server.process.pid)

        async def attack():
            async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
                with PeakRss(server.process.pid) as peak:
                    answers = await flood(server, ["nobody"] * 200)
                await bystander.still_served()
            return answers, peak.peak

        answers, peak = run(attack())
        codes = [answer.status_code for answer in answers]
        assert set(codes) == {401, 429} and codes.count(401) <= 5  # login_attempts
        for answer in answers:
            if answer.status_code == 429:
                assert int(answer.headers["retry-after"]) >= 1
                assert answer.json()["error"]["code"] == "RATE_LIMITED"
        # At most five hashes ran, one per core at a time: no 16 MiB per request.
        assert peak - before < 5 * SCRYPT_MIB + 48, (before, peak)
        assert login(server, "owner").status_code == 200  # another name is not slowed
    finally:
        assert server.stop() == 0


def test_a_flood_of_distinct_names_hashes_one_per_core_and_bystanders_are_served(unthrottled):
    server = unthrottled
    names = [f"stranger-{i}" for i in range(120)]
    before = rss_mb(server.process.pid)

    async def attack():
        async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
            with PeakRss(server.process.pid) as peak:
                task = asyncio.ensure_future(flood(server, names))
                served = 0
                while not task.done():
                    await bystander.still_served()  # answered while the flood is hashed
                    served += 1
                    await asyncio.sleep(0.05)
                answers = await task
            return answers, peak.peak, served

    answers, peak, served = run(attack())
    assert [answer.status_code for answer in answers] == [401] * len(names)
    assert served >= 2
    # One scrypt buffer per core at most (the old shared pool held 40: about 700 MB).
    assert peak - before < CORES * SCRYPT_MIB + 64, (before, peak)
    assert rss_mb(server.process.pid) - before < CORES * SCRYPT_MIB + 64


def test_lockouts_double_and_a_correct_password_passes_at_once_after(throttled):
    server = throttled
    assert register(server, "carol").status_code == 201

    async def attack():
        async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
            assert [login(server, "carol", "guess").status_code for _ in range(3)] == [401] * 3
            first = login(server, "carol")  # the right password, during the lockout
            assert first.status_code == 429 and first.headers["retry-after"] == "1"
            assert first.json()["error"]["reason"] == "login_attempts"
            await asyncio.sleep(1.1)
            assert login(server, "carol", "guess").status_code == 401
            second = login(server, "carol", "guess")
            assert second.status_code == 429 and second.headers["retry-after"] == "2"
            await asyncio.sleep(2.1)
            started = time.monotonic()
            assert login(server, "carol").status_code == 200
            assert time.monotonic() - started < 1.0  # never slowed once the lockout ended
            assert login(server, "carol").status_code == 200  # and the count starts over
            await bystander.still_served()

    run(attack())


def test_look_alike_spellings_share_one_count(throttled):
    server = throttled
    assert register(server, "Victim").status_code == 201
    for spelling in ("victim", "\uff36\uff29\uff23\uff34\uff29\uff2d", " VICTIM "):
        assert login(server, spelling, "guess").status_code == 401
    refused = login(server, "vi\u200bctim", "guess")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_one_address_guessing_many_names_is_locked_and_another_address_is_not(tmp_path):
    env = throttle_env(login_address_attempts="5", login_backoff_seconds="30")
    server = start_server(tmp_path / "app", app_source("seed", "extras"), env=env)
    try:
        assert register(server, "dora").status_code == 201
        assert [login(server, f"name-{i}", "guess").status_code for i in range(5)] == [401] * 5
        refused = login(server, "dora")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
        assert refused.json()["error"]["reason"] == "login_address_attempts"
        # Another loopback address is another client.
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=elsewhere) as client:
            answer = client.post(f"{server.http}/user/login", json={
                "identity": {"type": "username", "value": "dora"},
                "credential": {"type": "password", "password": "correct horse"},
            })
        assert answer.status_code == 200

        async def still():
            async with AsyncBystander(server, TOKENS.issue("bystander")) as bystander:
                await bystander.still_served()

        run(still())
    finally:
        assert server.stop() == 0


def test_an_unknown_user_costs_a_hash_like_a_known_one(unthrottled):
    server = unthrottled
    assert register(server, "timed").status_code == 201
    known, unknown = [], []
    for i in range(8):
        for name, times in (("timed", known), (f"ghost-{i}", unknown)):
            started = time.perf_counter()
            assert login(server, name, "wrong").status_code == 401
            times.append(time.perf_counter() - started)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)


# --- E: user names -----------------------------------------------------------------------


LOOK_ALIKES = ["alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45", "alice ", " Alice",
               "A\u200blice", "\u202aalice\u202c"]


@pytest.mark.parametrize("spelling", LOOK_ALIKES, ids=ascii)
def test_look_alike_names_are_one_account(throttled, spelling):
    server = throttled
    first = register(server, "Alice")
    assert first.status_code in (201, 400)  # the first parameter registers it
    again = register(server, spelling)
    assert again.status_code == 400
    assert again.json()["error"]["code"] in ("IDENTITY_TAKEN", "INVALID_PAYLOAD")
    logged_in = login(server, spelling)
    assert logged_in.status_code == 200
    claims = jwt.decode(logged_in.json()["data"]["token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "Alice"  # as registered, whatever was typed


def test_ligatures_and_case_that_folds_to_two_letters_are_one_name(throttled):
    server = throttled
    assert register(server, "\ufb00ord").status_code == 201  # the ff ligature
    assert register(server, "FFORD").json()["error"]["code"] == "IDENTITY_TAKEN"
    assert register(server, "Stra\u00dfe").status_code == 201
    assert register(server, "STRASSE").json()["error"]["code"] == "IDENTITY_TAKEN"
    assert login(server, "strasse").status_code == 200


REFUSED = {
    "zero width space": ("bad\u200bname", "U+200B"),
    "zero width joiner": ("bad\u200dname", "U+200D"),
    "word joiner": ("bad\u2060name", "U+2060"),
    "byte order mark": ("\ufeffbadname", "U+FEFF"),
    "right-to-left override": ("\u202ebadname", "U+202E"),
    "isolate": ("badname\u2066", "U+2066"),
    "right-to-left mark": ("bad\u200fname", "U+200F"),
    "arabic letter mark": ("bad\u061cname", "U+061C"),
    "control": ("bad\x00name", "U+0000"),
    "escape": ("\x1b[2Jbadname", "U+001B"),
    "lone surrogate": ("bad\ud800name", "U+D800"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_names_with_control_or_invisible_characters_are_refused_by_name(throttled, case):
    name, named = REFUSED[case]
    # ASCII JSON: httpx would refuse to encode a lone surrogate as UTF-8.
    body = json.dumps({"identities": [{"type": "username", "value": name}],
                       "credential": {"type": "password", "password": "pw"}})
    answer = httpx.post(f"{throttled.http}/user/register", content=body,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "INVALID_PAYLOAD" and named in error["message"]


def test_an_old_users_db_is_migrated_on_start(tmp_path):
    folder = tmp_path / "app"
    (folder / ".jacc").mkdir(parents=True)
    _old_users_db(folder / ".jacc" / "users.db",
                  [("id-old", "Alice", 1.0), ("id-new", "alice", 2.0), ("id-bob", "bob", 3.0)])
    server = start_server(folder, app_source("seed", "extras"))
    try:
        assert login(server, "ALICE", "pw-id-old").json()["data"]["user_id"] == "id-old"
        assert login(server, "alice", "pw-id-new").json()["data"]["user_id"] == "id-new"
        assert login(server, "BOB", "pw-id-bob").json()["data"]["user_id"] == "id-bob"
        assert register(server, "Bob").json()["error"]["code"] == "IDENTITY_TAKEN"
        assert register(server, "carol").status_code == 201
        assert "log in with their exact spelling only" in server.output()
    finally:
        assert server.stop() == 0


def _old_users_db(path, users) -> None:
    """A users.db as jacc wrote it before user name keys: names unique after NFC only."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT NOT NULL"
                     " UNIQUE, salt BLOB NOT NULL, hash BLOB NOT NULL, scrypt_n INTEGER NOT"
                     " NULL, scrypt_r INTEGER NOT NULL, scrypt_p INTEGER NOT NULL,"
                     " created_at REAL NOT NULL)")
        for user_id, username, created_at in users:
            salt = os.urandom(16)
            digest = hashlib.scrypt(f"pw-{user_id}".encode(), salt=salt, n=2**14, r=8, p=1,
                                    dklen=32)
            conn.execute("INSERT INTO users VALUES (?, ?, ?, ?, 16384, 8, 1, ?)",
                         (user_id, username, salt, digest, created_at))
    conn.close()
    os.chmod(path, 0o600)
