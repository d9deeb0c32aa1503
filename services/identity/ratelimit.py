"""Sign-in limits: token buckets keyed by client address, and per-account delays after failures.

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
class _Failures:
    count: int
    blocked_until: float


class SignInThrottle:
    """Per-account delays after failed sign-ins, kept by e-mail address whether or not an account has it.

    After ``free_failures`` failures in a row an account's next attempt must wait
    ``first_delay`` seconds, doubling with each further failure up to ``longest_delay``
    (OWASP's exponential delay instead of a lock). The caller decides whom the delay
    binds: identity exempts addresses that signed in to the account recently, so an
    outsider hammering an address cannot keep its owner out. Nothing here looks at the
    database, so an unknown address runs exactly the same machine as a real account.
    A success forgets the failures; so do ``forget_after`` seconds without one. Kept in
    memory, per process, bounded (least recently used forgotten).
    """

    def __init__(
        self,
        *,
        free_failures: int = 4,
        first_delay: float = 1.0,
        longest_delay: float = 900.0,
        forget_after: float = 24 * 3600.0,
        max_keys: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if free_failures < 0 or first_delay <= 0 or longest_delay < first_delay:
            raise ValueError("free_failures must not be negative and 0 < first_delay <= longest_delay")
        self.free_failures = free_failures
        self.first_delay = first_delay
        self.longest_delay = longest_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self.clock = clock
        self._entries: collections.OrderedDict[str, _Failures] = collections.OrderedDict()

    def delay_after(self, failures: int) -> float:
        """The delay that ``failures`` failures in a row impose: 0, then 1 s, 2 s, 4 s … at most ``longest_delay``."""
        excess = failures - self.free_failures
        if excess <= 0:
            return 0.0
        if excess > 40:  # 2⁴⁰ seconds is past any cap already
            return self.longest_delay
        return min(self.first_delay * (1 << (excess - 1)), self.longest_delay)

    def _entry(self, key: str, now: float) -> _Failures | None:
        entry = self._entries.get(key)
        if entry is not None and now >= entry.blocked_until + self.forget_after:
            del self._entries[key]
            return None
        return entry

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` may be tried again by someone the delay binds (0 when it may now)."""
        now = self.clock()
        entry = self._entry(key, now)
        return 0.0 if entry is None else max(0.0, entry.blocked_until - now)

    def failures(self, key: str) -> int:
        """Failures in a row counted for ``key``."""
        entry = self._entry(key, self.clock())
        return 0 if entry is None else entry.count

    def failure(self, key: str) -> float:
        """Count a failure; returns the delay it imposes from now (0 while failures are free)."""
        now = self.clock()
        entry = self._entry(key, now) or _Failures(0, now)
        entry.count += 1
        delay = self.delay_after(entry.count)
        entry.blocked_until = now + delay
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        return delay

    def success(self, key: str) -> None:
        """A successful sign-in: the failures are forgotten."""
        self._entries.pop(key, None)

    def clear(self, key: str) -> bool:
        """Forget ``key``'s failures (an administrator's unlock); whether a delay was in force."""
        now = self.clock()
        entry = self._entry(key, now)
        self._entries.pop(key, None)
        return entry is not None and entry.blocked_until > now

    def __len__(self) -> int:
        return len(self._entries)
