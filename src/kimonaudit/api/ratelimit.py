"""A token bucket per API key: in memory for one process (SQLite), in the
database on PostgreSQL so that every `serve` process on it enforces one
limit (`make_limiter`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any


class RateLimiter:
    """`rate` requests per second per key with bursts of `burst`; rate 0
    allows everything."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 if the request may go ahead, else seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SharedRateLimiter(RateLimiter):
    """The same bucket kept in PostgreSQL (kimonaudit.store.postgres_limits):
    one limit across every process, surviving restarts."""

    def __init__(self, limits_store: Any, rate: float, burst: float) -> None:
        super().__init__(rate, burst)
        self._db = limits_store

    def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        return float(self._db.take(key, self.rate, self.burst))


def make_limiter(store: Any, rate: float, burst: float) -> RateLimiter:
    """SharedRateLimiter for a PostgreSQL store, else the in-memory one."""
    if getattr(store, "dialect", None) == "postgres":
        from kimonaudit.store.postgres_limits import PostgresLimits

        return SharedRateLimiter(PostgresLimits(store), rate, burst)
    return RateLimiter(rate, burst)


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
