"""The bulkhead: calls over the per-upstream limit fail at once, and slots come back."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from interceptors.client_bulkhead import Bulkhead, client_bulkhead_interceptors
from tests.support.resilience import channel_to, echo_server, method


async def test_calls_over_the_limit_fail_fast_with_resource_exhausted() -> None:
    release = asyncio.Event()
    both_arrived = asyncio.Event()
    arrived = 0

    async def slow(request: bytes, context: Any) -> bytes:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_arrived.set()
        await release.wait()
        return request

    bulkhead = Bulkhead("tests", "slow_upstream", limit=2)
    async with echo_server({"Call": slow}) as port, channel_to(port, client_bulkhead_interceptors(bulkhead)) as channel:
        call = method(channel, "Call")
        running = [asyncio.ensure_future(call(b"a")), asyncio.ensure_future(call(b"b"))]
        await both_arrived.wait()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"c")
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "slow_upstream" in (refused.value.details() or "")
        assert arrived == 2
        release.set()
        assert await asyncio.gather(*running) == [b"a", b"b"]
        assert bulkhead.active == 0
        assert await call(b"d") == b"d"


async def test_failed_calls_give_their_slot_back() -> None:
    async def failing(request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        return b""

    bulkhead = Bulkhead("tests", "failing_upstream", limit=1)
    async with (
        echo_server({"Call": failing}) as port,
        channel_to(port, client_bulkhead_interceptors(bulkhead)) as channel,
    ):
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await method(channel, "Call")(b"x")
            assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert bulkhead.active == 0
