"""A retried create returns the first result and creates nothing more, also across a restart.

Agents over a real database (SQLite, and PostgreSQL when configured): the first call
creates, the service stops and starts again on the same database, the retry answers the
same agent, and the listing holds exactly one. Once over gRPC with ``request_id``, once
over REST with ``Idempotency-Key`` (which the edge turns into that request_id), and a key
reused with another body is a 400 naming ``request_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import httpx

from mesh.config import Settings
from tests.support.mesh import running_services
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

ISSUER = TestIssuer()
TOKEN = ISSUER.mint(subject="users/alice", org="org_a", role="ADMIN")
AUTH = (("authorization", f"Bearer {TOKEN}"),)
PARENT = "organizations/org_a"
REQUEST_ID = "5f0c6a1e-2b3d-4c5e-8f70-8192a3b4c5d6"


class Started:
    """One run of agents (and the edge) on the settings' database."""

    def __init__(self, stub: agents_service_pb2_grpc.AgentsServiceStub, http: httpx.AsyncClient) -> None:
        self.stub = stub
        self.http = http

    async def names(self) -> list[str]:
        listing = agents_service_pb2.ListAgentsRequest(parent=PARENT)
        reply = await self.stub.ListAgents(listing, metadata=AUTH, timeout=10)
        return sorted(agent.name for agent in reply.agents)


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Started]:
    """Agents and the edge on ``settings``' database until the block ends (then stopped)."""
    async with (
        running_services(settings, ["agents"], issuer=ISSUER, edge=True) as mesh,
        grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['agents']}") as channel,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{mesh.edge_port}", timeout=30) as http,
    ):
        yield Started(agents_service_pb2_grpc.AgentsServiceStub(channel), http)


async def test_a_grpc_retry_with_the_same_request_id_after_a_restart_returns_the_first_agent(settings: Settings):
    request = agents_service_pb2.CreateAgentRequest(
        parent=PARENT, agent=agent_pb2.Agent(display_name="Front desk"), request_id=REQUEST_ID
    )
    async with started(settings) as first_run:
        first = (await first_run.stub.CreateAgent(request, metadata=AUTH, timeout=10)).agent
        retried = (await first_run.stub.CreateAgent(request, metadata=AUTH, timeout=10)).agent
        assert retried == first
    async with started(settings) as second_run:
        after_restart = (await second_run.stub.CreateAgent(request, metadata=AUTH, timeout=10)).agent
        assert after_restart == first
        assert await second_run.names() == [first.name]


async def test_a_rest_retry_with_the_same_idempotency_key_after_a_restart_returns_the_first_agent(settings: Settings):
    path = f"/v1/{PARENT}/agents"
    headers = {"authorization": f"Bearer {TOKEN}", "idempotency-key": "front-desk-2026-12-07"}
    async with started(settings) as first_run:
        first = await first_run.http.post(path, json={"displayName": "Front desk"}, headers=headers)
        assert first.status_code == 200, first.text
        again = await first_run.http.post(path, json={"displayName": "Front desk"}, headers=headers)
        assert again.json() == first.json()
    async with started(settings) as second_run:
        after_restart = await second_run.http.post(path, json={"displayName": "Front desk"}, headers=headers)
        assert after_restart.status_code == 200, after_restart.text
        assert after_restart.json() == first.json()
        other_body = await second_run.http.post(path, json={"displayName": "Back office"}, headers=headers)
        assert other_body.status_code == 400
        violations = other_body.json()["details"][0]["fieldViolations"]
        assert [violation["field"] for violation in violations] == ["request_id"]
        assert await second_run.names() == [first.json()["name"]]
        # Without the key, the same body is a new request: a second agent.
        fresh = await second_run.http.post(
            path, json={"displayName": "Front desk"}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert fresh.status_code == 200
        assert len(await second_run.names()) == 2
