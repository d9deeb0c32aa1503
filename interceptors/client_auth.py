"""Client side: put a credential on every outgoing call.

The credential of the principal the service is serving (propagated as is), or the
service's own token when it acts on its own behalf. A call that already carries an
``authorization`` entry is left alone. grpc.aio files an interceptor under one call type
only, so there is one class per type, sharing the same logic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mesh.principal import current_or_none

TokenSource = Callable[[], Awaitable[str]]


async def _with_credential(
    details: grpc.aio.ClientCallDetails, service_token: TokenSource
) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    if any(key == "authorization" for key, _ in metadata):
        return details
    principal = current_or_none()
    credential = principal.credential if principal is not None and principal.credential else await service_token()
    metadata.append(("authorization", f"Bearer {credential}"))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
    )


class UnaryAuthInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds ``authorization: Bearer …`` to unary calls."""

    def __init__(self, service_token: TokenSource) -> None:
        self._service_token = service_token

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Authenticate a unary call."""
        return await continuation(await _with_credential(client_call_details, self._service_token), request)


class StreamAuthInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Adds ``authorization: Bearer …`` to server-streaming calls."""

    def __init__(self, service_token: TokenSource) -> None:
        self._service_token = service_token

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Authenticate a server-streaming call."""
        return await continuation(await _with_credential(client_call_details, self._service_token), request)


def client_auth_interceptors(service_token: TokenSource) -> list[Any]:
    """The interceptors that authenticate unary and server-streaming calls."""
    return [UnaryAuthInterceptor(service_token), StreamAuthInterceptor(service_token)]
