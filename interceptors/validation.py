"""Refuse a request that breaks its contract's ``buf.validate`` rules before the handler runs.

The check itself is :func:`mesh.validation_rules.violations`, a plain function, so a composed
per-method chain can call it too; this interceptor is the thin grpc.aio wrapper. A bad request
becomes one INVALID_ARGUMENT whose ``google.rpc.BadRequest`` lists every violation (the
errors interceptor turns the raised :class:`mesh.errors.InvalidArgument` into that status).
Streamed requests are checked message by message as they arrive.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from interceptors.handlers import wrap_behaviour
from mesh.errors import InvalidArgument
from mesh.validation_rules import violations


def check(request: Message) -> None:
    """Raise if ``request`` breaks a rule of its contract.

    Raises:
        InvalidArgument: one or more fields break a rule; every one is listed, by field path.

    """
    if not isinstance(request, Message):  # a generic handler without a deserializer gets raw bytes
        return
    found = violations(request)
    if found:
        raise InvalidArgument(
            "the request breaks the contract's field rules",
            {violation.field: violation.description for violation in found},
        )


class ValidationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks every request message against its rules before the handler sees it."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the method's behaviour with the rule check."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.request_streaming:
            return wrap_behaviour(handler, _checked_stream)
        return wrap_behaviour(handler, _checked)


def _checked(behaviour: Any) -> Any:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            check(request)
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        check(request)
        return await behaviour(request, context)

    return call


def _checked_stream(behaviour: Any) -> Any:
    async def each_checked(requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
        async for request in requests:
            check(request)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def stream(requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async for response in behaviour(each_checked(requests), context):
                yield response

        return stream

    async def call(requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await behaviour(each_checked(requests), context)

    return call
