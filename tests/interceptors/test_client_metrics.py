"""Client RED metrics: every call through an intercepted channel is started, handled by code and timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from interceptors.client_metrics import ClientMetrics, StreamMetricsInterceptor, UnaryMetricsInterceptor

SERVICE = "test.Called"


async def _ok(request: bytes, context: Any) -> bytes:
    return request


async def _missing(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    return b""


async def _two(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield request
    yield request


async def _broken_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield request
    await context.abort(grpc.StatusCode.UNAVAILABLE, "gone")


@pytest.fixture
async def counted():
    server = grpc.aio.server()
    handlers = {
        "Ok": grpc.unary_unary_rpc_method_handler(_ok),
        "Missing": grpc.unary_unary_rpc_method_handler(_missing),
        "Two": grpc.unary_stream_rpc_method_handler(_two),
        "Broken": grpc.unary_stream_rpc_method_handler(_broken_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    interceptors: list[Any] = [UnaryMetricsInterceptor(metrics), StreamMetricsInterceptor(metrics)]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors)
    try:
        yield channel, registry
    finally:
        await channel.close(None)
        await server.stop(None)


def _value(registry: CollectorRegistry, name: str, method: str, **labels: str) -> float:
    found = registry.get_sample_value(name, {"grpc_service": SERVICE, "grpc_method": method, **labels})
    return 0.0 if found is None else found


async def _eventually(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


async def test_unary_calls_are_counted_by_code(counted):
    channel, registry = counted
    assert await channel.unary_unary(f"/{SERVICE}/Ok")(b"x", timeout=5) == b"x"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/Missing")(b"x", timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # the caller sees the error as before
    unary = {"grpc_type": "unary"}
    assert _value(registry, "grpc_client_started_total", "Ok", **unary) == 1
    assert _value(registry, "grpc_client_handled_total", "Ok", grpc_code="OK", **unary) == 1
    assert _value(registry, "grpc_client_handled_total", "Missing", grpc_code="NOT_FOUND", **unary) == 1
    assert _value(registry, "grpc_client_handling_seconds_count", "Missing", **unary) == 1


async def test_a_call_to_a_server_that_is_not_there_is_unavailable():
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    interceptors: list[Any] = [UnaryMetricsInterceptor(metrics)]
    async with grpc.aio.insecure_channel("127.0.0.1:1", interceptors=interceptors) as channel:
        call: Any = channel.unary_unary(f"/{SERVICE}/Ok")  # type: ignore[call-arg]
        with pytest.raises(grpc.aio.AioRpcError):
            await call(b"x", timeout=5)
    assert _value(registry, "grpc_client_handled_total", "Ok", grpc_type="unary", grpc_code="UNAVAILABLE") == 1


async def test_streams_are_counted_when_they_end(counted):
    channel, registry = counted
    assert [r async for r in channel.unary_stream(f"/{SERVICE}/Two")(b"x", timeout=5)] == [b"x", b"x"]
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in channel.unary_stream(f"/{SERVICE}/Broken")(b"x", timeout=5):
            pass
    stream = {"grpc_type": "server_stream"}
    await _eventually(lambda: _value(registry, "grpc_client_handled_total", "Two", grpc_code="OK", **stream) == 1)
    await _eventually(
        lambda: _value(registry, "grpc_client_handled_total", "Broken", grpc_code="UNAVAILABLE", **stream) == 1
    )
    assert _value(registry, "grpc_client_started_total", "Two", **stream) == 1
