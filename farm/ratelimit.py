"""Per-key request rate limits: a token bucket for each API key.

Each key may make ``burst`` requests at once and ``rate`` per second after
that. A refused request learns how long until a token is back (``Retry-After``).
Buckets live in the API process: with several front-door replicas each
enforces the limit on its own share of the traffic (behind a load balancer
that is roughly ``replicas × rate``). The clock is injectable, so tests need
no sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (``Retry-After`` takes no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; one request takes ``cost``."""

    __slots__ = ("rate", "capacity", "tokens", "updated")

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens and return 0, or take nothing and return seconds until possible."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.rate <= 0:
            return math.inf
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by key; idle buckets beyond ``max_keys`` are forgotten (they were full anyway)."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate, self.burst = rate, burst
        self.enabled = rate > 0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> Decision:
        if not self.enabled:
            return Decision(True, self.burst, self.burst)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
                if len(self._buckets) > self._max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            wait = bucket.take(now, cost)
            remaining = int(bucket.tokens)
        return Decision(wait == 0.0, self.burst, remaining, wait)
