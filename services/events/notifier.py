"""Wakes waiting subscribers when the log's head moves.

Subscriptions read the store themselves (the store is the only source of events, so a
subscriber can never see an event out of order or miss one at the catch-up/live switch);
this notifier only tells them *when* to read again. An append calls :meth:`committed`
after its transaction commits; a subscriber at the head calls :meth:`wait` with the head
it last read. Appends made by another process (a second replica) are not announced here:
subscribers also re-read every ``poll_interval`` seconds, so they see those within that
time. :meth:`close` at shutdown ends every wait with :class:`Closed`, so no subscription
holds the server's drain.
"""

from __future__ import annotations

import asyncio


class Closed(Exception):
    """The service is shutting down; subscriptions end."""


class LogNotifier:
    """The last committed head this process knows, and the subscribers waiting beyond it."""

    def __init__(self) -> None:
        self._head = 0
        self._closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def committed(self, position: int) -> None:
        """An append up to ``position`` has committed: wake everyone waiting."""
        if position <= self._head:
            return
        self._head = position
        self._wake()

    async def wait(self, seen_head: int, timeout: float) -> None:
        """Return once the head is known beyond ``seen_head``, or after ``timeout`` seconds.

        Raises:
            Closed: the notifier was closed (before or during the wait).

        """
        if self._closed:
            raise Closed
        if self._head > seen_head:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            self._waiters.discard(waiter)
        if self._closed:
            raise Closed

    def close(self) -> None:
        """End every wait, now and later."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
