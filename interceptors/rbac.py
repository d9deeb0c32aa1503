"""Server side: the caller must hold the permission the contract names for the method.

Runs after authentication. Internal methods (mesh-only) also require a service
principal. Tenancy — a resource of another organisation answering NOT_FOUND — is the
store's job, because only the store knows whose a resource is.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from interceptors.handlers import wrap_behaviour
from mesh.errors import PermissionDenied
from mesh.principal import current_or_none
from mesh.registry import MethodSpec, Registry


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls whose principal lacks the method's permission (PERMISSION_DENIED)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the handler with the permission check."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = self._registry.method(handler_call_details.method)
        if method is None or method.policy is None or method.policy.public:
            return handler
        return wrap_behaviour(handler, lambda behaviour: _checked(behaviour, method))


def check(method: MethodSpec) -> None:
    """Raise PermissionDenied unless the current principal may call the method."""
    assert method.policy is not None
    principal = current_or_none()
    if principal is None:
        raise PermissionDenied("authentication did not run for this method")
    if method.policy.internal and not principal.is_service:
        raise PermissionDenied(f"{method.path} is internal to the mesh")
    if not principal.has(method.policy.permission):
        raise PermissionDenied(f"missing permission {method.policy.permission}")


def _checked(behaviour: Any, method: MethodSpec) -> Any:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            check(method)
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        check(method)
        return await behaviour(request, context)

    return call
