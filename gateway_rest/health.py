"""Aggregated health: ask every upstream's grpc.health.v1 service, concurrently."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway_rest.upstreams import Upstream, Upstreams

_STATUS_NAMES = {
    health_pb2.HealthCheckResponse.SERVING: "SERVING",
    health_pb2.HealthCheckResponse.NOT_SERVING: "NOT_SERVING",
    health_pb2.HealthCheckResponse.SERVICE_UNKNOWN: "SERVICE_UNKNOWN",
    health_pb2.HealthCheckResponse.UNKNOWN: "UNKNOWN",
}


async def check_upstream(upstream: Upstream, timeout: float) -> dict[str, Any]:
    """The health of one upstream: its status name and, when unreachable, why."""
    stub = health_pb2_grpc.HealthStub(upstream.channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError as error:
        return {"status": "UNREACHABLE", "error": error.code().name}
    return {"status": _STATUS_NAMES.get(response.status, "UNKNOWN")}


async def aggregate(upstreams: Upstreams, timeout: float = 1.0) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Check every upstream at once.

    Returns:
        Whether all are SERVING, and per upstream its address and status.

    """
    results = await asyncio.gather(*(check_upstream(u, timeout) for u in upstreams.all))
    detail = {u.name: {"address": u.address, **result} for u, result in zip(upstreams.all, results, strict=True)}
    return all(r["status"] == "SERVING" for r in results), detail
