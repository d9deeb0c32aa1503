"""Server side: publish the call's ``x-request-id`` for the whole call.

The value (``mesh.request_id.accepted``: at most 128 plain characters, else ignored) is
bound for the call, so every log record of the call carries it (``mesh/logs.py``) and
every call the service makes on its behalf passes it on
(``interceptors/client_request_id.py``). Health checks and reflection are left alone.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, WrapperInterceptor
from mesh import request_id
from mesh.call_facts import invocation_metadata


def _incoming(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in invocation_metadata(context):
        if key == request_id.METADATA_KEY and isinstance(value, str):
            return request_id.accepted(value)
    return ""


def with_request_id(path: str, behaviour: Behaviour) -> Behaviour:
    """The behaviour run with the call's request id bound (infrastructure left alone)."""
    if path.startswith(INFRASTRUCTURE):
        return behaviour
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            token = request_id.bind(_incoming(context))
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                request_id.unbind(token)

        return stream

    # bind/unbind rather than the ``bound`` context manager: a generator-based one costs a µs per call.
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        token = request_id.bind(_incoming(context))
        try:
            return await behaviour(request, context)
        finally:
            request_id.unbind(token)

    return call


class RequestIdInterceptor(WrapperInterceptor):
    """:func:`with_request_id` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self) -> None:
        super().__init__(with_request_id)
