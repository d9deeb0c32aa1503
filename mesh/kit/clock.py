"""An injectable clock, so domain code and tests agree on "now" without monkeypatching."""

from __future__ import annotations

import datetime
from typing import Protocol


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime.datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    """The real time."""

    def now(self) -> datetime.datetime:
        """The current time, timezone-aware UTC."""
        return datetime.datetime.now(datetime.UTC)


class FixedClock:
    """A clock that stands still until told to move (tests).

    Attributes:
        current: the time :meth:`now` returns.

    """

    def __init__(self, current: datetime.datetime | None = None) -> None:
        start = current or datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        if start.tzinfo is None:
            raise ValueError("a FixedClock needs a timezone-aware time")
        self.current = start.astimezone(datetime.UTC)

    def now(self) -> datetime.datetime:
        """The time the clock stands at."""
        return self.current

    def advance(self, delta: datetime.timedelta) -> datetime.datetime:
        """Move the clock forward by ``delta`` and return the new time."""
        self.current += delta
        return self.current


SYSTEM_CLOCK = SystemClock()


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware UTC (the system clock; inject a :class:`Clock` where tests need control)."""
    return SYSTEM_CLOCK.now()
