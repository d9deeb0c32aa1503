"""ChainedServer: behaviours composed once per method, in order, for generic and registered handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from interceptors.chain import Behaviour, ChainedServer, Guard, Wrapper, chained_server, compose
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


def _guard(name: str, calls: list[str], *, skip: str = "", refuse: str = "", wait: bool = False) -> Guard:
    """A guard that records its checks; it skips ``skip``, refuses ``refuse``, and may return an awaitable."""

    def check_for(path: str, behaviour: Behaviour) -> Any:
        if path == skip:
            return None

        async def waited() -> None:
            calls.append(f"{name} waited")

        def check(request: Any, context: Any) -> Any:
            calls.append(name)
            if path == refuse:
                raise PermissionError(f"{name} refuses")
            return waited() if wait else None

        return check

    return Guard(check_for)


def _layers(behaviour: Behaviour) -> int:
    """How many coroutine layers sit above the handler (each wrapper here closes over ``behaviour``)."""
    count = 0
    while behaviour is not _echo:
        count += 1
        (behaviour,) = (cell.cell_contents for cell in behaviour.__closure__ or () if callable(cell.cell_contents))
    return count


async def test_adjacent_guards_run_in_order_in_one_layer():
    calls: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    guards = [_guard("a", calls), _guard("b", calls, wait=True), _guard("c", calls)]
    composed = compose("/test.G/Echo", handler, guards).unary_unary
    assert await composed(b"x", None) == b"x"
    assert calls == ["a", "b", "b waited", "c"]
    assert _layers(composed) == 1


async def test_a_wrapper_that_applies_separates_guards_and_one_that_does_not_leaves_them_together():
    calls: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    outer = Recorder("outer", calls, skip="/test.G/Plain")
    wrappers: list[Wrapper] = [_guard("a", calls), outer, _guard("b", calls)]
    applied = compose("/test.G/Echo", handler, wrappers).unary_unary
    assert await applied(b"x", None) == b"outer(x)"
    assert calls == ["a", "outer", "b"]
    left_alone = compose("/test.G/Plain", handler, wrappers).unary_unary
    assert _layers(left_alone) == 1
    # the wrapper was composed once per method, as without guards
    assert outer.composed == ["/test.G/Echo", "/test.G/Plain"]


async def test_a_refusing_check_stops_the_call_before_later_checks_and_the_behaviour():
    calls: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(_recording_echo(calls))
    guards = [_guard("a", calls, refuse="/test.G/Echo"), _guard("b", calls)]
    with pytest.raises(PermissionError):
        await compose("/test.G/Echo", handler, guards).unary_unary(b"x", None)
    assert calls == ["a"]


async def test_a_guard_that_does_not_apply_adds_no_layer_and_a_lone_guard_is_a_wrapper():
    calls: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    skipping = _guard("a", calls, skip="/test.G/Echo")
    assert compose("/test.G/Echo", handler, [skipping]).unary_unary is _echo
    assert skipping("/test.G/Echo", _echo) is _echo
    assert await skipping("/test.G/Other", _echo)(b"x", None) == b"x"
    assert calls == ["a"]


async def test_guards_check_streams_before_the_first_message():
    calls: list[str] = []
    handler = grpc.unary_stream_rpc_method_handler(_twice)
    composed = compose("/test.G/Twice", handler, [_guard("a", calls), _guard("b", calls)]).unary_stream
    assert [reply async for reply in composed(b"s", None)] == [b"s", b"s"]
    assert calls == ["a", "b"]


def _recording_echo(calls: list[str]) -> Behaviour:
    async def echo(request: bytes, context: Any) -> bytes:
        calls.append("behaviour")
        return request

    return echo
