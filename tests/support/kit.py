"""The kit's test harness: one service on port 0, a test token issuer, recording fakes.

::

    async with kit_service(settings, "agents", clock=FixedClock()) as service:
        stub = service.stub(agents_service_pb2_grpc.AgentsServiceStub)
        reply = await stub.GetAgent(request, metadata=service.as_user("org_a"))
        assert service.audit.entries == [...]

Services get their clock and audit port through ``ServiceHost`` (no monkeypatching);
:class:`RecordingAudit` keeps entries in memory, and :func:`fake_identity` serves a
recording identity (``RecordAuditEvent``, ``RevokePrincipalTokens``) on port 0 for code
that talks to identity through :class:`mesh.kit.audit.IdentityCalls`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.config import Settings
from mesh.kit.caller import CallerInfo
from mesh.kit.clock import Clock, FixedClock
from mesh.principal import Principal
from runtime.server import ServiceHost
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2, identity_service_pb2_grpc

StubT = TypeVar("StubT")

ISSUER = TestIssuer()


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry a service recorded through :class:`RecordingAudit`."""

    principal: str
    organization_id: str
    action: int
    target: str
    outcome: int
    details: Mapping[str, str]
    client_address: str


class RecordingAudit:
    """An :class:`~mesh.kit.audit.AuditPort` that keeps entries in memory (committed or not)."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []
        self.deliveries: list[str] = []

    async def record(
        self,
        session: AsyncSession,
        *,
        principal: Principal,
        caller: CallerInfo,
        organization_id: str,
        action: audit_event_pb2.AuditAction,
        target: str,
        outcome: audit_event_pb2.AuditOutcome = audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
        details: Mapping[str, str] | None = None,
        actor_label: str = "",
    ) -> str:
        """Keep the entry; its id is its position."""
        self.entries.append(
            AuditEntry(
                principal.subject, organization_id, action, target, outcome, dict(details or {}), caller.client_address
            )
        )
        return str(len(self.entries))

    async def deliver(self, organization_id: str) -> None:
        """Remember that the service delivered after a commit."""
        self.deliveries.append(organization_id)


class RecordingIdentity(identity_service_pb2_grpc.IdentityServiceServicer):
    """Identity's internal methods, recording what they are sent; refusing everything while ``down``."""

    def __init__(self) -> None:
        self.audit: list[identity_service_pb2.RecordAuditEventRequest] = []
        self.revoked: list[identity_service_pb2.RevokePrincipalTokensRequest] = []
        self.down = False

    async def RecordAuditEvent(self, request: Any, context: Any) -> Any:
        """Record an audit event."""
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "identity is down")
        self.audit.append(request)
        return identity_service_pb2.RecordAuditEventResponse(audit_event=request.audit_event)

    async def RevokePrincipalTokens(self, request: Any, context: Any) -> Any:
        """Record a revocation."""
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "identity is down")
        self.revoked.append(request)
        return identity_service_pb2.RevokePrincipalTokensResponse()


@dataclasses.dataclass(frozen=True, slots=True)
class FakeIdentity:
    """A running :class:`RecordingIdentity` and a channel to it."""

    servicer: RecordingIdentity
    channel: grpc.aio.Channel

    def stub(self) -> identity_service_pb2_grpc.IdentityServiceStub:
        """A stub on the shared channel."""
        return identity_service_pb2_grpc.IdentityServiceStub(self.channel)


@contextlib.asynccontextmanager
async def fake_identity() -> AsyncIterator[FakeIdentity]:
    """Serve a :class:`RecordingIdentity` on port 0; the server and channel stop afterwards."""
    servicer = RecordingIdentity()
    server = grpc.aio.server()
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield FakeIdentity(servicer, channel)
    finally:
        await channel.close(None)
        await server.stop(None)


@dataclasses.dataclass(frozen=True, slots=True)
class KitService:
    """One running service, reachable on ``channel``.

    Attributes:
        host: the service host (its database is ``host.database``).
        channel: a channel to it.
        issuer: the token issuer it trusts.
        clock: the clock it runs on.
        audit: what it audited.

    """

    host: ServiceHost
    channel: grpc.aio.Channel
    issuer: TestIssuer
    clock: Clock
    audit: RecordingAudit

    def tick(self, delta: datetime.timedelta = datetime.timedelta(seconds=1)) -> None:
        """Move a :class:`FixedClock` forward, so resources made one after another have distinct times."""
        if isinstance(self.clock, FixedClock):
            self.clock.advance(delta)

    def stub(self, stub_class: type[StubT]) -> StubT:
        """A generated stub on the service's channel."""
        return stub_class(self.channel)  # type: ignore[call-arg]

    def metadata(self, *, subject: str, org: str, role: str = "ADMIN") -> tuple[tuple[str, str], ...]:
        """Call metadata carrying a fresh token for one principal."""
        return (("authorization", f"Bearer {self.issuer.mint(subject=subject, org=org, role=role)}"),)

    def as_user(self, org: str, role: str = "ADMIN", user: str = "users/u1") -> tuple[tuple[str, str], ...]:
        """Call metadata of a user of ``org``."""
        return self.metadata(subject=user, org=org, role=role)

    def as_platform_admin(self) -> tuple[tuple[str, str], ...]:
        """Call metadata of a SUPER_ADMIN outside any organisation."""
        return self.metadata(subject="users/root", org="", role="SUPER_ADMIN")


@contextlib.asynccontextmanager
async def kit_service(
    settings: Settings,
    name: str,
    *,
    issuer: TestIssuer = ISSUER,
    clock: Clock | None = None,
    audit: RecordingAudit | None = None,
) -> AsyncIterator[KitService]:
    """Run one service on port 0 trusting ``issuer``, with an injected clock and a recording audit port."""
    clock = clock or FixedClock()
    audit = audit or RecordingAudit()
    async with running_services(settings, [name], issuer=issuer, clock=clock, audit=audit) as mesh:
        host = mesh.hosts[0]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            yield KitService(host, channel, issuer, clock, audit)
