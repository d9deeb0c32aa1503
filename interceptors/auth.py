"""Server side: authenticate every call to a method the contract does not mark public.

The principal is set for the handler (``mesh.principal.current()``). Any failure —
no credential, a malformed, forged, expired or revoked one — is UNAUTHENTICATED with one
generic message; the reason goes to the log; the handler never runs. Health checks and
reflection are infrastructure and need no credential. A method the registry does not
know is refused: deny by default.

Which of those applies depends only on the method, so :func:`authenticated` decides it
once, when the method is registered; a call pays only for reading its credential.

It is also the one place that settles the call's client address, for public methods
too: the ``x-forwarded-for`` the REST edge set when the call carries the edge's verified
proxy token, else the transport peer (``mesh.kit.caller``). The API-key allow-lists,
audit entries and identity's sign-in limits all read that address.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

import grpc

from interceptors.chain import Behaviour, Wrapper, WrapperInterceptor
from mesh.call_facts import note_caller
from mesh.errors import PermissionDenied
from mesh.kit.caller import client_address_is, trusted_client_address
from mesh.principal import Principal, acting_as
from mesh.registry import Registry

INFRASTRUCTURE = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.")


class Authenticator(Protocol):
    """Turns a call's metadata into a principal (``runtime.security.Authenticator``)."""

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]], client_address: str = "") -> Principal:
        """The principal for every metadata entry of a call, or raise ``mesh.errors.Unauthenticated``."""


class ForwardingTrust(Protocol):
    """Tells whether a call carries the REST edge's proxy token (``runtime.forwarding.EdgeVouching``)."""

    async def vouched(self, metadata: Mapping[str, str]) -> bool:
        """True when the edge vouches for the call's ``x-forwarded-for``."""


def authenticated(
    registry: Registry, authenticator: Authenticator, forwarding: ForwardingTrust | None = None
) -> Wrapper:
    """The wrapper that runs a method's behaviour only as an authenticated principal.

    Infrastructure methods are left as they are; public ones only get their client
    address settled; a method the registry does not know answers PERMISSION_DENIED
    without looking at the credential. Without ``forwarding`` no forwarded address is
    believed.
    """

    def wrap(path: str, behaviour: Behaviour) -> Behaviour:
        if path.startswith(INFRASTRUCTURE):
            return behaviour
        method = registry.method(path)
        if method is not None and method.policy is not None and method.policy.public:
            return _addressed(behaviour, forwarding)
        return _guarded(behaviour, authenticator, forwarding, known=method is not None)

    return wrap


async def _client_address(
    metadata: dict[str, str], context: grpc.aio.ServicerContext[Any, Any], forwarding: ForwardingTrust | None
) -> str:
    peer = str(context.peer() or "")
    vouched = forwarding is not None and await forwarding.vouched(metadata)
    return trusted_client_address(metadata.items(), peer, vouched=vouched)


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def _addressed(behaviour: Behaviour, forwarding: ForwardingTrust | None) -> Behaviour:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            address = await _client_address(_metadata(context), context, forwarding)
            note_caller(None, address)
            with client_address_is(address):
                async for response in behaviour(request, context):
                    yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        address = await _client_address(_metadata(context), context, forwarding)
        note_caller(None, address)
        with client_address_is(address):
            return await behaviour(request, context)

    return call


def _guarded(
    behaviour: Behaviour, authenticator: Authenticator, forwarding: ForwardingTrust | None, *, known: bool
) -> Behaviour:
    async def principal_for(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Principal, str]:
        if not known:
            raise PermissionDenied("this method has no access policy")
        entries = tuple(context.invocation_metadata() or ())
        metadata = {key: value for key, value in entries if isinstance(value, str)}
        address = await _client_address(metadata, context, forwarding)
        note_caller(None, address)  # a refused call's log line still names the address
        # Every entry, not the dict: two credentials on one call are refused, not one picked.
        principal = await authenticator.authenticate(entries, address)
        note_caller(principal, address)  # for the call's log line (mesh/call_facts.py)
        return principal, address

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            principal, address = await principal_for(context)
            with acting_as(principal), client_address_is(address):
                async for response in behaviour(request, context):
                    yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        principal, address = await principal_for(context)
        with acting_as(principal), client_address_is(address):
            return await behaviour(request, context)

    return call


class AuthenticationInterceptor(WrapperInterceptor):
    """:func:`authenticated` as a per-call interceptor, for servers built with interceptors."""

    def __init__(
        self, registry: Registry, authenticator: Authenticator, forwarding: ForwardingTrust | None = None
    ) -> None:
        super().__init__(authenticated(registry, authenticator, forwarding))
