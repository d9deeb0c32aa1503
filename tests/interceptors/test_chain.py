"""ChainedServer: behaviours composed once per method, in order, for generic and registered handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from interceptors.chain import Behaviour, ChainedServer, chained_server
from tests.support.grpc_helpers import serving


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _twice(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield request
    yield request


class Recorder:
    """A wrapper that counts its compositions and tags every response with its name."""

    def __init__(self, name: str, calls: list[str], skip: str = "") -> None:
        self.name = name
        self.calls = calls
        self.skip = skip
        self.composed: list[str] = []

    def __call__(self, path: str, behaviour: Behaviour) -> Behaviour:
        self.composed.append(path)
        if path == self.skip or not path.startswith("/test."):
            return behaviour
        name, calls = self.name, self.calls

        async def call(request: bytes, context: Any) -> bytes:
            calls.append(name)
            inner: bytes = await behaviour(request, context)
            return name.encode() + b"(" + inner + b")"

        async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
            calls.append(name)
            async for item in behaviour(request, context):
                yield name.encode() + b"(" + item + b")"

        return stream if path.endswith("Twice") else call


@pytest.fixture
async def served():
    calls: list[str] = []
    outer, inner = Recorder("outer", calls), Recorder("inner", calls, skip="/test.Registered/Plain")
    server = chained_server([outer, inner])
    generic = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Twice": grpc.unary_stream_rpc_method_handler(_twice),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Generic", generic),))
    registered = {name: grpc.unary_unary_rpc_method_handler(_echo) for name in ("Echo", "Plain")}
    server.add_registered_method_handlers("test.Registered", registered)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    async with serving(server) as channel:
        yield channel, outer, inner, calls


async def test_the_first_wrapper_is_the_outermost(served):
    channel, _outer, _inner, calls = served
    assert await channel.unary_unary("/test.Registered/Echo")(b"x", timeout=5) == b"outer(inner(x))"
    assert calls == ["outer", "inner"]


async def test_registered_methods_are_composed_once_at_registration(served):
    channel, outer, inner, _calls = served
    before = list(outer.composed)
    for _ in range(3):
        await channel.unary_unary("/test.Registered/Echo")(b"x", timeout=5)
    assert "/test.Registered/Echo" in before
    assert outer.composed == before
    assert inner.composed.count("/test.Registered/Echo") == 1


async def test_generic_methods_are_composed_once_on_first_use(served):
    channel, outer, _inner, _calls = served
    for _ in range(3):
        assert await channel.unary_unary("/test.Generic/Echo")(b"y", timeout=5) == b"outer(inner(y))"
    assert outer.composed.count("/test.Generic/Echo") == 1


async def test_streams_are_wrapped_too(served):
    channel, _outer, _inner, _calls = served
    replies = [reply async for reply in channel.unary_stream("/test.Generic/Twice")(b"z", timeout=5)]
    assert replies == [b"outer(inner(z))", b"outer(inner(z))"]


async def test_a_wrapper_may_leave_a_method_alone(served):
    channel, _outer, _inner, calls = served
    assert await channel.unary_unary("/test.Registered/Plain")(b"p", timeout=5) == b"outer(p)"
    assert calls == ["outer"]


async def test_an_unknown_method_is_unimplemented(served):
    channel, _outer, _inner, _calls = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Generic/Missing")(b"x", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_registers_on_the_chained_server(served):
    channel, _outer, _inner, _calls = served
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_chained_server_is_a_grpc_aio_server():
    server = chained_server([])
    # grpc_reflection picks its asyncio servicer only for instances of grpc.aio.Server.
    assert isinstance(server, grpc.aio.Server)
    assert isinstance(server, ChainedServer)
