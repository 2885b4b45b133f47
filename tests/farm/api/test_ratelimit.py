"""The per-key token bucket, on a hand-driven clock (no sleeping)."""

from __future__ import annotations

import math

from farm.ratelimit import RateLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.check("k").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.check("k")
    assert not refused.allowed and refused.remaining == 0
    assert math.isclose(refused.retry_after_s, 0.5) and refused.retry_after_header == "1"
    clock.now += 0.5  # one token back at 2/s
    assert limiter.check("k").allowed
    assert not limiter.check("k").allowed
    clock.now += 10  # refills to the burst, not beyond
    assert [limiter.check("k").allowed for _ in range(4)] == [True, True, True, False]


def test_keys_have_their_own_buckets_and_zero_rate_disables() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert limiter.check("a").allowed and not limiter.check("a").allowed
    assert limiter.check("b").allowed
    off = RateLimiter(rate=0, burst=5, clock=clock)
    assert all(off.check("a").allowed for _ in range(100))


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    clock = Clock()
    slow = RateLimiter(rate=0.1, burst=1, clock=clock)
    slow.check("k")
    refused = slow.check("k")
    assert math.isclose(refused.retry_after_s, 10) and refused.retry_after_header == "10"
    bucket = TokenBucket(rate=4, capacity=2, now=0)
    assert bucket.take(0, cost=2) == 0 and math.isclose(bucket.take(0), 0.25)


def test_idle_buckets_are_forgotten_beyond_max_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock, max_keys=2)
    limiter.check("a")
    limiter.check("b")
    limiter.check("c")  # evicts "a", the least recently used: it starts full again
    assert limiter.check("a").allowed
    assert not limiter.check("c").allowed
