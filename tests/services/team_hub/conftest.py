"""A real team_hub server on port 0, next to a fake identity that records what it is asked."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from mesh.config import Settings
from mesh.registry import default_registry
from runtime.server import ServiceHost
from tests.support.mesh import trusting
from tests.support.tokens import TestIssuer
from vocelio.developer_api.v1 import developer_api_service_pb2, developer_api_service_pb2_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, revocation_pb2, user_pb2
from vocelio.team_hub.v1 import member_pb2, organization_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

ISSUER = TestIssuer()
pb = team_hub_service_pb2


def claims_of(metadata: dict[str, str]) -> dict[str, Any]:
    """The (unverified) claims of the bearer token on a call."""
    token = metadata.get("authorization", "").removeprefix("Bearer ")
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


@dataclasses.dataclass
class Recorded:
    request: Any
    metadata: dict[str, str]


class FakeIdentity(identity_service_pb2_grpc.IdentityServiceServicer):
    """Issues service tokens, knows a few users, and records revocations and audit events."""

    def __init__(self) -> None:
        self.users: dict[str, tuple[str, str]] = {}
        self.unverified: set[str] = set()  # users whose e-mail address is not verified
        self.audit: list[Recorded] = []
        self.revocations: list[Recorded] = []
        self.user_reads: list[Recorded] = []
        self.unavailable = False

    async def _fail_if_down(self, context: Any) -> None:
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "identity is down")

    async def IssueToken(self, request: Any, context: Any) -> Any:
        assert request.grant_type == "client_credentials"
        token = ISSUER.mint_service(request.client_id.removeprefix("services/"))
        return identity_service_pb2.IssueTokenResponse(access_token=token, token_type="Bearer", expires_in=900)

    async def GetUser(self, request: Any, context: Any) -> Any:
        await self._fail_if_down(context)
        self.user_reads.append(Recorded(request, dict(context.invocation_metadata())))
        if request.name not in self.users:
            await context.abort(grpc.StatusCode.NOT_FOUND, "user not found")
        email, display_name = self.users[request.name]
        return identity_service_pb2.GetUserResponse(
            user=user_pb2.User(
                name=request.name,
                email=email,
                display_name=display_name,
                email_verified=request.name not in self.unverified,
            )
        )

    async def RecordAuditEvent(self, request: Any, context: Any) -> Any:
        await self._fail_if_down(context)
        self.audit.append(Recorded(request, dict(context.invocation_metadata())))
        return identity_service_pb2.RecordAuditEventResponse(audit_event=request.audit_event)

    async def RevokePrincipalTokens(self, request: Any, context: Any) -> Any:
        await self._fail_if_down(context)
        self.revocations.append(Recorded(request, dict(context.invocation_metadata())))
        return identity_service_pb2.RevokePrincipalTokensResponse(
            revocation=revocation_pb2.Revocation(sequence=len(self.revocations))
        )

    def actions(self) -> list[int]:
        return [r.request.audit_event.action for r in self.audit]


class FakeDeveloperApi(developer_api_service_pb2_grpc.DeveloperApiServiceServicer):
    """Records the key revocations team_hub asks for when it removes a member."""

    def __init__(self) -> None:
        self.revocations: list[Recorded] = []
        self.down = False

    async def RevokeOwnerApiKeys(self, request: Any, context: Any) -> Any:
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "developer_api is down")
        self.revocations.append(Recorded(request, dict(context.invocation_metadata())))
        return developer_api_service_pb2.RevokeOwnerApiKeysResponse()


class Caller:
    """The TeamHubService stub, calling as one principal."""

    def __init__(self, stub: team_hub_service_pb2_grpc.TeamHubServiceStub, token: str, organization: str = "") -> None:
        self._stub = stub
        self.token = token
        self.organization = organization

    @property
    def parent(self) -> str:
        """The caller's own organisation as a ``parent``."""
        return f"organizations/{self.organization}"

    def __getattr__(self, method: str) -> Callable[[Any], Awaitable[Any]]:
        rpc = getattr(self._stub, method)
        return lambda request: rpc(request, metadata=(("authorization", f"Bearer {self.token}"),), timeout=10)


@dataclasses.dataclass
class Harness:
    host: ServiceHost
    identity: FakeIdentity
    stub: team_hub_service_pb2_grpc.TeamHubServiceStub
    service: Caller  # identity, calling team_hub's internal methods
    developer_api: FakeDeveloperApi
    # One sign-up request_id per organisation, so that provisioning again is identity's retry.
    signup_keys: dict[str, str] = dataclasses.field(default_factory=dict)

    def as_user(self, user: str, org: str, role: str) -> Caller:
        return Caller(self.stub, ISSUER.mint(subject=user, org=org, role=role), org)

    def as_key(self, key_id: str, org: str, role: str, scope: str) -> Caller:
        # The one place that spells an API key principal (runtime/security.py decides its form).
        subject = f"organizations/{org}/api_keys/{key_id}"
        return Caller(self.stub, ISSUER.mint(subject=subject, org=org, role=role, scope=scope, sid=""), org)

    async def provision(self, organization_id: str, admin: str, *, max_members: int = 0) -> Any:
        return await self.service.ProvisionOrganization(
            pb.ProvisionOrganizationRequest(
                organization=organization_pb2.Organization(
                    display_name=f"{organization_id.title()} Inc", max_members=max_members
                ),
                organization_id=organization_id,
                admin_user=admin,
                admin_email=f"{admin.split('/')[-1]}@{organization_id}.example",
                admin_display_name=admin.split("/")[-1].title(),
                request_id=self.signup_keys.setdefault(organization_id, str(uuid.uuid4())),
            )
        )

    async def join(self, inviter: Caller, user: str, email: str, role: int, **fields: Any) -> Any:
        """Invite ``email`` and redeem the invitation for ``user`` as identity's sign-up would."""
        created = await inviter.CreateInvitation(
            pb.CreateInvitationRequest(parent=inviter.parent, invitation={"email": email, "role": role, **fields})
        )
        redeemed = await self.service.RedeemInvitation(
            pb.RedeemInvitationRequest(
                invitation_token=created.invitation_token, user=user, email=email, display_name=user.split("/")[-1]
            )
        )
        return redeemed.membership


async def start_harness(settings: Settings) -> tuple[Harness, grpc.aio.Server, grpc.aio.Channel]:
    identity = FakeIdentity()
    identity_server = grpc.aio.server()
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(identity, identity_server)
    developer_api = FakeDeveloperApi()
    developer_api_service_pb2_grpc.add_DeveloperApiServiceServicer_to_server(developer_api, identity_server)
    identity_port = identity_server.add_insecure_port("127.0.0.1:0")
    await identity_server.start()
    registry = default_registry()
    host = ServiceHost(registry.service("team_hub"), settings, registry, port=0, security=trusting(ISSUER))
    host.clients.update_ports({"identity": identity_port, "developer_api": identity_port})
    await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    stub = team_hub_service_pb2_grpc.TeamHubServiceStub(channel)
    service = Caller(stub, ISSUER.mint_service("identity"))
    return Harness(host, identity, stub, service, developer_api), identity_server, channel


async def _running(settings: Settings) -> Any:
    harness, identity_server, channel = await start_harness(settings)
    yield harness
    await channel.close(None)
    await harness.host.shutdown()
    await identity_server.stop(None)


@pytest.fixture
async def harness(sqlite_settings: Settings) -> Any:
    async for running in _running(sqlite_settings):
        yield running


@pytest.fixture
async def any_backend(settings: Settings) -> Any:
    async for running in _running(settings):
        yield running


ADMIN = member_pb2.ROLE_ADMIN
MANAGER = member_pb2.ROLE_MANAGER
AGENT = member_pb2.ROLE_AGENT
VIEWER = member_pb2.ROLE_VIEWER
GUEST = member_pb2.ROLE_GUEST
