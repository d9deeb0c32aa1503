"""Client side: pass the running call's request id on to every outgoing call.

The id the server wrapper bound (``interceptors/request_id.py``) goes out as
``x-request-id``, so one REST request has the same id in the log line of every service it
crosses. A call that already carries one, or that is made outside any call, is left
alone. grpc.aio files an interceptor under one call type only, so there is one class per
type, sharing the same logic.
"""

from __future__ import annotations

from typing import Any

import grpc

from mesh import request_id


def _with_request_id(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    current = request_id.current()
    if not current:
        return details
    metadata = list(details.metadata or ())
    if any(key == request_id.METADATA_KEY for key, _ in metadata):
        return details
    metadata.append((request_id.METADATA_KEY, current))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
    )


class UnaryRequestIdInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds ``x-request-id`` to unary calls."""

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Pass the request id on with a unary call."""
        return await continuation(_with_request_id(client_call_details), request)


class StreamRequestIdInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Adds ``x-request-id`` to server-streaming calls."""

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Pass the request id on with a server-streaming call."""
        return await continuation(_with_request_id(client_call_details), request)


def client_request_id_interceptors() -> list[Any]:
    """The interceptors that pass the request id on with unary and server-streaming calls."""
    return [UnaryRequestIdInterceptor(), StreamRequestIdInterceptor()]
