"""Client addresses on a real mesh process: believed from the edge, never from anyone else.

The mesh runs as ``python -m runtime serve --all --with-edge`` with the edge trusting the
test's loopback "load balancer" (``VOCELIO_EDGE_TRUSTED_PROXIES=127.0.0.0/8``), so the
``X-Forwarded-For`` this test sends through the edge names the client. The same header
sent straight to a gRPC port, with or without a forged proxy credential, is ignored: the
audit log, an API key's IP allow-list and the sign-in limiter all see the real peer.
"""

from __future__ import annotations

import grpc
import httpx
import pytest

from tests.support.processes import served_mesh
from vocelio.agents.v1 import agents_service_pb2, agents_service_pb2_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

PASSWORD = "correct horse battery staple"
CLIENT = "198.51.100.23"  # the client behind the load balancer
FORGED = "203.0.113.66"  # what a caller that reaches a gRPC port claims


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with (
        served_mesh(tmp_path_factory, VOCELIO_EDGE_TRUSTED_PROXIES="127.0.0.0/8") as (base, offset),
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield client, offset


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sign_up(edge: httpx.Client, email: str) -> str:
    body = {"email": email, "password": PASSWORD, "displayName": "Ada", "termsAccepted": True}
    response = edge.post("/v1/auth/signup", json={**body, "organizationDisplayName": "Acme"})
    assert response.status_code == 200, response.text
    organization: str = response.json()["organizationId"]
    return organization


def _login(edge: httpx.Client, email: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
    body = {"grant_type": "password", "username": email, "password": password}
    return edge.post("/v1/auth/token", json=body, headers=headers)


async def _grpc_password_grant(port: int, email: str, metadata: tuple[tuple[str, str], ...], password: str = PASSWORD):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        request = identity_service_pb2.IssueTokenRequest(grant_type="password", username=email, password=password)
        return await stub.IssueToken(request, metadata=metadata, timeout=20)


async def test_a_forged_x_forwarded_for_straight_to_identity_is_ignored_and_the_edges_is_audited(mesh):
    edge, offset = mesh
    organization = _sign_up(edge, "ada@example.com")
    via_edge = _login(edge, "ada@example.com", **{"X-Forwarded-For": f"1.1.1.1, {CLIENT}"})
    assert via_edge.status_code == 200, via_edge.text
    access = via_edge.json()["access_token"]
    identity_port = 8022 + offset
    await _grpc_password_grant(identity_port, "ada@example.com", (("x-forwarded-for", FORGED),))
    # A proxy credential that is not the edge's (the user's own token) vouches for nothing.
    forged_proxy = (("x-forwarded-for", "203.0.113.77"), ("x-vocelio-proxy-authorization", f"Bearer {access}"))
    await _grpc_password_grant(identity_port, "ada@example.com", forged_proxy)

    audit = edge.get(
        f"/v1/organizations/{organization}/audit_events",
        headers=_bearer(access),
        params={"pageSize": 100, "filter": "action = SIGN_IN_SUCCEEDED"},
    )
    assert audit.status_code == 200, audit.text
    addresses = [event.get("clientAddress", "") for event in audit.json()["auditEvents"]]
    assert sorted(addresses) == sorted([CLIENT, "127.0.0.1", "127.0.0.1"]), addresses


async def test_an_api_key_ip_allow_list_sees_the_real_peer_on_a_grpc_port_and_the_client_via_the_edge(mesh):
    edge, offset = mesh
    organization = _sign_up(edge, "bob@example.com")
    access = _login(edge, "bob@example.com").json()["access_token"]
    created = edge.post(
        f"/v1/organizations/{organization}/api_keys",
        headers=_bearer(access),
        json={
            "displayName": "office only",
            "scopes": ["agents.list"],
            "environment": "API_KEY_ENVIRONMENT_LIVE",
            "restrictions": {"allowedIpRanges": ["198.51.100.0/24"]},
        },
    )
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    # Straight to agents' gRPC port, claiming an allowed address: the key sees 127.0.0.1 and refuses.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{8002 + offset}") as channel:
        stub = agents_service_pb2_grpc.AgentsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListAgents(
                agents_service_pb2.ListAgentsRequest(parent=f"organizations/{organization}"),
                metadata=(("x-api-key", secret), ("x-forwarded-for", "198.51.100.5")),
                timeout=20,
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    agents = f"/v1/organizations/{organization}/agents"
    assert edge.get(agents, headers={"X-Api-Key": secret}).status_code == 401  # the edge's client: 127.0.0.1
    allowed = edge.get(agents, headers={"X-Api-Key": secret, "X-Forwarded-For": "198.51.100.5"})
    assert allowed.status_code == 200, allowed.text


async def test_the_sign_in_limiter_counts_forged_addresses_against_the_real_peer(mesh):
    edge, offset = mesh
    identity_port = 8022 + offset
    codes = []
    # 30 attempts a minute per address: each forged address would have its own bucket if it were believed.
    for index in range(60):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _grpc_password_grant(
                identity_port, f"nobody{index}@example.com", (("x-forwarded-for", f"203.0.113.{index + 1}"),), "x" * 12
            )
        codes.append(caught.value.code())
        if codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED, codes
    assert len(codes) >= 25  # the one real bucket ran out (other tests of the module share the peer)
    # A client the edge vouches for has its own bucket.
    other = _login(edge, "nobody0@example.com", "x" * 12, **{"X-Forwarded-For": "198.51.100.99"})
    assert other.status_code in (400, 401), other.text
