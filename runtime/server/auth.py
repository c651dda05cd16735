"""JWT tokens, the signing secret, and keeping tokens out of logs (SPEC §7).

    service = TokenService(resolve_secret(config_secret, app_dir / ".jacc"))
    token = service.issue("alice")
    service.verify(token)          # Identity(user='alice', user_id='alice', ...)
    service.verify("garbage")      # raises AuthError(reason='invalid')

Only HMAC algorithms are offered: the secret is shared, never a key pair, and
`none` is refused outright. Secrets shorter than the hash output are refused too
(RFC 7518 §3.2 says such a key MUST NOT be used).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

__all__ = ["AuthError", "Identity", "TokenService", "redact_tokens", "resolve_secret"]

logger = logging.getLogger("jacc.auth")

SECRET_ENV = "JACC_JWT_SECRET"
SECRET_FILE = "secret"

# Minimum secret length per algorithm, in bytes: the size of the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

# Tokens minted on another host whose clock runs a little ahead must not be
# refused as "issued in the future"; expiry itself gets no such grace.
_CLOCK_SKEW_SECONDS = 30

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
    """Who a verified token speaks for, and until when (a Unix time, or None)."""

    user: str
    user_id: str
    expires_at: float | None


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

    def __repr__(self) -> str:
        # Never show the secret, even in a debugger or a crash report.
        return f"TokenService(algorithms={self._algorithms!r}, ttl_seconds={self.ttl_seconds})"

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms accepted on verification; the first one signs."""
        return self._algorithms

    def issue(self, user: str, user_id: str | None = None, ttl_seconds: int | None = None) -> str:
        """Return a signed token with claims `sub`, `user_id` (default: `user`), `iat`, `exp`."""
        if not isinstance(user, str) or not user:
            raise ValueError("a token needs a non-empty user name")
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise ValueError("user_id must be a non-empty string when given")
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError(f"token TTL must be a positive number of seconds, got {ttl!r}")
        now = int(time.time())
        claims = {"sub": user, "user_id": user_id or user, "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self._secret, algorithm=self._algorithms[0])

    def verify(self, token: str | None) -> Identity:
        """Return the identity a token carries, or raise AuthError saying why not."""
        if token is None or (isinstance(token, str) and not token.strip()):
            raise AuthError("missing")
        if not isinstance(token, str) or not token.isascii():
            # A JWT is base64url and dots; anything else cannot be one.
            raise AuthError("invalid", "malformed token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=list(self._algorithms),
                # iat is checked below, with a grace for clock skew between hosts.
                options={"require": ["sub", "exp"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(
                "invalid", "token signed with an algorithm that is not allowed"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid", "token signature does not match") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError("invalid", f"token lacks the `{error.claim}` claim") from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid", "malformed token") from None
        return _identity(claims)


def _identity(claims: dict[str, object]) -> Identity:
    user = claims.get("sub")
    if not isinstance(user, str) or not user:
        raise AuthError("invalid", "token `sub` claim must be a non-empty string")
    user_id = claims.get("user_id", user)
    if not isinstance(user_id, str) or not user_id:
        raise AuthError("invalid", "token `user_id` claim must be a non-empty string")
    expires_at = claims["exp"]
    # PyJWT has checked `exp` already, but it also takes strings such as "123".
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
        raise AuthError("invalid", "token `exp` claim must be a number")
    issued_at = claims.get("iat")
    if issued_at is not None:
        if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
            raise AuthError("invalid", "token `iat` claim must be a number")
        if issued_at > time.time() + _CLOCK_SKEW_SECONDS:
            raise AuthError("invalid", "token issued in the future")
    return Identity(user=user, user_id=user_id, expires_at=float(expires_at))


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
