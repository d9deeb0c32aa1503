"""The edge's Kubernetes probes: /livez while the process answers, /readyz while it can reach its upstreams."""

from __future__ import annotations

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway_rest.app import create_app
from gateway_rest.upstreams import Upstream, Upstreams
from tests.support.edge import serve_app
from tests.support.processes import free_port_offset


def _upstream(name: str, port: int) -> Upstream:
    return Upstream(name=name, title=name, address=f"127.0.0.1:{port}", services=(f"test.{name}.Service",))


async def test_livez_and_readyz_follow_reachability_and_the_drain():
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # up, but its database is down
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    bare = grpc.aio.server()  # answers gRPC, without the health service
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await server.start()
    await bare.start()
    nowhere = 8000 + free_port_offset(count=1)  # nothing listens there
    try:
        reachable = create_app(Upstreams([_upstream("up", port), _upstream("bare", bare_port)]), health_timeout=2.0)
        parted = create_app(Upstreams([_upstream("up", port), _upstream("gone", nowhere)]), health_timeout=2.0)
        async with serve_app(reachable) as edge, serve_app(parted) as parted_edge, httpx.AsyncClient() as client:
            live = await client.get(f"http://127.0.0.1:{edge}/livez")
            assert (live.status_code, live.json()) == (200, {"status": "SERVING"})
            assert live.headers["cache-control"] == "no-store"
            ready = await client.get(f"http://127.0.0.1:{edge}/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "SERVING"})
            assert (await client.get(f"http://127.0.0.1:{edge}/health")).status_code == 503  # /health tells it apart

            cut_off = await client.get(f"http://127.0.0.1:{parted_edge}/readyz")
            assert cut_off.status_code == 503
            assert cut_off.json()["unreachable"] == ["gone"]
            assert (await client.get(f"http://127.0.0.1:{parted_edge}/livez")).status_code == 200

            reachable.state.lifecycle.begin_drain()
            draining = await client.get(f"http://127.0.0.1:{edge}/readyz")
            assert (draining.status_code, draining.json()["reason"]) == (503, "draining")
            assert (await client.get(f"http://127.0.0.1:{edge}/livez")).status_code == 200
            assert (await client.post(f"http://127.0.0.1:{edge}/readyz")).status_code == 405
    finally:
        await server.stop(None)
        await bare.stop(None)
