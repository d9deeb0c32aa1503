"""A circuit breaker: closed → open → half-open → closed, as a pure state machine.

Closed, every call goes through and consecutive failures are counted; ``failures`` in a
row open the circuit. Open, every call is refused at once for ``open_for`` seconds. Then
the circuit is half-open: up to ``probes`` trial calls go through at a time, the rest are
refused; a failed probe opens it again, and ``probes`` successes close it.

Each admitted call gets a *ticket*, the breaker's generation at admission. The generation
changes with every transition, so a call admitted before one (a slow call that ends after
the circuit opened) cannot move the new state: its outcome is ignored. Time comes from an
injected clock, so tests step through every state without waiting.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable


class CircuitState(enum.IntEnum):
    """The breaker's state; the values are those of ``vocelio_client_circuit_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a circuit opens and how it recovers.

    Attributes:
        failures: consecutive failures that open the circuit.
        open_for: seconds an open circuit refuses calls before it turns half-open.
        probes: trial calls a half-open circuit lets through at once; that many successes close it.

    """

    failures: int = 5
    open_for: float = 5.0
    probes: int = 1

    def __post_init__(self) -> None:
        if self.failures < 1 or self.probes < 1 or self.open_for <= 0:
            raise ValueError("failures and probes must be at least 1 and open_for positive")


Transition = Callable[[CircuitState, CircuitState], None]


class CircuitBreaker:
    """The circuit of one upstream."""

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Transition | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._failures = 0
        self._opened_at = 0.0
        self._probing = 0
        self._successes = 0

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit past its open time turns half-open on the next admission)."""
        return self._state

    def admit(self) -> int | None:
        """A ticket for a call that may go out now, or ``None`` when the circuit refuses it."""
        state = self._state
        if state is CircuitState.CLOSED:
            return self._generation
        if state is CircuitState.OPEN:
            if self._clock() - self._opened_at < self.policy.open_for:
                return None
            self._move(CircuitState.HALF_OPEN)
        if self._probing >= self.policy.probes:
            return None
        self._probing += 1
        return self._generation

    def record(self, ticket: int, failed: bool | None) -> None:
        """The outcome of an admitted call: failed, succeeded, or ``None`` (says nothing, e.g. cancelled)."""
        if ticket != self._generation:
            return
        state = self._state
        if state is CircuitState.CLOSED:
            if failed:
                self._failures += 1
                if self._failures >= self.policy.failures:
                    self._open()
            elif failed is not None:
                self._failures = 0
            return
        if state is CircuitState.HALF_OPEN:
            self._probing -= 1
            if failed:
                self._open()
            elif failed is not None:
                self._successes += 1
                if self._successes >= self.policy.probes:
                    self._move(CircuitState.CLOSED)

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a probe through (0 unless open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.policy.open_for - (self._clock() - self._opened_at))

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN)

    def _move(self, state: CircuitState) -> None:
        previous = self._state
        self._state = state
        self._generation += 1
        self._failures = 0
        self._probing = 0
        self._successes = 0
        if self._on_transition is not None:
            self._on_transition(previous, state)
