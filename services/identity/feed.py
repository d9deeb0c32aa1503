"""Live revocations: wake every StreamRevocations follower when a revocation is committed.

The feed carries no data, only "something new": each follower reads the log itself
from the last sequence it sent, so nothing is lost or reordered, whatever the timing.
Writers in this process call :meth:`RevocationFeed.notify` after their commit; writers
in other processes are seen by the followers' one-second fallback poll.
"""

from __future__ import annotations

import asyncio

POLL_SECONDS = 1.0


class RevocationFeed:
    """A broadcast doorbell for committed revocations."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every follower waiting now; later waiters wait for the next notification."""
        self._event.set()
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        """The event the next notification sets; take it *before* reading the log, then wait on it."""
        return self._event

    @staticmethod
    async def wait(ticket: asyncio.Event, timeout: float = POLL_SECONDS) -> None:
        """Wait until the ticket is rung or ``timeout`` seconds pass (the fallback poll)."""
        try:
            async with asyncio.timeout(timeout):
                await ticket.wait()
        except TimeoutError:
            pass
