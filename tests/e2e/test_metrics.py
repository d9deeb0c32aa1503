"""Acceptance: a method just called shows up in /metrics — on the service's metrics port and at the edge.

Real servers on ephemeral ports: agents serving gRPC and its metrics port, the REST edge in
front of it scraping that port (and a service that is not there). Both texts are parsed with
prometheus_client's parser; the RED series of exactly the methods called carry the right
codes and counts (deltas: the process registry is shared by the whole test session).
"""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_rest.app import create_app
from gateway_rest.descriptors import Catalog
from gateway_rest.mesh_upstreams import mesh_upstreams
from gateway_rest.metrics_gather import ScrapeTarget
from mesh.config import Settings
from mesh.registry import default_descriptor_set, default_registry
from tests.support.edge import serve_app
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agents_service_pb2 as pb
from vocelio.agents.v1 import agents_service_pb2_grpc as pb_grpc

ISSUER = TestIssuer()
AGENTS = "vocelio.agents.v1.AgentsService"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), "a metric family is repeated"
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def _handled(samples: Samples, method: str, code: str, **extra: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": AGENTS, "grpc_method": method, "grpc_code": code, **extra}
    return samples.get(("grpc_server_handled_total", frozenset(labels.items())), 0.0)


def _series(samples: Samples, name: str, method: str, **extra: str) -> float:
    labels = {"grpc_type": "unary", "grpc_service": AGENTS, "grpc_method": method, **extra}
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    assert response.status_code == 200
    return _samples(response.text)


@pytest.fixture
async def agents(settings: Settings):
    async with running_services(dataclasses.replace(settings, metrics=True), ["agents"], issuer=ISSUER) as mesh:
        host = mesh.hosts[0]
        assert host.metrics is not None and host.metrics.port
        yield mesh, host.metrics.port


async def test_a_method_just_called_shows_its_red_series_on_the_service_port_and_at_the_edge(agents, settings):
    mesh, metrics_port = agents
    admin = {"authorization": f"Bearer {ISSUER.mint(role='ADMIN', org='org_a')}"}
    before = await _scrape(metrics_port)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['agents']}") as channel:
        stub = pb_grpc.AgentsServiceStub(channel)
        await stub.ListAgents(pb.ListAgentsRequest(parent="organizations/org_a"), metadata=tuple(admin.items()))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListAgents(pb.ListAgentsRequest(parent="organizations/org_a"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    registry = default_registry()
    targets = [
        ScrapeTarget("agents", "127.0.0.1", metrics_port),
        ScrapeTarget("calls", "127.0.0.1", 1),  # nothing listens there
    ]
    app = create_app(
        mesh_upstreams(registry, settings, mesh.ports),
        Catalog.from_file(default_descriptor_set()),
        metrics_targets=targets,
        # generous: on a busy 2-core CI machine a scrape may take seconds; the dead target refuses at once
        scrape_timeout=30.0,
    )
    async with serve_app(app) as edge_port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}") as edge:
        missing = await edge.get("/v1/organizations/org_a/agents/ag_aaaaaaaaaaaaaaaa", headers=admin)
        assert missing.status_code == 404
        # An abort's status reaches the client a moment before the server's wrapper counts it.
        for _ in range(100):
            after = await _scrape(metrics_port)
            if _handled(after, "GetAgent", "NOT_FOUND") > _handled(before, "GetAgent", "NOT_FOUND"):
                break
            await asyncio.sleep(0.02)
        gathered = await _scrape(edge_port)

    # The service's own port: exactly the calls made, with the codes the clients saw.
    assert _handled(after, "ListAgents", "OK") - _handled(before, "ListAgents", "OK") == 1
    assert _handled(after, "ListAgents", "UNAUTHENTICATED") - _handled(before, "ListAgents", "UNAUTHENTICATED") == 1
    assert _handled(after, "GetAgent", "NOT_FOUND") - _handled(before, "GetAgent", "NOT_FOUND") == 1
    started = "grpc_server_started_total"
    assert _series(after, started, "ListAgents") - _series(before, started, "ListAgents") == 2
    count = "grpc_server_handling_seconds_count"
    assert _series(after, count, "GetAgent") - _series(before, count, "GetAgent") == 1
    assert _series(after, "grpc_server_in_flight", "ListAgents") == 0
    assert ("process_cpu_seconds_total", frozenset()) in after

    # The edge: the same series under service="agents", its own REST series, a down service reported.
    agents_label = {"service": "agents"}
    assert _handled(gathered, "GetAgent", "NOT_FOUND", **agents_label) == _handled(after, "GetAgent", "NOT_FOUND")
    assert _handled(gathered, "ListAgents", "OK", **agents_label) == _handled(after, "ListAgents", "OK")
    rest = {
        "method": "GET",
        "route": "/v1/{name=organizations/*/agents/*}",
        "grpc_method": f"/{AGENTS}/GetAgent",
        "status": "404",
        "service": "edge",
    }
    assert gathered[("vocelio_edge_requests_total", frozenset(rest.items()))] == 1
    assert gathered[("vocelio_scrape_up", frozenset({("service", "agents")}))] == 1
    assert gathered[("vocelio_scrape_up", frozenset({("service", "calls")}))] == 0
