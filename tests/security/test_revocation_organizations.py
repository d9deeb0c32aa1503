"""Organisation state and revocation freshness through a real mesh (identity, team_hub, developer_api, agents).

Suspending an organisation makes every credential of it fail everywhere within 2 s: its
API key used directly, a token minted from that key, and its users' tokens. Reactivating
lets new sign-ins and the key work again, while the old tokens stay dead. Closing is
allowed to the organisation's own ADMIN. And a service that stops hearing from identity's
revocation stream refuses credentials (UNAVAILABLE) until the stream is back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from mesh.config import Settings
from tests.support.mesh import running_services
from tests.support.tcp_proxy import TcpProxy
from vocelio.agents.v1 import agents_service_pb2 as agents_pb
from vocelio.agents.v1 import agents_service_pb2_grpc as agents_grpc
from vocelio.developer_api.v1 import api_key_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as keys_pb
from vocelio.developer_api.v1 import developer_api_service_pb2_grpc as keys_grpc
from vocelio.identity.v1 import identity_service_pb2 as id_pb
from vocelio.identity.v1 import identity_service_pb2_grpc as id_grpc
from vocelio.team_hub.v1 import team_hub_service_pb2 as hub_pb
from vocelio.team_hub.v1 import team_hub_service_pb2_grpc as hub_grpc

ROOT_EMAIL = "root@vocelio.test"
ROOT_PASSWORD = "root password that is long"
PASSWORD = "correct horse battery staple"
DEADLINE = 2.0  # the promise: every process refuses within 2 s


@dataclasses.dataclass
class Mesh:
    identity: id_grpc.IdentityServiceStub
    team_hub: hub_grpc.TeamHubServiceStub
    developer_api: keys_grpc.DeveloperApiServiceStub
    agents: agents_grpc.AgentsServiceStub
    ports: dict[str, int]
    hosts: dict[str, Any]


def _auth(credential: str) -> tuple[tuple[str, str], ...]:
    if credential.startswith("vk_"):
        return (("x-api-key", credential),)
    return (("authorization", f"Bearer {credential}"),)


@pytest.fixture
async def mesh(sqlite_settings: Settings) -> AsyncIterator[Mesh]:
    settings = dataclasses.replace(
        sqlite_settings,
        bootstrap_admin_email=ROOT_EMAIL,
        bootstrap_admin_password=ROOT_PASSWORD,
        revocation_max_staleness=2.0,
        revocation_heartbeat=0.5,
    )
    async with running_services(settings, ["identity", "team_hub", "developer_api", "agents"]) as running:
        channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}") for name, port in running.ports.items()}
        try:
            yield Mesh(
                id_grpc.IdentityServiceStub(channels["identity"]),
                hub_grpc.TeamHubServiceStub(channels["team_hub"]),
                keys_grpc.DeveloperApiServiceStub(channels["developer_api"]),
                agents_grpc.AgentsServiceStub(channels["agents"]),
                running.ports,
                {host.spec.name: host for host in running.hosts},
            )
        finally:
            for channel in channels.values():
                await channel.close(None)


async def _login(mesh: Mesh, email: str, password: str = PASSWORD) -> id_pb.IssueTokenResponse:
    request = id_pb.IssueTokenRequest(grant_type="password", username=email, password=password)
    reply: id_pb.IssueTokenResponse = await mesh.identity.IssueToken(request, timeout=20)
    return reply


async def _organisation(mesh: Mesh, email: str) -> tuple[str, str]:
    """Sign up (a new organisation, its ADMIN) and sign in: the organisation id and an access token."""
    await mesh.identity.SignUp(
        id_pb.SignUpRequest(
            email=email,
            password=PASSWORD,
            display_name="Ada",
            organization_display_name=f"Org of {email}",
            terms_accepted=True,
        ),
        timeout=20,
    )
    tokens = await _login(mesh, email)
    return tokens.organization_id, tokens.access_token


async def _api_key(mesh: Mesh, organization_id: str, token: str) -> str:
    reply = await mesh.developer_api.CreateApiKey(
        keys_pb.CreateApiKeyRequest(
            parent=f"organizations/{organization_id}",
            api_key=api_key_pb2.ApiKey(
                display_name="CI",
                scopes=["agents.list", "agents.get"],
                environment=api_key_pb2.API_KEY_ENVIRONMENT_LIVE,
            ),
        ),
        metadata=_auth(token),
        timeout=20,
    )
    secret: str = reply.secret
    return secret


async def _key_token(mesh: Mesh, secret: str) -> str:
    request = id_pb.IssueTokenRequest(grant_type="client_credentials", client_secret=secret)
    reply = await mesh.identity.IssueToken(request, timeout=20)
    token: str = reply.access_token
    return token


async def _list_agents(mesh: Mesh, organization_id: str, credential: str) -> grpc.StatusCode:
    try:
        await mesh.agents.ListAgents(
            agents_pb.ListAgentsRequest(parent=f"organizations/{organization_id}"),
            metadata=_auth(credential),
            timeout=10,
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _until(check: Callable[[], Awaitable[bool]], limit: float) -> float:
    """Poll until ``check`` holds; how long it took (fails after ``limit`` seconds)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        if loop.time() - start > limit:
            raise AssertionError(f"not reached within {limit} s")
        await asyncio.sleep(0.05)
    return loop.time() - start


async def test_a_suspended_organisations_credentials_are_refused_within_two_seconds(mesh: Mesh):
    organization_id, user_token = await _organisation(mesh, "ada@example.com")
    other_org, other_token = await _organisation(mesh, "bob@example.com")
    secret = await _api_key(mesh, organization_id, user_token)
    key_token = await _key_token(mesh, secret)
    credentials = {"api key": secret, "key token": key_token, "user token": user_token}
    for credential in credentials.values():  # all work (and the key's principal is now cached by agents)
        assert await _list_agents(mesh, organization_id, credential) == grpc.StatusCode.OK
    root = (await _login(mesh, ROOT_EMAIL, ROOT_PASSWORD)).access_token

    await mesh.team_hub.SuspendOrganization(
        hub_pb.SuspendOrganizationRequest(name=f"organizations/{organization_id}", reason="unpaid"),
        metadata=_auth(root),
        timeout=20,
    )

    async def all_refused() -> bool:
        codes = [await _list_agents(mesh, organization_id, c) for c in credentials.values()]
        return all(code == grpc.StatusCode.UNAUTHENTICATED for code in codes)

    assert await _until(all_refused, limit=10) <= DEADLINE
    # Nothing new can be had while suspended: no key token, no sign-in.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _key_token(mesh, secret)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _login(mesh, "ada@example.com")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Another organisation is untouched.
    assert await _list_agents(mesh, other_org, other_token) == grpc.StatusCode.OK

    await mesh.team_hub.ReactivateOrganization(
        hub_pb.ReactivateOrganizationRequest(name=f"organizations/{organization_id}"), metadata=_auth(root), timeout=20
    )
    # The key is verified again and works; new sign-ins and key tokens work; the old tokens stay dead.
    assert await _list_agents(mesh, organization_id, secret) == grpc.StatusCode.OK
    fresh = (await _login(mesh, "ada@example.com")).access_token
    assert await _list_agents(mesh, organization_id, fresh) == grpc.StatusCode.OK
    assert await _list_agents(mesh, organization_id, await _key_token(mesh, secret)) == grpc.StatusCode.OK
    for old in (key_token, user_token):
        assert await _list_agents(mesh, organization_id, old) == grpc.StatusCode.UNAUTHENTICATED


async def test_an_admin_closes_their_own_organisation_and_its_credentials_die(mesh: Mesh):
    organization_id, token = await _organisation(mesh, "cleo@example.com")
    other_org, other_token = await _organisation(mesh, "dan@example.com")
    secret = await _api_key(mesh, organization_id, token)
    assert await _list_agents(mesh, organization_id, secret) == grpc.StatusCode.OK
    name = f"organizations/{organization_id}"
    # Suspension stays platform-only; another organisation's ADMIN cannot close this one.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.team_hub.SuspendOrganization(
            hub_pb.SuspendOrganizationRequest(name=name, reason="x"), metadata=_auth(token), timeout=20
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.team_hub.CloseOrganization(
            hub_pb.CloseOrganizationRequest(name=name, confirm_display_name="Org of cleo@example.com"),
            metadata=_auth(other_token),
            timeout=20,
        )
    assert caught.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    closed = await mesh.team_hub.CloseOrganization(
        hub_pb.CloseOrganizationRequest(name=name, confirm_display_name="Org of cleo@example.com"),
        metadata=_auth(token),
        timeout=20,
    )
    assert closed.organization.state == 3  # ORGANIZATION_STATE_CLOSED

    async def refused() -> bool:
        codes = {await _list_agents(mesh, organization_id, c) for c in (secret, token)}
        return codes == {grpc.StatusCode.UNAUTHENTICATED}

    assert await _until(refused, limit=10) <= DEADLINE
    assert await _list_agents(mesh, other_org, other_token) == grpc.StatusCode.OK


async def test_a_service_that_stops_hearing_from_identity_refuses_credentials_until_it_hears_again(mesh: Mesh):
    organization_id, token = await _organisation(mesh, "eve@example.com")
    agents = mesh.hosts["agents"]
    # agents reaches identity through a proxy the test can cut.
    proxy = TcpProxy("127.0.0.1", mesh.ports["identity"])
    await proxy.start()
    try:
        agents.clients.update_ports({"identity": proxy.port})
        await agents._revocation_watcher.stop()
        agents._revocation_watcher = type(agents._revocation_watcher)(agents.clients, agents.revocations)
        agents._revocation_watcher.start()

        async def accepted() -> bool:
            return await _list_agents(mesh, organization_id, token) == grpc.StatusCode.OK

        async def unavailable() -> bool:
            return await _list_agents(mesh, organization_id, token) == grpc.StatusCode.UNAVAILABLE

        await _until(accepted, limit=15)
        await proxy.cut()
        await _until(unavailable, limit=15)  # after the 2 s staleness, never a pass
        await proxy.start()
        await _until(accepted, limit=20)  # the stream is back (reconnect backoff is at most 5 s)
    finally:
        await proxy.cut()


def test_the_access_table_and_the_contract_agree_an_admin_may_close_but_not_suspend():
    from mesh.access import Role, default_access_table

    table = default_access_table()
    assert table.allows(Role.ADMIN, "organizations.close")
    assert not table.allows(Role.MANAGER, "organizations.close")
    for platform in ("organizations.suspend", "organizations.reactivate"):
        assert not table.allows(Role.ADMIN, platform)


async def test_a_token_signed_by_a_revoked_key_is_refused_by_every_service_on_the_next_call(mesh: Mesh):
    organization_id, token = await _organisation(mesh, "fay@example.com")
    assert await _list_agents(mesh, organization_id, token) == grpc.StatusCode.OK  # agents caches it
    root = (await _login(mesh, ROOT_EMAIL, ROOT_PASSWORD)).access_token
    jwks = await mesh.identity.GetJwks(id_pb.GetJwksRequest(), timeout=10)
    kid = jwks.keys[0].kid
    await mesh.identity.RevokeSigningKey(
        id_pb.RevokeSigningKeyRequest(name=f"signing_keys/{kid}", reason="compromised"),
        metadata=_auth(root),
        timeout=20,
    )

    async def refused() -> bool:
        return await _list_agents(mesh, organization_id, token) == grpc.StatusCode.UNAUTHENTICATED

    assert await _until(refused, limit=10) <= DEADLINE
    # Tokens from the replacement key work at once (the revocation lets agents refetch the key set).
    fresh = (await _login(mesh, "fay@example.com")).access_token
    assert await _list_agents(mesh, organization_id, fresh) == grpc.StatusCode.OK
