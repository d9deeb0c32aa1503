"""One service's gRPC server: per-method behaviours, servicer, health, reflection, database watch.

The behaviours every call runs through (request id → tracing → metrics → RPC log line → errors → deadline
→ load shedding → in-flight tracking → retried-attempt count → authentication → rate
limit → stream limit → RBAC → validation, outermost first) are composed once per method
when the servicer is registered (``interceptors.chain.ChainedServer``), not re-resolved per
call by interceptors; adjacent guards (checks before the call only) share one layer.

Start-up: bind the port, answer readiness NOT_SERVING until the database has answered
(and, in development, migrations have run), then SERVING; liveness is SERVING from the
start (``runtime/probes.py`` names them). Readiness follows the database from then on.
Shutdown (SIGTERM): readiness turns NOT_SERVING first, the server keeps answering for
``shutdown_drain`` seconds so probes and balancers notice, then stops taking calls and
gives in-flight calls ``shutdown_grace`` seconds to finish; liveness stays SERVING until
the server stops.

Every service but events runs its outbox relay (``mesh.kit.relay``) from
:meth:`ServiceHost.start_background` (it talks to events) until shutdown, where it stops
(bounded) once the in-flight calls are done, before the clients and the database close.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from interceptors.auth import authenticated
from interceptors.chain import Wrapper, chained_server
from interceptors.deadline import with_deadline
from interceptors.errors import with_errors
from interceptors.inflight import InFlightCalls
from interceptors.load_shedding import shedding
from interceptors.metrics import measured
from interceptors.rate_limit import limiter_for, rate_limited
from interceptors.rbac import authorized
from interceptors.request_id import with_request_id
from interceptors.retried_attempts import counting_retries
from interceptors.rpc_log import rpc_logged
from interceptors.stream_limit import stream_limited
from interceptors.tracing import traced
from interceptors.validation import validated
from mesh import migrations
from mesh.access import AccessTable, default_access_table
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.health import DatabaseWatch
from mesh.jwks import TrustedKeys
from mesh.kit.audit import AuditPort
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.outbox import CommitSignal
from mesh.kit.projections import EventSource
from mesh.kit.relay import OutboxRelay, RelayPolicy
from mesh.limits.streams import StreamSlots
from mesh.registry import Registry, ServiceSpec
from mesh.revocations import RevocationSet
from mesh.tokens import TokenVerifier
from runtime.clients import MeshClients
from runtime.forwarding import EdgeVouching
from runtime.handlers import ServiceContext, ServiceModule, load_service_module, unimplemented_handler
from runtime.metrics_endpoint import MetricsEndpoint
from runtime.probes import HealthProbes
from runtime.revocations import RevocationWatcher
from runtime.security import Authenticator, SecurityOptions, identity_jwks
from vocelio.events.v1 import events_service_pb2, events_service_pb2_grpc

log = logging.getLogger(__name__)

# SO_REUSEPORT would let a second mesh bind the same ports and silently share traffic.
# Metadata up to 64 KiB reaches the interceptors, so an oversized token is refused as
# UNAUTHENTICATED by authentication rather than by the transport.
_SERVER_OPTIONS = [("grpc.so_reuseport", 0), ("grpc.max_metadata_size", 64 * 1024)]


# Once our own handlers have ended, the transport gets this long to finish its last writes.
_STOP_GRACE = 1.0

# The event store: every other service relays its outbox to it.
EVENTS_SERVICE = "events"


class PortInUseError(RuntimeError):
    """The service's port is taken by another process."""


class ServiceHost:
    """Runs one mesh service in the current event loop."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: Settings,
        registry: Registry,
        *,
        port: int | None = None,
        security: SecurityOptions | None = None,
        clock: Clock | None = None,
        audit: AuditPort | None = None,
        access: AccessTable | None = None,
        implementation: ServiceModule | None = None,
        serve_metrics: bool = True,
        relay: bool = True,
        event_source: EventSource | None = None,
    ) -> None:
        """Prepare a host; nothing listens until :meth:`start`.

        ``clock`` and ``audit`` replace the service's own (tests); ``access`` and
        ``implementation`` let a test serve a contract that is not one of Vocelio's
        (``tests/support/kitdemo``) with its own role table and ``register`` function.
        Without ``serve_metrics`` the host opens no metrics port (an in-process mesh serves
        one for all its hosts, which share the process registry). Without ``relay`` (or with
        ``VOCELIO_OUTBOX_RELAY=false``, and always for events itself) no outbox relay runs:
        events stay in the outbox for a later process. ``event_source`` replaces the
        events service as the log projections read (tests).
        """
        self.spec = spec
        self._implementation = implementation
        self._clock = clock
        self._audit = audit
        self._event_source = event_source
        self.context: ServiceContext | None = None
        self.settings = settings
        self.registry = registry
        self.requested_port = settings.port_for(spec.contract_port) if port is None else port
        self.port = 0
        self.database = ServiceDatabase(settings, spec.name)
        self.clients = MeshClients(spec.name, settings, registry)
        security = security or SecurityOptions()
        self.revocations = RevocationSet(max_staleness=settings.revocation_max_staleness)
        # A revoked signing key may have signed this service's own token: get a new one then.
        self.clients.credential.key_generation = lambda: self.revocations.key_generation
        self.authenticator = Authenticator(
            TokenVerifier(
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                keys=TrustedKeys(
                    security.keys or identity_jwks(self.clients, ttl=settings.jwks_ttl, max_age=settings.jwks_max_age),
                    self.revocations,
                ),
                revocations=self.revocations,
                max_lifetime=settings.access_token_ttl,
            ),
            access or default_access_table(),
            self.revocations,
            self.clients,
            api_keys=security.api_keys,
        )
        self._revocation_watcher = (
            RevocationWatcher(self.clients, self.revocations) if security.watch_revocations else None
        )
        # Calls through the REST edge carry its proxy token; only then is their x-forwarded-for believed.
        self.forwarding = EdgeVouching(self.authenticator.verifier)
        self.health = HealthServicer()
        self.probes = HealthProbes(self.health, spec.full_name)
        self.inflight = InFlightCalls()
        self.rate_limiter = limiter_for(spec.name, settings)
        protection: list[Wrapper] = [rate_limited(registry, self.rate_limiter)]
        if settings.max_streams_per_principal:
            protection.append(stream_limited(registry, StreamSlots(settings.max_streams_per_principal), spec.name))
        metrics_port = settings.metrics_port_for(self.requested_port) if serve_metrics else None
        self.metrics = None if metrics_port is None else MetricsEndpoint(settings.host, metrics_port)
        self.server: grpc.aio.Server = chained_server(
            [
                with_request_id,
                # the span covers every concern below, the log line included, and sees the final status
                traced,
                # it records the status the client sees, whoever set it (nothing is measured that no one serves:
                # VOCELIO_METRICS=false leaves it out)
                *([measured] if settings.metrics else []),
                # outside the errors wrapper, so it logs the code every call ends with (VOCELIO_RPC_LOG)
                *([rpc_logged] if settings.rpc_log else []),
                with_errors,
                # guards: these four run as one layer; shedding before any work and before the call counts as running
                with_deadline,
                shedding(lambda: self.inflight.count, settings.max_in_flight),
                self.inflight.tracked,
                counting_retries,
                authenticated(registry, self.authenticator, self.forwarding),
                # after authentication (the bucket is the principal's), before RBAC (refused calls cost too)
                *protection,
                authorized(registry),
                # after authentication, so only a caller allowed to make the call learns the contract's rules
                validated(registry),
            ],
            options=_SERVER_OPTIONS,
        )
        self._watch = DatabaseWatch(
            self.database,
            self._database_changed,
            interval=settings.health_probe_interval,
            timeout=settings.health_probe_timeout,
            prepare=self._migrate if settings.migrate_on_start else None,
        )
        self.outbox_signal = CommitSignal()
        self.relay: OutboxRelay | None = None
        if relay and settings.outbox_relay and spec.name != EVENTS_SERVICE:
            self.relay = OutboxRelay(
                spec.name,
                self.database.sessions,
                self._append_event,
                dialect=self.database.kind,
                policy=RelayPolicy(
                    poll_interval=settings.outbox_poll_interval,
                    batch_size=settings.outbox_batch_size,
                    initial_backoff=settings.outbox_retry_initial_backoff,
                    max_backoff=settings.outbox_retry_max_backoff,
                    retention=settings.outbox_retention,
                ),
                signal=self.outbox_signal,
                clock=clock or SYSTEM_CLOCK,
            )
        self._stopped = asyncio.Event()
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []

    async def _append_event(
        self, request: events_service_pb2.AppendToStreamRequest
    ) -> events_service_pb2.AppendToStreamResponse:
        """One AppendToStream with the service's own credential (the relay runs for no caller)."""
        stub = self.clients.stub("events", events_service_pb2_grpc.EventsServiceStub)
        reply: events_service_pb2.AppendToStreamResponse = await stub.AppendToStream(request)
        return reply

    async def start(self, *, background: bool = True) -> int:
        """Bind, start serving and begin watching the database.

        Returns:
            The port the server listens on.

        Raises:
            PortInUseError: the port is taken.

        """
        # The generated module registers the service's descriptors for reflection.
        importlib.import_module(self.spec.pb2_module)
        module = self._implementation or load_service_module(self.spec)
        if module is None:
            self.server.add_generic_rpc_handlers((unimplemented_handler(self.spec),))
        else:
            context = ServiceContext.create(
                self.spec,
                self.settings,
                self.database,
                self.registry,
                self.clients,
                clock=self._clock,
                audit=self._audit,
                outbox_signal=self.outbox_signal,
                event_source=self._event_source,
            )
            module.register(self.server, context)
            self.context = context
            self._shutdown_hooks = context.shutdown_hooks
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (self.spec.full_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        await self.probes.start()
        address = f"{self.settings.host}:{self.requested_port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as error:
            raise PortInUseError(f"{self.spec.name}: cannot listen on {address} (is the port in use?)") from error
        if self.port == 0:
            raise PortInUseError(f"{self.spec.name}: cannot listen on {address} (is the port in use?)")
        await self.server.start()
        if self.metrics is not None:
            try:
                await self.metrics.start()
            except OSError as error:
                await self.server.stop(None)
                where = f"{self.settings.host}:{self.metrics.requested_port}"
                raise PortInUseError(f"{self.spec.name}: cannot serve metrics on {where} ({error.strerror})") from error
        await self._watch.check_once()
        self._watch.start()
        if background:
            self.start_background()
        log.info("%s listening on %s:%d (%s)", self.spec.name, self.settings.host, self.port, self.database.describe())
        return self.port

    def start_background(self) -> None:
        """Start the work that talks to other services (the revocation stream, the outbox relay).

        An in-process mesh calls it once every service's real port is known.
        """
        if self._revocation_watcher is not None:
            self._revocation_watcher.start()
        if self.relay is not None:
            self.relay.start()
        for projections in self.context.projections if self.context is not None else ():
            projections.start()

    async def shutdown(self) -> None:
        """Leave gracefully, in bounded time: NOT_SERVING, drain, finish in-flight calls, close.

        In-flight handlers get ``shutdown_grace`` seconds and are then cancelled; the server
        stops only once their tasks have ended (or a short unwind time has passed), so no
        handler is left running against a stopped server or a disposed database.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self.probes.drain()
        await self._watch.stop()
        if self._revocation_watcher is not None:
            await self._revocation_watcher.stop()
        drain = self.settings.shutdown_drain
        log.info("%s is shutting down: readiness NOT_SERVING, draining for %.1fs", self.spec.name, drain)
        await asyncio.sleep(drain)
        for hook in self._shutdown_hooks:
            try:
                await asyncio.wait_for(hook(), self.settings.shutdown_grace)
            except Exception:
                log.exception("%s: a shutdown hook failed", self.spec.name)
        stuck = await self.inflight.drain(self.settings.shutdown_grace)
        if stuck:
            log.warning("%s: handlers still running after cancellation: %s", self.spec.name, ", ".join(sorted(stuck)))
        if self.relay is not None:
            # after the last handlers (their events are committed), before the clients and the database close
            await self.relay.stop()
        for projections in self.context.projections if self.context is not None else ():
            await projections.stop()
        await self.probes.stop()
        await self.server.stop(_STOP_GRACE)
        if self.metrics is not None:
            await self.metrics.stop()
        await self.clients.close()
        await self.database.dispose()
        log.info("%s stopped", self.spec.name)

    async def wait_for_termination(self) -> None:
        """Wait until the server has stopped."""
        await self.server.wait_for_termination()

    async def _database_changed(self, reachable: bool) -> None:
        await self.probes.ready(reachable)

    async def _migrate(self) -> None:
        await asyncio.to_thread(migrations.upgrade, self.database)
