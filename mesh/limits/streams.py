"""Concurrent streams per key (a principal): a counter with a ceiling, no clock, no lock."""

from __future__ import annotations

from collections.abc import Hashable


class StreamSlots:
    """How many streams each key holds open, and whether it may open one more."""

    def __init__(self, limit: int) -> None:
        """Slots for at most ``limit`` open streams per key (``limit`` ≥ 1)."""
        if limit < 1:
            raise ValueError(f"the stream limit must be at least 1, got {limit}")
        self.limit = limit
        self._open: dict[Hashable, int] = {}

    def open_count(self, key: Hashable) -> int:
        """How many streams ``key`` holds open."""
        return self._open.get(key, 0)

    def acquire(self, key: Hashable) -> bool:
        """Take a slot for a new stream; ``False`` (nothing taken) when ``key`` holds the limit."""
        held = self._open.get(key, 0)
        if held >= self.limit:
            return False
        self._open[key] = held + 1
        return True

    def release(self, key: Hashable) -> None:
        """Give back the slot of a stream that ended."""
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)
