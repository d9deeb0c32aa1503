"""A real developer_api server on port 0, next to a fake identity that records what it is asked."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import grpc
import pytest

from mesh.config import Settings
from mesh.registry import default_registry
from runtime.server import ServiceHost
from tests.support.mesh import trusting
from tests.support.tokens import TestIssuer
from vocelio.developer_api.v1 import developer_api_service_pb2_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, revocation_pb2
from vocelio.team_hub.v1 import member_pb2, organization_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

ISSUER = TestIssuer()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


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
    """Issues service tokens from the test issuer and records audit events and revocations."""

    def __init__(self) -> None:
        self.audit: list[Recorded] = []
        self.revocations: list[Recorded] = []
        self.unavailable = False

    async def _fail_if_down(self, context) -> None:
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "identity is down")

    async def IssueToken(self, request, context):
        assert request.grant_type == "client_credentials"
        token = ISSUER.mint_service(request.client_id.removeprefix("services/"))
        return identity_service_pb2.IssueTokenResponse(access_token=token, token_type="Bearer", expires_in=900)

    async def RecordAuditEvent(self, request, context):
        await self._fail_if_down(context)
        self.audit.append(Recorded(request, dict(context.invocation_metadata())))
        return identity_service_pb2.RecordAuditEventResponse(audit_event=request.audit_event)

    async def RevokePrincipalTokens(self, request, context):
        await self._fail_if_down(context)
        self.revocations.append(Recorded(request, dict(context.invocation_metadata())))
        return identity_service_pb2.RevokePrincipalTokensResponse(
            revocation=revocation_pb2.Revocation(sequence=len(self.revocations))
        )

    def actions(self) -> list[int]:
        return [r.request.audit_event.action for r in self.audit]


class FakeTeamHub(team_hub_service_pb2_grpc.TeamHubServiceServicer):
    """Answers ListUserMemberships from ``members``: (user, organisation) → role; and GetOrganization
    (VerifyApiKey's organisation check) from ``states``: ACTIVE unless told otherwise."""

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], int] = {}
        self.states: dict[str, int] = {}
        self.unavailable = False
        self.asked: list[str] = []

    async def ListUserMemberships(self, request: Any, context: Any) -> Any:
        return team_hub_service_pb2.ListUserMembershipsResponse(
            user_memberships=[
                team_hub_service_pb2.UserMembership(
                    membership=member_pb2.Membership(
                        organization_id=organization,
                        user=user,
                        role=role,  # type: ignore[arg-type]
                        state=member_pb2.MEMBERSHIP_STATE_ACTIVE,
                    )
                )
                for (user, organization), role in self.members.items()
                if user == request.user
            ]
        )

    async def GetOrganization(self, request: Any, context: Any) -> Any:
        self.asked.append(request.name)
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "team_hub is down")
        organization_id = request.name.removeprefix("organizations/")
        state = self.states.get(organization_id, organization_pb2.ORGANIZATION_STATE_ACTIVE)
        if state == organization_pb2.ORGANIZATION_STATE_UNSPECIFIED:
            await context.abort(grpc.StatusCode.NOT_FOUND, "organization not found")
        return team_hub_service_pb2.GetOrganizationResponse(
            organization=organization_pb2.Organization(
                name=request.name,
                organization_id=organization_id,
                state=state,  # type: ignore[arg-type]
            )
        )


@dataclasses.dataclass
class Harness:
    host: ServiceHost
    identity: FakeIdentity
    stub: Any
    channel: grpc.aio.Channel
    team_hub: FakeTeamHub = dataclasses.field(default_factory=FakeTeamHub)


async def start_harness(settings: Settings, *, api_keys: bool = False):
    identity = FakeIdentity()
    identity_server = grpc.aio.server()
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(identity, identity_server)
    team_hub = FakeTeamHub()
    team_hub_service_pb2_grpc.add_TeamHubServiceServicer_to_server(team_hub, identity_server)
    identity_port = identity_server.add_insecure_port("127.0.0.1:0")
    await identity_server.start()
    registry = default_registry()
    host = ServiceHost(
        registry.service("developer_api"), settings, registry, port=0, security=trusting(ISSUER, api_keys=api_keys)
    )
    host.clients.update_ports({"identity": identity_port, "team_hub": identity_port})
    await host.start()
    # The authenticator checks API keys with developer_api itself.
    host.clients.update_ports({"developer_api": host.port})
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    stub = developer_api_service_pb2_grpc.DeveloperApiServiceStub(channel)
    return Harness(host, identity, stub, channel, team_hub), identity_server


@pytest.fixture
async def harness(sqlite_settings: Settings):
    running, identity_server = await start_harness(sqlite_settings)
    yield running
    await running.channel.close()
    await running.host.shutdown()
    await identity_server.stop(None)


@pytest.fixture
async def any_backend(settings: Settings):
    running, identity_server = await start_harness(settings)
    yield running
    await running.channel.close()
    await running.host.shutdown()
    await identity_server.stop(None)


@pytest.fixture
async def harness_with_api_keys(sqlite_settings: Settings):
    running, identity_server = await start_harness(sqlite_settings, api_keys=True)
    yield running
    await running.channel.close()
    await running.host.shutdown()
    await identity_server.stop(None)
