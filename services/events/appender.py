"""Group commit: one writer per process, every append that queued meanwhile in one transaction.

The log's lock (:mod:`services.events.store`) makes appends take turns. Holding it for a
transaction per request would cost every request a handful of round trips and a commit's
fsync while all other appenders wait. Instead each ``AppendToStream`` is checked on its
own (in its handler, concurrently), then queued here; one writer task takes whatever has
queued while the previous transaction ran and writes it in one transaction: one statement
that locks the log and reserves positions, one read each of the streams and the stored
ids, one insert of all events, one commit. Under load a batch holds many requests; at rest
a request waits for nobody (the writer starts at once when the queue was empty). The
writer keeps its own connection between batches (no pool checkout, ping and reset per
batch) and starts on a fresh one after any error.

What each caller sees is exactly what it would see if the queued appends ran one after
another in arrival order (:mod:`services.events.domain.batches`): a refused append fails
alone. If a batch's transaction fails as a whole (a database error), each of its appends
is written again alone, so one cannot fail its neighbours; a retry of an append that did
commit answers ``already_appended`` as any client retry would.

The writer runs in an empty context (no caller's trace, principal or deadline leaks into
another's), so its SQL is nobody's span. At shutdown :meth:`Appender.close` refuses new
appends with UNAVAILABLE and lets the queue drain, bounded; what is left then fails with
UNAVAILABLE rather than hang its caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mesh.errors import Unavailable, VocelioError
from mesh.kit.clock import Clock
from services.events import store
from services.events.domain import batches
from services.events.notifier import LogNotifier
from vocelio.events.v1 import events_service_pb2

log = logging.getLogger(__name__)
pb = events_service_pb2

MAX_BATCH_EVENTS = 5_000
"""Most events one transaction writes (a single append of up to 500 always fits)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Waiting:
    queued: batches.Queued
    future: asyncio.Future[pb.AppendToStreamResponse]


class Appender:
    """Queues checked appends and writes them in batches, one transaction at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        gate: store.WriteGate,
        notifier: LogNotifier,
        clock: Clock,
        *,
        max_batch_events: int = MAX_BATCH_EVENTS,
    ) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._gate = gate
        self._notifier = notifier
        self._clock = clock
        self._max_batch_events = max_batch_events
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        """Transactions written so far (for tests and the bench: requests per batch)."""

    async def append(self, queued: batches.Queued) -> pb.AppendToStreamResponse:
        """Write one append with whatever else is queued; its response, or raise its error.

        Raises:
            Unavailable: the service is shutting down.
            VocelioError: the append was refused (wrong expected version, reused id, …).

        """
        if self._closed:
            raise Unavailable("the event store is shutting down; retry on another replica or later")
        future: asyncio.Future[pb.AppendToStreamResponse] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(queued, future))
        if self._writer is None:
            # An empty context: the writer serves every caller, so it carries none's.
            self._writer = asyncio.create_task(self._drain(), name="events-appender", context=contextvars.Context())
        # The caller going away does not take the batch with it.
        return await asyncio.shield(future)

    async def close(self, timeout: float = 10.0) -> None:
        """Refuse new appends and wait (at most ``timeout`` s) for the queued ones; fail what is left."""
        self._closed = True
        writer = self._writer
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout)
            except TimeoutError:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        self._fail(list(self._queue), Unavailable("the event store shut down before this append was written"))
        self._queue.clear()
        await self._release()

    async def _drain(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._queue:
                batch = self._take()
                await self._write(batch)
                batch = []
        except asyncio.CancelledError:
            self._fail(batch, Unavailable("the event store shut down while writing this append"))
            raise
        finally:
            self._writer = None

    def _take(self) -> list[_Waiting]:
        batch = [self._queue.popleft()]
        events = len(batch[0].queued.request.events)
        while self._queue and events + len(self._queue[0].queued.request.events) <= self._max_batch_events:
            waiting = self._queue.popleft()
            events += len(waiting.queued.request.events)
            batch.append(waiting)
        return batch

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self._transaction(batch)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - each append is retried alone, or gets this error
            if len(batch) == 1:
                self._fail(batch, error)
                return
            log.warning("a batch of %d appends failed (%s); writing each alone", len(batch), type(error).__name__)
            for waiting in batch:
                await self._write([waiting])
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():
                continue
            if isinstance(outcome, VocelioError):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    async def _transaction(self, batch: list[_Waiting]) -> list[batches.Outcome]:
        queued = [waiting.queued for waiting in batch]
        stream_ids = sorted({item.scoped.id for item in queued})
        event_ids = [event.event_id for item in queued for event in item.request.events]
        now = self._clock.now()
        async with self._gate.held():
            connection = await self._connect()
            try:
                async with connection.begin():
                    before = await store.reserve(connection, len(event_ids))
                    plan = batches.plan(
                        queued,
                        await store.streams_by_id(connection, stream_ids),
                        await store.stored_ids(connection, event_ids),
                        head=before.position,
                        now=now,
                    )
                    if plan.head != before.position + len(event_ids):
                        await store.set_head(connection, plan.head)  # some appends were refused or retries
                    if plan.events:
                        await store.insert_streams(connection, plan.inserted_streams())
                        await store.insert_events(connection, plan.events)
                        await store.update_streams(connection, plan.updated_streams())
            except BaseException:
                # Whatever state the connection is in, the next batch starts on a fresh one.
                await self._release(invalidate=True)
                raise
        self.batches += 1
        if plan.events:
            self._notifier.committed(plan.head)
        return plan.outcomes

    async def _connect(self) -> AsyncConnection:
        """The writer's own connection, kept between batches (no pool checkout, ping or reset per batch)."""
        if self._connection is None:
            self._connection = await self._engine.connect()
        return self._connection

    async def _release(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                await connection.invalidate()
            await connection.close()

    @staticmethod
    def _fail(batch: list[_Waiting], error: BaseException) -> None:
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_exception(error)
