"""The request id passed on: a front server calls a back server on behalf of its caller, both on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from interceptors.chain import chained_server
from interceptors.client_request_id import client_request_id_interceptors
from interceptors.request_id import with_request_id
from mesh import request_id
from tests.support.grpc_helpers import serving


async def _echo_request_id(request: bytes, context: Any) -> bytes:
    sent = [value for key, value in context.invocation_metadata() if key == "x-request-id"]
    return ",".join(sent).encode()


async def _echo_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield await _echo_request_id(request, context)


@pytest.fixture
async def back() -> AsyncIterator[grpc.aio.Channel]:
    """The back server's channel, as a mesh client builds it (with the request-id interceptors)."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.Back",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(_echo_request_id),
                    "EchoStream": grpc.unary_stream_rpc_method_handler(_echo_stream),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_request_id_interceptors())
    try:
        yield channel
    finally:
        await channel.close(None)
        await server.stop(None)


@pytest.fixture
async def front(back) -> AsyncIterator[grpc.aio.Channel]:
    async def forward(request: bytes, context: Any) -> Any:
        unary = await back.unary_unary("/t.Back/Echo")(b"", timeout=5)
        streamed = [reply async for reply in back.unary_stream("/t.Back/EchoStream")(b"", timeout=5)]
        return unary + b"|" + b"".join(streamed)

    async def forward_own(request: bytes, context: Any) -> Any:
        return await back.unary_unary("/t.Back/Echo")(b"", metadata=(("x-request-id", "own"),), timeout=5)

    server = chained_server([with_request_id])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.Front",
                {
                    "Forward": grpc.unary_unary_rpc_method_handler(forward),
                    "ForwardOwn": grpc.unary_unary_rpc_method_handler(forward_own),
                },
            ),
        )
    )
    async with serving(server) as channel:
        yield channel


async def test_the_callers_request_id_reaches_the_next_hop(front) -> None:
    reply = await front.unary_unary("/t.Front/Forward")(b"", metadata=(("x-request-id", "req-9"),), timeout=5)
    assert reply == b"req-9|req-9"  # unary and server-streaming, exactly once each


async def test_without_a_request_id_nothing_is_added(front) -> None:
    assert await front.unary_unary("/t.Front/Forward")(b"", timeout=5) == b"|"


async def test_a_call_that_sets_its_own_keeps_it(front) -> None:
    reply = await front.unary_unary("/t.Front/ForwardOwn")(b"", metadata=(("x-request-id", "req-9"),), timeout=5)
    assert reply == b"own"


async def test_outside_a_call_the_bound_id_is_used(back) -> None:
    with request_id.bound("job-1"):
        assert await back.unary_unary("/t.Back/Echo")(b"", timeout=5) == b"job-1"
    assert await back.unary_unary("/t.Back/Echo")(b"", timeout=5) == b""
