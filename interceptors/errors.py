"""Turn exceptions raised by handlers into gRPC statuses.

A :class:`mesh.errors.VocelioError` becomes its own code and message, as a rich status
(:func:`mesh.errors.rich_status`): a ``google.rpc.BadRequest`` detail for field
violations, the ``google.rpc.ErrorInfo`` of the service's ``ErrorReason``, and a
``google.rpc.RetryInfo`` (with the ``grpc-retry-pushback-ms`` trailer gRFC A6 clients obey)
and ``google.rpc.QuotaFailure`` when the error carries them. Anything else is a bug: it is
logged with its traceback and an incident id, and the caller gets INTERNAL with a generic message naming only that id —
except the database being unreachable (a dropped connection, a pool timeout, the driver's operational errors:
:func:`mesh.db.unreachable`), which is transient and answers UNAVAILABLE, the code clients and the breaker retry.
No stack trace, SQL or secret ever reaches the wire.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from grpc_status import rpc_status

from interceptors.chain import Behaviour, WrapperInterceptor
from mesh.db import unreachable
from mesh.errors import VocelioError, rich_status

log = logging.getLogger(__name__)

PUSHBACK = "grpc-retry-pushback-ms"


def with_errors(method: str, behaviour: Behaviour) -> Behaviour:
    """The behaviour with every exception it raises turned into a status (the outermost wrapper)."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                async for response in behaviour(request, context):
                    yield response
            except Exception as error:  # noqa: BLE001
                await abort_for(error, context, method)

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(request, context)
        except Exception as error:  # noqa: BLE001
            await abort_for(error, context, method)

    return call


async def abort_for(error: Exception, context: grpc.aio.ServicerContext[Any, Any], method: str) -> NoReturn:
    """End the call with the status of ``error`` (aborts and cancellations pass through)."""
    if isinstance(error, (grpc.aio.AbortError, asyncio.CancelledError)):
        raise error
    if isinstance(error, VocelioError):
        status = rich_status(error)
        if status.details:
            rich = rpc_status.to_status(status)
            if error.retry_delay is not None:
                # gRFC A6: a client that retries this code waits exactly this long (and not sooner).
                pushback = (PUSHBACK, str(math.ceil(error.retry_delay * 1000)))
                rich = rich._replace(trailing_metadata=(*rich.trailing_metadata, pushback))  # type: ignore[attr-defined]
            await context.abort_with_status(rich)  # type: ignore[attr-defined]
        await context.abort(error.code, error.message)
    incident = uuid.uuid4().hex[:16]
    if unreachable(error):
        # Transient, and the client's to retry (UNAVAILABLE is retryable; the breaker counts it). The
        # driver's message may quote SQL and values: only its type is logged, never sent.
        log.warning("database unreachable in %s (incident %s): %s", method, incident, type(error).__name__)
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, f"the service's database is unreachable; retry (incident {incident})"
        )
    log.error("unhandled error in %s (incident %s)", method, incident, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")


class ErrorsInterceptor(WrapperInterceptor):
    """:func:`with_errors` as a per-call interceptor (the outermost), for servers built with interceptors."""

    def __init__(self) -> None:
        super().__init__(with_errors)
