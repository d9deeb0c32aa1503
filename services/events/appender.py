"""Group commit: one writer per process, every append that queued meanwhile in one transaction.

The log's lock (:mod:`services.events.store`) makes appends take turns. Holding it for a
transaction per request would cost every request a handful of round trips and a commit's
fsync while all other appenders wait. Instead each ``AppendToStream`` is checked on its
own (in its handler, concurrently), then queued here; one writer task takes whatever has
queued while the previous transaction ran and writes it in one transaction
(:mod:`services.events.batch_writers`: on PostgreSQL five round trips whatever the batch's
size). Under load a batch holds many requests; at rest a request waits for nobody (the
writer starts at once when the queue was empty).

What each caller sees is exactly what it would see if the queued appends ran one after
another in arrival order (:mod:`services.events.domain.batches`): a refused append fails
alone. If a batch's transaction fails as a whole (a database error, a dropped connection),
each of its appends is written once more alone on a fresh connection, so one cannot fail
its neighbours and a connection lost between batches costs nobody an error; an append that
did commit before the failure answers ``already_appended`` then, as any client retry would.

Metrics: ``vocelio_events_append_batches_total``, ``vocelio_events_appended_total`` and the
histogram ``vocelio_events_append_batch_requests`` (requests per transaction).

The writer runs in an empty context (no caller's trace, principal or deadline leaks into
another's), so its SQL is nobody's span. At shutdown :meth:`Appender.close` refuses new
appends with UNAVAILABLE and lets the queue drain, bounded; what is left then fails with
UNAVAILABLE rather than hang its caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging

from prometheus_client import Counter, Histogram

from mesh.errors import Unavailable, VocelioError
from mesh.kit.clock import Clock
from services.events.batch_writers import BatchWriter
from services.events.domain import batches
from services.events.notifier import LogNotifier
from vocelio.events.v1 import events_service_pb2

log = logging.getLogger(__name__)
pb = events_service_pb2

MAX_BATCH_EVENTS = 5_000
"""Most events one transaction writes (a single append of up to 500 always fits)."""

BATCHES = Counter("vocelio_events_append_batches_total", "Transactions the event store's appender committed.")
APPENDED = Counter("vocelio_events_appended_total", "Events the event store's appender wrote.")
BATCH_REQUESTS = Histogram(
    "vocelio_events_append_batch_requests",
    "AppendToStream requests per appender transaction (group commit at work above 1).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Waiting:
    queued: batches.Queued
    future: asyncio.Future[pb.AppendToStreamResponse]


class Appender:
    """Queues checked appends and writes them in batches, one transaction at a time."""

    def __init__(
        self,
        writer: BatchWriter,
        notifier: LogNotifier,
        clock: Clock,
        *,
        max_batch_events: int = MAX_BATCH_EVENTS,
    ) -> None:
        self._writer = writer
        self._notifier = notifier
        self._clock = clock
        self._max_batch_events = max_batch_events
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._task: asyncio.Task[None] | None = None
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
        if self._task is None:
            # An empty context: the writer serves every caller, so it carries none's.
            self._task = asyncio.create_task(self._drain(), name="events-appender", context=contextvars.Context())
        # The caller going away does not take the batch with it.
        return await asyncio.shield(future)

    async def close(self, timeout: float = 10.0) -> None:
        """Refuse new appends and wait (at most ``timeout`` s) for the queued ones; fail what is left."""
        self._closed = True
        writer = self._task
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout)
            except TimeoutError:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        self._fail(list(self._queue), Unavailable("the event store shut down before this append was written"))
        self._queue.clear()
        await self._writer.close()

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
            self._task = None

    def _take(self) -> list[_Waiting]:
        batch = [self._queue.popleft()]
        events = len(batch[0].queued.request.events)
        while self._queue and events + len(self._queue[0].queued.request.events) <= self._max_batch_events:
            waiting = self._queue.popleft()
            events += len(waiting.queued.request.events)
            batch.append(waiting)
        return batch

    async def _write(self, batch: list[_Waiting], *, again: bool = True) -> None:
        try:
            outcomes = await self._transaction(batch)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - written again one by one, then each gets its error
            if not again:
                self._fail(batch, error)
                return
            # Nothing of the transaction was written, or (a failed commit) all of it: either way writing
            # each append again on a fresh connection is safe, as an already stored one answers already_appended.
            log.warning("a batch of %d append(s) failed (%s); writing each again", len(batch), type(error).__name__)
            for waiting in batch:
                await self._write([waiting], again=False)
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():
                continue
            if isinstance(outcome, VocelioError):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    async def _transaction(self, batch: list[_Waiting]) -> list[batches.Outcome]:
        plan = await self._writer.write([waiting.queued for waiting in batch], self._clock.now())
        self.batches += 1
        BATCHES.inc()
        APPENDED.inc(len(plan.events))
        BATCH_REQUESTS.observe(len(batch))
        if plan.events:
            self._notifier.committed(plan.head)
        return plan.outcomes

    @staticmethod
    def _fail(batch: list[_Waiting], error: BaseException) -> None:
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_exception(error)
