"""The embedded account store: users and password hashes in SQLite (SPEC §7).

    store = AccountStore(app_dir / ".jacc" / "users.db")
    user_id = store.register("alice", "s3cret")
    store.authenticate("alice", "s3cret")    # -> user_id
    store.authenticate("alice", "wrong")     # raises InvalidCredentials

Passwords are hashed with scrypt and a random 16-byte salt per user; the cost
parameters are stored with each hash, so raising them later leaves existing
accounts able to log in. Usernames and passwords are NFC-normalised first, so
the same text typed on two keyboards is the same account and the same password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
import unicodedata
import uuid
from pathlib import Path
from types import TracebackType

__all__ = ["AccountError", "AccountStore", "IdentityTaken", "InvalidCredentials"]

# scrypt cost: about 16 MiB and some tens of milliseconds per hash.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# Bounds keep one request from making the server hash megabytes of "password".
MAX_USERNAME_CHARS = 256
MAX_PASSWORD_CHARS = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id    TEXT PRIMARY KEY,
    username   TEXT NOT NULL UNIQUE,
    salt       BLOB NOT NULL,
    hash       BLOB NOT NULL,
    scrypt_n   INTEGER NOT NULL,
    scrypt_r   INTEGER NOT NULL,
    scrypt_p   INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""


class AccountError(Exception):
    """An account operation refused; `code` and `status` are what the HTTP API answers."""

    code = "ACCOUNT_ERROR"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IdentityTaken(AccountError):
    """The username is already registered."""

    code = "IDENTITY_TAKEN"
    status = 400


class InvalidCredentials(AccountError):
    """Unknown user or wrong password: deliberately the same error for both."""

    code = "INVALID_CREDENTIALS"
    status = 401


class AccountStore:
    """Users with scrypt-hashed passwords in one SQLite file, safe to share between threads.

    Several processes (`--workers N`) may open the same file: SQLite serialises
    their writes and the UNIQUE constraint settles a race for one username.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file ourselves so password hashes are never world-readable.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=10.0, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute(_SCHEMA)
        # Hashed for unknown users so that they take as long as wrong passwords.
        self._decoy_salt = os.urandom(_SALT_BYTES)
        self._decoy_hash = os.urandom(_HASH_BYTES)

    def __enter__(self) -> AccountStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def register(self, username: str, password: str) -> str:
        """Create an account and return its new user_id.

        Raises IdentityTaken if the username exists, ValueError if either is empty
        or too long.
        """
        username = _clean(username, "username", MAX_USERNAME_CHARS)
        password = _clean(password, "password", MAX_PASSWORD_CHARS)
        salt = os.urandom(_SALT_BYTES)
        # Hash outside the lock: scrypt releases the GIL, and logins must not queue
        # behind someone else's registration.
        digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        user_id = uuid.uuid4().hex
        row = (user_id, username, salt, digest, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, time.time())
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT INTO users (user_id, username, salt, hash, scrypt_n, scrypt_r,"
                    " scrypt_p, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError:
                raise IdentityTaken(f"username {username!r} is already taken") from None
        return user_id

    def authenticate(self, username: str, password: str) -> str:
        """Return the user_id for a username and password, or raise InvalidCredentials.

        Raises ValueError if either is empty or too long.
        """
        username = _clean(username, "username", MAX_USERNAME_CHARS)
        password = _clean(password, "password", MAX_PASSWORD_CHARS)
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT user_id, salt, hash, scrypt_n, scrypt_r, scrypt_p"
                    " FROM users WHERE username = ?",
                    (username,),
                )
                .fetchone()
            )
        if row is None:
            # Spend the same work as for a real user, so timing tells nothing.
            decoy = _scrypt(password, self._decoy_salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
            hmac.compare_digest(decoy, self._decoy_hash)
            raise InvalidCredentials("invalid username or password")
        user_id, salt, stored, n, r, p = row
        if not hmac.compare_digest(_scrypt(password, salt, n, r, p), stored):
            raise InvalidCredentials("invalid username or password")
        return user_id

    def username_of(self, user_id: str) -> str | None:
        """Return the username of a user_id, or None if there is no such account."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT username FROM users WHERE user_id = ?", (user_id,))
                .fetchone()
            )
        return None if row is None else row[0]

    def close(self) -> None:
        """Close the database; later calls raise RuntimeError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the account store {self.path} is closed")
        return self._conn


def _clean(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{what} is too long: at most {limit} characters")
    try:
        # JSON can carry lone surrogates ("\ud800"), which have no UTF-8 form.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None
    return unicodedata.normalize("NFC", value)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        # OpenSSL's default cap (32 MiB) is too tight once n or r are raised.
        maxmem=256 * n * r + (1 << 20),
        dklen=_HASH_BYTES,
    )
