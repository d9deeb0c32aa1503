"""API-key restrictions hold on every call, through real servers with real keys.

developer_api and agents run on port 0 (SQLite), next to a small identity that issues the
services' own tokens and records audit events and revocations. Keys are created through
developer_api by an ADMIN and then used, as the secret itself or as a token minted from
the key (the ``vocelio_restrictions`` claim identity's client_credentials grant writes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from mesh.config import Settings
from mesh.kit.audit import AuditPort
from mesh.kit.clock import Clock, FixedClock
from mesh.registry import default_registry
from mesh.restrictions import CLAIM
from runtime.serve import InProcessMesh
from tests.support.kit import RecordingAudit
from tests.support.mesh import trusting
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc
from vocelio.developer_api.v1 import api_key_pb2, developer_api_service_pb2, developer_api_service_pb2_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, revocation_pb2
from vocelio.team_hub.v1 import organization_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

ISSUER = TestIssuer()
ADMIN = (("authorization", f"Bearer {ISSUER.mint(subject='users/u_admin', role='ADMIN', org='org_a')}"),)
AGENT_SCOPES = [
    "agents.get",
    "agents.list",
    "agents.create",
    "agents.update",
    "agents.delete",
    "agents.publish",
    "agents.archive",
]
Code = grpc.StatusCode
dev = developer_api_service_pb2
ag = agents_service_pb2


class ServiceTokens(identity_service_pb2_grpc.IdentityServiceServicer):
    """Identity's part for these tests: service tokens, audit events and revocations."""

    def __init__(self) -> None:
        self.revoked: list[identity_service_pb2.RevokePrincipalTokensRequest] = []

    async def IssueToken(self, request: Any, context: Any) -> Any:
        token = ISSUER.mint_service(request.client_id.removeprefix("services/"))
        return identity_service_pb2.IssueTokenResponse(access_token=token, token_type="Bearer", expires_in=900)

    async def RecordAuditEvent(self, request: Any, context: Any) -> Any:
        return identity_service_pb2.RecordAuditEventResponse(audit_event=request.audit_event)

    async def RevokePrincipalTokens(self, request: Any, context: Any) -> Any:
        self.revoked.append(request)
        return identity_service_pb2.RevokePrincipalTokensResponse(revocation=revocation_pb2.Revocation(sequence=1))


class ActiveOrganizations(team_hub_service_pb2_grpc.TeamHubServiceServicer):
    """team_hub's part: every organisation is ACTIVE (developer_api checks it when verifying a key)."""

    async def GetOrganization(self, request: Any, context: Any) -> Any:
        organization = organization_pb2.Organization(
            name=request.name, state=organization_pb2.ORGANIZATION_STATE_ACTIVE
        )
        return team_hub_service_pb2.GetOrganizationResponse(organization=organization)


@dataclasses.dataclass
class Mesh:
    in_process: InProcessMesh
    keys: developer_api_service_pb2_grpc.DeveloperApiServiceStub
    identity: ServiceTokens

    def agents_at(self, host: str) -> grpc.aio.Channel:
        """A channel to agents through one of the addresses it listens on."""
        return grpc.aio.insecure_channel(f"{host}:{self.in_process.ports['agents']}")

    async def create_key(self, expire_time: Any = None, **restrictions: list[str]) -> tuple[str, str]:
        """A new key of org_a with the agent scopes; its name and secret."""
        reply = await self.keys.CreateApiKey(
            dev.CreateApiKeyRequest(
                parent="organizations/org_a",
                api_key=api_key_pb2.ApiKey(
                    display_name="restricted",
                    environment=api_key_pb2.API_KEY_ENVIRONMENT_LIVE,
                    scopes=AGENT_SCOPES,
                    restrictions=api_key_pb2.ApiKeyRestrictions(**restrictions),
                    expire_time=expire_time,
                ),
            ),
            metadata=ADMIN,
            timeout=10,
        )
        return reply.api_key.name, reply.secret


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, host: str = "127.0.0.1", edge: bool = False, clock: Clock | None = None
) -> AsyncIterator[Mesh]:
    settings = dataclasses.replace(settings, host=host)
    identity = ServiceTokens()
    identity_server = grpc.aio.server()
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(identity, identity_server)
    team_hub_service_pb2_grpc.add_TeamHubServiceServicer_to_server(ActiveOrganizations(), identity_server)
    identity_port = identity_server.add_insecure_port(f"{host}:0")
    await identity_server.start()
    registry = default_registry()
    audit: AuditPort = RecordingAudit()
    mesh = InProcessMesh(
        [registry.service("developer_api"), registry.service("agents")],
        settings,
        registry,
        ephemeral_ports=True,
        security=trusting(ISSUER, api_keys=True),
        audit=audit,
        clock=clock,
    )
    try:
        await mesh.start()
        for service_host in mesh.hosts:
            service_host.clients.update_ports({**mesh.ports, "identity": identity_port, "team_hub": identity_port})
        if edge:
            mesh.edge_port = await mesh.start_edge(port=0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['developer_api']}") as channel:
            yield Mesh(mesh, developer_api_service_pb2_grpc.DeveloperApiServiceStub(channel), identity)
    finally:
        await mesh.shutdown()
        await identity_server.stop(None)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def outcome(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return Code.OK


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


def minted_from(name: str, **restrictions: list[str]) -> str:
    """A token as identity's client_credentials grant mints it from a key with these restrictions."""
    return ISSUER.mint(
        subject=name,
        role="",
        org="org_a",
        sid="",
        scope=" ".join(AGENT_SCOPES),
        client_id=name,
        **{CLAIM: restrictions},  # type: ignore[arg-type]
    )


# -- IP ranges: checked on every call, from the cache too ---------------------------------


async def test_a_key_limited_to_an_ip_range_is_refused_from_another_address_right_after_a_good_call(
    sqlite_settings: Settings,
):
    # Dual stack: the same agents server is reached as 127.0.0.1 (allowed) and as ::1 (not).
    async with running(sqlite_settings, host="[::]") as mesh:
        _, secret = await mesh.create_key(allowed_ip_ranges=["127.0.0.1/32"])
        listing = ag.ListAgentsRequest(parent="organizations/org_a")
        async with mesh.agents_at("127.0.0.1") as v4, mesh.agents_at("[::1]") as v6:
            allowed = agents_service_pb2_grpc.AgentsServiceStub(v4)
            other = agents_service_pb2_grpc.AgentsServiceStub(v6)
            for metadata in (bearer(secret), (("x-api-key", secret),)):
                await allowed.ListAgents(listing, metadata=metadata, timeout=10)  # verified, now cached
                error = await refused(other.ListAgents(listing, metadata=metadata, timeout=10))
                assert error.code() is Code.UNAUTHENTICATED
                assert error.details() == "invalid or missing credentials"
                await allowed.ListAgents(listing, metadata=metadata, timeout=10)  # still fine from 127.0.0.1


async def test_a_token_minted_from_a_key_obeys_its_ip_ranges(sqlite_settings: Settings):
    async with running(sqlite_settings, host="[::]") as mesh:
        name, _ = await mesh.create_key(allowed_ip_ranges=["127.0.0.1/32"])
        token = minted_from(name, ip=["127.0.0.1/32"])
        listing = ag.ListAgentsRequest(parent="organizations/org_a")
        async with mesh.agents_at("127.0.0.1") as v4, mesh.agents_at("[::1]") as v6:
            await agents_service_pb2_grpc.AgentsServiceStub(v4).ListAgents(listing, metadata=bearer(token), timeout=10)
            error = await refused(
                agents_service_pb2_grpc.AgentsServiceStub(v6).ListAgents(listing, metadata=bearer(token), timeout=10)
            )
            assert error.code() is Code.UNAUTHENTICATED


async def test_a_malformed_restrictions_claim_is_refused(sqlite_settings: Settings):
    async with running(sqlite_settings) as mesh, mesh.agents_at("127.0.0.1") as channel:
        token = ISSUER.mint(
            subject="organizations/org_a/api_keys/k1",
            role="",
            org="org_a",
            scope="agents.list",
            **{CLAIM: "any"},  # type: ignore[arg-type]
        )
        error = await refused(
            agents_service_pb2_grpc.AgentsServiceStub(channel).ListAgents(
                ag.ListAgentsRequest(parent="organizations/org_a"), metadata=bearer(token), timeout=10
            )
        )
        assert error.code() is Code.UNAUTHENTICATED


# -- allowed_agents on every agent-scoped call ---------------------------------------------


def _draft() -> agent_pb2.AgentConfig:
    return agent_pb2.AgentConfig(
        voice="voices/v_aria", language_code="en-US", prompt="You book appointments.", first_message="Hello."
    )


async def _agents(stub: agents_service_pb2_grpc.AgentsServiceStub) -> dict[str, agent_pb2.Agent]:
    """Agents a1, a2 (published, so it has a version) and a3 of org_a, created by the ADMIN."""
    made: dict[str, agent_pb2.Agent] = {}
    for agent_id in ("a1a", "a2a", "a3a"):
        reply = await stub.CreateAgent(
            ag.CreateAgentRequest(
                parent="organizations/org_a",
                agent_id=agent_id,
                agent=agent_pb2.Agent(display_name=agent_id, draft=_draft()),
            ),
            metadata=ADMIN,
            timeout=10,
        )
        made[agent_id] = reply.agent
    for agent_id in ("a1a", "a2a"):
        published = await stub.PublishAgent(
            ag.PublishAgentRequest(name=made[agent_id].name, change_note="v1"), metadata=ADMIN, timeout=10
        )
        made[agent_id] = published.agent
    return made


@pytest.mark.parametrize("credential", ["secret", "minted token"])
async def test_allowed_agents_is_enforced_on_each_agent_scoped_call(sqlite_settings: Settings, credential: str):
    async with running(sqlite_settings) as mesh, mesh.agents_at("127.0.0.1") as channel:
        stub = agents_service_pb2_grpc.AgentsServiceStub(channel)
        made = await _agents(stub)
        allowed = made["a1a"].name
        forbidden = made["a2a"].name
        name, secret = await mesh.create_key(allowed_agents=[allowed, "organizations/org_a/agents/a9a"])
        key = bearer(
            secret if credential == "secret" else minted_from(name, agents=[allowed, "organizations/org_a/agents/a9a"])
        )

        def call(method: str, request: Any) -> Any:
            return getattr(stub, method)(request, metadata=key, timeout=10)

        # List shows only the allowed agent.
        listed = await call("ListAgents", ag.ListAgentsRequest(parent="organizations/org_a"))
        assert [a.name for a in listed.agents] == [allowed]

        def requests(agent: agent_pb2.Agent) -> list[tuple[str, Any]]:
            return [
                ("GetAgent", ag.GetAgentRequest(name=agent.name)),
                ("ListAgentVersions", ag.ListAgentVersionsRequest(parent=agent.name)),
                ("GetAgentVersion", ag.GetAgentVersionRequest(name=f"{agent.name}/versions/1")),
                (
                    "UpdateAgent",
                    ag.UpdateAgentRequest(
                        agent=agent_pb2.Agent(name=agent.name, display_name="renamed"),
                        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                    ),
                ),
                ("PublishAgent", ag.PublishAgentRequest(name=agent.name, change_note="v2")),
                ("PinAgentVersion", ag.PinAgentVersionRequest(name=agent.name, version=1)),
                ("RestoreAgentVersion", ag.RestoreAgentVersionRequest(name=f"{agent.name}/versions/1")),
                ("ArchiveAgent", ag.ArchiveAgentRequest(name=agent.name)),
                ("UnarchiveAgent", ag.UnarchiveAgentRequest(name=agent.name)),
                ("DeleteAgent", ag.DeleteAgentRequest(name=agent.name)),
            ]

        # Every call naming an agent the key leaves out answers what a missing agent answers.
        for method, request in requests(made["a2a"]):
            error = await refused(call(method, request))
            assert error.code() is Code.NOT_FOUND, method
            assert forbidden in (error.details() or ""), method
        # The allowed agent works with every one of them (publishing an unchanged draft is refused on its
        # merits: FAILED_PRECONDITION, not NOT_FOUND).
        for method, request in requests(made["a1a"]):
            assert await outcome(call(method, request)) in (Code.OK, Code.FAILED_PRECONDITION), method
        # Creating: only an agent the key allows.
        error = await refused(
            call(
                "CreateAgent",
                ag.CreateAgentRequest(parent="organizations/org_a", agent=agent_pb2.Agent(display_name="x")),
            )
        )
        assert error.code() is Code.PERMISSION_DENIED
        created = await call(
            "CreateAgent",
            ag.CreateAgentRequest(
                parent="organizations/org_a", agent_id="a9a", agent=agent_pb2.Agent(display_name="ok")
            ),
        )
        assert created.agent.name == "organizations/org_a/agents/a9a"
        # The ADMIN, unrestricted, still sees everything.
        everything = await stub.ListAgents(
            ag.ListAgentsRequest(parent="organizations/org_a"), metadata=ADMIN, timeout=10
        )
        assert {a.name for a in everything.agents} >= {made["a2a"].name, made["a3a"].name}


# -- origins through the REST edge ---------------------------------------------------------


async def test_a_key_limited_to_an_origin_holds_through_the_rest_edge(sqlite_settings: Settings):
    async with running(sqlite_settings, edge=True) as mesh:
        _, secret = await mesh.create_key(allowed_origins=["https://app.example.com"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.in_process.edge_port}", timeout=10) as edge:

            def agents(origin: str | None, **headers: str) -> Any:
                if origin is not None:
                    headers["Origin"] = origin
                return edge.get("/v1/organizations/org_a/agents", headers={"X-Api-Key": secret, **headers})

            assert (await agents("https://app.example.com")).status_code == 200  # verified, now cached
            assert (await agents("https://evil.example")).status_code == 401
            assert (await agents("https://APP.example.com:443")).status_code == 200  # the same origin, normalised
            # A claimed origin under Grpc-Metadata-Origin is not the browser's.
            smuggled = await agents("https://evil.example", **{"Grpc-Metadata-Origin": "https://app.example.com"})
            assert smuggled.status_code == 401
            # A server without an Origin header is not a browser (publishable scopes are harmless there).
            assert (await agents(None)).status_code == 200


# -- expiry: every key expires, and an expired one is refused from the cache too -------------


async def test_keys_expire_after_the_configured_maximum_lifetime_at_most(sqlite_settings: Settings):
    settings = dataclasses.replace(sqlite_settings, api_key_max_lifetime_days=30)
    async with running(settings) as mesh:
        name, _ = await mesh.create_key()
        key = (await mesh.keys.GetApiKey(dev.GetApiKeyRequest(name=name), metadata=ADMIN, timeout=10)).api_key
        lifetime = key.expire_time.ToDatetime(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
        assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)
        too_far = timestamp_pb2.Timestamp()
        too_far.FromDatetime(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=31))
        error = await refused(mesh.create_key(expire_time=too_far))
        assert error.code() is Code.INVALID_ARGUMENT


async def test_a_key_past_its_expiry_is_refused_by_the_authenticator_itself(sqlite_settings: Settings):
    # developer_api's clock stands an hour and a minute in the past, so it created (and still
    # verifies) a key whose one-hour expiry is, by the wall clock, a minute ago.
    past = FixedClock(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1, minutes=1))
    async with running(sqlite_settings, clock=past) as mesh, mesh.agents_at("127.0.0.1") as channel:
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(past.now() + datetime.timedelta(hours=1))
        _, secret = await mesh.create_key(expire_time=expiry)
        verified = await mesh.keys.VerifyApiKey(
            dev.VerifyApiKeyRequest(secret=secret),
            metadata=bearer(ISSUER.mint_service("identity")),
            timeout=10,
        )
        assert verified.api_key  # developer_api, on its clock, still says yes
        error = await refused(
            agents_service_pb2_grpc.AgentsServiceStub(channel).ListAgents(
                ag.ListAgentsRequest(parent="organizations/org_a"), metadata=bearer(secret), timeout=10
            )
        )
        assert error.code() is Code.UNAUTHENTICATED
