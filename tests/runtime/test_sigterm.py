"""SIGTERM to a real service process: NOT_SERVING first, then a clean exit."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.grpc_helpers import NOT_SERVING, SERVING, wait_for_status
from tests.support.processes import PYTHON, REPO, environment, free_port_offset


async def test_sigterm_turns_health_not_serving_before_exit(tmp_path):
    offset = free_port_offset()
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "runtime",
        "serve",
        "agents",
        cwd=REPO,
        env=environment(
            VOCELIO_PORT_OFFSET=str(offset),
            VOCELIO_VAR_DIR=str(tmp_path),
            VOCELIO_SHUTDOWN_DRAIN="0.5",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    address = f"127.0.0.1:{8002 + offset}"
    try:
        await wait_for_status(address, SERVING, limit=60)
        async with grpc.aio.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == SERVING
            process.send_signal(signal.SIGTERM)
            assert (await watch.read()).status == NOT_SERVING
            assert process.returncode is None, "health turned NOT_SERVING before the process exited"
        code = await asyncio.wait_for(process.wait(), 30)
        assert code == 0
        output = (await process.stdout.read()).decode() if process.stdout else ""
        assert "shutting down: readiness NOT_SERVING" in output
        assert "agents stopped" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
