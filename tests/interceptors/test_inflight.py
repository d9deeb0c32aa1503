"""InFlightCalls: shutdown waits for running handlers, also after their client has gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from interceptors.chain import chained_server
from interceptors.errors import ErrorsInterceptor, with_errors
from interceptors.inflight import InFlightCalls
from tests.support.grpc_helpers import serving

METHOD = "/test.Slow/Call"


class SlowService:
    """A handler that waits for a signal and, when cancelled, needs time to clean up (like a rollback)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cleaned_up = False
        self.cleanup_seconds = 0.3

    async def call(self, request: bytes, context: Any) -> bytes:
        self.entered.set()
        try:
            await self.release.wait()
            return request
        except asyncio.CancelledError:
            await asyncio.shield(self._cleanup())
            raise

    async def _cleanup(self) -> None:
        await asyncio.sleep(self.cleanup_seconds)
        self.cleaned_up = True


@pytest.fixture(params=["chained", "interceptors"])
async def served(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[SlowService, InFlightCalls, grpc.aio.Channel, grpc.aio.Server]]:
    service, inflight = SlowService(), InFlightCalls()
    server: grpc.aio.Server
    if request.param == "chained":  # as ServiceHost composes it
        server = chained_server([with_errors, inflight.tracked])
    else:
        server = grpc.aio.server(interceptors=[ErrorsInterceptor(), inflight])
    handlers = {"Call": grpc.unary_unary_rpc_method_handler(service.call)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Slow", handlers),))
    async with serving(server) as channel:
        yield service, inflight, channel, server


def call(channel: grpc.aio.Channel, payload: bytes = b"x") -> Any:
    return channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)(payload, timeout=10)


async def test_a_handler_whose_client_went_away_is_awaited_until_its_cleanup_ends(served):
    service, inflight, channel, _server = served
    pending = call(channel)
    await service.entered.wait()
    pending.cancel()  # the client goes away while the handler is inside its work
    await asyncio.sleep(0.05)
    stuck = await inflight.drain(grace=5.0)
    assert stuck == set()
    assert service.cleaned_up
    assert inflight.count == 0


async def test_a_finished_call_is_forgotten(served):
    service, inflight, channel, _server = served
    service.release.set()
    assert await call(channel, b"hello") == b"hello"
    await asyncio.sleep(0.01)
    assert inflight.count == 0


async def test_draining_refuses_new_calls_with_unavailable(served):
    service, inflight, channel, _server = served
    assert await inflight.drain(grace=0.1) == set()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (refused.value.details() or "")
    assert not service.entered.is_set()


async def test_a_handler_that_outlives_the_grace_is_cancelled_and_drain_still_returns(served):
    service, inflight, channel, server = served
    service.cleanup_seconds = 0.0
    pending = call(channel)
    await service.entered.wait()
    stuck = await inflight.drain(grace=0.2)
    assert stuck == set()
    assert service.cleaned_up
    # As ServiceHost.shutdown does next: the transport stops and ends the call for its client.
    await server.stop(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await pending
    assert ended.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


async def test_a_running_call_finishes_normally_within_the_grace(served):
    service, inflight, channel, _server = served
    pending = asyncio.ensure_future(call(channel, b"in flight"))
    await service.entered.wait()
    drained = asyncio.create_task(inflight.drain(grace=5.0))
    await asyncio.sleep(0.05)
    service.release.set()
    assert await pending == b"in flight"
    assert await drained == set()
