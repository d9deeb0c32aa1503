"""Typed stubs to other mesh services, with the client interceptor chain.

Every outgoing call is authenticated: it carries the credential of the principal the
service is working for, or, for work the service does on its own (background tasks,
start-up), the service's own token from identity. There is no unauthenticated internal
path.

Every channel carries the service config generated from the upstream's contract
(``mesh.service_config``: gRFC A6 retries for methods safe to repeat, retry throttling,
per-method default timeouts) and the interceptors, outermost first: request id (AIP-155)
→ deadline (the caller's budget) → circuit breaker → bulkhead → credential → transport.
The breaker and the bulkhead are per upstream, shared by every channel to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from interceptors.client_auth import client_auth_interceptors
from interceptors.client_breaker import UpstreamCircuit, client_breaker_interceptors
from interceptors.client_bulkhead import Bulkhead, client_bulkhead_interceptors
from interceptors.client_deadline import DeadlineBudget, client_deadline_interceptors
from interceptors.client_idempotency import client_idempotency_interceptors
from interceptors.client_metrics import client_metrics_interceptors
from interceptors.client_request_id import client_request_id_interceptors
from mesh import service_config
from mesh.channels import CHANNEL_OPTIONS
from mesh.config import Settings
from mesh.registry import Registry
from mesh.resilience.breaker import BreakerPolicy
from mesh.telemetry.tracing import active as tracing_active

StubT = TypeVar("StubT")

# Renew the service token this long before it expires.
_RENEW_MARGIN = 60.0


class ServiceCredential:
    """The calling service's own access token, obtained from identity and renewed before expiry."""

    def __init__(self, service_name: str, settings: Settings, identity_channel: Callable[[], grpc.aio.Channel]) -> None:
        self.name = service_name
        self.subject = f"services/{service_name}"
        self._settings = settings
        self._channel = identity_channel
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        # A changing number that means "the token may be signed by a key no longer trusted" (key revocations).
        self.key_generation: Callable[[], int] = lambda: 0
        self._generation = 0

    def _usable(self) -> bool:
        if self._generation != self.key_generation():
            return False
        return bool(self._token) and time.monotonic() < self._expires_at - _RENEW_MARGIN

    async def token(self) -> str:
        """A valid token (single-flight: concurrent callers share one request); renewed after a key revocation."""
        if self._usable():
            return self._token
        async with self._lock:
            if self._usable():
                return self._token
            self._generation = self.key_generation()
            from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

            stub = identity_service_pb2_grpc.IdentityServiceStub(self._channel())  # type: ignore[no-untyped-call]
            reply = await stub.IssueToken(
                identity_service_pb2.IssueTokenRequest(
                    grant_type="client_credentials",
                    client_id=self.subject,
                    client_secret=self._settings.mesh_service_credential(self.name),
                ),
                timeout=10,
            )
            self._token = reply.access_token
            self._expires_at = time.monotonic() + reply.expires_in
            return self._token


class MeshClients:
    """One channel per target service, shared; stubs carry the client interceptor chain."""

    def __init__(
        self, service_name: str, settings: Settings, registry: Registry, ports: dict[str, int] | None = None
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._ports = ports if ports is not None else {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._plain_identity: grpc.aio.Channel | None = None
        self._retired: list[grpc.aio.Channel] = []
        self._service_name = service_name
        self._circuits: dict[str, UpstreamCircuit] = {}
        self._bulkheads: dict[str, Bulkhead] = {}
        self.credential = ServiceCredential(service_name, settings, self._identity_channel)

    def address(self, service_name: str) -> str:
        """``host:port`` of a service."""
        spec = self._registry.service(service_name)
        port = self._ports.get(service_name) or self._settings.port_for(spec.contract_port)
        return f"{self._settings.host}:{port}"

    def channel(self, service_name: str) -> grpc.aio.Channel:
        """The shared, intercepted channel to a service."""
        channel = self._channels.get(service_name)
        if channel is None:
            spec = self._registry.service(service_name)
            # Metrics first (outermost): one count per call, whatever the interceptors below do.
            interceptors: list[Any] = [
                *client_metrics_interceptors(),
                *client_idempotency_interceptors(service_config.request_id_methods(self._registry, spec)),
                *client_request_id_interceptors(),
                *self._guards(service_name),
                *client_bulkhead_interceptors(self._bulkhead(service_name)),
                *client_auth_interceptors(self.credential.token),
            ]
            if tracing_active():
                # A CLIENT span per call, and its context as ``traceparent`` in the call's metadata.
                from opentelemetry.instrumentation.grpc import aio_client_interceptors

                interceptors[1:1] = aio_client_interceptors()  # type: ignore[no-untyped-call]
            channel = grpc.aio.insecure_channel(
                self.address(service_name), options=self._options(service_name), interceptors=interceptors
            )
            self._channels[service_name] = channel
        return channel

    def circuit(self, service_name: str) -> UpstreamCircuit:
        """The circuit breaker of the calls to a service (one per upstream, shared by its channels)."""
        circuit = self._circuits.get(service_name)
        if circuit is None:
            settings = self._settings
            policy = BreakerPolicy(
                failures=settings.client_breaker_failures,
                open_for=settings.client_breaker_open_seconds,
                probes=settings.client_breaker_half_open_probes,
            )
            circuit = self._circuits[service_name] = UpstreamCircuit(self._service_name, service_name, policy)
        return circuit

    def _bulkhead(self, service_name: str) -> Bulkhead:
        bulkhead = self._bulkheads.get(service_name)
        if bulkhead is None:
            bulkhead = Bulkhead(self._service_name, service_name, self._settings.client_max_concurrency)
            self._bulkheads[service_name] = bulkhead
        return bulkhead

    def _guards(self, service_name: str) -> list[Any]:
        """The deadline and circuit-breaker interceptors of the calls to a service."""
        spec = self._registry.service(service_name)
        budget = DeadlineBudget(
            self._service_name,
            service_name,
            service_config.method_timeouts(self._registry, spec, self._settings),
            margin=self._settings.client_deadline_margin,
        )
        return [*client_deadline_interceptors(budget), *client_breaker_interceptors(self.circuit(service_name))]

    def _options(self, service_name: str) -> list[tuple[str, Any]]:
        spec = self._registry.service(service_name)
        return service_config.channel_options(self._registry, spec, self._settings, dict(CHANNEL_OPTIONS))

    def stub(self, service_name: str, stub_class: type[StubT]) -> StubT:
        """A generated stub for a service (``clients.stub("team_hub", TeamHubServiceStub)``)."""
        return stub_class(self.channel(service_name))  # type: ignore[call-arg]

    def _identity_channel(self) -> grpc.aio.Channel:
        # Token requests themselves go out without the auth interceptor (IssueToken is public),
        # but with the deadline and identity's circuit breaker.
        if self._plain_identity is None:
            self._plain_identity = grpc.aio.insecure_channel(
                self.address("identity"), options=self._options("identity"), interceptors=self._guards("identity")
            )
        return self._plain_identity

    def plain_channel(self, service_name: str) -> grpc.aio.Channel:
        """A channel without credentials, only for public methods (identity's token and key endpoints)."""
        if service_name != "identity":
            raise ValueError("only identity's public endpoints are called without credentials")
        return self._identity_channel()

    def update_ports(self, ports: dict[str, int]) -> None:
        """Learn the actual ports of services that listen on ephemeral ports (in-process meshes).

        Channels already open to a service whose port changed are closed and reopened on next use.
        """
        for name, port in ports.items():
            if self._ports.get(name) == port:
                continue
            self._ports[name] = port
            stale = [self._channels.pop(name, None)]
            if name == "identity":
                stale.append(self._plain_identity)
                self._plain_identity = None
            # Closed with the others in close(); nothing new will use them.
            self._retired.extend(channel for channel in stale if channel is not None)

    async def close(self) -> None:
        """Close every channel."""
        for channel in [
            *self._channels.values(),
            *([self._plain_identity] if self._plain_identity else []),
            *self._retired,
        ]:
            await channel.close(grace=None)
        self._channels.clear()
        self._retired.clear()
        self._plain_identity = None
