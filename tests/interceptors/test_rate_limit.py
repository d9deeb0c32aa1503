"""Rate limits per principal and method class, over a real server with an injected clock.

RESOURCE_EXHAUSTED carries RetryInfo (the wait), QuotaFailure (whose budget) and the
gRFC A6 pushback trailer; organisations, principals and classes have separate buckets;
public methods count per client address; service principals are not limited.
"""

from __future__ import annotations

import grpc
import pytest

from interceptors.rate_limit import EXPENSIVE, READ, WRITE, rate_limited
from mesh.limits.buckets import LocalBuckets
from mesh.limits.limiter import RateLimiter
from mesh.limits.rates import Rate
from tests.support.probe_contract import probe_registry
from tests.support.protection import PRINCIPAL_KEY, details, protected_probe
from vocelio.api.v1 import policy_pb2

PACKAGE = "rateprobe.v1"
SERVICE = f"/{PACKAGE}.ProbeService/"
METHODS = {
    "Read": (policy_pb2.MethodPolicy(permission="probe.get", rate_limit_class=READ), False),
    "Write": (policy_pb2.MethodPolicy(permission="probe.create", rate_limit_class=WRITE), False),
    "PublicRead": (policy_pb2.MethodPolicy(public=True, rate_limit_class=READ), False),
    "Expensive": (policy_pb2.MethodPolicy(permission="probe.dial", rate_limit_class=EXPENSIVE), False),
}


class Ticks:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def probe():
    clock = Ticks()
    registry = probe_registry(PACKAGE, METHODS)
    # EXPENSIVE has no rate here: an unlimited class is not wrapped at all.
    limiter = RateLimiter("rateprobe", {READ: Rate(1, 2), WRITE: Rate(1, 1)}, LocalBuckets(clock=clock))
    async with protected_probe(registry, "rateprobe", [], [rate_limited(registry, limiter)]) as (channel, _):
        yield channel, clock


async def call(channel, method: str, principal: str | None = "users/a@org1") -> None:
    metadata = ((PRINCIPAL_KEY, principal),) if principal else ()
    await channel.unary_unary(SERVICE + method)(b"", timeout=5, metadata=metadata)


async def refused(channel, method: str, principal: str | None = "users/a@org1") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, method, principal)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return caught.value


async def test_past_the_burst_a_call_is_resource_exhausted_with_retry_info_and_quota_failure(probe):
    channel, clock = probe
    await call(channel, "Read")
    await call(channel, "Read")
    error = await refused(channel, "Read")
    found = details(error)
    retry = found["RetryInfo"].retry_delay
    assert (retry.seconds, retry.nanos) == (1, 0)
    [violation] = found["QuotaFailure"].violations
    assert violation.subject == "users/a"
    assert violation.description == "READ calls to rateprobe: 1 per second, bursts of 2, per principal"
    assert found["pushback"] == "1000"
    assert "retry in" in (error.details() or "")
    clock.now += 1.0
    await call(channel, "Read")


async def test_principals_organisations_and_classes_have_their_own_buckets(probe):
    channel, _ = probe
    await call(channel, "Write")
    await refused(channel, "Write")
    await call(channel, "Read")  # another class
    await call(channel, "Write", "users/b@org1")  # another principal
    await call(channel, "Write", "users/a@org2")  # the same subject in another organisation


async def test_public_methods_count_per_client_address(probe):
    channel, _ = probe
    await call(channel, "PublicRead", None)
    await call(channel, "PublicRead", None)
    error = await refused(channel, "PublicRead", None)
    [violation] = details(error)["QuotaFailure"].violations
    assert violation.subject == "client:127.0.0.1"
    assert violation.description.endswith("per client address")


async def test_service_principals_and_unlimited_classes_are_never_limited(probe):
    channel, _ = probe
    for _ in range(5):
        await call(channel, "Write", "services/agents")
        await call(channel, "Expensive")
