"""Client side: a circuit breaker per upstream, so an upstream that is down costs nothing to call.

A call counts as a failure of the upstream when it ends UNAVAILABLE or DEADLINE_EXCEEDED, or
RESOURCE_EXHAUSTED from load shedding (trailing metadata :data:`SHED_KEY`; a per-principal
rate limit is the caller's problem, not the upstream's). Any other status — NOT_FOUND,
PERMISSION_DENIED, … — is an answer, so a success. A call cancelled by its caller, or
refused before it was sent (bulkhead, no service token), says nothing. The state machine
is :class:`mesh.resilience.breaker.CircuitBreaker`; while it is open a call fails at once
with UNAVAILABLE naming the upstream, and gRPC's retries (below this interceptor) never
start. Server streams are refused while the circuit is open but not counted: a stream's
end says little about the upstream's health.

Series on the default Prometheus registry: ``vocelio_client_circuit_state{caller,upstream}``
(0 closed, 1 half-open, 2 open) and ``vocelio_client_circuit_transitions_total{caller,upstream,from,to}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from interceptors.client_refusal import method_name, refusal
from mesh.resilience.breaker import BreakerPolicy, CircuitBreaker, CircuitState

SHED_KEY = "vocelio-load-shed"
"""Trailing metadata a server adds to RESOURCE_EXHAUSTED when it sheds load (counted as a failure)."""

CIRCUIT_STATE = Gauge(
    "vocelio_client_circuit_state",
    "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
    ["caller", "upstream"],
)
CIRCUIT_TRANSITIONS = Counter(
    "vocelio_client_circuit_transitions_total",
    "Circuit breaker state changes per upstream.",
    ["caller", "upstream", "from", "to"],
)

_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class UpstreamCircuit:
    """The breaker of one upstream, with its metrics."""

    def __init__(
        self, caller: str, upstream: str, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.caller = caller
        self.upstream = upstream
        self._state = CIRCUIT_STATE.labels(caller=caller, upstream=upstream)
        self._state.set(CircuitState.CLOSED)
        self.breaker = CircuitBreaker(policy, clock=clock, on_transition=self._moved)

    def _moved(self, previous: CircuitState, state: CircuitState) -> None:
        self._state.set(state)
        CIRCUIT_TRANSITIONS.labels(
            caller=self.caller, upstream=self.upstream, **{"from": previous.name.lower(), "to": state.name.lower()}
        ).inc()

    def _refused(self, method: str | bytes) -> grpc.aio.AioRpcError:
        return refusal(
            self.caller,
            self.upstream,
            "circuit_open",
            grpc.StatusCode.UNAVAILABLE,
            f"{self.upstream} is unavailable: its circuit is open after repeated failures, so "
            f"{method_name(method)} was not sent; retry in {self.breaker.retry_after():.1f}s",
        )

    def admit(self, method: str | bytes) -> int:
        """A ticket for the call.

        Raises:
            grpc.aio.AioRpcError: UNAVAILABLE, the circuit refuses calls now.

        """
        ticket = self.breaker.admit()
        if ticket is None:
            raise self._refused(method)
        return ticket

    def check_open(self, method: str | bytes) -> None:
        """Refuse a stream while the circuit is open (takes no probe slot)."""
        if self.breaker.state is CircuitState.OPEN and self.breaker.retry_after() > 0:
            raise self._refused(method)

    async def outcome(self, call: Any) -> bool | None:
        """Whether a finished call was a failure of the upstream (``None``: cancelled)."""
        code = await call.code()
        if code in _FAILURES:
            return True
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            trailing = await call.trailing_metadata()
            return any(key == SHED_KEY for key, _ in trailing or ())
        if code is grpc.StatusCode.CANCELLED:
            return None
        return False


class UnaryBreakerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Guards unary calls with the upstream's circuit."""

    def __init__(self, circuit: UpstreamCircuit) -> None:
        self._circuit = circuit

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Refuse the call while the circuit is open; record its outcome otherwise."""
        circuit = self._circuit
        ticket = circuit.admit(client_call_details.method)
        # Refused below this interceptor (bulkhead, no credential) or cancelled: the outcome stays None.
        failed: bool | None = None
        try:
            call = await continuation(client_call_details, request)
            failed = await circuit.outcome(call)
        finally:
            circuit.breaker.record(ticket, failed)
        return call


class StreamBreakerInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Refuses server-streaming calls while the upstream's circuit is open."""

    def __init__(self, circuit: UpstreamCircuit) -> None:
        self._circuit = circuit

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Start the stream unless the circuit is open."""
        self._circuit.check_open(client_call_details.method)
        return await continuation(client_call_details, request)


def client_breaker_interceptors(circuit: UpstreamCircuit) -> list[Any]:
    """The interceptors that guard unary and server-streaming calls with ``circuit``."""
    return [UnaryBreakerInterceptor(circuit), StreamBreakerInterceptor(circuit)]
