"""JWT tokens, the signing secret, and keeping tokens out of logs (docs/security.md).

    service = TokenService(resolve_secret(config_secret, app_dir / ".jacc"))
    token = service.issue("alice")                 # an operator token, as `jacc token` makes
    service.issue("alice", user_id=account_id)     # a token tied to an account
    service.verify(token)          # Identity(user='alice', user_id='alice', operator=True, ...)
    service.verify("garbage")      # raises AuthError(reason='invalid')
    checked = service.bound(account_store)         # also checks accounts and retired tokens
    identity, fresh = checked.refresh(token)       # rotation: `token` cannot be refreshed again

Only HMAC algorithms are offered: the secret is shared, never a key pair, and
`none` is refused outright. Secrets shorter than the hash output are refused too
(RFC 7518 §3.2 says such a key MUST NOT be used).

Claims are checked here, strictly, rather than by PyJWT: a token is attacker
input, and any claim that is not what jacc issues (a float or string `exp`, a
number too large for a float, an object where a string belongs) is refused as
`invalid`, never an exception of another kind.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import jwt

__all__ = [
    "AuthError",
    "Identity",
    "TokenService",
    "TokenStore",
    "redact_tokens",
    "resolve_secret",
]

logger = logging.getLogger("jacc.auth")

SECRET_ENV = "JACC_JWT_SECRET"
SECRET_FILE = "secret"

# Minimum secret length per algorithm, in bytes: the size of the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

# Tokens minted on another host whose clock runs a little ahead must not be
# refused as "issued in the future"; expiry itself gets no such grace.
_CLOCK_SKEW_SECONDS = 30

# The tokens jacc issues are about 300 characters; a bound keeps a hostile one
# (a header nested thousands deep, a claim of megabytes) from costing any parsing.
MAX_TOKEN_CHARS = 4096
# A NumericDate past the year 9999 is no real time, and past 2**53 it no longer
# fits a float exactly: such a claim is refused, not converted.
_LATEST_TIME = 253402300799
_MAX_CLAIM_CHARS = 256
# PyJWT checks none of these: `_identity` does, with jacc's rules.
_DECODE_OPTIONS = {
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}

_REASONS = {
    "missing": "no token given",
    "invalid": "invalid token",
    "expired": "token expired",
}


class AuthError(Exception):
    """A token was refused. `reason` is "missing", "invalid" or "expired"."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        if reason not in _REASONS:
            raise ValueError(f"unknown auth failure reason {reason!r}")
        self.reason = reason
        self.message = message or _REASONS[reason]
        super().__init__(self.message)


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for, and until when (a Unix time, or None).

    `token_id` is the token's `jti` (None for tokens issued before rotation
    existed, which cannot be refreshed); `operator` is true for tokens issued
    by `jacc token`, which speak for a name without an account behind it.
    """

    user: str
    user_id: str
    expires_at: float | None
    token_id: str | None = None
    operator: bool = False


class TokenStore(Protocol):
    """What a bound TokenService asks the account store (AccountStore implements it)."""

    def has_account(self, user_id: str) -> bool: ...

    def retired_at(self, token_id: str) -> float | None:
        """When the token was retired by a refresh (a Unix time), or None."""
        ...

    def retire(self, token_id: str, expires_at: int) -> bool:
        """Record the token as retired until `expires_at`; False if it already was."""
        ...


class TokenService:
    """Issues and verifies HMAC-signed JWTs with one secret and an algorithm allow-list.

    Tokens are signed with the first algorithm of `algorithms`; any of them is
    accepted on verification. Raises ValueError for an empty or too short
    secret, a non-positive TTL, or an algorithm other than HS256/HS384/HS512
    (`none` above all).
    """

    def __init__(
        self,
        secret: str,
        ttl_seconds: int = 86400,
        algorithms: tuple[str, ...] = ("HS256",),
    ) -> None:
        if isinstance(algorithms, str):
            # ("HS256") without the comma is a str: iterating it would give letters.
            algorithms = (algorithms,)
        if not algorithms:
            raise ValueError("at least one JWT algorithm is required")
        for algorithm in algorithms:
            if algorithm.strip().lower() == "none":
                raise ValueError("the JWT algorithm `none` is never allowed: tokens must be signed")
            if algorithm not in _HMAC_MIN_BYTES:
                allowed = ", ".join(_HMAC_MIN_BYTES)
                raise ValueError(
                    f"unsupported JWT algorithm {algorithm!r}: expected one of {allowed}"
                )
        if not secret:
            raise ValueError("the JWT secret is empty: set JACC_JWT_SECRET or [auth] secret")
        needed = max(_HMAC_MIN_BYTES[algorithm] for algorithm in algorithms)
        if len(secret.encode("utf-8")) < needed:
            raise ValueError(
                f"the JWT secret is too short for {'/'.join(algorithms)}: "
                f"expected at least {needed} bytes, got {len(secret.encode('utf-8'))}"
            )
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
            raise ValueError(f"token TTL must be a positive number of seconds, got {ttl_seconds!r}")
        self._secret = secret
        self._algorithms = tuple(algorithms)
        self.ttl_seconds = ttl_seconds
        self._store: TokenStore | None = None
        self._refresh_grace = 0.0

    def __repr__(self) -> str:
        # Never show the secret, even in a debugger or a crash report.
        return f"TokenService(algorithms={self._algorithms!r}, ttl_seconds={self.ttl_seconds})"

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms accepted on verification; the first one signs."""
        return self._algorithms

    def bound(self, store: TokenStore, refresh_grace_seconds: float = 30.0) -> TokenService:
        """A copy that also checks each token against `store`, and can `refresh`.

        The copy refuses a token tied to an account that does not exist (any
        token without the `operator` claim), and a token that a refresh retired
        more than `refresh_grace_seconds` ago. Without a store a TokenService
        checks signatures and claims only.
        """
        if refresh_grace_seconds < 0:
            raise ValueError(f"refresh grace must be >= 0 seconds, got {refresh_grace_seconds!r}")
        checked = copy.copy(self)
        checked._store = store
        checked._refresh_grace = float(refresh_grace_seconds)
        return checked

    def issue(self, user: str, user_id: str | None = None, ttl_seconds: int | None = None) -> str:
        """Return a signed token with claims `sub`, `user_id`, `iat`, `exp` and `jti`.

        With a `user_id` the token is tied to that account. Without one it is an
        operator token (`jacc token`): `user_id` is `user` and the claim
        `operator: true` lets it stand without an account.
        """
        if not isinstance(user, str) or not user or len(user) > _MAX_CLAIM_CHARS:
            raise ValueError(f"a token needs a user name of 1 to {_MAX_CLAIM_CHARS} characters")
        if user_id is not None and (
            not isinstance(user_id, str) or not user_id or len(user_id) > _MAX_CLAIM_CHARS
        ):
            raise ValueError(f"user_id must be a string of 1 to {_MAX_CLAIM_CHARS} characters")
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError(f"token TTL must be a positive number of seconds, got {ttl!r}")
        now = int(time.time())
        if now + ttl > _LATEST_TIME:
            raise ValueError(f"token TTL reaches past the year 9999, got {ttl!r}")
        claims: dict[str, object] = {
            "sub": user,
            "user_id": user_id or user,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        if user_id is None:
            claims["operator"] = True
        return jwt.encode(claims, self._secret, algorithm=self._algorithms[0])

    def verify(self, token: str | None) -> Identity:
        """Return the identity a token carries, or raise AuthError saying why not.

        Bound to a store, this costs two indexed SQLite reads besides the HMAC.
        """
        identity = self._decode(token)
        if self._store is not None:
            self._check_records(identity)
        return identity

    def refresh(self, token: str | None) -> tuple[Identity, str]:
        """Retire `token` and return its identity with a new token for the same user.

        A token is refreshed once: a second refresh of it, in this process or
        any other sharing the store, raises AuthError. Needs a bound service.
        """
        if self._store is None:
            raise RuntimeError("refresh needs a TokenService bound to a token store")
        identity = self.verify(token)
        if identity.token_id is None:
            raise AuthError(
                "invalid", "this token has no `jti` and cannot be refreshed: log in again"
            )
        # verify() has checked exp to be an integer in range.
        if not self._store.retire(identity.token_id, int(identity.expires_at or 0)):
            raise AuthError(
                "invalid", "this token was refreshed already: use the newest one, or log in again"
            )
        user_id = None if identity.operator else identity.user_id
        return identity, self.issue(identity.user, user_id=user_id)

    def _decode(self, token: str | None) -> Identity:
        if token is None or (isinstance(token, str) and not token.strip()):
            raise AuthError("missing")
        if not isinstance(token, str) or not token.isascii():
            # A JWT is base64url and dots; anything else cannot be one.
            raise AuthError("invalid", "malformed token")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("invalid", f"token longer than {MAX_TOKEN_CHARS} characters")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=list(self._algorithms), options=_DECODE_OPTIONS
            )
        except jwt.InvalidAlgorithmError:
            raise AuthError(
                "invalid", "token signed with an algorithm that is not allowed"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid", "token signature does not match") from None
        except (jwt.InvalidTokenError, RecursionError):
            # Older PyJWT lets a deeply nested header's RecursionError through.
            raise AuthError("invalid", "malformed token") from None
        return _identity(claims, time.time())

    def _check_records(self, identity: Identity) -> None:
        store = self._store
        assert store is not None
        if not identity.operator and not store.has_account(identity.user_id):
            raise AuthError("invalid", "no account for this token: it was deleted or never existed")
        if identity.token_id is None:
            return
        retired = store.retired_at(identity.token_id)
        if retired is not None and time.time() >= retired + self._refresh_grace:
            raise AuthError("invalid", "this token was refreshed: use the new one")


def _identity(claims: dict[str, object], now: float) -> Identity:
    user = _text_claim(claims, "sub", required=True)
    user_id = _text_claim(claims, "user_id") or user
    expires_at = _time_claim(claims, "exp", required=True)
    assert user is not None and expires_at is not None
    issued_at = _time_claim(claims, "iat")
    if issued_at is not None and issued_at > now + _CLOCK_SKEW_SECONDS:
        raise AuthError("invalid", "token issued in the future")
    not_before = _time_claim(claims, "nbf")
    if not_before is not None and not_before > now + _CLOCK_SKEW_SECONDS:
        raise AuthError("invalid", "token not valid yet (`nbf`)")
    operator = claims.get("operator", False)
    if not isinstance(operator, bool):
        raise AuthError(
            "invalid", f"token `operator` claim: expected true or false, got {_kind(operator)}"
        )
    token_id = _text_claim(claims, "jti")
    # Checked last, so that a malformed token is `invalid` even when also out of date.
    if expires_at <= now:
        raise AuthError("expired")
    return Identity(
        user=user,
        user_id=user_id,
        expires_at=float(expires_at),
        token_id=token_id,
        operator=operator,
    )


def _text_claim(claims: dict[str, object], name: str, required: bool = False) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise AuthError("invalid", f"token lacks the `{name}` claim")
    if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM_CHARS:
        raise AuthError(
            "invalid",
            f"token `{name}` claim: expected a string of 1 to {_MAX_CLAIM_CHARS} characters, "
            f"got {_kind(value)}",
        )
    return value


def _time_claim(claims: dict[str, object], name: str, required: bool = False) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise AuthError("invalid", f"token lacks the `{name}` claim")
    # jacc issues whole seconds; bool is an int to Python and never a time.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LATEST_TIME:
        raise AuthError(
            "invalid",
            f"token `{name}` claim: expected whole seconds since 1970 (before the year 10000), "
            f"got {_kind(value)}",
        )
    return value


def _kind(value: object) -> str:
    # What a claim was, never its text: a token's content stays out of replies and logs.
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer out of range"
    if isinstance(value, str):
        if len(value) > _MAX_CLAIM_CHARS:
            return f"a string of {len(value)} characters"
        return "a string" if value else "an empty string"
    kinds = {float: "a fractional number", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def resolve_secret(
    configured: str,
    jacc_dir: Path,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Return the JWT secret: `JACC_JWT_SECRET`, else `configured`, else `jacc_dir/secret`.

    When none is set, a random secret is created in `jacc_dir/secret` (mode 0600)
    and the same one is returned on every later call, so tokens outlive restarts
    and every worker agrees. Raises ValueError if that file exists but stays empty.
    """
    from_env = environ.get(SECRET_ENV, "")
    if from_env:
        return from_env
    if configured:
        return configured
    path = Path(jacc_dir) / SECRET_FILE
    existing = _read_secret(path)
    if existing is not None:
        return existing
    Path(jacc_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = os.urandom(32).hex()
    try:
        # O_EXCL: when several workers start at once exactly one creates the file,
        # and the mode is set at creation, so the secret is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _wait_for_secret(path)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret + "\n")
        file.flush()
        os.fsync(file.fileno())
    logger.info("created a new JWT secret in %s", path)
    return secret


def _read_secret(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if text and os.name == "posix" and path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users: run `chmod 600 %s`", path, path)
    return text or None


def _wait_for_secret(path: Path, timeout: float = 2.0) -> str:
    # Another process created the file an instant ago and may not have written it yet.
    deadline = time.monotonic() + timeout
    while True:
        existing = _read_secret(path)
        if existing is not None:
            return existing
        if time.monotonic() >= deadline:
            raise ValueError(f"{path} is empty: delete it to generate a new secret")
        time.sleep(0.02)


# `token=` as a query parameter (after ?, & or ;), or as a bare word in a log line;
# the value runs to the next parameter, fragment, space or quote.
_TOKEN_PARAM = re.compile(r"""(?i)((?:^|[?&;\s])token=)[^&#\s"']+""")


def redact_tokens(text: str) -> str:
    """Replace the value of every `token=` parameter in `text` with `[redacted]`."""
    if "=" not in text:
        # Most log lines carry no parameter at all: skip the regex.
        return text
    return _TOKEN_PARAM.sub(r"\1[redacted]", text)
