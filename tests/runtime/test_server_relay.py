"""ServiceHost runs the outbox relay: started with the background work, stopped (bounded) at shutdown."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
from google.protobuf import json_format

from mesh.config import Settings
from mesh.registry import default_registry
from runtime.serve import InProcessMesh
from runtime.server import ServiceHost
from tests.support.mesh import trusting
from tests.support.recording_event_store import fake_event_store
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

ISSUER = TestIssuer()
REGISTRY = default_registry()


async def test_a_created_agent_reaches_the_event_store_through_the_hosts_relay(settings: Settings) -> None:
    slow_poll = dataclasses.replace(settings, outbox_poll_interval=60.0)  # only the commit can wake it in time
    async with fake_event_store() as running:
        host = ServiceHost(
            REGISTRY.service("agents"), slow_poll, REGISTRY, port=0, security=trusting(ISSUER), serve_metrics=False
        )
        await host.start(background=False)
        try:
            host.clients.update_ports(running.ports)
            host.start_background()
            await asyncio.sleep(0.2)  # the relay's first look found an empty outbox
            token = ISSUER.mint(subject="users/alice", org="org_a", role="ADMIN")
            metadata = (("authorization", f"Bearer {token}"), ("x-request-id", "req-front-desk"))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
                stub = agents_service_pb2_grpc.AgentsServiceStub(channel)
                reply = await stub.CreateAgent(
                    agents_service_pb2.CreateAgentRequest(
                        parent="organizations/org_a", agent=agent_pb2.Agent(display_name="Front desk")
                    ),
                    metadata=metadata,
                    timeout=10,
                )
            await asyncio.wait_for(running.store.appended.wait(), 5)
        finally:
            await host.shutdown()
    assert host.relay is not None
    request = running.store.requests[0]
    agent_id = reply.agent.name.rsplit("/", 1)[1]
    assert request.stream == f"organizations/org_a/event_streams/agents-org_a-{agent_id}"
    assert request.organization_id == "org_a"
    event = request.events[0]
    assert event.type == "agent.created"
    assert json_format.MessageToDict(event.data)["agent"]["name"] == reply.agent.name
    assert event.metadata.actor == "users/alice"
    assert event.metadata.source_service == "agents"
    assert event.metadata.correlation_id == "req-front-desk"


async def _relay_of(host: ServiceHost) -> bool:
    """Whether the (never started) host has a relay; its database pool is closed."""
    await host.database.dispose()
    return host.relay is not None


async def test_events_itself_and_a_host_told_not_to_run_no_relay(sqlite_settings: Settings) -> None:
    assert not await _relay_of(ServiceHost(REGISTRY.service("events"), sqlite_settings, REGISTRY, port=0))
    off = dataclasses.replace(sqlite_settings, outbox_relay=False)
    assert not await _relay_of(ServiceHost(REGISTRY.service("agents"), off, REGISTRY, port=0))
    assert not await _relay_of(ServiceHost(REGISTRY.service("agents"), sqlite_settings, REGISTRY, port=0, relay=False))
    assert await _relay_of(ServiceHost(REGISTRY.service("agents"), sqlite_settings, REGISTRY, port=0))


async def test_an_in_process_mesh_on_ephemeral_ports_relays_only_to_its_own_events_service(
    sqlite_settings: Settings,
) -> None:
    # Without events in the mesh a relay would dial events' contract port, where another mesh may listen.
    alone = InProcessMesh([REGISTRY.service("agents")], sqlite_settings, REGISTRY, ephemeral_ports=True)
    assert [await _relay_of(host) for host in alone.hosts] == [False]
    names = ["agents", "events"]
    together = InProcessMesh([REGISTRY.service(n) for n in names], sqlite_settings, REGISTRY, ephemeral_ports=True)
    assert {host.spec.name: await _relay_of(host) for host in together.hosts} == {"agents": True, "events": False}
