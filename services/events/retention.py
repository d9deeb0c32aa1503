"""Retention: archive events older than ``VOCELIO_EVENTS_RETENTION_DAYS`` and scavenge hidden ones.

A background task (stopped through :mod:`mesh.tasks` at shutdown) runs a pass every
``events_retention_interval`` seconds. A pass removes, in batches of
:data:`BATCH` per transaction (so the log's lock is never held long):

- events recorded before ``now - retention_days`` (when retention is on): the oldest first,
  by position, moving the log's archive watermark and each touched stream's
  ``archived_version`` in the same transaction, so reads into the archived range answer
  OUT_OF_RANGE ``EVENTS_ARCHIVED`` rather than silently fewer events;
- events hidden by truncation or deletion (always): they were unreadable already.

"Archive" here means removal from the live store; exporting the removed range to cold
storage first would plug in at :meth:`Retention.run_once` (not built in this release).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh import tasks
from mesh.kit.clock import Clock
from services.events import store

log = logging.getLogger(__name__)

BATCH = 5000


@dataclasses.dataclass(frozen=True, slots=True)
class Pass:
    """What one retention pass did.

    Attributes:
        archived: events archived (older than the retention).
        scavenged: hidden events removed.
        watermark: the archive watermark afterwards (0 when nothing was ever archived).

    """

    archived: int
    scavenged: int
    watermark: int


class Retention:
    """The archiver: :meth:`run_once` for one pass, :meth:`start`/:meth:`stop` for the periodic task."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gate: store.WriteGate,
        clock: Clock,
        *,
        retention_days: int,
        interval: float,
    ) -> None:
        self._sessions = sessions
        self._gate = gate
        self._clock = clock
        self._days = retention_days
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> Pass:
        """Archive what retention allows and scavenge hidden events, batch by batch."""
        archived = scavenged = 0
        if self._days > 0:
            cutoff = self._clock.now() - datetime.timedelta(days=self._days)
            while True:
                async with self._gate.held(), self._sessions.begin() as session:
                    done = await store.archive_before(session, cutoff, batch=BATCH)
                if done is None:
                    break
                archived += done.events
        while True:
            async with self._gate.held(), self._sessions.begin() as session:
                removed = await store.scavenge_hidden(session, batch=BATCH)
            scavenged += removed
            if removed < BATCH:
                break
        async with self._sessions() as session:
            watermark = (await store.head(session)).archived
        if archived or scavenged:
            log.info("events retention: archived %d, scavenged %d, watermark %d", archived, scavenged, watermark)
        return Pass(archived, scavenged, watermark)

    def start(self) -> None:
        """Run a pass every interval until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="events-retention")

    async def stop(self) -> None:
        """Stop the periodic task (bounded)."""
        if self._task is not None:
            await tasks.cancel_and_wait([self._task])
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("events retention pass failed; retrying in %.0fs", self._interval)
