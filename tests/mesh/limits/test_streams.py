"""Stream slots: a ceiling per key, slots given back, empty keys forgotten."""

from __future__ import annotations

import pytest

from mesh.limits.streams import StreamSlots


def test_a_key_holds_at_most_the_limit_and_gets_slots_back():
    slots = StreamSlots(2)
    assert slots.acquire("a") and slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.open_count("a") == 1
    assert slots.acquire("a")
    for _ in range(2):
        slots.release("a")
    assert slots.open_count("a") == 0


def test_the_limit_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        StreamSlots(0)
