"""Client side: give a request its AIP-155 ``request_id`` when the caller left it empty.

Methods whose request has a ``request_id`` are retried by gRPC on UNAVAILABLE
(``mesh/service_config.py``); every attempt carries the same id, so the service answers a
repeat with the first result (``mesh.kit.idempotency``) and a retried create never creates
twice. Like Google's generated clients, the id is written into the caller's request
object, so a caller that sends the same object again repeats the same request too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import grpc

from mesh.service_config import REQUEST_ID_FIELD


class UnaryRequestIdInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Fills an empty ``request_id`` with a fresh UUID4 on the methods that have one."""

    def __init__(self, methods: Iterable[str]) -> None:
        paths = frozenset(methods)
        self._methods = paths | {path.encode() for path in paths}

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Send the call, with a request id if the method takes one."""
        if client_call_details.method in self._methods and not getattr(request, REQUEST_ID_FIELD):
            setattr(request, REQUEST_ID_FIELD, str(uuid.uuid4()))
        return await continuation(client_call_details, request)


def client_idempotency_interceptors(methods: Iterable[str]) -> list[Any]:
    """The interceptor that fills ``request_id`` for ``methods`` (gRPC paths)."""
    return [UnaryRequestIdInterceptor(methods)]
