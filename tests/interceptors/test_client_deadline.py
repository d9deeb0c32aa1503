"""Deadline propagation: a handler's outgoing calls get what is left of its caller's deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from interceptors.client_deadline import DeadlineBudget, client_deadline_interceptors
from interceptors.deadline import with_deadline
from interceptors.errors import with_errors
from mesh.kit.client_errors import translated
from tests.support.resilience import SERVICE, channel_to, echo_server, method

DOWNSTREAM_CALL = f"/{SERVICE}/Downstream"


async def _front_and_back(
    margin: float, defaults: dict[str, float], caller_timeout: float | None
) -> tuple[list[float | None], grpc.StatusCode]:
    """Front (with the server wrapper) calls back (through the client interceptor); back's remaining times."""
    remaining: list[float | None] = []

    async def downstream(request: bytes, context: Any) -> bytes:
        remaining.append(context.time_remaining())
        return request

    async with (
        echo_server({"Downstream": downstream}) as back_port,
        channel_to(
            back_port, client_deadline_interceptors(DeadlineBudget("front", "back", defaults, margin=margin))
        ) as back,
    ):

        async def front_handler(request: bytes, context: Any) -> bytes:
            with translated("back", "call downstream"):
                return await method(back, "Downstream")(request)  # type: ignore[no-any-return]

        async with (
            echo_server({"Front": front_handler}, [with_errors, with_deadline]) as front_port,
            channel_to(front_port) as front,
        ):
            try:
                await method(front, "Front")(b"x", timeout=caller_timeout)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                code = error.code()
    return remaining, code


async def test_the_outgoing_call_gets_the_callers_remaining_time_less_the_margin() -> None:
    remaining, code = await _front_and_back(margin=1.0, defaults={DOWNSTREAM_CALL: 60.0}, caller_timeout=20)
    assert code is grpc.StatusCode.OK
    (left,) = remaining
    assert left is not None and 0 < left < 19.5  # 20 s less the 1 s margin (gRPC rounds deadlines)


async def test_without_a_caller_deadline_the_method_default_applies() -> None:
    remaining, code = await _front_and_back(margin=0.05, defaults={DOWNSTREAM_CALL: 7.0}, caller_timeout=None)
    assert code is grpc.StatusCode.OK
    (left,) = remaining
    assert left is not None and 0 < left < 7.5  # gRPC rounds deadlines; far below 60


async def test_too_little_time_left_fails_at_once_with_deadline_exceeded_and_sends_nothing() -> None:
    remaining, code = await _front_and_back(margin=5.0, defaults={DOWNSTREAM_CALL: 7.0}, caller_timeout=4)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert remaining == []


async def test_the_refusal_names_the_method_and_the_upstream() -> None:
    from mesh.resilience.deadlines import CALLER_DEADLINE

    budget = DeadlineBudget("front", "back", {}, margin=0.05, clock=lambda: 100.0)
    token = CALLER_DEADLINE.set(100.01)
    path: Any = DOWNSTREAM_CALL.encode()  # grpc.aio passes bytes
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            budget.details(grpc.aio.ClientCallDetails(path, None, None, None, None))
    finally:
        CALLER_DEADLINE.reset(token)
    assert refused.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "Downstream to back" in (refused.value.details() or "")
    await asyncio.sleep(0)
