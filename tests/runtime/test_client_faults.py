"""Client resilience under real faults: retried creates, slow and stopped downstream services.

Each test drives the real client factory (``runtime.clients.MeshClients``: service config,
request id, deadline, breaker, bulkhead, credential) against real servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from interceptors.deadline import with_deadline
from interceptors.errors import with_errors
from mesh.config import Settings
from mesh.kit.client_errors import translated
from mesh.registry import default_registry
from mesh.resilience.breaker import CircuitState
from runtime.clients import MeshClients
from tests.support.grpc_helpers import SERVING, wait_for_status
from tests.support.kit import kit_service
from tests.support.processes import PYTHON, REPO, environment, free_port_offset
from tests.support.resilience import channel_to, echo_server, method
from tests.support.tcp_proxy import ResponseDroppingProxy
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

CREATE_AGENT = "/vocelio.agents.v1.AgentsService/CreateAgent"


async def test_a_create_retried_after_lost_responses_makes_exactly_one_agent(settings: Settings) -> None:
    """The first two responses are lost after the server committed; gRPC retries with the same request id."""
    retrying = dataclasses.replace(settings, client_retry_max_attempts=5, client_retry_initial_backoff=0.05)
    async with kit_service(settings, "agents") as service:
        proxy = ResponseDroppingProxy("127.0.0.1", service.host.port, drops=2)
        await proxy.start()
        clients = MeshClients("team_hub", retrying, service.host.registry, ports={"agents": proxy.port})
        try:
            stub = clients.stub("agents", agents_service_pb2_grpc.AgentsServiceStub)
            user = service.as_user("org_a")
            before = REGISTRY.get_sample_value("vocelio_server_retried_attempts_total", {"method": CREATE_AGENT})
            request = agents_service_pb2.CreateAgentRequest(
                parent="organizations/org_a", agent=agent_pb2.Agent(display_name="Front desk")
            )
            reply: Any = await stub.CreateAgent(request, metadata=user)
            assert proxy.dropped == 2
            assert request.request_id  # filled by the client, the same on every attempt
            listed: Any = await stub.ListAgents(
                agents_service_pb2.ListAgentsRequest(parent="organizations/org_a"), metadata=user
            )
            assert [agent.name for agent in listed.agents] == [reply.agent.name]
            after = REGISTRY.get_sample_value("vocelio_server_retried_attempts_total", {"method": CREATE_AGENT})
            assert (after or 0.0) - (before or 0.0) == 2
        finally:
            await clients.close()
            await proxy.stop()


# --- a downstream service process stopped under load, then started again -------------------------------------------

SECRET = "k3J9vQx2LmP7wZr4TtY8uB1nC6dF0gHs5aE-iOjKqXy"


async def _start(names: list[str], offset: int, var_dir: pathlib.Path, log: pathlib.Path) -> asyncio.subprocess.Process:
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "runtime",
            "serve",
            *names,
            cwd=REPO,
            env=environment(
                VOCELIO_PORT_OFFSET=str(offset),
                VOCELIO_VAR_DIR=str(var_dir),
                VOCELIO_SERVICE_SECRET=SECRET,
                VOCELIO_SHUTDOWN_DRAIN="0",
                VOCELIO_SHUTDOWN_GRACE="1",
                VOCELIO_LOG_LEVEL="WARNING",
            ),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


_OUTAGE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_MISSING = agents_service_pb2.GetAgentRequest(name="organizations/org_a/agents/ag_missing")
# agents refuses this credential itself (UNAUTHENTICATED, an answer), so no identity process is needed
_CALLER = (("authorization", "Bearer not-a-token"),)


async def _timed(stub: Any) -> tuple[grpc.StatusCode, float]:
    """One call's code (an answer such as UNAUTHENTICATED counts as reaching agents) and its duration."""
    started = time.monotonic()
    try:
        await stub.GetAgent(_MISSING, metadata=_CALLER)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        code = error.code()
    return code, time.monotonic() - started


async def test_a_stopped_downstream_fails_fast_once_the_circuit_opens_and_recovers_after_it_returns(
    tmp_path: pathlib.Path,
) -> None:
    offset = free_port_offset()
    var_dir = tmp_path / "var"
    log = tmp_path / "services.log"
    settings = Settings(
        port_offset=offset,
        var_dir=var_dir,
        service_secret=SECRET,
        client_breaker_failures=5,
        client_breaker_open_seconds=5.0,
        client_retry_initial_backoff=0.05,
    )
    registry = default_registry()
    agents_address = f"127.0.0.1:{settings.port_for(registry.service('agents').contract_port)}"
    agents = await _start(["agents"], offset, var_dir, log)
    clients = MeshClients("team_hub", settings, registry)
    load: list[asyncio.Task[None]] = []
    results: list[tuple[float, grpc.StatusCode, float]] = []
    try:
        await wait_for_status(agents_address, SERVING, limit=40)
        stub = clients.stub("agents", agents_service_pb2_grpc.AgentsServiceStub)
        code, _ = await _timed(stub)
        assert code is grpc.StatusCode.UNAUTHENTICATED, f"agents did not answer: {code}"

        stop = asyncio.Event()

        async def caller() -> None:
            while not stop.is_set():
                started = time.monotonic()
                code, took = await _timed(stub)
                results.append((started, code, took))
                await asyncio.sleep(0.005)

        load = [asyncio.ensure_future(caller()) for _ in range(6)]
        await asyncio.sleep(0.5)
        await _stop(agents)
        circuit = clients.circuit("agents")
        deadline = time.monotonic() + 15
        while circuit.breaker.state is not CircuitState.OPEN:
            assert time.monotonic() < deadline, "the circuit never opened"
            await asyncio.sleep(0.01)

        # Open: every call fails at once with UNAVAILABLE naming agents, and is not sent.
        with pytest.raises(grpc.aio.AioRpcError, match="agents is unavailable: its circuit is open"):
            await stub.GetAgent(_MISSING, metadata=_CALLER)
        for _ in range(20):
            code, took = await _timed(stub)
            assert code is grpc.StatusCode.UNAVAILABLE
            assert took < 0.1, f"a call took {took * 1000:.0f} ms while the circuit was open"

        agents = await _start(["agents"], offset, var_dir, log)
        await wait_for_status(agents_address, SERVING, limit=40)
        back = time.monotonic()
        while True:
            code, _ = await _timed(stub)
            if code not in _OUTAGE:
                break
            assert time.monotonic() - back < 15, "calls did not recover within 15 s of agents' return"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*load)
        # No call hung: even during the outage each ended within its 5 s READ deadline (plus slack).
        assert results and max(took for _, _, took in results) < 6.0
    finally:
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        await clients.close()
        await _stop(agents)


# --- a slow downstream: the deadline propagates, and the downstream sees the cancellation --------------------------


class _SlowAgents(agents_service_pb2_grpc.AgentsServiceServicer):
    """Never answers GetAgent; records the time it was given and that it was cancelled."""

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.cancelled = asyncio.Event()

    async def GetAgent(self, request: Any, context: Any) -> Any:
        self.remaining = context.time_remaining()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_a_slow_downstream_ends_the_call_with_deadline_exceeded_and_is_cancelled() -> None:
    slow = _SlowAgents()
    downstream = grpc.aio.server()
    agents_service_pb2_grpc.add_AgentsServiceServicer_to_server(slow, downstream)
    port = downstream.add_insecure_port("127.0.0.1:0")
    await downstream.start()
    settings = Settings(client_deadline_margin=0.3)
    clients = MeshClients("team_hub", settings, default_registry(), ports={"agents": port})
    stub = clients.stub("agents", agents_service_pb2_grpc.AgentsServiceStub)

    async def front(request: bytes, context: Any) -> bytes:
        # What a service handler does: call downstream, translate its failure for our caller.
        with translated("agents", "read the agent"):
            await stub.GetAgent(
                agents_service_pb2.GetAgentRequest(name="organizations/o/agents/a"),
                metadata=(("authorization", "Bearer caller-token"),),
            )
        return request

    try:
        async with (
            echo_server({"Front": front}, [with_errors, with_deadline]) as front_port,
            channel_to(front_port) as channel,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await method(channel, "Front")(b"x", timeout=2.0)
        assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # The front's own answer, sent 0.3 s before the caller would have given up: the deadline propagated.
        assert "within the caller's deadline" in (failure.value.details() or "")
        assert slow.remaining is not None and slow.remaining < 1.75
        await asyncio.wait_for(slow.cancelled.wait(), 10)
    finally:
        await clients.close()
        await downstream.stop(None)
