"""Load shedding: at the in-flight limit a new call is refused at once; health still answers."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from interceptors.inflight import InFlightCalls
from interceptors.load_shedding import shedding
from tests.support.probe_contract import probe_registry
from tests.support.protection import PRINCIPAL_KEY, details, protected_probe
from vocelio.api.v1 import policy_pb2

PACKAGE = "shedprobe.v1"
SERVICE = f"/{PACKAGE}.ProbeService/"
METHODS = {
    "Hold": (policy_pb2.MethodPolicy(permission="probe.get", rate_limit_class=policy_pb2.RATE_LIMIT_CLASS_READ), False),
    "Read": (policy_pb2.MethodPolicy(permission="probe.get", rate_limit_class=policy_pb2.RATE_LIMIT_CLASS_READ), False),
    "PublicRead": (policy_pb2.MethodPolicy(public=True, rate_limit_class=policy_pb2.RATE_LIMIT_CLASS_READ), False),
}
AS_USER = ((PRINCIPAL_KEY, "users/a@org1"),)


@pytest.fixture
async def probe():
    registry = probe_registry(PACKAGE, METHODS)
    inflight = InFlightCalls()
    wrappers = [shedding(lambda: inflight.count, 2), inflight.tracked]
    async with protected_probe(registry, "shedprobe", wrappers, []) as (channel, holds):
        yield channel, holds, inflight


async def test_at_the_limit_new_calls_are_unavailable_at_once_and_health_still_answers(probe):
    channel, holds, inflight = probe
    held = [channel.unary_unary(SERVICE + "Hold")(b"", timeout=30, metadata=AS_USER) for _ in range(2)]
    await holds.wait_until_waiting(2)
    for method, metadata in (("Read", AS_USER), ("PublicRead", ())):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(SERVICE + method)(b"", timeout=5, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "overloaded" in (caught.value.details() or "")
        found = details(caught.value)
        assert found["RetryInfo"].retry_delay.seconds == 1
        assert found["pushback"] == "1000"
    assert inflight.count == 2  # the refused calls never counted as running
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    holds.release.set()
    for call in held:
        await call
    await channel.unary_unary(SERVICE + "Read")(b"", timeout=5, metadata=AS_USER)


async def test_a_limit_of_zero_sheds_nothing():
    registry = probe_registry(PACKAGE, METHODS)
    inflight = InFlightCalls()
    async with protected_probe(registry, "shedprobe", [shedding(lambda: 10**9, 0), inflight.tracked], []) as (
        channel,
        _,
    ):
        await channel.unary_unary(SERVICE + "Read")(b"", timeout=5, metadata=AS_USER)
