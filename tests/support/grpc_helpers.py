"""Small gRPC helpers the tests share: a server on port 0, health, reflection, waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.asynccontextmanager
async def serving(server: grpc.aio.Server) -> AsyncIterator[grpc.aio.Channel]:
    """Start ``server`` on a free port of 127.0.0.1 and yield a channel to it; close both afterwards."""
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close(None)
        await server.stop(None)


async def health_status(address: str, service: str = "", timeout: float = 2.0) -> int | None:
    """The grpc.health.v1 status, or None when the server does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return None
        return int(response.status)


async def wait_for_status(address: str, wanted: int, service: str = "", limit: float = 15.0) -> None:
    """Poll health until it reads ``wanted``; fail after ``limit`` seconds (a bound, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last = None
    while loop.time() < deadline:
        last = await health_status(address, service)
        if last == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{address} health stayed {last}, wanted {wanted}")


async def reflection_services(address: str) -> list[str]:
    """The service names a server lists over gRPC server reflection."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        async for response in call:
            return [s.name for s in response.list_services_response.service]
    return []


async def reflection_describes(address: str, symbol: str) -> bool:
    """Whether reflection returns the file that declares ``symbol``."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]), timeout=5
        )
        async for response in call:
            return bool(response.file_descriptor_response.file_descriptor_proto)
    return False
