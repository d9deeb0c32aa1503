"""Find the implementation of a service, or answer UNIMPLEMENTED for it.

A service implements its contract in ``services/<name>/service.py`` with a function
``register(server, context)`` that adds its servicer to the server. Until then, every
method of the contract answers UNIMPLEMENTED with a message saying that the method is
part of the contract but not built in this release — never a fake success.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import Unimplemented
from mesh.kit.audit import AuditPort, IdentityAudit, IdentityCalls
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.idempotency import IdempotencyStore
from mesh.kit.outbox import CommitSignal, Outbox
from mesh.kit.paging import PageTokens
from mesh.registry import MethodSpec, Registry, ServiceSpec
from runtime.clients import MeshClients
from vocelio.identity.v1 import identity_service_pb2_grpc


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a service implementation gets to build its servicer: everything from the kit, wired.

    Build it with :meth:`create`; tests pass their own ``clock`` or ``audit`` there (or to
    :class:`runtime.server.ServiceHost`) instead of monkeypatching.

    Attributes:
        spec: the service's registry entry.
        settings: the process settings.
        database: its database (``database.sessions`` opens sessions).
        registry: every service of the mesh.
        clients: authenticated stubs to other services.
        clock: the service's clock.
        page_tokens: page tokens keyed for this service.
        idempotency: the ``request_id`` store.
        outbox: the typed-event outbox.
        identity_calls: calls to identity owed by committed changes (audit, revocations).
        audit: the audit port.
        shutdown_hooks: coroutines the host awaits at shutdown, after the drain period and
            before it waits for in-flight calls (register them with :meth:`on_shutdown`):
            where a service ends its long-lived streams and stops its background tasks.

    """

    spec: ServiceSpec
    settings: Settings
    database: ServiceDatabase
    registry: Registry
    clients: MeshClients
    clock: Clock
    page_tokens: PageTokens
    idempotency: IdempotencyStore
    outbox: Outbox
    identity_calls: IdentityCalls
    audit: AuditPort
    shutdown_hooks: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)

    @classmethod
    def create(
        cls,
        spec: ServiceSpec,
        settings: Settings,
        database: ServiceDatabase,
        registry: Registry,
        clients: MeshClients,
        *,
        clock: Clock | None = None,
        audit: AuditPort | None = None,
        outbox_signal: CommitSignal | None = None,
    ) -> ServiceContext:
        """The context of one service, with the kit's defaults for whatever is not given.

        ``outbox_signal`` is the service's outbox relay's wake-up, fired after commits that
        appended events (``runtime.server.ServiceHost`` passes its relay's).
        """
        clock = clock or SYSTEM_CLOCK

        def identity_stub() -> identity_service_pb2_grpc.IdentityServiceStub:
            return clients.stub("identity", identity_service_pb2_grpc.IdentityServiceStub)

        identity_calls = IdentityCalls(database.sessions, identity_stub, clock)
        return cls(
            spec=spec,
            settings=settings,
            database=database,
            registry=registry,
            clients=clients,
            clock=clock,
            page_tokens=PageTokens.from_secret(settings.mesh_service_credential(spec.name), spec.name),
            idempotency=IdempotencyStore(clock),
            outbox=Outbox(clock, outbox_signal),
            identity_calls=identity_calls,
            audit=audit or IdentityAudit(identity_calls, clock),
        )

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Have the host await ``hook()`` when it shuts down (bounded by its own stop logic)."""
        self.shutdown_hooks.append(hook)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The service's session factory (``async with context.sessions.begin() as session``)."""
        return self.database.sessions


class ServiceModule(Protocol):
    """The shape of ``services/<name>/service.py``."""

    def register(self, server: grpc.aio.Server, context: ServiceContext) -> None:
        """Add the service's servicer(s) to the server."""


def load_service_module(spec: ServiceSpec) -> ServiceModule | None:
    """The implementation module of a service, or ``None`` if it has none yet."""
    module_name = f"services.{spec.name}.service"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only the absence of the module itself means "not implemented"; a missing
        # import inside an existing implementation is a real error.
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            return None
        raise


def unimplemented_handler(spec: ServiceSpec) -> grpc.GenericRpcHandler[Any, Any]:
    """A handler answering UNIMPLEMENTED for every method of the contract."""
    handlers = {method.name: _unimplemented_method(method) for method in spec.methods}
    return grpc.method_handlers_generic_handler(spec.full_name, handlers)


def unimplemented_message(method: MethodSpec) -> str:
    """The message callers get from a method this release does not implement."""
    return f"{method.path} is part of the Vocelio contract but is not implemented in this release yet"


def _unimplemented_method(method: MethodSpec) -> grpc.RpcMethodHandler[Any, Any]:
    message = unimplemented_message(method)

    async def unary(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise Unimplemented(message)

    async def streaming(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        raise Unimplemented(message)
        yield b""  # pragma: no cover - makes this an async generator

    # Requests stay raw bytes: nothing is decoded for a method that does nothing.
    factory: Callable[..., grpc.RpcMethodHandler[Any, Any]]
    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(unary)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming)
    factory = grpc.unary_unary_rpc_method_handler
    return factory(unary)
