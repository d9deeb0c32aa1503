"""Token buckets behind a port: :class:`BucketStore`, with :class:`LocalBuckets` in the process.

A bucket holds at most ``burst`` tokens and gains ``per_second`` of them every second; a
call takes one. An empty bucket answers how long until the next token, which the caller
sends as ``google.rpc.RetryInfo``. Keys are opaque tuples the limiter builds (service,
organisation, principal or address, method class).

:class:`LocalBuckets` keeps each bucket as ``[tokens, last update]`` in a dict: one look-up
and a little arithmetic per call, no lock (the event loop runs one call at a time) and no
await that suspends. A store shared by several replicas (Redis, issue "scale-out") is the
same port with the same answer; the in-process one limits each replica on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Protocol

from mesh.limits.rates import Rate

# Buckets kept before the full (idle) ones are forgotten.
DEFAULT_MAX_KEYS = 100_000


class BucketStore(Protocol):
    """Where buckets live (the port)."""

    async def take(self, key: Hashable, rate: Rate) -> float:
        """Take one token from ``key``'s bucket.

        Returns:
            ``0.0`` when a token was taken, else the seconds until one will be there
            (nothing is taken then).

        """


class LocalBuckets:
    """Buckets in this process's memory (the default store)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        """Empty buckets.

        Args:
            clock: monotonic seconds (tests inject their own).
            max_keys: above this many buckets, the ones that have refilled are dropped
                (a full bucket and a missing one behave the same).

        """
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: Hashable, rate: Rate) -> float:
        """Take one token from ``key``'s bucket; ``0.0``, or the seconds until the next token."""
        return self.take_now(key, rate)

    def take_now(self, key: Hashable, rate: Rate) -> float:
        """:meth:`take` without the coroutine (the same rule, for synchronous callers)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now)
            self._buckets[key] = [rate.burst - 1.0, now, rate.per_second, float(rate.burst)]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * rate.per_second
        if tokens > rate.burst:
            tokens = rate.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate.per_second

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled since its last use is the same as no bucket.
        full = [
            key
            for key, (tokens, stamp, per_second, burst) in self._buckets.items()
            if tokens + (now - stamp) * per_second >= burst
        ]
        for key in full:
            del self._buckets[key]
