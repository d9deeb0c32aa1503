"""The circuit breaker interceptor against a real server on port 0 (clock injected)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from interceptors.client_breaker import SHED_KEY, UpstreamCircuit, client_breaker_interceptors
from mesh.resilience.breaker import BreakerPolicy, CircuitState
from tests.support.resilience import ManualClock, channel_to, echo_server, method


class Upstream:
    """Answers with ``code`` (OK when ``None``), counting the calls that reached it."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.calls = 0

    async def handle(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        if self.code is not None:
            context.set_trailing_metadata(self.trailing)
            await context.abort(self.code, "no")
        return request


def _circuit(upstream: str, failures: int = 3) -> tuple[UpstreamCircuit, ManualClock]:
    clock = ManualClock()
    return UpstreamCircuit("tests", upstream, BreakerPolicy(failures=failures, open_for=5), clock=clock), clock


def state(circuit: UpstreamCircuit) -> CircuitState:
    """The circuit's state, read afresh (mypy would narrow the attribute across calls)."""
    return circuit.breaker.state


async def _codes(call: Any, times: int) -> list[grpc.StatusCode]:
    codes = []
    for _ in range(times):
        try:
            await call(b"x")
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
    return codes


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_repeated_unavailable_opens_the_circuit_then_calls_fail_fast_without_being_sent() -> None:
    upstream = Upstream()
    circuit, clock = _circuit("flaky_a")
    async with (
        echo_server({"Call": upstream.handle}) as port,
        channel_to(port, client_breaker_interceptors(circuit)) as channel,
    ):
        call = method(channel, "Call")
        assert await _codes(call, 3) == [grpc.StatusCode.UNAVAILABLE] * 3
        assert state(circuit) is CircuitState.OPEN
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"x")
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "flaky_a is unavailable" in (refused.value.details() or "")
        assert upstream.calls == 3
        assert _sample("vocelio_client_circuit_state", caller="tests", upstream="flaky_a") == CircuitState.OPEN
        assert _sample("vocelio_client_rejected_total", caller="tests", upstream="flaky_a", reason="circuit_open") == 1

        # Back up: after the open period one probe goes through and closes the circuit.
        upstream.code = None
        clock.now += 5
        assert await _codes(call, 2) == [grpc.StatusCode.OK] * 2
        assert state(circuit) is CircuitState.CLOSED
        assert _sample("vocelio_client_circuit_state", caller="tests", upstream="flaky_a") == CircuitState.CLOSED
        assert (
            _sample(
                "vocelio_client_circuit_transitions_total",
                caller="tests",
                upstream="flaky_a",
                **{"from": "half_open", "to": "closed"},
            )
            == 1
        )


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED]
)
async def test_answers_about_the_request_are_not_failures(code: grpc.StatusCode) -> None:
    upstream = Upstream()
    upstream.code = code
    circuit, _ = _circuit(f"answers_{code.name.lower()}", failures=2)
    async with (
        echo_server({"Call": upstream.handle}) as port,
        channel_to(port, client_breaker_interceptors(circuit)) as channel,
    ):
        assert await _codes(method(channel, "Call"), 4) == [code] * 4
    assert state(circuit) is CircuitState.CLOSED
    assert upstream.calls == 4


async def test_load_shedding_counts_as_a_failure() -> None:
    upstream = Upstream()
    upstream.code = grpc.StatusCode.RESOURCE_EXHAUSTED
    upstream.trailing = ((SHED_KEY, "1"),)
    circuit, _ = _circuit("shedding", failures=2)
    async with (
        echo_server({"Call": upstream.handle}) as port,
        channel_to(port, client_breaker_interceptors(circuit)) as channel,
    ):
        codes = await _codes(method(channel, "Call"), 3)
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2 + [grpc.StatusCode.UNAVAILABLE]
    assert upstream.calls == 2


async def test_a_failed_probe_keeps_the_circuit_open() -> None:
    upstream = Upstream()
    circuit, clock = _circuit("still_down", failures=1)
    async with (
        echo_server({"Call": upstream.handle}) as port,
        channel_to(port, client_breaker_interceptors(circuit)) as channel,
    ):
        call = method(channel, "Call")
        await _codes(call, 1)
        clock.now += 5
        assert await _codes(call, 2) == [grpc.StatusCode.UNAVAILABLE] * 2
    assert upstream.calls == 2  # the probe reached the upstream, the call after it did not
    assert state(circuit) is CircuitState.OPEN
