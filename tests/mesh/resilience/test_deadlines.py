"""The outgoing timeout: the least of the stub's, the method's default and the caller's budget."""

from __future__ import annotations

import pytest

from mesh.resilience.deadlines import TooLittleTime, outgoing_timeout


def test_without_a_caller_deadline_the_method_default_or_the_stub_timeout_applies() -> None:
    assert outgoing_timeout(explicit=None, default=5.0, deadline=None, now=0, margin=0.05) == 5.0
    assert outgoing_timeout(explicit=2.0, default=5.0, deadline=None, now=0, margin=0.05) == 2.0
    assert outgoing_timeout(explicit=9.0, default=5.0, deadline=None, now=0, margin=0.05) == 5.0
    assert outgoing_timeout(explicit=None, default=None, deadline=None, now=0, margin=0.05) is None


def test_the_caller_budget_less_the_margin_caps_the_timeout() -> None:
    assert outgoing_timeout(explicit=None, default=5.0, deadline=11.0, now=10.0, margin=0.25) == 0.75
    assert outgoing_timeout(explicit=None, default=None, deadline=11.0, now=10.0, margin=0.25) == 0.75
    assert outgoing_timeout(explicit=None, default=0.5, deadline=11.0, now=10.0, margin=0.25) == 0.5


def test_too_little_time_left_fails_at_once() -> None:
    with pytest.raises(TooLittleTime, match="remain"):
        outgoing_timeout(explicit=None, default=5.0, deadline=10.04, now=10.0, margin=0.05)
    with pytest.raises(TooLittleTime):
        outgoing_timeout(explicit=None, default=5.0, deadline=9.0, now=10.0, margin=0.05)
