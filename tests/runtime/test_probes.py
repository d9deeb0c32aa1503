"""Liveness and readiness names of a service's gRPC health, as Kubernetes probes read them."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from mesh.config import Settings
from mesh.registry import default_registry
from runtime.probes import LIVENESS, READINESS, HealthProbes
from runtime.server import ServiceHost
from tests.conftest import with_database_url
from tests.support.grpc_helpers import NOT_SERVING, SERVING, health_status, serving
from tests.support.mesh import trusting
from tests.support.tokens import TestIssuer

AGENTS = "vocelio.agents.v1.AgentsService"
SECURITY = trusting(TestIssuer())
ALIVE_NOT_READY = {"": NOT_SERVING, READINESS: NOT_SERVING, AGENTS: NOT_SERVING, LIVENESS: SERVING}


async def _statuses(channel: grpc.aio.Channel) -> dict[str, int]:
    stub = health_pb2_grpc.HealthStub(channel)
    found = {}
    for name in ("", READINESS, AGENTS, LIVENESS):
        found[name] = (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status
    return found


async def test_readiness_follows_dependencies_liveness_stays_until_the_end():
    health = HealthServicer()
    probes = HealthProbes(health, AGENTS)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    async with serving(server) as channel:
        await probes.start()
        assert await _statuses(channel) == {
            "": NOT_SERVING,
            READINESS: NOT_SERVING,
            AGENTS: NOT_SERVING,
            LIVENESS: SERVING,
        }
        await probes.ready(True)
        assert set((await _statuses(channel)).values()) == {SERVING}
        await probes.ready(False)  # the database went away: not ready, still alive
        assert await _statuses(channel) == {
            "": NOT_SERVING,
            READINESS: NOT_SERVING,
            AGENTS: NOT_SERVING,
            LIVENESS: SERVING,
        }
        await probes.ready(True)
        await probes.drain()
        await probes.ready(True)  # a late database verdict does not undo the drain
        assert await _statuses(channel) == {
            "": NOT_SERVING,
            READINESS: NOT_SERVING,
            AGENTS: NOT_SERVING,
            LIVENESS: SERVING,
        }
        await probes.stop()
        assert (await _statuses(channel))[LIVENESS] == NOT_SERVING


async def test_an_unreachable_database_leaves_the_service_alive_but_not_ready(sqlite_settings: Settings):
    settings = with_database_url(sqlite_settings, "postgresql://postgres@127.0.0.1:1/nowhere")
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    address = f"127.0.0.1:{host.port}"
    try:
        assert await health_status(address, LIVENESS) == SERVING
        assert await health_status(address, READINESS) == NOT_SERVING
        assert await health_status(address) == NOT_SERVING
    finally:
        await host.shutdown()


async def test_drain_turns_readiness_not_serving_while_liveness_stays(sqlite_settings: Settings):
    settings = dataclasses.replace(sqlite_settings, shutdown_drain=1.0)
    host = ServiceHost(default_registry().service("agents"), settings, default_registry(), port=0, security=SECURITY)
    await host.start()
    address = f"127.0.0.1:{host.port}"
    shutdown: asyncio.Future[None] | None = None
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=READINESS))
            assert (await watch.read()).status == SERVING
            assert await health_status(address, LIVENESS) == SERVING
            shutdown = asyncio.ensure_future(host.shutdown())
            assert (await watch.read()).status == NOT_SERVING
            watch.cancel()
            assert not shutdown.done()
            assert await health_status(address, LIVENESS) == SERVING  # still draining, still alive
        await shutdown
        assert await health_status(address, LIVENESS, timeout=0.5) is None  # stopped
    finally:
        if shutdown is None:
            await host.shutdown()
        else:
            await shutdown
