"""Token buckets: burst, refill, the wait an empty bucket answers, separate keys, forgetting full ones."""

from __future__ import annotations

import pytest

from mesh.limits.buckets import LocalBuckets
from mesh.limits.rates import Rate


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_passes_then_the_bucket_answers_the_wait_for_the_next_token():
    clock = Ticks()
    buckets = LocalBuckets(clock=clock)
    rate = Rate(2, 3)
    assert [await buckets.take("k", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await buckets.take("k", rate) == pytest.approx(0.5)
    clock.now += 0.25
    assert await buckets.take("k", rate) == pytest.approx(0.25)  # a refused call takes nothing
    clock.now += 0.25
    assert await buckets.take("k", rate) == 0.0
    assert await buckets.take("k", rate) == pytest.approx(0.5)


async def test_refill_stops_at_the_burst():
    clock = Ticks()
    buckets = LocalBuckets(clock=clock)
    rate = Rate(10, 2)
    await buckets.take("k", rate)
    clock.now += 3600
    assert [await buckets.take("k", rate) for _ in range(3)][-1] > 0


async def test_keys_have_their_own_buckets():
    buckets = LocalBuckets(clock=Ticks())
    rate = Rate(1, 1)
    assert await buckets.take(("org", "users/a"), rate) == 0.0
    assert await buckets.take(("org", "users/a"), rate) > 0
    assert await buckets.take(("org", "users/b"), rate) == 0.0


async def test_full_buckets_are_forgotten_past_the_key_limit_and_in_use_ones_kept():
    clock = Ticks()
    buckets = LocalBuckets(clock=clock, max_keys=3)
    rate = Rate(1, 5)
    for key in ("a", "b", "c"):
        await buckets.take(key, rate)
    clock.now += 0.5  # not yet refilled
    await buckets.take("c", rate)
    clock.now += 0.6  # a and b are full again (5 tokens), c is not
    await buckets.take("d", rate)
    assert len(buckets) == 2  # c and d
    assert await buckets.take("a", rate) == 0.0
