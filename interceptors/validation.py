"""Refuse a request that breaks its contract's ``buf.validate`` rules before the handler runs.

The check itself is :func:`mesh.validation_rules.violations`, a plain function; :func:`validated`
is the chain's wrapper (``interceptors/chain.py``), composed once per method, and
:class:`ValidationInterceptor` the same wrapper as a per-call interceptor. A bad request becomes
one INVALID_ARGUMENT whose ``google.rpc.BadRequest`` lists every violation (the errors wrapper
turns the raised :class:`mesh.errors.InvalidArgument` into that status). Streamed requests are
checked message by message as they arrive. A method whose request type carries no rule at all
(known from the registry) is left unwrapped, so it pays nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from interceptors.chain import Behaviour, Wrapper, WrapperInterceptor
from mesh.errors import InvalidArgument
from mesh.registry import Registry
from mesh.validation_rules import has_rules, violations


def check(request: Message) -> None:
    """Raise if ``request`` breaks a rule of its contract.

    Raises:
        InvalidArgument: one or more fields break a rule; every one is listed, by field path.

    """
    found = violations(request)
    if found:
        raise InvalidArgument(
            "the request breaks the contract's field rules",
            {violation.field: violation.description for violation in found},
        )


def validated(registry: Registry | None = None) -> Wrapper:
    """The wrapper that checks every request message against its rules.

    Args:
        registry: when given, methods whose request type has no rule are not wrapped at all.

    """

    def wrap(path: str, behaviour: Behaviour) -> Behaviour:
        method = registry.method(path) if registry is not None else None
        if method is not None and not _may_have_rules(method.input_type):
            return behaviour
        return _checked(behaviour)

    return wrap


class ValidationInterceptor(WrapperInterceptor):
    """:func:`validated` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, registry: Registry | None = None) -> None:
        super().__init__(validated(registry))


def _may_have_rules(input_type: str) -> bool:
    try:
        message = descriptor_pool.Default().FindMessageTypeByName(input_type)
    except KeyError:  # not imported in this process: check at call time
        return True
    return has_rules(message)


def _checked_input(request: Any) -> Any:
    """The request (checked) or, for a request stream, a stream that checks each message."""
    if isinstance(request, Message):
        check(request)
        return request
    if hasattr(request, "__aiter__"):
        return _each_checked(request)
    return request  # a generic handler without a deserializer gets raw bytes


async def _each_checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Message):
            check(request)
        yield request


def _checked(behaviour: Behaviour) -> Behaviour:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            async for response in behaviour(_checked_input(request), context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await behaviour(_checked_input(request), context)

    return call
