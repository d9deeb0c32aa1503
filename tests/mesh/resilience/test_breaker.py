"""The circuit breaker's state machine, on an injected clock."""

from __future__ import annotations

import pytest

from mesh.resilience.breaker import BreakerPolicy, CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(**policy: float) -> tuple[CircuitBreaker, Clock, list[tuple[CircuitState, CircuitState]]]:
    clock = Clock()
    moves: list[tuple[CircuitState, CircuitState]] = []
    breaker = CircuitBreaker(
        BreakerPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        on_transition=lambda a, b: moves.append((a, b)),
    )
    return breaker, clock, moves


def state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read afresh (mypy would narrow the attribute across calls)."""
    return breaker.state


def _fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        ticket = breaker.admit()
        assert ticket is not None
        breaker.record(ticket, True)


def test_consecutive_failures_open_the_circuit_and_a_success_resets_the_count() -> None:
    breaker, _, moves = _breaker(failures=3, open_for=5)
    _fail(breaker, 2)
    ticket = breaker.admit()
    assert ticket is not None
    breaker.record(ticket, False)
    _fail(breaker, 2)
    assert state(breaker) is CircuitState.CLOSED
    _fail(breaker)
    assert state(breaker) is CircuitState.OPEN
    assert moves == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert breaker.admit() is None
    assert breaker.retry_after() == 5


def test_after_the_open_time_one_probe_goes_through_and_its_success_closes() -> None:
    breaker, clock, moves = _breaker(failures=1, open_for=5, probes=1)
    _fail(breaker)
    clock.now += 4.9
    assert breaker.admit() is None
    clock.now += 0.2
    probe = breaker.admit()
    assert probe is not None and state(breaker) is CircuitState.HALF_OPEN
    assert breaker.admit() is None  # only one probe at a time
    breaker.record(probe, False)
    assert state(breaker) is CircuitState.CLOSED
    assert [b for _, b in moves] == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_a_failed_probe_opens_the_circuit_again_for_a_full_period() -> None:
    breaker, clock, _ = _breaker(failures=1, open_for=2)
    _fail(breaker)
    clock.now += 2
    probe = breaker.admit()
    assert probe is not None
    clock.now += 1
    breaker.record(probe, True)
    assert state(breaker) is CircuitState.OPEN
    assert breaker.retry_after() == 2


def test_several_probes_must_all_succeed() -> None:
    breaker, clock, _ = _breaker(failures=1, open_for=1, probes=2)
    _fail(breaker)
    clock.now += 1
    first, second = breaker.admit(), breaker.admit()
    assert first is not None and second is not None and breaker.admit() is None
    breaker.record(first, False)
    assert state(breaker) is CircuitState.HALF_OPEN
    breaker.record(second, False)
    assert state(breaker) is CircuitState.CLOSED


def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    breaker, clock, _ = _breaker(failures=1, open_for=1)
    slow = breaker.admit()
    assert slow is not None
    _fail(breaker)
    clock.now += 1
    probe = breaker.admit()
    assert probe is not None
    breaker.record(slow, False)  # a success from before the circuit opened does not close it
    assert state(breaker) is CircuitState.HALF_OPEN
    breaker.record(probe, False)
    assert state(breaker) is CircuitState.CLOSED


def test_a_call_that_says_nothing_frees_its_probe_slot_without_deciding() -> None:
    breaker, clock, _ = _breaker(failures=1, open_for=1)
    _fail(breaker)
    clock.now += 1
    probe = breaker.admit()
    assert probe is not None
    breaker.record(probe, None)
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.admit() is not None


def test_a_policy_must_make_sense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BreakerPolicy(failures=0)
    with pytest.raises(ValueError, match="at least 1"):
        BreakerPolicy(open_for=0)
