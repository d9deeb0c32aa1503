"""Sign-in rate limits: in-memory token buckets keyed by account and by client address.

A bucket holds ``capacity`` tokens and refills at ``capacity / period`` tokens a second
(Envoy's token bucket). Each key has its own bucket; the least recently used keys are
forgotten past ``max_keys``, so a flood of made-up keys costs bounded memory. Per
process: several identity processes each allow the full rate, which is fine for limits
that exist to slow guessing down.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable

Clock = Callable[[], float]


@dataclasses.dataclass(slots=True)
class TokenBucket:
    """One bucket.

    Attributes:
        capacity: the burst size and the initial fill.
        rate: tokens added per second.
        tokens: tokens available at ``updated``.
        updated: clock reading of the last update.

    """

    capacity: float
    rate: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; returns 0 on success, else the seconds until one is available."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available, without taking one (0 when one is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by key: ``capacity`` attempts per ``period`` seconds per key."""

    def __init__(self, capacity: int, period: float, *, max_keys: int = 10_000, clock: Clock = time.monotonic) -> None:
        if capacity < 1 or period <= 0:
            raise ValueError("capacity must be at least 1 and period positive")
        self.capacity = float(capacity)
        self.rate = capacity / period
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.capacity, self.rate, self.capacity, self.clock())
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str) -> float:
        """Spend one attempt for ``key``: 0 when allowed, else the seconds to wait."""
        return self._bucket(key).take(self.clock())

    def wait_time(self, key: str) -> float:
        """Seconds ``key`` has to wait before its next attempt (0 when it may go now)."""
        return self._bucket(key).wait_time(self.clock())

    def __len__(self) -> int:
        return len(self._buckets)


@dataclasses.dataclass(slots=True)
class _Phantom:
    failed: int
    locked_until: float


class PhantomLockouts:
    """Lockouts for e-mail addresses that belong to no account, so that locking cannot enumerate accounts.

    A known account locks after ``threshold`` failures in a row; an unknown address must
    look the same, or five failures would tell an attacker whether an account exists.
    Kept in memory only (bounded, least recently used forgotten).
    """

    def __init__(self, threshold: int, *, max_keys: int = 10_000, clock: Clock = time.time) -> None:
        self.threshold = threshold
        self.max_keys = max_keys
        self.clock = clock
        self._entries: collections.OrderedDict[str, _Phantom] = collections.OrderedDict()

    def locked_until(self, key: str) -> float | None:
        """Epoch seconds until which the address is "locked", or ``None``."""
        entry = self._entries.get(key)
        if entry is None or entry.locked_until <= self.clock():
            return None
        return entry.locked_until

    def failure(self, key: str, lock_seconds: float) -> float | None:
        """Count a failure; returns the lock end when this failure locks the address."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None or (entry.locked_until and entry.locked_until <= now):
            entry = _Phantom(0, 0.0)
        entry.failed += 1
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        if entry.failed >= self.threshold:
            entry.locked_until = now + lock_seconds
            entry.failed = 0
            return entry.locked_until
        return None
