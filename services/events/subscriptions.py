"""The two Subscribe methods: catch up from the store, say ``caught_up``, then follow live.

One loop serves both phases, and it always reads **from the store, after the last
position it delivered** — catch-up and live differ only in whether the loop waits
between reads. So the switch can neither lose an event (nothing is ever taken from a
second, push-based feed that might start after an event was read) nor duplicate one
(each read starts strictly after the last delivered position). Global positions commit in
order (:mod:`services.events.store`), so "after the last delivered position" never skips
an event committed late.

- **Waiting** at the head: :class:`~services.events.notifier.LogNotifier` wakes the loop
  after each local commit; it also re-reads every ``poll_interval`` seconds, for appends
  made by other replicas.
- **Checkpoints** (SubscribeToAll): a ``SubscriptionCheckpoint`` after every
  ``checkpoint_interval`` positions scanned (matching the filter or not) and after 30 s
  without any message, as a keep-alive. A checkpoint is only sent once every event at or
  before it was delivered.
- **Falling behind**: the "live queue" of a subscription is one read page
  (:data:`LIVE_WINDOW` events). A live subscriber that finds a full page waiting has read
  too slowly for the live feed: it gets ``fell_behind``, catches up page by page, and gets
  ``caught_up`` again at the head. Events keep arriving in order, without gaps.
- **Shutdown**: closing the notifier ends every subscription with UNAVAILABLE at once (a
  subscription must not hold the server's drain); clients resubscribe from their
  checkpoint on another replica or after the restart.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

from google.protobuf import timestamp_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import NotFound, Unavailable
from mesh.kit.clock import Clock
from mesh.kit.sql import timestamp
from services.events import convert, store
from services.events.domain import names, reading
from services.events.domain.reading import Filter
from services.events.models import StreamState
from services.events.notifier import Closed, LogNotifier
from vocelio.events.v1 import event_pb2, events_service_pb2

LIVE_WINDOW = 500
KEEP_ALIVE_SECONDS = 30.0
DEFAULT_CHECKPOINT_INTERVAL = 1000

_SHUTTING_DOWN = "the events service is shutting down; resubscribe from your checkpoint"


@dataclasses.dataclass(frozen=True, slots=True)
class GlobalStart:
    """Where a SubscribeToAll starts.

    Attributes:
        after: deliver events after this position; ``None`` means "after the head when
            the subscription starts" (live_only).
        explicit: the caller named the position (an archived one is then an error).

    """

    after: int | None
    explicit: bool


class Subscriptions:
    """Runs subscriptions against the store."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifier: LogNotifier,
        clock: Clock,
        *,
        poll_interval: float,
        keep_alive: float = KEEP_ALIVE_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._clock = clock
        self._poll = poll_interval
        self._keep_alive = keep_alive

    def _now(self) -> timestamp_pb2.Timestamp:
        return timestamp(self._clock.now())

    async def to_all(
        self,
        *,
        organization_id: str | None,
        filt: Filter,
        start: GlobalStart,
        checkpoint_interval: int,
    ) -> AsyncIterator[events_service_pb2.SubscribeToAllResponse]:
        """The messages of one SubscribeToAll (see the module docstring)."""
        response = events_service_pb2.SubscribeToAllResponse
        async with self._sessions() as session:
            first = await store.head(session)
        if start.after is None:
            last = first.position
        else:
            if start.explicit:
                reading.check_position(start.after + 1, first.archived)
            last = max(start.after, first.archived)
        interval = checkpoint_interval or DEFAULT_CHECKPOINT_INTERVAL
        reads = store.read_after_statement(limit=LIVE_WINDOW, organization_id=organization_id, filt=filt)
        scanned = 0
        live = False
        quiet_since = time.monotonic()
        while True:
            self._require_open()
            async with self._sessions() as session:
                head, rows = await store.read_after(session, reads, last)
            if head.archived > last:
                # Retention archived events this subscription had not delivered yet.
                raise reading.archived_position_error(last + 1, head.archived)
            full = len(rows) == LIVE_WINDOW
            if live and full:
                live = False
                yield response(fell_behind=event_pb2.SubscriptionFellBehind(global_position=last, time=self._now()))
            for row in rows:
                yield response(event=convert.event_to_proto(row))
                scanned += row.global_position - last
                last = row.global_position
                if scanned >= interval:
                    scanned = 0
                    yield response(checkpoint=event_pb2.SubscriptionCheckpoint(global_position=last, time=self._now()))
            if rows:
                quiet_since = time.monotonic()
            if full:
                continue
            # Everything up to the head was delivered or skipped by the filter.
            scanned += max(0, head.position - last)
            last = max(last, head.position)
            if scanned >= interval:
                scanned = 0
                quiet_since = time.monotonic()
                yield response(checkpoint=event_pb2.SubscriptionCheckpoint(global_position=last, time=self._now()))
            if not live:
                live = True
                quiet_since = time.monotonic()
                yield response(caught_up=event_pb2.SubscriptionCaughtUp(global_position=last, time=self._now()))
            if time.monotonic() - quiet_since >= self._keep_alive:
                quiet_since = time.monotonic()
                yield response(checkpoint=event_pb2.SubscriptionCheckpoint(global_position=last, time=self._now()))
            await self._wait(head.position, quiet_since)

    async def to_stream(
        self, *, organization_id: str, stream_id: str, after_version: int | None, live_only: bool
    ) -> AsyncIterator[events_service_pb2.SubscribeToStreamResponse]:
        """The messages of one SubscribeToStream: the stream's events after ``after_version``."""
        response = events_service_pb2.SubscribeToStreamResponse
        name = names.stream_name(organization_id, stream_id)
        async with self._sessions() as session:
            stream = await store.find_stream(session, stream_id)
        if stream is not None and stream.organization_id != organization_id:
            raise NotFound(f"{name} not found")
        if live_only:
            last = stream.last_version if stream is not None else -1
        elif after_version is not None:
            last = after_version
            if stream is not None:
                reading.check_version(name, last + 1, stream.first_readable_version, stream.archived_version)
        else:
            last = -1
        live = False
        while True:
            self._require_open()
            async with self._sessions() as session:
                head = await store.head(session)
                stream = await store.find_stream(session, stream_id)
                rows = []
                if stream is not None and stream.organization_id == organization_id:
                    if stream.state is StreamState.ACTIVE and stream.archived_version > last + 1:
                        raise reading.archived_version_error(name, last + 1, stream.archived_version)
                    lowest = max(stream.first_readable_version, stream.archived_version)
                    rows = await store.read_stream(
                        session, stream_id, start=last + 1, forwards=True, limit=LIVE_WINDOW, lowest=lowest
                    )
            full = len(rows) == LIVE_WINDOW
            if live and full:
                live = False
                yield response(fell_behind=event_pb2.SubscriptionFellBehind(stream_version=last, time=self._now()))
            for row in rows:
                yield response(event=convert.event_to_proto(row))
                last = row.stream_version
            if full:
                continue
            if not live:
                live = True
                yield response(caught_up=event_pb2.SubscriptionCaughtUp(stream_version=last, time=self._now()))
            await self._wait(head.position, None)

    def _require_open(self) -> None:
        if self._notifier.closed:
            raise Unavailable(_SHUTTING_DOWN)

    async def _wait(self, seen_head: int, quiet_since: float | None) -> None:
        timeout = self._poll
        if quiet_since is not None:
            timeout = max(0.0, min(timeout, quiet_since + self._keep_alive - time.monotonic()))
        try:
            await self._notifier.wait(seen_head, timeout)
        except Closed:
            raise Unavailable(_SHUTTING_DOWN) from None
