"""The request-id wrapper on a real server on port 0: the call's sane x-request-id is bound, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from interceptors.chain import chained_server
from interceptors.request_id import RequestIdInterceptor, with_request_id
from mesh import request_id
from tests.support.grpc_helpers import serving


async def _seen(request: bytes, context: Any) -> bytes:
    return request_id.current().encode()


async def _seen_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield request_id.current().encode()


HANDLERS = {
    "Seen": grpc.unary_unary_rpc_method_handler(_seen),
    "SeenStream": grpc.unary_stream_rpc_method_handler(_seen_stream),
}


@pytest.fixture(params=["chained", "interceptor"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    server = (
        chained_server([with_request_id])
        if request.param == "chained"
        else grpc.aio.server(interceptors=[RequestIdInterceptor()])
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Ids", HANDLERS),))
    async with serving(server) as channel:
        yield channel


async def test_the_incoming_request_id_is_the_calls(channel) -> None:
    metadata = (("x-request-id", "req-42"),)
    assert await channel.unary_unary("/t.Ids/Seen")(b"", metadata=metadata, timeout=5) == b"req-42"
    replies = [reply async for reply in channel.unary_stream("/t.Ids/SeenStream")(b"", metadata=metadata, timeout=5)]
    assert replies == [b"req-42"]


@pytest.mark.parametrize("value", ["x" * 129, "has space", "semi;colon"])
async def test_an_unfit_request_id_counts_as_none(channel, value: str) -> None:
    assert await channel.unary_unary("/t.Ids/Seen")(b"", metadata=(("x-request-id", value),), timeout=5) == b""


async def test_a_call_without_one_has_none(channel) -> None:
    assert await channel.unary_unary("/t.Ids/Seen")(b"", timeout=5) == b""
