from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import threading
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jacc_runtime.server.auth import (
    MAX_TOKEN_CHARS,
    AuthError,
    Identity,
    TokenService,
    _wait_for_secret,
    redact_tokens,
    resolve_secret,
)

# 64 bytes: long enough for HS512 too, so PyJWT never warns about key length.
SECRET = "k" * 64
OTHER_SECRET = "o" * 64


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"sub": "alice", "user_id": "u1", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _refusal(service: TokenService, token: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        service.verify(token)
    return caught.value


# --- issuing and verifying ----------------------------------------------------


def test_an_issued_token_verifies_to_its_identity() -> None:
    service = TokenService(SECRET, ttl_seconds=120)
    before = time.time()
    identity = service.verify(service.issue("alice", "u-42"))
    assert identity.user == "alice"
    assert identity.user_id == "u-42"
    assert identity.expires_at is not None
    assert before + 118 <= identity.expires_at <= time.time() + 120


def test_without_a_user_id_the_token_is_an_operator_token_for_the_name() -> None:
    service = TokenService(SECRET)
    identity = service.verify(service.issue("bob"))
    assert identity == Identity(
        user="bob",
        user_id="bob",
        expires_at=identity.expires_at,
        token_id=identity.token_id,
        operator=True,
    )


def test_issued_claims_are_sub_user_id_iat_exp_and_jti() -> None:
    service = TokenService(SECRET, ttl_seconds=86400)
    token = service.issue("alice", "u-1", ttl_seconds=1)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "user_id", "iat", "exp", "jti"}
    assert claims["sub"] == "alice" and claims["user_id"] == "u-1"
    assert claims["exp"] - claims["iat"] == 1
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    operator = jwt.decode(service.issue("alice"), SECRET, algorithms=["HS256"])
    assert operator["operator"] is True and operator["user_id"] == "alice"


def test_every_token_gets_its_own_jti() -> None:
    service = TokenService(SECRET)
    ids = {service.verify(service.issue("alice", "u1")).token_id for _ in range(50)}
    assert len(ids) == 50 and None not in ids


def test_tokens_from_another_service_with_the_same_secret_verify() -> None:
    # Workers and hosts share the secret, not the object.
    token = TokenService(SECRET).issue("alice")
    assert TokenService(SECRET).verify(token).user == "alice"


@pytest.mark.parametrize("token", [None, "", "   "])
def test_no_token_is_missing(token: str | None) -> None:
    error = _refusal(TokenService(SECRET), token)
    assert error.reason == "missing"
    assert str(error) == "no token given"


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    token = TokenService(OTHER_SECRET).issue("alice")
    error = _refusal(TokenService(SECRET), token)
    assert error.reason == "invalid"
    assert "signature" in str(error)


def test_a_tampered_payload_is_invalid() -> None:
    service = TokenService(SECRET)
    header, _, signature = service.issue("alice").split(".")
    forged = _b64(json.dumps(_claims(sub="mallory", user_id="mallory")).encode())
    assert _refusal(service, f"{header}.{forged}.{signature}").reason == "invalid"


@pytest.mark.parametrize(
    "token",
    ["abc", "a.b.c", "a.b", "....", "eyJ.eyJ.", "x" * 10_000, "tökén.a.b", "\ud800", 42],
)
def test_a_malformed_token_is_invalid(token: object) -> None:
    assert _refusal(TokenService(SECRET), token).reason == "invalid"  # type: ignore[arg-type]


def test_an_expired_token_is_expired() -> None:
    token = jwt.encode(_claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    error = _refusal(TokenService(SECRET), token)
    assert error.reason == "expired"
    assert str(error) == "token expired"


def test_a_token_expires_after_its_ttl() -> None:
    service = TokenService(SECRET)
    token = service.issue("alice", ttl_seconds=1)
    assert service.verify(token).user == "alice"
    time.sleep(1.1)  # exp is a whole second: at most 1s after issue it is in the past
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            service.verify(token)
        except AuthError as error:
            assert error.reason == "expired"
            return
        time.sleep(0.05)
    pytest.fail("the token never expired")


def test_an_unsigned_alg_none_token_is_invalid() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert _refusal(TokenService(SECRET), token).reason == "invalid"


def test_alg_none_with_a_valid_looking_signature_is_invalid() -> None:
    # Same signature bytes as a genuine HS256 token, only the header says `none`.
    service = TokenService(SECRET)
    _, payload, signature = service.issue("alice").split(".")
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert _refusal(service, f"{header}.{payload}.{signature}").reason == "invalid"


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_a_token_signed_with_an_algorithm_outside_the_allow_list_is_invalid(
    algorithm: str,
) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm=algorithm)
    error = _refusal(TokenService(SECRET, algorithms=("HS256",)), token)
    assert error.reason == "invalid"
    assert "algorithm" in str(error)


def test_every_algorithm_of_the_allow_list_is_accepted_and_the_first_signs() -> None:
    service = TokenService(SECRET, algorithms=("HS512", "HS256"))
    assert jwt.get_unverified_header(service.issue("alice"))["alg"] == "HS512"
    assert service.verify(jwt.encode(_claims(), SECRET, algorithm="HS256")).user == "alice"


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_a_token_lacking_sub_or_exp_is_invalid(missing: str) -> None:
    token = jwt.encode(_claims(**{missing: None}), SECRET, algorithm="HS256")
    error = _refusal(TokenService(SECRET), token)
    assert error.reason == "invalid"
    assert missing in str(error)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": 7},
        {"sub": ""},
        {"user_id": 7},
        {"user_id": ""},
        {"exp": "9999999999"},
        {"exp": [9999999999]},
        {"iat": "yesterday"},
        {"iat": int(time.time()) + 3600},
        {"exp": 10**400},
        {"exp": -(10**400)},
        {"exp": -1},
        {"exp": 2**63},
        {"exp": int(time.time()) + 60.5},
        {"exp": float(int(time.time()) + 60)},
        {"exp": True},
        {"exp": {"at": 9999999999}},
        {"iat": 10**400},
        {"iat": 1.5},
        {"iat": {"nested": [{"deeper": 1}]}},
        {"nbf": 10**400},
        {"nbf": "now"},
        {"nbf": int(time.time()) + 3600},
        {"sub": {"name": "alice"}},
        {"sub": ["alice"]},
        {"sub": "a" * 257},
        {"user_id": {"id": 1}},
        {"jti": 12},
        {"jti": ""},
        {"jti": {"id": "x"}},
        {"operator": "yes"},
        {"operator": 1},
        {"operator": {"is": True}},
    ],
    ids=repr,
)
def test_a_token_with_ill_typed_claims_is_invalid(overrides: dict[str, object]) -> None:
    token = jwt.encode(_claims(**overrides), SECRET, algorithm="HS256")
    assert _refusal(TokenService(SECRET), token).reason == "invalid"


def _signed(payload: str, header: str = '{"alg":"HS256","typ":"JWT"}') -> str:
    """A token with exactly this payload text: JSON that PyJWT's encoder would not write."""
    signing_input = f"{_b64(header.encode())}.{_b64(payload.encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize(
    "payload",
    [
        '{"sub":"a","exp":1e400}',
        '{"sub":"a","exp":-1e400}',
        '{"sub":"a","exp":NaN}',
        '{"sub":"a","exp":Infinity}',
        '{"sub":"a","exp":9999999999,"iat":1e400}',
        '{"sub":"a","exp":9999999999,"x":' + "[" * 1100 + "]" * 1100 + "}",
        '{"sub":"a","exp":' + "9" * 1500 + "}",
        "[1]",
        "null",
    ],
    ids=lambda payload: payload[:40],
)
def test_claims_json_that_only_a_hand_can_write_is_invalid(payload: str) -> None:
    assert _refusal(TokenService(SECRET), _signed(payload)).reason == "invalid"


@pytest.mark.parametrize(
    "header",
    ["[" * 1100 + "]" * 1100, '{"alg":["HS256"]}', '{"alg":"HS256","kid":{"a":1}}', "7"],
    ids=lambda header: header[:20],
)
def test_a_hostile_header_is_invalid(header: str) -> None:
    token = _signed('{"sub":"a","exp":9999999999}', header)
    assert _refusal(TokenService(SECRET), token).reason == "invalid"


def test_a_token_over_the_length_bound_is_invalid_before_any_parsing() -> None:
    token = jwt.encode(_claims(padding="x" * 4000), SECRET, algorithm="HS256")
    assert len(token) > MAX_TOKEN_CHARS
    error = _refusal(TokenService(SECRET), token)
    assert error.reason == "invalid" and "longer" in str(error)


def test_refusals_name_the_claim_and_never_echo_its_value() -> None:
    token = jwt.encode(_claims(sub={"secret-ish": "payload"}), SECRET, algorithm="HS256")
    message = str(_refusal(TokenService(SECRET), token))
    assert "`sub`" in message and "an object" in message and "secret-ish" not in message


@given(
    st.dictionaries(
        st.sampled_from(["sub", "user_id", "exp", "iat", "nbf", "jti", "operator", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            max_leaves=8,
        ),
    )
)
def test_verify_turns_any_signed_claims_into_an_identity_or_auth_error(claims: dict) -> None:
    payload = json.dumps(claims, allow_nan=True)
    try:
        identity = TokenService(SECRET).verify(_signed(payload))
    except AuthError as error:
        assert error.reason in {"invalid", "expired"}
    else:
        assert isinstance(identity.expires_at, float) and identity.user


def test_a_token_without_user_id_falls_back_to_sub() -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert TokenService(SECRET).verify(token).user_id == "alice"


def test_an_iat_slightly_ahead_is_tolerated_for_clock_skew_between_hosts() -> None:
    token = jwt.encode(_claims(iat=int(time.time()) + 5), SECRET, algorithm="HS256")
    assert TokenService(SECRET).verify(token).user == "alice"


@given(st.text(max_size=300))
def test_verify_refuses_arbitrary_text_with_auth_error_only(text: str) -> None:
    try:
        TokenService(SECRET).verify(text)
    except AuthError as error:
        assert error.reason in {"missing", "invalid"}
    else:
        pytest.fail(f"accepted {text!r}")


# --- construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms", [("none",), ("None",), ("NONE",), ("HS256", "none"), (" none ",)]
)
def test_none_is_never_an_allowed_algorithm(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="none"):
        TokenService(SECRET, algorithms=algorithms)


@pytest.mark.parametrize("algorithms", [(), ("RS256",), ("hs256",)])
def test_unsupported_algorithm_lists_are_refused(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        TokenService(SECRET, algorithms=algorithms)


def test_a_bare_string_algorithm_is_one_algorithm() -> None:
    service = TokenService(SECRET, algorithms="HS256")  # type: ignore[arg-type]
    assert service.algorithms == ("HS256",)


def test_there_is_no_default_secret() -> None:
    with pytest.raises(ValueError, match="empty"):
        TokenService("")


def test_a_secret_shorter_than_the_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes, got 8"):
        TokenService("changeme")
    with pytest.raises(ValueError, match="at least 64 bytes"):
        TokenService("k" * 32, algorithms=("HS512",))


@pytest.mark.parametrize("ttl", [0, -1, True, 1.5])
def test_a_bad_ttl_is_refused(ttl: object) -> None:
    with pytest.raises(ValueError):
        TokenService(SECRET, ttl_seconds=ttl)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TokenService(SECRET).issue("alice", ttl_seconds=ttl)  # type: ignore[arg-type]


def test_issue_needs_a_user() -> None:
    with pytest.raises(ValueError):
        TokenService(SECRET).issue("")
    with pytest.raises(ValueError):
        TokenService(SECRET).issue("alice", user_id="")


def test_the_secret_never_shows_in_repr() -> None:
    assert SECRET not in repr(TokenService(SECRET))


def test_auth_error_reasons_are_a_closed_set() -> None:
    assert AuthError("invalid", "bad header").reason == "invalid"
    assert str(AuthError("invalid", "bad header")) == "bad header"
    with pytest.raises(ValueError):
        AuthError("nope")


# --- the secret -------------------------------------------------------------------


def test_the_environment_wins(tmp_path: Path) -> None:
    environ = {"JACC_JWT_SECRET": "from-env"}
    assert resolve_secret("from-config", tmp_path, environ) == "from-env"
    assert not (tmp_path / "secret").exists()


def test_the_configured_secret_comes_next(tmp_path: Path) -> None:
    assert resolve_secret("from-config", tmp_path, {"JACC_JWT_SECRET": ""}) == "from-config"
    assert not (tmp_path / "secret").exists()


def test_without_one_a_secret_is_generated_with_mode_0600_and_reused(tmp_path: Path) -> None:
    jacc_dir = tmp_path / "app" / ".jacc"
    secret = resolve_secret("", jacc_dir, {})
    path = jacc_dir / "secret"
    assert len(secret) >= 64
    assert path.read_text().strip() == secret
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_secret("", jacc_dir, {}) == secret
    # Long enough for every allowed algorithm.
    TokenService(secret, algorithms=("HS512",))


def test_generated_secrets_are_random(tmp_path: Path) -> None:
    assert resolve_secret("", tmp_path / "a", {}) != resolve_secret("", tmp_path / "b", {})


def test_an_existing_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("hand-written\n")
    assert resolve_secret("", tmp_path, {}) == "hand-written"


def test_environment_and_config_win_over_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file")
    assert resolve_secret("", tmp_path, {"JACC_JWT_SECRET": "from-env"}) == "from-env"
    assert resolve_secret("from-config", tmp_path, {}) == "from-config"
    assert resolve_secret("", tmp_path, {}) == "from-file"


def test_workers_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    results: list[str] = []

    def start() -> None:
        barrier.wait()
        results.append(resolve_secret("", tmp_path / ".jacc", {}))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1


def test_a_secret_file_still_being_written_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.touch()
    writer = threading.Timer(0.1, lambda: path.write_text("late-secret"))
    writer.start()
    try:
        assert resolve_secret("", tmp_path, {}) == "late-secret"
    finally:
        writer.join()


def test_a_secret_file_left_empty_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.touch()
    with pytest.raises(ValueError, match="empty"):
        _wait_for_secret(path, timeout=0.05)


# --- redaction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET /ws/Chat?token=eyJ.abc.def&x=1 HTTP/1.1",
            "GET /ws/Chat?token=[redacted]&x=1 HTTP/1.1",
        ),
        ("/ws/Chat?x=1&token=eyJ.abc.def", "/ws/Chat?x=1&token=[redacted]"),
        ('"GET /ws/Chat?token=abc HTTP/1.1" 101', '"GET /ws/Chat?token=[redacted] HTTP/1.1" 101'),
        ("/a?token=1&token=2", "/a?token=[redacted]&token=[redacted]"),
        ("/a?TOKEN=abc#frag", "/a?TOKEN=[redacted]#frag"),
        ("token=abc&x=1", "token=[redacted]&x=1"),
        ("/a?mytoken=abc&b=2", "/a?mytoken=abc&b=2"),
        ("/a?token=", "/a?token="),
        ("GET /healthz HTTP/1.1", "GET /healthz HTTP/1.1"),
    ],
)
def test_token_parameters_are_redacted(text: str, expected: str) -> None:
    assert redact_tokens(text) == expected


_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.%+"


@given(st.text(alphabet=_TOKEN_CHARS, min_size=16), st.text(max_size=30))
def test_no_token_survives_redaction(token: str, rest: str) -> None:
    line = f"GET /ws/Chat?token={token}&{rest} HTTP/1.1"
    redacted = redact_tokens(line)
    assert "token=[redacted]" in redacted
    assert token not in redacted.replace(rest, "")
    assert redact_tokens(redacted) == redacted


# --- bound to a token store: accounts, rotation ----------------------------------


class MemoryStore:
    """The TokenStore protocol over two dicts, as AccountStore implements it over SQLite."""

    def __init__(self, *accounts: str) -> None:
        self.accounts = set(accounts)
        self.retired: dict[str, float] = {}

    def has_account(self, user_id: str) -> bool:
        return user_id in self.accounts

    def retired_at(self, token_id: str) -> float | None:
        return self.retired.get(token_id)

    def retire(self, token_id: str, expires_at: int) -> bool:
        if token_id in self.retired:
            return False
        self.retired[token_id] = time.time()
        return True


def test_a_bound_service_refuses_a_token_whose_account_is_missing_or_gone() -> None:
    store = MemoryStore("u1")
    service = TokenService(SECRET).bound(store)
    token = service.issue("alice", "u1")
    assert service.verify(token).user_id == "u1"
    assert _refusal(service, service.issue("ghost", "u-never")).reason == "invalid"
    store.accounts.clear()
    error = _refusal(service, token)
    assert error.reason == "invalid" and "no account" in str(error)
    with pytest.raises(AuthError):
        service.refresh(token)


def test_operator_tokens_stand_without_an_account_and_refresh_as_operator_tokens() -> None:
    service = TokenService(SECRET).bound(MemoryStore())
    identity, fresh = service.refresh(service.issue("tester"))
    assert identity.operator and identity.user == "tester"
    again = service.verify(fresh)
    assert again.operator and again.user == "tester" and again.token_id != identity.token_id


def test_the_unbound_service_checks_signature_and_claims_only() -> None:
    service = TokenService(SECRET)
    assert service.verify(service.issue("ghost", "u-never")).user_id == "u-never"
    with pytest.raises(RuntimeError, match="bound"):
        service.refresh(service.issue("alice"))


def test_refresh_rotates_and_a_refreshed_token_cannot_be_refreshed_again() -> None:
    store = MemoryStore("u1")
    service = TokenService(SECRET).bound(store, refresh_grace_seconds=30)
    first = service.issue("alice", "u1")
    identity, second = service.refresh(first)
    assert identity.user_id == "u1" and store.retired_at(identity.token_id) is not None
    fresh = service.verify(second)
    assert (fresh.user, fresh.user_id, fresh.operator) == ("alice", "u1", False)
    error = pytest.raises(AuthError, service.refresh, first).value
    assert error.reason == "invalid" and "refreshed already" in str(error)
    _, third = service.refresh(second)  # the new one refreshes, once
    assert service.verify(third).user_id == "u1"


def test_a_retired_token_serves_requests_during_the_grace_only() -> None:
    store = MemoryStore("u1")
    service = TokenService(SECRET).bound(store, refresh_grace_seconds=30)
    token = service.issue("alice", "u1")
    identity, _ = service.refresh(token)
    assert service.verify(token).user_id == "u1"  # within the grace
    store.retired[identity.token_id] -= 31
    error = _refusal(service, token)
    assert error.reason == "invalid" and "refreshed" in str(error)
    no_grace = TokenService(SECRET).bound(MemoryStore("u1"), refresh_grace_seconds=0)
    token = no_grace.issue("alice", "u1")
    no_grace.refresh(token)
    assert _refusal(no_grace, token).reason == "invalid"


def test_a_token_without_jti_is_not_refreshed() -> None:
    # As issued before rotation existed: good for requests until it expires, not renewable.
    service = TokenService(SECRET).bound(MemoryStore("u1"))
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    assert service.verify(token).token_id is None
    error = pytest.raises(AuthError, service.refresh, token).value
    assert "jti" in str(error) and error.reason == "invalid"


def test_binding_leaves_the_original_unbound() -> None:
    service = TokenService(SECRET)
    service.bound(MemoryStore())
    assert service.verify(service.issue("ghost", "u-never")).user == "ghost"
    with pytest.raises(ValueError):
        service.bound(MemoryStore(), refresh_grace_seconds=-1)
