"""Per-service credentials: each service proves only itself and holds only what its calls need.

identity (real, on port 0) verifies ``services/<name>`` against HMAC(master, name); the
token it issues carries the permissions of the methods the service's contract lists in
``ServiceInfo.calls`` (plus the runtime's own calls), the edge's none; the Authenticator
gives a service principal exactly those. Successful grants are limited per client.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from mesh import service_credentials
from mesh.config import Settings
from mesh.errors import Unauthenticated
from mesh.principal import PrincipalKind
from mesh.registry import RUNTIME_CALLS, default_registry
from runtime.supervisor import Child, Supervisor
from services.identity.app import GRANTS_PER_CLIENT
from tests.services.identity.conftest import (
    SERVICE_SECRET,
    Harness,
    error_info,
    identity_settings,
    oauth_error,
    retry_info,
    service_secret,
    start_harness,
)
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer
from vocelio.identity.v1 import identity_service_pb2 as pb
from vocelio.team_hub.v1 import team_hub_service_pb2, team_hub_service_pb2_grpc

REGISTRY = default_registry()
IMPLEMENTED = ("identity", "team_hub", "developer_api", "agents")


@pytest.fixture
async def harness(sqlite_settings: Settings) -> AsyncIterator[Harness]:
    async for running in start_harness(identity_settings(sqlite_settings)):
        yield running


def _grant(name: str, secret: str, scope: str = "") -> pb.IssueTokenRequest:
    return pb.IssueTokenRequest(
        grant_type="client_credentials", client_id=f"services/{name}", client_secret=secret, scope=scope
    )


# --- the contract ------------------------------------------------------------------


def test_every_declared_call_names_an_existing_non_public_method():
    paths = {method.path: method for service in REGISTRY for method in service.methods}
    for service in REGISTRY:
        for path in (*service.calls, *RUNTIME_CALLS):
            assert path in paths, f"{service.name} declares a call to {path}, which no contract has"
            policy = paths[path].policy
            assert policy is not None and policy.permission, f"{path} needs no permission; do not declare it"
        assert len(set(service.calls)) == len(service.calls), f"{service.name} lists a call twice"


def test_the_implemented_services_declare_what_they_call_as_themselves():
    assert REGISTRY.service("identity").calls == (
        "/vocelio.team_hub.v1.TeamHubService/ListUserMemberships",
        "/vocelio.team_hub.v1.TeamHubService/ProvisionOrganization",
        "/vocelio.team_hub.v1.TeamHubService/RedeemInvitation",
        "/vocelio.developer_api.v1.DeveloperApiService/VerifyApiKey",
    )
    revoke = "/vocelio.identity.v1.IdentityService/RevokePrincipalTokens"
    assert REGISTRY.service("team_hub").calls == (
        revoke,
        "/vocelio.developer_api.v1.DeveloperApiService/RevokeOwnerApiKeys",
    )
    assert REGISTRY.service("developer_api").calls == (
        revoke,
        "/vocelio.team_hub.v1.TeamHubService/ListUserMemberships",
        "/vocelio.team_hub.v1.TeamHubService/GetOrganization",
    )
    assert REGISTRY.service("agents").calls == ()
    runtime = {"revoked_tokens.watch", "audit_events.create", "api_keys.verify", "event_streams.append"}
    assert REGISTRY.service_permissions("agents") == runtime
    assert REGISTRY.service_permissions("team_hub") == runtime | {"revoked_tokens.create", "api_keys.revoke_owned"}
    assert "*" not in REGISTRY.service_permissions("identity")


# --- identity's grant ----------------------------------------------------------------


@pytest.mark.parametrize("name", IMPLEMENTED)
async def test_a_service_token_carries_exactly_its_declared_permissions(harness: Harness, name: str):
    reply = await harness.anonymous.IssueToken(_grant(name, service_secret(name)))
    claims = await harness.verify(reply.access_token)
    assert set(claims.scopes) == REGISTRY.service_permissions(name)
    assert set(reply.scope.split()) == REGISTRY.service_permissions(name)
    # It may ask for less, never for more.
    narrow = await harness.anonymous.IssueToken(_grant(name, service_secret(name), "audit_events.create"))
    assert (await harness.verify(narrow.access_token)).scopes == ("audit_events.create",)
    for wider in ("*", "agents.create", "revoked_tokens.list"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.anonymous.IssueToken(_grant(name, service_secret(name), wider))
        assert oauth_error(caught.value) == "invalid_scope"


async def test_the_edge_gets_a_token_without_any_permission(harness: Harness):
    reply = await harness.anonymous.IssueToken(_grant("edge", service_secret("edge")))
    claims = await harness.verify(reply.access_token)
    assert (claims.subject, claims.role, claims.scopes) == ("services/edge", "SERVICE", ())
    # and it can call nothing, not even what every other service may
    edge = harness.with_token(reply.access_token)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await edge.RecordAuditEvent(pb.RecordAuditEventRequest())
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("agents", SERVICE_SECRET),  # the master secret is nobody's credential
        ("agents", service_secret("team_hub")),  # another service's credential
        ("identity", service_secret("edge")),  # the edge cannot become a service
        ("edge", service_secret("agents")),
        ("nonexistent", service_secret("nonexistent")),
    ],
)
async def test_a_credential_proves_only_its_own_service(harness: Harness, name: str, secret: str):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.anonymous.IssueToken(_grant(name, secret))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert oauth_error(caught.value) == "invalid_client"


async def test_successful_grants_are_limited_per_client_and_the_next_one_says_when_to_retry(harness: Harness):
    right = _grant("agents", service_secret("agents"))
    granted = 0
    # 60 a minute: the bucket refills (one a second) while the grants run, so allow a few more.
    with pytest.raises(grpc.aio.AioRpcError) as limited:  # noqa: PT012 - the loop ends with the refusal
        for _ in range(3 * GRANTS_PER_CLIENT):
            assert (await harness.anonymous.IssueToken(right)).access_token
            granted += 1
    assert granted >= GRANTS_PER_CLIENT
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(limited.value).metadata["limit"] == "per_client"
    assert retry_info(limited.value).retry_delay.seconds >= 1
    # Another client is not affected, and wrong secrets never drained the bucket of the right one.
    assert (await harness.anonymous.IssueToken(_grant("team_hub", service_secret("team_hub")))).access_token
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await harness.anonymous.IssueToken(_grant("developer_api", "guess"))
    assert oauth_error(wrong.value) == "invalid_client"
    assert (await harness.anonymous.IssueToken(_grant("developer_api", service_secret("developer_api")))).access_token


# --- the Authenticator ---------------------------------------------------------------

ISSUER = TestIssuer()


async def test_a_service_principal_holds_its_tokens_scopes_not_everything(sqlite_settings: Settings):
    async with running_services(sqlite_settings, ["team_hub"], issuer=ISSUER) as mesh:
        host = mesh.hosts[0]
        principal = await host.authenticator.authenticate({"authorization": f"Bearer {ISSUER.mint_service('agents')}"})
        assert principal.kind is PrincipalKind.SERVICE and principal.is_platform_admin
        assert principal.permissions == REGISTRY.service_permissions("agents")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            stub = team_hub_service_pb2_grpc.TeamHubServiceStub(channel)
            as_agents = (("authorization", f"Bearer {ISSUER.mint_service('agents')}"),)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.ListUserMemberships(
                    team_hub_service_pb2.ListUserMembershipsRequest(user="users/u1"), metadata=as_agents, timeout=10
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            as_identity = (("authorization", f"Bearer {ISSUER.mint_service('identity')}"),)
            reply = await stub.ListUserMemberships(
                team_hub_service_pb2.ListUserMembershipsRequest(user="users/u1"), metadata=as_identity, timeout=10
            )
            assert reply.next_page_token == ""  # allowed: identity declares this call
        wildcard = {"authorization": f"Bearer {ISSUER.mint_service('agents', scope='*')}"}
        with pytest.raises(Unauthenticated):
            await host.authenticator.authenticate(wildcard)


# --- the supervisor ------------------------------------------------------------------


def test_the_supervisor_gives_each_child_only_its_own_credential(tmp_path: pathlib.Path, monkeypatch):
    monkeypatch.setenv("VOCELIO_SERVICE_SECRET", "inherited-master")
    monkeypatch.setenv("VOCELIO_SERVICE_CREDENTIAL", "inherited-credential")
    master = "q3F9xL2vT8mZ0bW7cR4nJ6yK1pA5sD-eG_hU9iO3tYk"
    supervisor = Supervisor(Settings(var_dir=tmp_path, service_secret=master), REGISTRY)
    children = {child.name: child for child in supervisor.children}
    agents = supervisor._environment_of(children["agents"])
    assert "VOCELIO_SERVICE_SECRET" not in agents
    assert agents["VOCELIO_SERVICE_CREDENTIAL"] == service_credentials.derive(master, "agents")
    edge = supervisor._environment_of(children["edge"])
    assert "VOCELIO_SERVICE_SECRET" not in edge
    assert edge["VOCELIO_SERVICE_CREDENTIAL"] == service_credentials.derive(master, "edge")
    identity = supervisor._environment_of(children["identity"])
    assert identity["VOCELIO_SERVICE_SECRET"] == master
    assert identity["VOCELIO_SERVICE_CREDENTIAL"] == service_credentials.derive(master, "identity")
    all_in_one = supervisor._environment_of(Child("mesh", [], [], credential=""))
    assert all_in_one["VOCELIO_SERVICE_SECRET"] == master and "VOCELIO_SERVICE_CREDENTIAL" not in all_in_one
    assert os.environ["VOCELIO_SERVICE_SECRET"] == "inherited-master"  # the supervisor's own is untouched


# --- the same limit at the edge ------------------------------------------------------


async def test_the_edge_answers_the_limit_with_429_and_retry_after(sqlite_settings: Settings):
    settings = identity_settings(sqlite_settings)
    async with running_services(settings, ["identity"], edge=True) as mesh:
        body = {
            "grant_type": "client_credentials",
            "client_id": "services/agents",
            "client_secret": settings.mesh_service_credential("agents"),
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}", timeout=20) as edge:
            statuses = []
            # 60 a minute, refilling one a second while the grants run: the limit shows after 60 or a few more.
            for _ in range(3 * GRANTS_PER_CLIENT):
                limited = await edge.post("/v1/auth/token", json=body)
                statuses.append(limited.status_code)
                if limited.status_code != 200:
                    break
    assert statuses[:GRANTS_PER_CLIENT] == [200] * GRANTS_PER_CLIENT
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
