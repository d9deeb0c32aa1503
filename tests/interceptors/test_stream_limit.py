"""Concurrent STREAM calls per principal: the next one is refused, a closed one frees its slot."""

from __future__ import annotations

import grpc
import pytest

from interceptors.stream_limit import STREAM, stream_limited
from mesh.limits.streams import StreamSlots
from tests.support.probe_contract import probe_registry
from tests.support.protection import PRINCIPAL_KEY, details, protected_probe
from vocelio.api.v1 import policy_pb2

PACKAGE = "streamprobe.v1"
SERVICE = f"/{PACKAGE}.ProbeService/"
METHODS = {
    "HoldWatch": (policy_pb2.MethodPolicy(permission="probe.watch", rate_limit_class=STREAM), True),
    "Read": (policy_pb2.MethodPolicy(permission="probe.get", rate_limit_class=policy_pb2.RATE_LIMIT_CLASS_READ), False),
}


@pytest.fixture
async def probe():
    registry = probe_registry(PACKAGE, METHODS)
    slots = StreamSlots(2)
    async with protected_probe(registry, "streamprobe", [], [stream_limited(registry, slots, "streamprobe")]) as (
        channel,
        holds,
    ):
        yield channel, holds, slots


async def open_stream(channel, principal: str = "users/a@org1"):
    call = channel.unary_stream(SERVICE + "HoldWatch")(b"", timeout=30, metadata=((PRINCIPAL_KEY, principal),))
    await call.read()  # the first message: the stream is open and holds its slot
    return call


async def test_a_principal_past_its_stream_limit_is_refused_and_a_closed_stream_frees_a_slot(probe):
    channel, holds, slots = probe
    first = await open_stream(channel)
    await open_stream(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await open_stream(channel)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    [violation] = details(caught.value)["QuotaFailure"].violations
    assert violation.subject == "users/a"
    assert "at most 2" in violation.description
    # Others are not affected, nor are unary calls of the same principal.
    await open_stream(channel, "users/b@org1")
    await channel.unary_unary(SERVICE + "Read")(b"", timeout=5, metadata=((PRINCIPAL_KEY, "users/a@org1"),))
    first.cancel()
    await holds.wait_until(lambda: slots.open_count(("org1", "users/a")) == 1)
    await open_stream(channel)


async def test_service_principals_hold_any_number_of_streams(probe):
    channel, holds, _ = probe
    for _ in range(4):
        await open_stream(channel, "services/agents")
    assert holds.waiting == 4
