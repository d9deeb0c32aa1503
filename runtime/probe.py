"""Probes the supervisor uses to report on its children."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

STATUS_NAMES = {value: name for name, value in health_pb2.HealthCheckResponse.ServingStatus.items()}


async def grpc_health(address: str, timeout: float = 1.0) -> str:
    """The overall grpc.health.v1 status of a server, or ``UNREACHABLE``."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
    return str(STATUS_NAMES.get(response.status, "UNKNOWN"))


async def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """The HTTP status code of ``GET path``, or ``None`` when nothing answers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
            await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    parts = status_line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (0 when it is gone)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size of a process (shared pages split among their users), from /proc."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0
