"""The account store in PostgreSQL, for several hosts: `[auth] database = "postgresql://..."`.

    store = PgAccountStore("postgresql://jacc@db.internal/jacc")
    user_id = store.register("alice", "s3cret")
    store.authenticate("ALICE", "s3cret")    # -> Account(user_id, username="alice")

The same interface and the same rules as the SQLite store (accounts.py), which
keeps them: user names and their keys, password hashing (scrypt, its cost
stored with each hash), the decoy hash for unknown users, the limits. Only
where the rows live differs, so one test suite runs against both
(tests/test_accounts.py).

psycopg 3 with a pool of connections (psycopg_pool). The interface is
synchronous, as the SQLite store's: registrations and logins call it from the
server's hashing threads, and a token check from the event loop, where each
check costs two indexed reads, here two round trips to PostgreSQL. Reads are
retried once on a connection that turns out to be broken (PostgreSQL
restarted); a write first checks its connection, since a write whose
connection broke mid-way cannot be known not to have happened.

Tables: `jacc_users`, `jacc_retired_tokens`, `jacc_schema` (the version); they
are created, once, by whichever process opens the database first (under an
advisory lock, as several hosts may start at once).
"""

from __future__ import annotations

import hmac
import os
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from . import accounts
from .accounts import Account, AccountError, IdentityTaken, InvalidCredentials, username_key
from .config import redacted_url

__all__ = ["AccountStoreUnavailable", "PgAccountStore", "is_postgres_url"]

SCHEMA_VERSION = 1
_SCHEMES = ("postgresql://", "postgres://")
# pg_advisory_xact_lock's key for the schema: "jacc" in ASCII.
_SCHEMA_LOCK = 0x6A616363
_CONNECT_TIMEOUT_SECONDS = 5

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS jacc_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS jacc_users (
        user_id      TEXT PRIMARY KEY,
        username     TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        salt         BYTEA NOT NULL,
        hash         BYTEA NOT NULL,
        scrypt_n     INTEGER NOT NULL,
        scrypt_r     INTEGER NOT NULL,
        scrypt_p     INTEGER NOT NULL,
        created_at   DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS jacc_retired_tokens (
        jti        TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL,
        retired_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jacc_retired_tokens_by_expiry"
    " ON jacc_retired_tokens (expires_at)",
]

T = TypeVar("T")


def is_postgres_url(database: object) -> bool:
    return isinstance(database, str) and database.startswith(_SCHEMES)


class AccountStoreUnavailable(AccountError):
    """PostgreSQL does not answer: the request may be tried again later."""

    code = "SERVICE_UNAVAILABLE"
    status = 503


class PgAccountStore:
    """Users, password hashes and retired tokens in PostgreSQL, shared by every host.

    Raises AccountStoreUnavailable (naming the URL, password hidden) if the
    database cannot be reached within a few seconds, and ValueError for a
    schema written by a newer jacc.
    """

    def __init__(self, url: str, max_connections: int | None = None) -> None:
        self.url = url
        self.shown = redacted_url(url)
        size = max_connections or (os.cpu_count() or 1) + 2
        try:
            # One plain connection first: it says why PostgreSQL cannot be reached at
            # once, where a pool would retry quietly until its timeout.
            with psycopg.connect(url, autocommit=True,
                                 connect_timeout=_CONNECT_TIMEOUT_SECONDS) as conn:
                _migrate(conn, self.shown)
        except psycopg.OperationalError as error:
            raise AccountStoreUnavailable(
                f"cannot reach PostgreSQL at {self.shown}: {_first_line(error)}") from None
        self._pool: ConnectionPool | None = ConnectionPool(
            url, min_size=1, max_size=size, open=True, timeout=_CONNECT_TIMEOUT_SECONDS,
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT_SECONDS},
            name="jacc-accounts")
        self._purge_lock = threading.Lock()
        self._purged_at = 0.0
        # Hashed for unknown users so that they take as long as wrong passwords.
        self._decoy_salt = os.urandom(accounts._SALT_BYTES)
        self._decoy_hash = os.urandom(accounts._HASH_BYTES)

    def __enter__(self) -> PgAccountStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- accounts ------------------------------------------------------------------

    def register(self, username: str, password: str) -> str:
        """Create an account and return its new user_id (accounts.AccountStore.register)."""
        username = accounts._display_name(username, refuse_unsafe=True)
        key = username_key(username)
        password = accounts._clean(password, "password", accounts.MAX_PASSWORD_CHARS)
        salt = os.urandom(accounts._SALT_BYTES)
        n, r, p = accounts._SCRYPT_N, accounts._SCRYPT_R, accounts._SCRYPT_P
        digest = accounts._scrypt(password, salt, n, r, p)
        user_id = uuid.uuid4().hex
        try:
            self._write(
                "INSERT INTO jacc_users (user_id, username, username_key, salt, hash, scrypt_n,"
                " scrypt_r, scrypt_p, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (user_id, username, key, salt, digest, n, r, p, time.time()))
        except errors.UniqueViolation:
            raise IdentityTaken(f"username {username!r} is already taken") from None
        return user_id

    def authenticate(self, username: str, password: str) -> Account:
        """The account of a user name (any look-alike spelling) and password, or
        InvalidCredentials after the same work for an unknown user as for a wrong password."""
        display = accounts._display_name(username)
        password = accounts._clean(password, "password", accounts.MAX_PASSWORD_CHARS)
        row = self._read_one(
            "SELECT user_id, username, salt, hash, scrypt_n, scrypt_r, scrypt_p FROM jacc_users"
            " WHERE username_key = %s OR username = %s ORDER BY username = %s DESC LIMIT 1",
            (username_key(display), display, display))
        if row is None:
            decoy = accounts._scrypt(password, self._decoy_salt, accounts._SCRYPT_N,
                                     accounts._SCRYPT_R, accounts._SCRYPT_P)
            hmac.compare_digest(decoy, self._decoy_hash)
            raise InvalidCredentials("invalid username or password")
        user_id, registered, salt, stored, n, r, p = row
        if not hmac.compare_digest(accounts._scrypt(password, bytes(salt), n, r, p),
                                   bytes(stored)):
            raise InvalidCredentials("invalid username or password")
        return Account(user_id=user_id, username=registered)

    def username_of(self, user_id: str) -> str | None:
        row = self._read_one("SELECT username FROM jacc_users WHERE user_id = %s", (user_id,))
        return None if row is None else row[0]

    def has_account(self, user_id: str) -> bool:
        """True if the account exists: one indexed read, for every token checked."""
        return self._read_one("SELECT 1 FROM jacc_users WHERE user_id = %s",
                              (user_id,)) is not None

    def delete(self, user_id: str) -> bool:
        cursor = self._write("DELETE FROM jacc_users WHERE user_id = %s", (user_id,))
        return cursor > 0

    # --- retired tokens --------------------------------------------------------------

    def retired_at(self, token_id: str) -> float | None:
        row = self._read_one("SELECT retired_at FROM jacc_retired_tokens WHERE jti = %s",
                             (token_id,))
        return None if row is None else row[0]

    def retire(self, token_id: str, expires_at: int) -> bool:
        """Record the token as retired; False if it was already (two refreshes racing)."""
        now = time.time()
        inserted = self._write(
            "INSERT INTO jacc_retired_tokens (jti, expires_at, retired_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (jti) DO NOTHING", (token_id, expires_at, now))
        with self._purge_lock:
            purge = now - self._purged_at >= accounts._PURGE_EVERY_SECONDS
            if purge:
                self._purged_at = now
        if purge:
            self._write("DELETE FROM jacc_retired_tokens WHERE expires_at < %s", (now,))
        return inserted > 0

    def close(self) -> None:
        """Close the pool; later calls raise RuntimeError. Closing twice is harmless."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # --- the pool ------------------------------------------------------------------------

    def _read_one(self, query: str, args: tuple) -> tuple | None:
        return self._with_connection(lambda conn: conn.execute(query, args).fetchone(),
                                     retry=True)

    def _write(self, query: str, args: tuple) -> int:
        """Run a write; the number of rows it touched."""
        return self._with_connection(lambda conn: conn.execute(query, args).rowcount,
                                     retry=False)

    def _with_connection(self, work: Callable[[psycopg.Connection], T], retry: bool) -> T:
        """Run `work` on a pooled connection. A read that meets a broken connection (the
        pool then drops it) goes again on a fresh one; a write checks its connection
        first, and goes on only with one that answers, as it cannot be run twice."""
        pool = self._open_pool()
        for attempt in (1, 2):
            try:
                with pool.connection() as conn:
                    if not retry:
                        try:
                            ConnectionPool.check_connection(conn)
                        except psycopg.OperationalError:
                            if attempt == 1:
                                continue  # nothing was run on it: take another
                            raise
                    return work(conn)
            except (PoolTimeout, psycopg.OperationalError) as error:
                if retry and attempt == 1 and not isinstance(error, PoolTimeout):
                    continue
                raise AccountStoreUnavailable(
                    f"the account store at {self.shown} is unavailable: "
                    f"{_first_line(error)}") from None
        raise AccountStoreUnavailable(f"the account store at {self.shown} is unavailable")

    def _open_pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError(f"the account store {self.shown} is closed")
        return self._pool

def _migrate(conn: psycopg.Connection, shown: str) -> None:
    """Bring the schema to SCHEMA_VERSION, once, whichever host opens the database first."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in _SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT max(version) FROM jacc_schema").fetchone()
        version = row[0] if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise ValueError(f"{shown} was written by a newer jacc (schema {version}, "
                             f"this one reads up to {SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM jacc_schema")
            conn.execute("INSERT INTO jacc_schema (version) VALUES (%s)", (SCHEMA_VERSION,))


def _first_line(error: BaseException) -> Any:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
