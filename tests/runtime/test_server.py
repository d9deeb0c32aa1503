"""A real service host on port 0, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import types

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import runtime.server
from mesh import migrations
from mesh.config import Settings
from mesh.registry import default_registry
from runtime.server import PortInUseError, ServiceHost
from tests.conftest import with_database_url
from tests.support.grpc_helpers import (
    NOT_SERVING,
    SERVING,
    health_status,
    reflection_describes,
    reflection_services,
    wait_for_status,
)
from tests.support.mesh import trusting
from tests.support.tcp_proxy import TcpProxy
from tests.support.tokens import TestIssuer
from vocelio.agents.v1 import agents_service_pb2, agents_service_pb2_grpc

AGENTS = "vocelio.agents.v1.AgentsService"
ISSUER = TestIssuer()
SECURITY = trusting(ISSUER)
AUTH = (("authorization", f"Bearer {ISSUER.mint(role='ADMIN', org='org_a')}"),)


@pytest.fixture
async def agents_host(settings: Settings):
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    yield host
    await host.shutdown()


async def test_host_is_serving_with_health_and_reflection(agents_host: ServiceHost):
    address = f"127.0.0.1:{agents_host.port}"
    assert await health_status(address) == SERVING
    assert await health_status(address, AGENTS) == SERVING
    assert await health_status(address, "no.such.Service") is None  # NOT_FOUND
    listed = await reflection_services(address)
    assert AGENTS in listed
    assert "grpc.health.v1.Health" in listed
    assert await reflection_describes(address, AGENTS)


async def test_start_applies_migrations(agents_host: ServiceHost):
    heads = await asyncio.to_thread(migrations.current_heads, agents_host.database)
    assert "mesh_0003" in heads


async def test_unimplemented_methods_say_so(sqlite_settings: Settings):
    host = ServiceHost(
        default_registry().service("billing"), sqlite_settings, default_registry(), port=0, security=SECURITY
    )
    await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary("/vocelio.billing.v1.BillingService/GetBillingAccount", None, None)(
                    b"", timeout=5, metadata=AUTH
                )
    finally:
        await host.shutdown()
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.details() == (
        "/vocelio.billing.v1.BillingService/GetBillingAccount is part of the Vocelio contract"
        " but is not implemented in this release yet"
    )


async def test_a_taken_port_is_a_clear_error(agents_host: ServiceHost, sqlite_settings: Settings):
    second = ServiceHost(
        default_registry().service("agents"), sqlite_settings, default_registry(), port=agents_host.port
    )
    with pytest.raises(PortInUseError, match="is the port in use"):
        await second.start()


async def test_shutdown_reports_not_serving_first_and_lets_in_flight_calls_finish(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    entered = asyncio.Event()
    release = asyncio.Event()

    class SlowAgents(agents_service_pb2_grpc.AgentsServiceServicer):
        async def GetAgent(self, request, context):
            entered.set()
            await release.wait()
            return agents_service_pb2.GetAgentResponse()

    def register(server, _context):
        agents_service_pb2_grpc.add_AgentsServiceServicer_to_server(SlowAgents(), server)

    monkeypatch.setattr(runtime.server, "load_service_module", lambda _spec: types.SimpleNamespace(register=register))
    settings = dataclasses.replace(sqlite_settings, shutdown_drain=0.2, shutdown_grace=10.0)
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    address = f"127.0.0.1:{host.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=AGENTS))
        assert (await watch.read()).status == SERVING
        in_flight = asyncio.ensure_future(
            agents_service_pb2_grpc.AgentsServiceStub(channel).GetAgent(
                agents_service_pb2.GetAgentRequest(name="agents/x"), metadata=AUTH
            )
        )
        entering = asyncio.ensure_future(entered.wait())
        await asyncio.wait([in_flight, entering], return_when=asyncio.FIRST_COMPLETED)
        assert entered.is_set(), in_flight.exception() if in_flight.done() else "handler never entered"
        shutdown = asyncio.ensure_future(host.shutdown())
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()  # a long-lived stream would otherwise hold the server for the whole grace period
        assert not in_flight.done()
        release.set()
        assert isinstance(await in_flight, agents_service_pb2.GetAgentResponse)
        await shutdown
    assert await health_status(address, timeout=0.5) is None  # stopped


@pytest.mark.postgres
async def test_database_outage_turns_not_serving_and_recovers(postgres_settings: Settings):
    assert postgres_settings.database_url is not None
    proxy = TcpProxy(postgres_settings.database_url.host or "127.0.0.1", postgres_settings.database_url.port or 5432)
    port = await proxy.start()
    settings = with_database_url(
        postgres_settings, postgres_settings.database_url.set(host="127.0.0.1", port=port).render_as_string(False)
    )
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    address = f"127.0.0.1:{host.port}"
    try:
        assert await health_status(address, AGENTS) == SERVING
        await proxy.cut()
        await wait_for_status(address, NOT_SERVING, AGENTS)
        assert await health_status(address) == NOT_SERVING
        await proxy.start()
        await wait_for_status(address, SERVING, AGENTS)
    finally:
        await host.shutdown()
        await proxy.cut()


@pytest.mark.postgres
async def test_database_down_at_start_then_back_migrates_and_serves(postgres_settings: Settings):
    assert postgres_settings.database_url is not None
    proxy = TcpProxy(postgres_settings.database_url.host or "127.0.0.1", postgres_settings.database_url.port or 5432)
    port = await proxy.start()
    await proxy.cut()  # the port is known but nothing listens: "PostgreSQL is down"
    settings = with_database_url(
        postgres_settings, postgres_settings.database_url.set(host="127.0.0.1", port=port).render_as_string(False)
    )
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    address = f"127.0.0.1:{host.port}"
    try:
        assert await health_status(address, AGENTS) == NOT_SERVING
        await proxy.start()
        await wait_for_status(address, SERVING, AGENTS)
        heads = await asyncio.to_thread(migrations.current_heads, host.database)
        assert "mesh_0003" in heads
    finally:
        await host.shutdown()
        await proxy.cut()


async def test_wrong_database_url_reports_not_serving(sqlite_settings: Settings):
    settings = with_database_url(sqlite_settings, "postgresql://postgres@127.0.0.1:1/nowhere")
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    try:
        assert await health_status(f"127.0.0.1:{host.port}", AGENTS) == NOT_SERVING
    finally:
        await host.shutdown()
