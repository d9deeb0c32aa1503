"""Server side: authenticate every call to a method the contract does not mark public.

The principal is set for the handler (``mesh.principal.current()``). Any failure —
no credential, a malformed, forged, expired or revoked one — is UNAUTHENTICATED with one
generic message; the reason goes to the log; the handler never runs. Health checks and
reflection are infrastructure and need no credential. A method the registry does not
know is refused: deny by default.

Which of those applies depends only on the method, so :func:`authenticated` decides it
once, when the method is registered; a call pays only for reading its credential. The hot
path awaits nothing: a call without the edge's proxy token needs no vouching, and a token
the authenticator has verified before is answered from its cache without a coroutine
(``authenticate_cached``, when the authenticator has it; expiry, revocation and key
restrictions are still checked on every call). The principal and client address are bound
with plain context-variable tokens rather than generator-based context managers.

It is also the one place that settles the call's client address, for public methods
too: the ``x-forwarded-for`` the REST edge set when the call carries the edge's verified
proxy token, else the transport peer (``mesh.kit.caller``). The API-key allow-lists,
audit entries and identity's sign-in limits all read that address.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol

import grpc

from interceptors.chain import Behaviour, Wrapper, WrapperInterceptor
from mesh import principal as principals
from mesh.call_facts import Entries, invocation_metadata, note_caller
from mesh.errors import PermissionDenied
from mesh.forwarding import PROXY_AUTHORIZATION
from mesh.kit.caller import bind_client_address, peer_address, trusted_client_address, unbind_client_address
from mesh.principal import Principal
from mesh.registry import Registry

INFRASTRUCTURE = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.")


class Authenticator(Protocol):
    """Turns a call's metadata into a principal (``runtime.security.Authenticator``)."""

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]], client_address: str = "") -> Principal:
        """The principal for every metadata entry of a call, or raise ``mesh.errors.Unauthenticated``.

        An authenticator may also offer ``authenticate_cached(metadata, client_address)``: the
        principal without a coroutine when it can answer from what it verified before, else
        ``None`` (then :meth:`authenticate` is awaited); it refuses exactly as this does.
        """


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


def _carries_proxy_token(entries: Entries) -> bool:
    for key, _ in entries:  # noqa: SIM110 - a plain loop: no generator per call
        if key == PROXY_AUTHORIZATION:
            return True
    return False


def _unvouched_address(
    entries: Entries, context: grpc.aio.ServicerContext[Any, Any], forwarding: ForwardingTrust | None
) -> str | None:
    """The transport peer's address when there is nothing to vouch for, else ``None``."""
    if forwarding is not None and _carries_proxy_token(entries):
        return None
    return peer_address(str(context.peer() or ""))


async def _client_address(
    entries: Entries, context: grpc.aio.ServicerContext[Any, Any], forwarding: ForwardingTrust | None
) -> str:
    address = _unvouched_address(entries, context, forwarding)
    if address is not None or forwarding is None:
        return address or ""
    metadata = {key: value for key, value in entries if isinstance(value, str)}
    vouched = await forwarding.vouched(metadata)
    return trusted_client_address(metadata.items(), str(context.peer() or ""), vouched=vouched)


def _addressed(behaviour: Behaviour, forwarding: ForwardingTrust | None) -> Behaviour:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            address = await _client_address(invocation_metadata(context), context, forwarding)
            note_caller(None, address)
            token = bind_client_address(address)
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                unbind_client_address(token)

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        entries = invocation_metadata(context)
        address = _unvouched_address(entries, context, forwarding)
        if address is None:
            address = await _client_address(entries, context, forwarding)
        note_caller(None, address)
        token = bind_client_address(address)
        try:
            return await behaviour(request, context)
        finally:
            unbind_client_address(token)

    return call


def _guarded(
    behaviour: Behaviour, authenticator: Authenticator, forwarding: ForwardingTrust | None, *, known: bool
) -> Behaviour:
    cached: Callable[[Entries, str], Principal | None] | None = getattr(authenticator, "authenticate_cached", None)

    async def principal_for(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Principal, str]:
        if not known:
            raise PermissionDenied("this method has no access policy")
        entries = invocation_metadata(context)
        address = await _client_address(entries, context, forwarding)
        note_caller(None, address)  # a refused call's log line still names the address
        # Every entry, not a dict: two credentials on one call are refused, not one picked.
        principal = cached(entries, address) if cached is not None else None
        if principal is None:
            principal = await authenticator.authenticate(entries, address)
        note_caller(principal, address)  # for the call's log line (mesh/call_facts.py)
        return principal, address

    def settled_now(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Principal, str] | None:
        """:func:`principal_for` without a coroutine, when nothing needs awaiting; else ``None``."""
        if cached is None or not known:
            return None
        entries = invocation_metadata(context)
        address = _unvouched_address(entries, context, forwarding)
        if address is None:
            return None
        note_caller(None, address)
        principal = cached(entries, address)
        if principal is None:
            return None
        note_caller(principal, address)
        return principal, address

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            principal, address = await principal_for(context)
            acting, addressed = principals.bind(principal), bind_client_address(address)
            try:
                async for response in behaviour(request, context):
                    yield response
            finally:
                unbind_client_address(addressed)
                principals.unbind(acting)

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        principal, address = settled_now(context) or await principal_for(context)
        acting, addressed = principals.bind(principal), bind_client_address(address)
        try:
            return await behaviour(request, context)
        finally:
            unbind_client_address(addressed)
            principals.unbind(acting)

    return call


class AuthenticationInterceptor(WrapperInterceptor):
    """:func:`authenticated` as a per-call interceptor, for servers built with interceptors."""

    def __init__(
        self, registry: Registry, authenticator: Authenticator, forwarding: ForwardingTrust | None = None
    ) -> None:
        super().__init__(authenticated(registry, authenticator, forwarding))
