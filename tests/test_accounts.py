"""The account stores: SQLite (runtime/server/accounts.py) and PostgreSQL (accounts_pg.py).

Every test that takes `store` (or `reopen`) is one shared behaviour suite, run
against both stores: `test_x[sqlite]` and `test_x[postgresql]`, each on a
database of its own. The rest are about the SQLite file itself.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from services import postgres_database

from jacc_runtime.server import accounts
from jacc_runtime.server.accounts import (
    Account,
    AccountError,
    AccountStore,
    IdentityTaken,
    InvalidCredentials,
    InvalidUsername,
    username_key,
)
from jacc_runtime.server.accounts_pg import PgAccountStore


def open_store(database: Path | str) -> AccountStore:
    return PgAccountStore(database) if isinstance(database, str) else AccountStore(database)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where one test's accounts live: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield tmp_path / ".jacc" / "users.db"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def reopen(database: Path | str) -> Iterator[Callable[[], AccountStore]]:
    """Open one more store on the test's database, as another worker or host would."""
    opened: list[AccountStore] = []

    def another() -> AccountStore:
        opened.append(open_store(database))
        return opened[-1]

    yield another
    for store in opened:
        store.close()


@pytest.fixture
def store(reopen: Callable[[], AccountStore]) -> AccountStore:
    return reopen()


def _rows(store: AccountStore) -> list[tuple[object, ...]]:
    """(username, salt, hash, scrypt_n) of every account, oldest first, as stored."""
    if isinstance(store, PgAccountStore):
        with store._pool.connection() as conn:
            rows = conn.execute("SELECT username, salt, hash, scrypt_n FROM jacc_users"
                                " ORDER BY created_at").fetchall()
        return [(name, bytes(salt), bytes(digest), n) for name, salt, digest, n in rows]
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute("SELECT username, salt, hash, scrypt_n FROM users"
                            " ORDER BY created_at").fetchall()
    finally:
        conn.close()


def _insert_user(store: AccountStore, row: tuple) -> None:
    """Insert (user_id, username, key, salt, hash, n, r, p, created_at) behind the store's back."""
    columns = ("(user_id, username, username_key, salt, hash, scrypt_n, scrypt_r, scrypt_p,"
               " created_at)")
    if isinstance(store, PgAccountStore):
        with store._pool.connection() as conn:
            conn.execute(f"INSERT INTO jacc_users {columns} VALUES"
                         " (%s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
        return
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(f"INSERT INTO users {columns} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    conn.close()


def test_register_then_login_gives_the_same_user_id(store: AccountStore) -> None:
    user_id = store.register("alice", "correct horse")
    assert len(user_id) == 32 and int(user_id, 16) >= 0
    assert store.authenticate("alice", "correct horse") == Account(user_id, "alice")
    assert store.username_of(user_id) == "alice"
    assert store.username_of("no-such-id") is None


def test_each_registration_gets_its_own_user_id(store: AccountStore) -> None:
    assert store.register("alice", "pw") != store.register("bob", "pw")


def test_a_taken_username_is_refused(store: AccountStore) -> None:
    store.register("alice", "one")
    with pytest.raises(IdentityTaken) as caught:
        store.register("alice", "two")
    assert (caught.value.code, caught.value.status) == ("IDENTITY_TAKEN", 400)
    assert isinstance(caught.value, AccountError)
    # The first registration still holds.
    store.authenticate("alice", "one")


def test_usernames_are_compared_after_unicode_normalisation(store: AccountStore) -> None:
    store.register("jos\u00e9", "pw")  # é as one code point
    with pytest.raises(IdentityTaken):
        store.register("jose\u0301", "pw")  # e + combining acute
    store.authenticate("jose\u0301", "pw")


def test_a_wrong_password_is_refused(store: AccountStore) -> None:
    store.register("alice", "right")
    with pytest.raises(InvalidCredentials) as caught:
        store.authenticate("alice", "wrong")
    assert (caught.value.code, caught.value.status) == ("INVALID_CREDENTIALS", 401)


def test_an_unknown_user_gets_the_same_error_as_a_wrong_password(store: AccountStore) -> None:
    store.register("alice", "right")
    with pytest.raises(InvalidCredentials) as wrong_password:
        store.authenticate("alice", "wrong")
    with pytest.raises(InvalidCredentials) as unknown_user:
        store.authenticate("mallory", "wrong")
    assert str(wrong_password.value) == str(unknown_user.value)


def test_an_unknown_user_costs_one_hash_like_a_known_one(
    store: AccountStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.register("alice", "right")
    calls: list[int] = []
    real = accounts._scrypt

    def counting(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append(n)
        return real(password, salt, n, r, p)

    monkeypatch.setattr(accounts, "_scrypt", counting)
    for username in ("alice", "mallory"):
        with pytest.raises(InvalidCredentials):
            store.authenticate(username, "wrong")
    assert calls == [2**14, 2**14]


def test_the_same_password_gets_different_salts_and_hashes(
    store: AccountStore,
) -> None:
    store.register("alice", "same password")
    store.register("bob", "same password")
    (_, salt_a, hash_a, n), (_, salt_b, hash_b, _) = _rows(store)
    assert len(salt_a) == 16 and salt_a != salt_b
    assert hash_a != hash_b
    assert n == 2**14
    if isinstance(store, AccountStore):
        assert b"same password" not in store.path.read_bytes()


def test_accounts_persist_across_stores_on_the_same_database(reopen) -> None:
    first = reopen()
    user_id = first.register("alice", "pw")
    first.close()
    second = reopen()
    assert second.authenticate("alice", "pw").user_id == user_id
    assert second.username_of(user_id) == "alice"
    with pytest.raises(IdentityTaken):
        second.register("alice", "other")


def test_two_open_stores_see_each_others_accounts(reopen) -> None:
    # As two workers of one server, or two hosts, would.
    first, second = reopen(), reopen()
    user_id = first.register("alice", "pw")
    assert second.authenticate("alice", "pw").user_id == user_id


def test_hashes_made_with_other_parameters_still_verify(store: AccountStore) -> None:
    # The cost parameters live with each hash, so raising them later keeps old logins.
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old pw", salt=salt, n=2**10, r=8, p=1, dklen=32)
    _insert_user(store, ("old-id", "veteran", "veteran", salt, digest, 1024, 8, 1, 0.0))
    assert store.authenticate("veteran", "old pw").user_id == "old-id"


def test_the_database_and_its_folder_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / ".jacc" / "users.db"
    with AccountStore(path):
        pass
    assert path.is_file()
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("username", "password"),
    [("", "pw"), ("alice", ""), ("a" * 257, "pw"), ("alice", "p" * 1025), ("alice", "\ud800")],
)
def test_empty_or_unusable_names_and_passwords_are_refused(
    store: AccountStore, username: str, password: str
) -> None:
    with pytest.raises(ValueError):
        store.register(username, password)
    with pytest.raises(ValueError):
        store.authenticate(username, password)


def test_concurrent_registrations_of_one_name_admit_exactly_one(store: AccountStore) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def register(index: int) -> None:
        barrier.wait()
        try:
            store.register("alice", f"pw{index}")
            outcomes.append("ok")
        except IdentityTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] + ["taken"] * 5


def test_twenty_processes_registering_one_name_at_once_admit_exactly_one(
    database: Path | str,
) -> None:
    # Twenty workers (or hosts), each with its own store on one database.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(20)
    outcomes = context.Queue()

    def register(index: int) -> None:
        store = open_store(database)
        try:
            barrier.wait(30)
            try:
                store.register("alice", f"pw{index}")
                outcomes.put("ok")
            except IdentityTaken:
                outcomes.put("taken")
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcomes.put(repr(error))
        finally:
            store.close()

    processes = [context.Process(target=register, args=(i,)) for i in range(20)]
    for process in processes:
        process.start()
    got = sorted(outcomes.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(30)
    assert got == ["ok"] + ["taken"] * 19


def test_a_closed_store_refuses_work_and_closes_twice_harmlessly(reopen) -> None:
    store = reopen()
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.username_of("x")


# --- user names: one account per look-alike family ------------------------------------


LOOK_ALIKES = [
    ("alice", "ALICE"),
    ("alice", "Alice"),
    ("alice", "\uff41\uff4c\uff49\uff43\uff45"),  # fullwidth
    ("alice", "alice "),
    ("alice", "  alice"),
    ("ff", "\ufb00"),  # the ligature
    ("strasse", "Stra\u00dfe"),
    ("jos\u00e9", "JOSE\u0301"),
    ("mary ann", "mary   ann"),
    ("mary ann", "mary\u00a0ann"),  # no-break space
    ("x1", "x\u2081"),  # subscript one
]


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_a_look_alike_of_a_registered_name_is_taken_and_finds_the_account(
    store: AccountStore, first: str, second: str
) -> None:
    user_id = store.register(first, "pw")
    with pytest.raises(IdentityTaken):
        store.register(second, "other pw")
    assert store.authenticate(second, "pw") == Account(user_id, first)


def test_the_name_is_kept_as_typed_for_display(store: AccountStore) -> None:
    user_id = store.register("  \uff22\uff4f\uff42 ", "pw")
    assert store.username_of(user_id) == "\uff22\uff4f\uff42"  # NFC, without the spaces
    assert store.authenticate("bob", "pw").username == "\uff22\uff4f\uff42"


REFUSED_CHARACTERS = {
    "zero width space": ("al\u200bice", "U+200B ZERO WIDTH SPACE"),
    "zero width non-joiner": ("al\u200cice", "U+200C"),
    "zero width joiner": ("al\u200dice", "U+200D"),
    "word joiner": ("alice\u2060", "U+2060 WORD JOINER"),
    "byte order mark": ("\ufeffalice", "U+FEFF"),
    "right-to-left override": ("\u202eecila", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    "left-to-right embedding": ("\u202aalice", "U+202A"),
    "first strong isolate": ("alice\u2068", "U+2068"),
    "left-to-right mark": ("\u200ealice", "U+200E"),
    "right-to-left mark": ("alice\u200f", "U+200F"),
    "arabic letter mark": ("a\u061cb", "U+061C"),
    "control": ("alice\x07", "U+0007"),
    "newline": ("alice\nbob", "U+000A"),
    "escape": ("\x1b[31malice", "U+001B"),
    "delete": ("alice\x7f", "U+007F"),
    "lone surrogate": ("alice\ud800", "U+D800"),
    "private use": ("alice\ue000", "U+E000"),
    "unassigned": ("alice\U000e0fff", "U+E0FFF"),
    "line separator": ("alice\u2028", "U+2028"),
    "variation selector": ("alice\ufe0f", "U+FE0F"),
    "hangul filler": ("\u3164", "U+3164"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CHARACTERS))
def test_names_with_control_invisible_or_unassigned_characters_are_refused(
    store: AccountStore, case: str
) -> None:
    name, named = REFUSED_CHARACTERS[case]
    with pytest.raises(InvalidUsername) as caught:
        store.register(name, "pw")
    assert named in str(caught.value)
    assert (caught.value.code, caught.value.status) == ("INVALID_PAYLOAD", 400)
    assert isinstance(caught.value, ValueError)


def test_a_login_with_invisible_characters_finds_the_visible_account(store: AccountStore) -> None:
    user_id = store.register("alice", "pw")
    for spelling in ("al\u200bice", "\u202aalice\u202c", "\ufeffALICE", "ali\u00adce"):
        assert store.authenticate(spelling, "pw").user_id == user_id


def test_a_blank_name_is_refused(store: AccountStore) -> None:
    with pytest.raises(ValueError):
        store.register("   ", "pw")
    with pytest.raises(ValueError):
        store.authenticate("   ", "pw")


@pytest.mark.parametrize("name", ["alice", "\uff21lice", "Stra\u00dfe", "\ufb00", "a\u200bb  c "])
def test_the_key_is_stable(name: str) -> None:
    key = username_key(name)
    assert username_key(key) == key


# --- migration of a users.db written before keys existed -----------------------------------


_V1_SCHEMA = """
CREATE TABLE users (
    user_id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, salt BLOB NOT NULL,
    hash BLOB NOT NULL, scrypt_n INTEGER NOT NULL, scrypt_r INTEGER NOT NULL,
    scrypt_p INTEGER NOT NULL, created_at REAL NOT NULL
)
"""


def _v1_file(path: Path, users: list[tuple[str, str, float]]) -> None:
    """A users.db as the first jacc wrote it: names compared after NFC only."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(_V1_SCHEMA)
        for user_id, username, created_at in users:
            salt = os.urandom(16)
            digest = hashlib.scrypt(b"pw-" + user_id.encode(), salt=salt, n=2**10, r=8, p=1,
                                    dklen=32)
            conn.execute("INSERT INTO users VALUES (?, ?, ?, ?, 1024, 8, 1, ?)",
                         (user_id, username, salt, digest, created_at))
    conn.close()


def test_an_old_file_gains_keys_and_look_alikes_keep_their_exact_spelling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users.db"
    _v1_file(path, [("old", "Alice", 1.0), ("new", "alice", 2.0), ("bob", "bob ", 3.0),
                    ("cat", "ca\u200bt", 4.0)])
    with AccountStore(path) as store:
        assert store.authenticate("Alice", "pw-old").user_id == "old"
        assert store.authenticate("ALICE", "pw-old").user_id == "old"  # the older owns the key
        assert store.authenticate("alice", "pw-new").user_id == "new"  # exact spelling
        assert store.authenticate("BOB", "pw-bob").user_id == "bob"
        assert store.authenticate("ca\u200bt", "pw-cat").user_id == "cat"
        for taken in ("aLiCe", "Bob", "cat"):
            with pytest.raises(IdentityTaken):
                store.register(taken, "pw")
    assert "1 account(s)" in caplog.text and "new" in caplog.text
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == accounts.SCHEMA_VERSION
    finally:
        conn.close()
    with AccountStore(path) as again:  # a second open migrates nothing
        assert again.authenticate("alice", "pw-new").user_id == "new"


def test_a_file_from_a_newer_jacc_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ValueError, match="newer jacc"):
        AccountStore(path)


def test_stores_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            AccountStore(path).close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# --- the token store side: accounts and retired tokens -------------------------------------


def test_has_account_and_delete(store: AccountStore) -> None:
    user_id = store.register("alice", "pw")
    assert store.has_account(user_id) and not store.has_account("nobody")
    assert store.delete(user_id) is True
    assert not store.has_account(user_id) and store.delete(user_id) is False
    with pytest.raises(InvalidCredentials):
        store.authenticate("alice", "pw")


def test_a_token_is_retired_once(store: AccountStore) -> None:
    expires = int(time.time()) + 60
    assert store.retired_at("jti-1") is None
    before = time.time()
    assert store.retire("jti-1", expires) is True
    assert before <= store.retired_at("jti-1") <= time.time()
    assert store.retire("jti-1", expires) is False


def test_retirements_are_shared_between_stores_on_one_database(reopen) -> None:
    first, second = reopen(), reopen()
    assert first.retire("jti", int(time.time()) + 60) is True
    assert second.retired_at("jti") is not None
    assert second.retire("jti", int(time.time()) + 60) is False


def test_expired_retirements_are_purged(store: AccountStore) -> None:
    now = int(time.time())
    store.retire("gone", now - 10)
    store._purged_at = 0.0  # as if the last purge was long ago
    store.retire("kept", now + 60)
    assert store.retired_at("gone") is None and store.retired_at("kept") is not None
