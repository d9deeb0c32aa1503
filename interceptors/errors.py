"""Turn exceptions raised by handlers into gRPC statuses.

A :class:`mesh.errors.VocelioError` becomes its own code and message (with a
``google.rpc.BadRequest`` detail for field violations). Anything else is a bug: it is
logged with its traceback and an incident id, and the caller gets INTERNAL with a
generic message naming only that id. No stack trace, SQL or secret ever reaches the wire.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from interceptors.handlers import wrap_behaviour
from mesh.errors import InvalidArgument, VocelioError

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


class ErrorsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Outermost server interceptor: maps exceptions to statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the method's behaviour so that exceptions become statuses."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return wrap_behaviour(handler, lambda behaviour: _guard(behaviour, method))


def _guard(behaviour: Handler, method: str) -> Handler:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                async for response in behaviour(request, context):
                    yield response
            except Exception as error:  # noqa: BLE001
                await _abort(error, context, method)

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(request, context)
        except Exception as error:  # noqa: BLE001
            await _abort(error, context, method)

    return call


async def _abort(error: Exception, context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    if isinstance(error, (grpc.aio.AbortError, asyncio.CancelledError)):
        raise error
    if isinstance(error, InvalidArgument) and error.field_violations:
        await context.abort_with_status(rpc_status.to_status(bad_request_status(error)))  # type: ignore[attr-defined]
    if isinstance(error, VocelioError):
        await context.abort(error.code, error.message)
    incident = uuid.uuid4().hex[:16]
    log.error("unhandled error in %s (incident %s)", method, incident, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")


def bad_request_status(error: InvalidArgument) -> status_pb2.Status:
    """A ``google.rpc.Status`` carrying the error's field violations as ``BadRequest``."""
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in error.field_violations.items()
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=error.message, details=[packed])
