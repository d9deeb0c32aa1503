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
from mesh.kit.projections import EventSource, EventsServiceSource, Projections
from mesh.registry import MethodSpec, Registry, ServiceSpec
from runtime.clients import MeshClients
from vocelio.events.v1 import events_service_pb2_grpc
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
        event_source: the event store's global log, read with the service's own credential
            (``mesh.kit.projections``).
        projections: read models the service keeps: ``register`` appends its
            :class:`~mesh.kit.projections.Projections`; the host starts them with its background
            work and stops them before closing the database.
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
    event_source: EventSource
    projections: list[Projections]
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
        event_source: EventSource | None = None,
    ) -> ServiceContext:
        """The context of one service, with the kit's defaults for whatever is not given.

        ``outbox_signal`` is the service's outbox relay's wake-up, fired after commits that
        appended events (``runtime.server.ServiceHost`` passes its relay's).
        """
        clock = clock or SYSTEM_CLOCK

        def identity_stub() -> identity_service_pb2_grpc.IdentityServiceStub:
            return clients.stub("identity", identity_service_pb2_grpc.IdentityServiceStub)

        def events_stub() -> events_service_pb2_grpc.EventsServiceStub:
            return clients.stub("events", events_service_pb2_grpc.EventsServiceStub)

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
            event_source=event_source or EventsServiceSource(events_stub),
            projections=[],
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


def answer_unimplemented_rest(servicer: object, base: type, spec: ServiceSpec) -> None:
    """Make the methods ``servicer`` does not override answer as an unimplemented service does.

    A service that implements part of its contract (analytics' projection methods) subclasses the
    generated servicer, whose own methods answer a bare "Method not implemented!" after raising
    ``NotImplementedError`` (which the errors wrapper would report as INTERNAL). Call this before
    ``add_…Servicer_to_server``: every method the subclass leaves to ``base`` answers
    UNIMPLEMENTED with :func:`unimplemented_message`, like a service with no implementation.
    """
    for method in spec.methods:
        if getattr(type(servicer), method.name, None) is getattr(base, method.name, None):
            setattr(servicer, method.name, _unimplemented_behaviour(method))


def _unimplemented_behaviour(method: MethodSpec) -> Callable[..., Any]:
    message = unimplemented_message(method)

    async def unary(_request: object, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise Unimplemented(message)

    async def streaming(_request: object, _context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        raise Unimplemented(message)
        yield b""  # pragma: no cover - makes this an async generator

    return streaming if method.server_streaming else unary


def _unimplemented_method(method: MethodSpec) -> grpc.RpcMethodHandler[Any, Any]:
    # Requests stay raw bytes: nothing is decoded for a method that does nothing.
    behaviour = _unimplemented_behaviour(method)
    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(behaviour)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(behaviour)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(behaviour)
    return grpc.unary_unary_rpc_method_handler(behaviour)
