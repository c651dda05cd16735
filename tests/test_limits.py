"""Rate and size limits (runtime/limits.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jacc_runtime.server.ws.limits import SizeLimit, TokenBucket, protocol_max_size


def test_bucket_starts_full_and_allows_a_burst_of_rate_frames():
    bucket = TokenBucket(5, now=100.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_at_rate():
    bucket = TokenBucket(10, now=0.0)
    for _ in range(10):
        assert bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)  # the half from before plus another half
    assert not bucket.take(0.1)
    assert bucket.retry_after(0.1) == pytest.approx(0.1)


def test_refused_frames_cost_nothing():
    bucket = TokenBucket(2, now=0.0)
    bucket.take(0.0), bucket.take(0.0)
    for _ in range(100):  # a flood while empty does not push the refill back
        assert not bucket.take(0.25)
    assert bucket.take(0.5)


def test_bucket_never_holds_more_than_burst():
    bucket = TokenBucket(3, now=0.0)
    assert [bucket.take(3600.0) for _ in range(4)] == [True, True, True, False]


def test_rate_below_one_still_lets_one_frame_through():
    bucket = TokenBucket(0.5, now=0.0)
    assert bucket.burst == 1.0
    assert bucket.take(0.0) and not bucket.take(1.0)
    assert bucket.retry_after(1.0) == pytest.approx(1.0)
    assert bucket.take(2.0)


def test_explicit_burst():
    bucket = TokenBucket(1, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("rate", [0, -1, float("nan")])
def test_rate_must_be_positive(rate):
    with pytest.raises(ValueError):
        TokenBucket(rate)


@given(rate=st.floats(0.1, 1000), gaps=st.lists(st.floats(0, 2), max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(rate, gaps):
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += bucket.take(now)
    assert allowed <= bucket.burst + rate * now + 1e-6


def test_size_limit_counts_utf8_bytes_not_characters():
    limit = SizeLimit(10)
    assert limit.exceeded("a" * 10) == 0
    assert limit.exceeded("a" * 11) == 11
    assert limit.exceeded("é" * 5) == 0  # 10 bytes
    assert limit.exceeded("é" * 6) == 12
    assert limit.exceeded("😀" * 3) == 12  # 3 characters, 12 bytes
    assert limit.exceeded(b"x" * 11) == 11
    assert limit.exceeded(b"") == 0


@given(st.text(max_size=50), st.integers(1, 60))
def test_size_limit_agrees_with_encoding(text, limit):
    size = len(text.encode("utf-8", "surrogatepass"))
    assert SizeLimit(limit).exceeded(text) == (size if size > limit else 0)


def test_protocol_max_size_leaves_room_for_our_error_frame():
    assert protocol_max_size(65536) == 131072
    assert protocol_max_size(1000) == 1000 + 65536
    assert protocol_max_size(16 * 2**20) == 32 * 2**20
