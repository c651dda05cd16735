from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jacc_runtime.server import accounts
from jacc_runtime.server.accounts import AccountError, AccountStore, IdentityTaken, InvalidCredentials


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AccountStore]:
    with AccountStore(tmp_path / ".jacc" / "users.db") as opened:
        yield opened


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT username, salt, hash, scrypt_n FROM users").fetchall()
    finally:
        conn.close()


def test_register_then_login_gives_the_same_user_id(store: AccountStore) -> None:
    user_id = store.register("alice", "correct horse")
    assert len(user_id) == 32 and int(user_id, 16) >= 0
    assert store.authenticate("alice", "correct horse") == user_id
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
    (_, salt_a, hash_a, n), (_, salt_b, hash_b, _) = _rows(store.path)
    assert len(salt_a) == 16 and salt_a != salt_b
    assert hash_a != hash_b
    assert n == 2**14
    assert b"same password" not in store.path.read_bytes()


def test_accounts_persist_across_stores_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    with AccountStore(path) as first:
        user_id = first.register("alice", "pw")
    with AccountStore(path) as second:
        assert second.authenticate("alice", "pw") == user_id
        assert second.username_of(user_id) == "alice"
        with pytest.raises(IdentityTaken):
            second.register("alice", "other")


def test_two_open_stores_see_each_others_accounts(tmp_path: Path) -> None:
    # As two workers of one server would.
    path = tmp_path / "users.db"
    with AccountStore(path) as first, AccountStore(path) as second:
        user_id = first.register("alice", "pw")
        assert second.authenticate("alice", "pw") == user_id


def test_hashes_made_with_other_parameters_still_verify(store: AccountStore) -> None:
    # The cost parameters live with each hash, so raising them later keeps old logins.
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old pw", salt=salt, n=2**10, r=8, p=1, dklen=32)
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(
            "INSERT INTO users VALUES ('old-id', 'veteran', ?, ?, 1024, 8, 1, 0)", (salt, digest)
        )
    conn.close()
    assert store.authenticate("veteran", "old pw") == "old-id"


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


def test_a_closed_store_refuses_work_and_closes_twice_harmlessly(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "users.db")
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.username_of("x")
