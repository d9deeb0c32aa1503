"""The whole mesh in one process (the all-in-one mode), on ephemeral ports, with the edge."""

from __future__ import annotations

import dataclasses

import grpc
import httpx
import pytest

from mesh.config import Settings
from mesh.registry import default_registry
from runtime.handlers import load_service_module, unimplemented_message
from tests.support.grpc_helpers import SERVING, health_status, reflection_services
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer, every_permission

ISSUER = TestIssuer()


@pytest.fixture
async def mesh(sqlite_settings: Settings):
    # The product's probe cadence: 23 services probing every 0.1 s (the shared settings, for tests
    # that watch a database go away) load this one loop with 230 probes a second, and on a busy
    # machine one probe past its 1 s budget turned a service NOT_SERVING mid-test.
    settings = dataclasses.replace(sqlite_settings, health_probe_interval=2.0, health_probe_timeout=2.0)
    async with running_services(settings, issuer=ISSUER, edge=True) as in_process:
        yield in_process, in_process.edge_port


async def _real_service_token(in_process) -> str:
    """A token from the mesh's real identity: services/agents with its own credential."""
    from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{in_process.ports['identity']}") as channel:
        reply = await identity_service_pb2_grpc.IdentityServiceStub(channel).IssueToken(
            identity_service_pb2.IssueTokenRequest(
                grant_type="client_credentials",
                client_id="services/agents",
                client_secret=in_process.settings.mesh_service_credential("agents"),
            ),
            timeout=10,
        )
    token: str = reply.access_token
    return token


async def _call(channel, method, metadata):
    if method.server_streaming:
        call = channel.unary_stream(method.path, None, None)(b"", timeout=5, metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    else:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(method.path, None, None)(b"", timeout=5, metadata=metadata)
    return caught.value


async def test_every_service_serves_health_and_reflection(mesh):
    in_process, _ = mesh
    assert len(in_process.hosts) == 23
    for host in in_process.hosts:
        address = f"127.0.0.1:{host.port}"
        assert await health_status(address) == SERVING, host.spec.name
        assert await health_status(address, host.spec.full_name) == SERVING
        assert host.spec.full_name in await reflection_services(address)


async def test_unbuilt_methods_answer_unimplemented_with_a_reason(mesh):
    in_process, _ = mesh
    checked = 0
    for host in in_process.hosts:
        if load_service_module(host.spec) is not None:
            continue  # implemented services are tested on their own
        service_token = ISSUER.mint_service("tests", scope=every_permission(host.spec))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            for method in host.spec.methods:
                error = await _call(channel, method, (("authorization", f"Bearer {service_token}"),))
                assert error.code() == grpc.StatusCode.UNIMPLEMENTED, method.path
                assert error.details() == unimplemented_message(method)
                checked += 1
    assert checked > 200


async def test_no_method_but_public_ones_runs_without_credentials(mesh):
    in_process, _ = mesh
    for host in in_process.hosts:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            for method in host.spec.methods:
                assert method.policy is not None
                if method.policy.public:
                    continue
                error = await _call(channel, method, ())
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, method.path
                assert error.details() == "authentication required"


async def test_edge_aggregates_health_and_lists_the_registry(mesh):
    in_process, edge_port = mesh
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}") as client:
        health = await client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "SERVING"
        assert set(body["services"]) == {s.name for s in default_registry()}
        assert all(s["status"] == "SERVING" for s in body["services"].values())

        assert (await client.get("/services")).status_code == 401  # internal addresses: platform principals only
        platform = {"Authorization": f"Bearer {await _real_service_token(in_process)}"}
        assert (await client.get("/metrics", headers=platform)).status_code == 200
        services = (await client.get("/services", headers=platform)).json()["services"]
        by_name = {s["name"]: s for s in services}
        agents = by_name["agents"]
        assert agents["grpc_services"] == ["vocelio.agents.v1.AgentsService"]
        assert agents["address"] == f"127.0.0.1:{in_process.ports['agents']}"
        assert agents["health"] == "SERVING"
        assert agents["title"] == "Agents"

        # One service goes away: the aggregate turns 503 and says which one.
        billing = next(h for h in in_process.hosts if h.spec.name == "billing")
        await billing.shutdown()
        health = await client.get("/health")
        assert health.status_code == 503
        detail = health.json()["services"]
        assert detail["billing"]["status"] in {"UNREACHABLE", "NOT_SERVING"}
        assert detail["agents"]["status"] == "SERVING"
