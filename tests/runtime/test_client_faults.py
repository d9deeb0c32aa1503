"""Client resilience under real faults: retried creates, slow and stopped downstream services.

Each test drives the real client factory (``runtime.clients.MeshClients``: service config,
request id, deadline, breaker, bulkhead, credential) against real servers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
from prometheus_client import REGISTRY

from mesh.config import Settings
from runtime.clients import MeshClients
from tests.support.kit import kit_service
from tests.support.tcp_proxy import ResponseDroppingProxy
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

CREATE_AGENT = "/vocelio.agents.v1.AgentsService/CreateAgent"


async def test_a_create_retried_after_lost_responses_makes_exactly_one_agent(settings: Settings) -> None:
    """The first two responses are lost after the server committed; gRPC retries with the same request id."""
    retrying = dataclasses.replace(settings, client_retry_max_attempts=5, client_retry_initial_backoff=0.05)
    async with kit_service(settings, "agents") as service:
        proxy = ResponseDroppingProxy("127.0.0.1", service.host.port, drops=2)
        await proxy.start()
        clients = MeshClients("team_hub", retrying, service.host.registry, ports={"agents": proxy.port})
        try:
            stub = clients.stub("agents", agents_service_pb2_grpc.AgentsServiceStub)
            user = service.as_user("org_a")
            before = REGISTRY.get_sample_value("vocelio_server_retried_attempts_total", {"method": CREATE_AGENT})
            request = agents_service_pb2.CreateAgentRequest(
                parent="organizations/org_a", agent=agent_pb2.Agent(display_name="Front desk")
            )
            reply: Any = await stub.CreateAgent(request, metadata=user)
            assert proxy.dropped == 2
            assert request.request_id  # filled by the client, the same on every attempt
            listed: Any = await stub.ListAgents(
                agents_service_pb2.ListAgentsRequest(parent="organizations/org_a"), metadata=user
            )
            assert [agent.name for agent in listed.agents] == [reply.agent.name]
            after = REGISTRY.get_sample_value("vocelio_server_retried_attempts_total", {"method": CREATE_AGENT})
            assert (after or 0.0) - (before or 0.0) == 2
        finally:
            await clients.close()
            await proxy.stop()
