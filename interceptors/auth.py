"""Server side: authenticate every call to a method the contract does not mark public.

The principal is set for the handler (``mesh.principal.current()``). Any failure —
no credential, a malformed, forged, expired or revoked one — is UNAUTHENTICATED with one
generic message; the reason goes to the log; the handler never runs. Health checks and
reflection are infrastructure and need no credential. A method the registry does not
know is refused: deny by default.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc

from interceptors.handlers import wrap_behaviour
from mesh.errors import PermissionDenied
from mesh.principal import Principal, acting_as
from mesh.registry import Registry

INFRASTRUCTURE = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.")


class Authenticator(Protocol):
    """Turns a call's metadata into a principal (``runtime.security.Authenticator``)."""

    async def authenticate(self, metadata: Mapping[str, str], client_address: str = "") -> Principal:
        """The principal, or raise ``mesh.errors.Unauthenticated``."""


class AuthenticationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Sets the caller's principal, or refuses the call."""

    def __init__(self, registry: Registry, authenticator: Authenticator) -> None:
        self._registry = registry
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the handler so that it runs only as an authenticated principal."""
        handler = await continuation(handler_call_details)
        path: str = handler_call_details.method
        if handler is None or path.startswith(INFRASTRUCTURE):
            return handler
        method = self._registry.method(path)
        if method is not None and method.policy is not None and method.policy.public:
            return handler
        metadata = {
            key: value for key, value in handler_call_details.invocation_metadata or () if isinstance(value, str)
        }
        return _wrap(handler, self._authenticator, metadata, known=method is not None)


def _wrap(handler: Any, authenticator: Authenticator, metadata: dict[str, str], *, known: bool) -> Any:
    return wrap_behaviour(handler, lambda behaviour: _guarded(behaviour, authenticator, metadata, known))


def _guarded(behaviour: Any, authenticator: Authenticator, metadata: dict[str, str], known: bool) -> Any:
    async def principal_for(context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not known:
            raise PermissionDenied("this method has no access policy")
        return await authenticator.authenticate(metadata, _client_address(metadata, context))

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            principal = await principal_for(context)
            with acting_as(principal):
                async for response in behaviour(request, context):
                    yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        principal = await principal_for(context)
        with acting_as(principal):
            return await behaviour(request, context)

    return call


def _client_address(metadata: dict[str, str], context: grpc.aio.ServicerContext[Any, Any]) -> str:
    forwarded = metadata.get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",", 1)[0].strip()
    return str(context.peer() or "")
