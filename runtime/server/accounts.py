"""The embedded account store: users, password hashes and retired tokens in SQLite.

    store = AccountStore(app_dir / ".jacc" / "users.db")
    user_id = store.register("alice", "s3cret")
    store.authenticate("ALICE", "s3cret")    # -> Account(user_id, username="alice")
    store.authenticate("alice", "wrong")     # raises InvalidCredentials

Passwords are hashed with scrypt and a random 16-byte salt per user; the cost
parameters are stored with each hash, so raising them later leaves existing
accounts able to log in. Passwords are NFC-normalised, so the same text typed
on two keyboards is the same password.

A user name is stored twice: as typed (NFC, without surrounding spaces), for
display and for the tokens' `sub`; and as a key for uniqueness and lookup
(`username_key`: NFKC, case folding, invisible characters removed, spaces
collapsed), so that `ﬀ` and `ff`, `ＡＬＩＣＥ` and `alice`, `alice ` and `alice`
are one account. Registration refuses names with control, invisible
(zero-width, bidi) or unassigned characters. docs/security.md has the rules.

The store is also the token store of auth.py: `has_account`, and the ids of
tokens retired by a refresh (until they expire), shared by every process that
opens the file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sqlite3
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "Account",
    "AccountError",
    "AccountStore",
    "IdentityTaken",
    "InvalidCredentials",
    "InvalidUsername",
    "login_key",
    "username_key",
]

logger = logging.getLogger("jacc.accounts")

# scrypt cost: about 16 MiB and some tens of milliseconds per hash.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# Bounds keep one request from making the server hash megabytes of "password".
MAX_USERNAME_CHARS = 256
MAX_PASSWORD_CHARS = 1024

# The schema's version lives in SQLite's `user_version`: 0 is a file made before
# versions were kept (users without `username_key`), or a new file.
SCHEMA_VERSION = 2

_USERS = """
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
_RETIRED_TOKENS = """
CREATE TABLE IF NOT EXISTS retired_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    retired_at REAL NOT NULL
)
"""
# Expired entries of retired_tokens are deleted at most this often, by whichever
# process retires a token: they can never matter again, since the token is refused
# as expired.
_PURGE_EVERY_SECONDS = 60.0

# Default-ignorable characters outside category Cf: they render as nothing.
_INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u3164\uffa0"  # combining grapheme joiner, Hangul fillers
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))  # variation selectors
    + "".join(chr(c) for c in range(0xE0100, 0xE01F0))
)
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character (zero-width or bidirectional control)",
    "Cs": "an unpaired surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


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


class InvalidUsername(AccountError, ValueError):
    """A user name that cannot be registered: the message names the character and why."""

    code = "INVALID_PAYLOAD"
    status = 400


@dataclass(frozen=True)
class Account:
    """An account as a login finds it: its id, and its user name as registered."""

    user_id: str
    username: str


class AccountStore:
    """Users with scrypt-hashed passwords in one SQLite file, safe to share between threads.

    Several processes (`--workers N`) may open the same file: SQLite serialises
    their writes and the UNIQUE constraints settle a race for one user name or
    one token refresh. Raises ValueError for a file made by a newer jacc.
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
            # Tokens are checked against this file on the event loop: in WAL mode a
            # read never waits for another process's write, and a commit (a refresh,
            # a registration) needs no fsync of its own, so holding the lock for one
            # costs tens of microseconds, not the milliseconds of a disk flush. A
            # power cut may lose the last commits; a crash of the process loses none.
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            _migrate(self._conn, self.path)
        self._purged_at = 0.0
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

        Raises IdentityTaken if the name, or a look-alike of it, is registered;
        InvalidUsername (a ValueError) for a character that names may not hold;
        ValueError if either is empty or too long.
        """
        username = _display_name(username, refuse_unsafe=True)
        key = username_key(username)
        password = _clean(password, "password", MAX_PASSWORD_CHARS)
        salt = os.urandom(_SALT_BYTES)
        # Hash outside the lock: scrypt releases the GIL, and logins must not queue
        # behind someone else's registration.
        digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        user_id = uuid.uuid4().hex
        row = (user_id, username, key, salt, digest, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, time.time())
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT INTO users (user_id, username, username_key, salt, hash, scrypt_n,"
                    " scrypt_r, scrypt_p, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError:
                raise IdentityTaken(f"username {username!r} is already taken") from None
        return user_id

    def authenticate(self, username: str, password: str) -> Account:
        """Return the account of a user name (any look-alike spelling) and password.

        Raises InvalidCredentials for an unknown user or a wrong password, after
        the same work for both; ValueError if either is empty or too long.
        """
        display = _display_name(username)
        password = _clean(password, "password", MAX_PASSWORD_CHARS)
        with self._lock:
            # The exact spelling first: after a migration, an account whose key an
            # older account took is found by its own name (docs/security.md).
            row = (
                self._connection()
                .execute(
                    "SELECT user_id, username, salt, hash, scrypt_n, scrypt_r, scrypt_p"
                    " FROM users WHERE username_key = ?1 OR username = ?2"
                    " ORDER BY username = ?2 DESC LIMIT 1",
                    (username_key(display), display),
                )
                .fetchone()
            )
        if row is None:
            # Spend the same work as for a real user, so timing tells nothing.
            decoy = _scrypt(password, self._decoy_salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
            hmac.compare_digest(decoy, self._decoy_hash)
            raise InvalidCredentials("invalid username or password")
        user_id, registered, salt, stored, n, r, p = row
        if not hmac.compare_digest(_scrypt(password, salt, n, r, p), stored):
            raise InvalidCredentials("invalid username or password")
        return Account(user_id=user_id, username=registered)

    def username_of(self, user_id: str) -> str | None:
        """Return the username of a user_id, or None if there is no such account."""
        row = self._fetch("SELECT username FROM users WHERE user_id = ?", user_id)
        return None if row is None else row[0]

    def has_account(self, user_id: str) -> bool:
        """True if the account exists: one indexed read, for every token checked."""
        return self._fetch("SELECT 1 FROM users WHERE user_id = ?", user_id) is not None

    def delete(self, user_id: str) -> bool:
        """Delete an account; its tokens are refused from then on. False if there was none."""
        with self._lock:
            cursor = self._connection().execute("DELETE FROM users WHERE user_id = ?", (user_id,))
        return cursor.rowcount > 0

    def retired_at(self, token_id: str) -> float | None:
        """When a refresh retired the token `token_id` (a Unix time), or None."""
        row = self._fetch("SELECT retired_at FROM retired_tokens WHERE jti = ?", token_id)
        return None if row is None else row[0]

    def retire(self, token_id: str, expires_at: int) -> bool:
        """Record the token as retired; False if it was already (the race of two refreshes).

        Kept until `expires_at`, after which the token is refused as expired anyway.
        """
        now = time.time()
        with self._lock:
            connection = self._connection()
            try:
                connection.execute(
                    "INSERT INTO retired_tokens (jti, expires_at, retired_at) VALUES (?, ?, ?)",
                    (token_id, expires_at, now),
                )
            except sqlite3.IntegrityError:
                return False
            if now - self._purged_at >= _PURGE_EVERY_SECONDS:
                self._purged_at = now
                connection.execute("DELETE FROM retired_tokens WHERE expires_at < ?", (now,))
        return True

    def close(self) -> None:
        """Close the database; later calls raise RuntimeError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _fetch(self, query: str, *args: object) -> tuple | None:
        with self._lock:
            return self._connection().execute(query, args).fetchone()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the account store {self.path} is closed")
        return self._conn


def username_key(username: str) -> str:
    """The key under which a user name is unique: look-alike spellings share it.

    NFKC folds compatibility forms (`ﬀ` → `ff`, fullwidth → ASCII), case folding
    folds case (`ß` → `ss`), invisible characters go, and runs of spaces become one.
    NFKC runs again after folding, as Unicode's NFKC_Casefold does, so the key is stable.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    visible = "".join(char for char in folded if not _invisible(char))
    return " ".join(visible.split())


def login_key(username: str) -> str:
    """The key a login as `username` is looked up and throttled under.

    Raises ValueError if `username` cannot be a user name (empty, blank, too long).
    """
    return username_key(_display_name(username))


def _invisible(char: str) -> bool:
    return char in _INVISIBLE or unicodedata.category(char) == "Cf"


def _display_name(username: str, refuse_unsafe: bool = False) -> str:
    """The name as typed, NFC and without surrounding spaces; ValueError if it cannot be one."""
    _check_text(username, "username", MAX_USERNAME_CHARS)
    if refuse_unsafe:
        _refuse_unsafe_characters(username)
    name = _nfc(username, "username").strip()
    if not name:
        raise ValueError("username must not be blank")
    return name


def _refuse_unsafe_characters(username: str) -> None:
    """Refuse what would make a name that looks like another, or like nothing (PRECIS' choice)."""
    for char in username:
        category = unicodedata.category(char)
        what = _REFUSED_CATEGORIES.get(category)
        if what is None and char in _INVISIBLE:
            what = "an invisible character"
        if what is not None:
            name = unicodedata.name(char, "")
            shown = f"U+{ord(char):04X}" + (f" {name}" if name else "")
            raise InvalidUsername(f"the user name contains {what}: {shown}")
    if not username_key(username):
        raise InvalidUsername("the user name has no visible characters")


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION, once, whichever process opens it first."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"{path} was written by a newer jacc (schema {version}, this one reads "
                f"up to {SCHEMA_VERSION})"
            )
        connection.execute(_USERS)
        if version < 2:
            _add_username_keys(connection)
            connection.execute(_RETIRED_TOKENS)
            connection.execute(
                "CREATE INDEX IF NOT EXISTS retired_tokens_by_expiry ON retired_tokens (expires_at)"
            )
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _add_username_keys(connection: sqlite3.Connection) -> None:
    # Files from before version 2 compared names after NFC only, so two accounts
    # may now share a key: the oldest keeps it, the others keep their exact spelling.
    connection.execute("ALTER TABLE users ADD COLUMN username_key TEXT")
    owners: set[str] = set()
    shared = []
    rows = connection.execute("SELECT user_id, username FROM users ORDER BY created_at, rowid")
    for user_id, username in rows.fetchall():
        key = username_key(username)
        if key in owners:
            shared.append(user_id)
            continue
        owners.add(key)
        connection.execute(
            "UPDATE users SET username_key = ? WHERE user_id = ?", (key, user_id)
        )
    connection.execute("CREATE UNIQUE INDEX users_by_key ON users (username_key)")
    if shared:
        logger.warning(
            "%d account(s) have a user name that differs from an older account's only in "
            "case, width or invisible characters; they log in with their exact spelling only "
            "(user ids: %s)", len(shared), ", ".join(shared),
        )


def _clean(value: str, what: str, limit: int) -> str:
    _check_text(value, what, limit)
    return _nfc(value, what)


def _check_text(value: str, what: str, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{what} is too long: at most {limit} characters")


def _nfc(value: str, what: str) -> str:
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
