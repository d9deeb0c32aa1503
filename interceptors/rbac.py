"""Server side: the caller must hold the permission the contract names for the method.

Runs after authentication. Internal methods (mesh-only) also require a service
principal. Tenancy — a resource of another organisation answering NOT_FOUND — is the
store's job, because only the store knows whose a resource is. The method's policy is
looked up once, when the method is registered.

Deny by default, on its own and not only because authentication refuses unknown methods:
a method the registry does not know, one without a policy, or a non-public one that
names no permission is PERMISSION_DENIED for everyone (services and ``*`` included).
Only infrastructure (health, reflection) and public methods are left as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc

from interceptors.auth import INFRASTRUCTURE
from interceptors.chain import Behaviour, Wrapper, WrapperInterceptor
from mesh.errors import PermissionDenied
from mesh.principal import current_or_none
from mesh.registry import MethodSpec, Registry


def authorized(registry: Registry) -> Wrapper:
    """The wrapper that refuses calls whose principal lacks the method's permission (PERMISSION_DENIED).

    Infrastructure and public methods are left as they are; a method without a policy
    (or unknown to the registry) or without a permission never runs.
    """

    def wrap(path: str, behaviour: Behaviour) -> Behaviour:
        if path.startswith(INFRASTRUCTURE):
            return behaviour
        method = registry.method(path)
        policy = method.policy if method is not None else None
        if policy is not None and policy.public:
            return behaviour
        if method is None or policy is None or not policy.permission:
            return _refused(behaviour, f"{path} has no access policy naming a permission")
        return _checked(behaviour, method)

    return wrap


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


def _refused(behaviour: Behaviour, reason: str) -> Behaviour:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            raise PermissionDenied(reason)
            yield  # pragma: no cover - makes this an async generator, like the behaviour

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        raise PermissionDenied(reason)

    return call


def _checked(behaviour: Behaviour, method: MethodSpec) -> Behaviour:
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


class AuthorizationInterceptor(WrapperInterceptor):
    """:func:`authorized` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(authorized(registry))
