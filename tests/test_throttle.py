from __future__ import annotations

import pytest

from jacc_runtime.server.throttle import LoginLimits, LoginThrottle, Throttled, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **limits: float) -> LoginThrottle:
    return LoginThrottle(LoginLimits(**limits), clock=clock)  # type: ignore[arg-type]


def fail(logins: LoginThrottle, name: str = "alice", address: str = "10.0.0.1") -> None:
    logins.admit(name, address).end(False)


def refusal(logins: LoginThrottle, name: str = "alice", address: str = "10.0.0.1") -> Throttled:
    with pytest.raises(Throttled) as caught:
        logins.admit(name, address)
    return caught.value


def test_failures_up_to_the_allowance_pass_then_the_name_is_locked() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, backoff_seconds=1.0)
    for _ in range(5):
        fail(logins)
    refused = refusal(logins)
    assert (refused.retry_after, refused.reason) == (1, "login_attempts")
    assert "retry in 1 s" in str(refused)


def test_each_further_failure_doubles_the_lockout_up_to_the_window() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=3, backoff_seconds=2.0, window_seconds=60.0)
    for _ in range(3):
        fail(logins)
    waits = []
    for _ in range(6):
        waits.append(refusal(logins).retry_after)
        clock.now += waits[-1]
        fail(logins)
    assert waits == [2, 4, 8, 16, 32, 60]


def test_a_correct_password_after_the_lockout_passes_at_once_and_resets_the_name() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=3)
    for _ in range(3):
        fail(logins)
    refusal(logins)  # a correct password during the lockout is refused as well
    clock.now += 1.0
    logins.admit("alice", "10.0.0.1").end(True)
    for _ in range(2):  # the count starts again from nothing
        fail(logins)
    logins.admit("alice", "10.0.0.1").end(False)


def test_failures_are_forgotten_one_per_window_share() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, window_seconds=100.0)
    for _ in range(4):
        fail(logins)
    clock.now += 20.0  # 100 s / 5 attempts: one failure forgotten
    fail(logins)
    logins.admit("alice", "10.0.0.1").end(None)  # still one left
    fail(logins)
    refusal(logins)


def test_attempts_in_flight_count_so_a_burst_gets_only_the_allowance() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5)
    admitted = [logins.admit("alice", f"10.0.0.{i}") for i in range(5)]
    refused = refusal(logins, address="10.9.9.9")
    assert refused.retry_after == 1 and refused.reason == "login_attempts"
    for attempt in admitted:
        attempt.end(False)
    assert refusal(logins, address="10.9.9.9").retry_after == 1  # now the lockout itself


def test_after_a_lockout_only_one_attempt_at_a_time() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=2)
    fail(logins)
    fail(logins)
    clock.now += 1.0
    attempt = logins.admit("alice", "10.0.0.1")
    refusal(logins, address="10.0.0.2")
    attempt.end(True)
    logins.admit("alice", "10.0.0.2").end(True)


def test_an_attempt_ended_without_outcome_counts_nothing() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=1)
    attempt = logins.admit("alice", "10.0.0.1")
    attempt.end(None)
    attempt.end(False)  # a second end is ignored
    logins.admit("alice", "10.0.0.1").end(None)


def test_one_address_guessing_many_names_is_locked_and_others_are_not() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, address_attempts=20)
    for i in range(20):
        fail(logins, name=f"user{i}", address="203.0.113.7")
    refused = refusal(logins, name="someone-else", address="203.0.113.7")
    assert refused.reason == "login_address_attempts"
    assert "from this address" in str(refused)
    logins.admit("someone-else", "203.0.113.8").end(True)


def test_a_correct_login_does_not_reset_its_address() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, address_attempts=3)
    for i in range(2):
        fail(logins, name=f"victim{i}")
    logins.admit("mine", "10.0.0.1").end(True)
    fail(logins, name="victim9")
    assert refusal(logins, name="mine").reason == "login_address_attempts"


def test_the_addresses_of_one_ipv6_64_are_one_address() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=100, address_attempts=2)
    fail(logins, name="a", address="2001:db8:1:2::1")
    fail(logins, name="b", address="2001:db8:1:2:ffff::9")
    refusal(logins, name="c", address="2001:db8:1:2:abcd::1")
    logins.admit("c", "2001:db8:1:3::1").end(True)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:0db8:0000:0000:ffff:0000:0000:0001", "2001:db8::/64"),
        ("testclient", "testclient"),
        ("unknown", "unknown"),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    assert address_key(address) == key


def test_memory_stays_bounded_under_a_flood_of_names_and_addresses() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, address_attempts=5, max_entries=1000)
    for i in range(20_000):
        clock.now += 0.001
        fail(logins, name=f"random-{i}", address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(logins) <= 2 * 1000


def test_drained_entries_are_dropped() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, window_seconds=100.0)
    fail(logins, name="old", address="10.0.0.1")
    clock.now += 21.0  # one failure drains in 100 / 5 s
    fail(logins, name="new", address="10.0.0.2")
    assert len(logins) == 2  # the old name and address went


def test_a_flood_evicts_the_least_recently_seen_first() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=2, address_attempts=10**6, max_entries=10)
    fail(logins, name="target")
    fail(logins, name="target")
    for i in range(9):
        fail(logins, name=f"other-{i}")
        refusal(logins, name="target")  # being refused keeps it recent
    assert refusal(logins, name="target").reason == "login_attempts"


def test_occasional_failures_never_add_up_to_a_lockout() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=5, address_attempts=5, window_seconds=100.0)
    for _ in range(200):  # one every 25 s, slower than the allowance refills (one per 20 s)
        fail(logins)
        clock.now += 25.0


def test_the_doubling_starts_over_once_every_failure_is_forgotten() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=2, backoff_seconds=1.0, window_seconds=100.0)
    for _ in range(2):
        fail(logins)
    clock.now += 1.0
    fail(logins)
    assert refusal(logins).retry_after == 2
    clock.now += 200.0  # everything forgotten
    for _ in range(2):
        fail(logins)
    assert refusal(logins).retry_after == 1


def test_failures_a_little_apart_still_add_up() -> None:
    clock = Clock()
    logins = throttle(clock, attempts=3, window_seconds=900.0)
    for _ in range(3):
        fail(logins)
        clock.now += 0.1  # a hash's time: almost nothing is forgotten, and that must not count
    refusal(logins)
