"""The metrics port: /metrics in Prometheus text, 404/405 otherwise, a stop that always finishes."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from runtime.metrics_endpoint import MetricsEndpoint


async def test_it_serves_the_process_registry_as_prometheus_text():
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    port = await endpoint.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/metrics")
            missing = await client.get("/other")
            wrong = await client.post("/metrics")
            head = await client.head("/metrics")
    finally:
        await endpoint.stop()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"python_info", "python_gc_objects_collected"} <= names
    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD"
    assert head.status_code == 200
    assert head.content == b""


async def test_stop_finishes_with_a_connection_left_open():
    endpoint = MetricsEndpoint("127.0.0.1", 0, render=lambda: b"x 1\n")
    port = await endpoint.start()
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metr")  # a request that never finishes
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(endpoint.stop(timeout=2.0), 10)
    writer.close()
    refused = False
    try:
        await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        refused = True
    assert refused


async def test_a_bracketed_ipv6_host_as_grpc_spells_it_is_bound():
    endpoint = MetricsEndpoint("[::]", 0)
    port = await endpoint.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://[::1]:{port}") as client:
            response = await client.get("/metrics")
    finally:
        await endpoint.stop()
    assert response.status_code == 200
