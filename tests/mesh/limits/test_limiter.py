"""The limiter over any store behind the port: keys, services unlimited, the refusal's details."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from mesh.errors import ResourceExhausted
from mesh.limits.buckets import LocalBuckets
from mesh.limits.limiter import RateLimiter, class_name
from mesh.limits.rates import Rate
from mesh.principal import Principal, PrincipalKind
from vocelio.api.v1 import policy_pb2

WRITE = policy_pb2.RATE_LIMIT_CLASS_WRITE
ALICE = Principal("users/alice", PrincipalKind.USER, "org_a", "ADMIN", frozenset())
SERVICE = Principal("services/agents", PrincipalKind.SERVICE, "", "SERVICE", frozenset({"*"}))


class RemoteStore:
    """A store that is not in-process (as Redis would be): the limiter must await it."""

    def __init__(self) -> None:
        self.inner = LocalBuckets(clock=lambda: 0.0)
        self.keys: list[Hashable] = []

    async def take(self, key: Hashable, rate: Rate) -> float:
        self.keys.append(key)
        return await self.inner.take(key, rate)


async def test_a_remote_store_is_awaited_with_the_same_keys_and_refusals():
    store = RemoteStore()
    limiter = RateLimiter("agents", {WRITE: Rate(1, 1)}, store)
    assert not limiter.local
    await limiter.admit(WRITE, Rate(1, 1), ALICE)
    with pytest.raises(ResourceExhausted) as caught:
        await limiter.admit(WRITE, Rate(1, 1), ALICE)
    assert caught.value.retry_delay == pytest.approx(1.0)
    assert caught.value.quota_failure is not None
    assert caught.value.quota_failure.violations[0].subject == "users/alice"
    await limiter.admit(WRITE, Rate(1, 1), SERVICE)
    assert store.keys == [("agents", "org_a", "users/alice", WRITE)] * 2
    with pytest.raises(RuntimeError):
        limiter.admit_now(WRITE, Rate(1, 1), ALICE)


async def test_the_default_store_is_local_and_services_are_never_counted():
    limiter = RateLimiter("agents", {WRITE: Rate(1, 1)})
    assert limiter.local
    assert limiter.rate_for(WRITE) == Rate(1, 1)
    assert limiter.rate_for(policy_pb2.RATE_LIMIT_CLASS_READ) is None
    for _ in range(3):
        limiter.admit_now(WRITE, Rate(1, 1), SERVICE)
    assert class_name(WRITE) == "WRITE"
