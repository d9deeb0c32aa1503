"""Server side: authenticate every call to a method the contract does not mark public.

The principal is set for the handler (``mesh.principal.current()``). Any failure —
no credential, a malformed, forged, expired or revoked one — is UNAUTHENTICATED with one
generic message; the reason goes to the log; the handler never runs. Health checks and
reflection are infrastructure and need no credential. A method the registry does not
know is refused: deny by default.

Which of those applies depends only on the method, so :func:`authenticated` decides it
once, when the method is registered; a call pays only for reading its credential.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import grpc

from interceptors.chain import Behaviour, Wrapper, WrapperInterceptor
from mesh.errors import PermissionDenied
from mesh.principal import Principal, acting_as
from mesh.registry import Registry

INFRASTRUCTURE = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.")


class Authenticator(Protocol):
    """Turns a call's metadata into a principal (``runtime.security.Authenticator``)."""

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]], client_address: str = "") -> Principal:
        """The principal for every metadata entry of a call, or raise ``mesh.errors.Unauthenticated``."""


def authenticated(registry: Registry, authenticator: Authenticator) -> Wrapper:
    """The wrapper that runs a method's behaviour only as an authenticated principal.

    Infrastructure and public methods are left as they are; a method the registry does
    not know answers PERMISSION_DENIED without looking at the credential.
    """

    def wrap(path: str, behaviour: Behaviour) -> Behaviour:
        if path.startswith(INFRASTRUCTURE):
            return behaviour
        method = registry.method(path)
        if method is not None and method.policy is not None and method.policy.public:
            return behaviour
        return _guarded(behaviour, authenticator, known=method is not None)

    return wrap


def _guarded(behaviour: Behaviour, authenticator: Authenticator, *, known: bool) -> Behaviour:
    async def principal_for(context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        if not known:
            raise PermissionDenied("this method has no access policy")
        entries = tuple(context.invocation_metadata() or ())
        metadata = {key: value for key, value in entries if isinstance(value, str)}
        # Every entry, not the dict: two credentials on one call are refused, not one picked.
        return await authenticator.authenticate(entries, _client_address(metadata, context))

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


class AuthenticationInterceptor(WrapperInterceptor):
    """:func:`authenticated` as a per-call interceptor, for servers built with interceptors."""

    def __init__(self, registry: Registry, authenticator: Authenticator) -> None:
        super().__init__(authenticated(registry, authenticator))
