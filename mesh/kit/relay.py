"""The outbox relay: forwards committed outbox rows to the events service, at least once, in order.

One relay task per service process (``runtime.server.ServiceHost``; the events service has
none). It reads pending rows (``relayed_at`` and ``failed_at`` empty) oldest first, by
``(occurred_at, seq)``, groups them by stream keeping their order, and sends each stream's
rows as one ``AppendToStream`` (at most 500 events, about 3 MiB) with the service's own
credential through the mesh client factory, so every call has the contract's retries,
deadline, circuit breaker and bulkhead. Decisions:

- **Idempotent by event id.** ``ProposedEvent.event_id`` is the row's ``event_id``, so a row
  sent again after a crash between the append and the marking is recognised by the store
  (``already_appended``). A request that overlaps stored events only partly (a crash left
  the first rows of a stream stored, new rows joined them) answers ALREADY_EXISTS; the relay
  then sends that group's rows one by one, and ALREADY_EXISTS for a single event means the
  store has it: relayed.
- **Expected version ANY.** The producer's own database is the source of truth and its rows
  are already in commit order per stream (a resource's changes are serialised by its row,
  and each appends after the previous one committed); a version check could only refuse a
  retry the store already holds.
- **Order.** A stream's rows go in one request or in consecutive ones, each sent only after
  the previous one succeeded; after a failure the stream's remaining rows wait for the next
  round, which starts again from its oldest pending row. Nothing is skipped except a parked row.
- **Parking.** A row the store refuses for good (INVALID_ARGUMENT, FAILED_PRECONDITION, or a
  row whose stored JSON is unreadable) gets ``failed_at`` and ``last_error`` (status code and
  message, never the payload), is logged once, and no longer blocks the rows behind it.
- **Failures and back-off.** Any other status counts an attempt on the rows sent and fails
  the round; an outage (UNAVAILABLE, DEADLINE_EXCEEDED, authentication …) also ends it at
  once. The next round waits ``outbox_retry_initial_backoff`` × 2ⁿ⁻¹ (capped at
  ``outbox_retry_max_backoff``) with jitter (a random half of it), and commits do not cut
  the wait short: no hot loop while events is down. The first failure of a streak and the
  recovery are logged, not every round.
- **Wake-up.** :class:`mesh.kit.outbox.CommitSignal` fires after a commit that wrote rows;
  otherwise the relay looks every ``outbox_poll_interval`` seconds (rows a crashed process
  left, rows another replica wrote). A full batch is followed by the next at once.
- **Replicas on PostgreSQL.** Each round runs under ``pg_try_advisory_xact_lock`` on the
  service's schema, held by a transaction of its own for the round: one relay sends while
  the others stand by. ``SELECT … FOR UPDATE SKIP LOCKED`` was not taken: it lets a second
  relay take a stream's later rows while the first still sends the earlier ones. The marks
  commit in short transactions of their own, so losing the lock's connection loses no mark;
  a relay that lost it only repeats sends the store recognises. SQLite databases belong to
  one process.
- **Retention.** Relayed rows older than ``outbox_retention`` seconds are deleted (checked
  at most once a minute); parked rows stay for an operator.

Metrics (default Prometheus registry): ``vocelio_outbox_pending{service}`` (rows waiting,
parked ones excluded, as of the last round), ``vocelio_outbox_relayed_total{service}`` and
``vocelio_outbox_failed_total{service,outcome}`` (``retried``: an attempt failed and will be
repeated; ``parked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import struct_pb2
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.outbox import CommitSignal
from mesh.kit.sql import timestamp
from mesh.kit.tables import OutboxRow
from mesh.tasks import cancel_and_wait
from vocelio.events.v1 import event_pb2, events_service_pb2

log = logging.getLogger(__name__)

Append = Callable[[events_service_pb2.AppendToStreamRequest], Awaitable[events_service_pb2.AppendToStreamResponse]]

PENDING = Gauge("vocelio_outbox_pending", "Outbox rows waiting for the relay (parked rows excluded).", ["service"])
RELAYED = Counter("vocelio_outbox_relayed_total", "Outbox rows the events service has taken.", ["service"])
FAILED = Counter(
    "vocelio_outbox_failed_total",
    "Outbox rows whose relay failed (outcome: retried later, or parked for good).",
    ["service", "outcome"],
)

# The contract's limits on one AppendToStream: 500 events, 4 MiB (a margin for the envelope).
MAX_EVENTS_PER_APPEND = 500
MAX_BYTES_PER_APPEND = 3 * 1024 * 1024
# The store refuses these for good: sending the row again cannot succeed.
PERMANENT = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION})
# The store (or the way to it) is not there: the round ends at once.
OUTAGE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.CANCELLED,
    }
)
# Metadata keys the relay maps to EventMetadata's typed fields (the rest become labels when they fit).
_TYPED_KEYS = frozenset({"organizationId", "actor", "requestId", "traceParent", "correlationId", "causationId"})
_LABEL_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_PURGE_EVERY = 60.0
_ERROR_LIMIT = 500
# A lock class of the relay's own (two-key advisory locks never meet migrations' one-key ones).
_LOCK_CLASS = 0x0B0C


@dataclasses.dataclass(frozen=True, slots=True)
class RelayPolicy:
    """How the relay paces itself (from ``Settings``: ``outbox_*``)."""

    poll_interval: float = 2.0
    batch_size: int = 200
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    retention: float = 7 * 24 * 3600.0

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Seconds before the next round after ``failures`` failed rounds in a row (equal jitter)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclasses.dataclass(slots=True)
class Round:
    """What one round did."""

    relayed: int = 0
    parked: int = 0
    failed: bool = False
    full: bool = False
    standby: bool = False
    error: str = ""


class UnreadableRow(ValueError):
    """An outbox row whose stored JSON cannot become an event."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    """A pending row and its event."""

    event_id: str
    key: str  # the row's stream id
    stream: str  # the stream's resource name
    organization_id: str
    event: events_service_pb2.ProposedEvent | None
    problem: str  # why the row cannot be sent ("" when it can)
    size: int


def stream_name(stream_id: str, organization_id: str) -> str:
    """The stream's resource name: ``organizations/{org}/event_streams/{id}``, or ``event_streams/{id}``."""
    if organization_id:
        return f"organizations/{organization_id}/event_streams/{stream_id}"
    return f"event_streams/{stream_id}"


def proposed_event(
    *,
    event_id: str,
    event_type: str,
    data_schema: str,
    data: str,
    metadata: str,
    occurred_at: datetime.datetime,
    source_service: str,
) -> tuple[events_service_pb2.ProposedEvent, str]:
    """The event of one outbox row, and its organisation.

    Raises:
        UnreadableRow: the stored data or metadata is not a JSON object.

    """
    try:
        payload = json.loads(data)
        fields = json.loads(metadata or "{}")
    except json.JSONDecodeError as error:
        raise UnreadableRow(f"stored JSON is unreadable ({error.msg})") from None
    if not isinstance(payload, dict) or not isinstance(fields, dict):
        raise UnreadableRow("stored data and metadata must be JSON objects")
    values = {str(key): str(value) for key, value in fields.items()}
    structured = struct_pb2.Struct()
    structured.update(payload)
    request_id = values.get("requestId", "")
    trace_parent = values.get("traceParent", "")
    trace_id = trace_parent.split("-")[1] if trace_parent.count("-") == 3 else ""
    labels = {
        key: value[:256]
        for key, value in sorted(values.items())
        if key not in _TYPED_KEYS and 0 < len(key) <= 63 and set(key) <= _LABEL_KEY_CHARS
    }
    event = events_service_pb2.ProposedEvent(
        event_id=event_id,
        type=event_type,
        data=structured,
        data_schema=data_schema,
        metadata=event_pb2.EventMetadata(
            correlation_id=(values.get("correlationId") or request_id or trace_id)[:128],
            causation_id=values.get("causationId") or request_id,
            actor=values.get("actor", ""),
            source_service=source_service,
            trace_parent=trace_parent,
            labels=dict(list(labels.items())[:32]),
        ),
        occur_time=timestamp(occurred_at),
    )
    return event, values.get("organizationId", "")


class OutboxRelay:
    """The relay task of one service's outbox."""

    def __init__(
        self,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        append: Append,
        *,
        dialect: str,
        policy: RelayPolicy | None = None,
        signal: CommitSignal | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare a relay; nothing runs until :meth:`start`.

        Args:
            service: the producing service's name (``source_service`` of its events).
            sessions: the service's session factory.
            append: sends one ``AppendToStream`` (the events stub of ``MeshClients``).
            dialect: ``postgresql`` (rounds under an advisory lock) or ``sqlite``.
            policy: pacing; the defaults of ``Settings`` when not given.
            signal: fired after commits that wrote outbox rows.
            clock: stamps ``relayed_at``/``failed_at`` and dates the purge.
            rng: the jitter's source (tests seed it).

        """
        self.service = service
        self._sessions = sessions
        self._append = append
        self._dialect = dialect
        self.policy = policy or RelayPolicy()
        self.signal = signal or CommitSignal()
        self._clock = clock
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._last_purge: float | None = None
        self._pending = PENDING.labels(service=service)
        self._relayed = RELAYED.labels(service=service)
        self._retried = FAILED.labels(service=service, outcome="retried")
        self._parked = FAILED.labels(service=service, outcome="parked")

    # --- the task --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay task (in a context of its own: it acts as the service, for no caller)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                self._run(), name=f"outbox-relay-{self.service}", context=contextvars.Context()
            )

    async def stop(self) -> None:
        """Stop the task, bounded (``mesh.tasks``); rows being sent stay pending and go again later."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    def wake(self) -> None:
        """Look at the outbox now (unless backing off)."""
        self.signal.fire()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                result = await self.relay_once()
            except Exception as error:  # noqa: BLE001 - the database, most likely: retried like a failed append
                # the first line only: SQLAlchemy appends the statement and its parameters
                first_line = (str(error).splitlines() or [""])[0]
                result = Round(failed=True, error=f"{type(error).__name__}: {first_line}"[:_ERROR_LIMIT])
            if result.failed:
                self._failures += 1
                if self._failures == 1:
                    log.warning("outbox relay of %s: events not delivered, retrying (%s)", self.service, result.error)
                await asyncio.sleep(self.policy.backoff(self._failures, self._rng))
                continue
            if self._failures:
                log.info("outbox relay of %s: delivering again after %d failed rounds", self.service, self._failures)
                self._failures = 0
            now = loop.time()
            if self._last_purge is None or now - self._last_purge >= _PURGE_EVERY:
                self._last_purge = now
                with contextlib.suppress(Exception):  # the next purge tries again
                    await self.purge()
            if not result.full:
                await self.signal.wait(self.policy.poll_interval)

    # --- one round -------------------------------------------------------------------------------------------------

    async def relay_once(self) -> Round:
        """Send the oldest pending rows once: one round of the task (tests call it directly)."""
        async with self._lease() as held:
            if not held:
                return Round(standby=True)
            rows = await self._read_pending()
            result = Round(full=len(rows) >= self.policy.batch_size)
            for group in _by_stream(rows):
                if not await self._send_stream(group, result):
                    break
            if result.full:
                await self._count_pending()
            else:  # every pending row was read: an idle round costs one query
                self._pending.set(len(rows) - result.relayed - result.parked)
            return result

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[bool]:
        """Hold the relay's lock on PostgreSQL for the round (``False``: another relay holds it)."""
        if self._dialect != "postgresql":
            yield True
            return
        async with self._sessions() as session, session.begin():
            statement = text("SELECT pg_try_advisory_xact_lock(:lock_class, hashtext(current_schema()))")
            held = bool((await session.execute(statement, {"lock_class": _LOCK_CLASS})).scalar())
            yield held

    async def _read_pending(self) -> list[_Pending]:
        query = (
            select(OutboxRow)
            .where(OutboxRow.relayed_at.is_(None), OutboxRow.failed_at.is_(None))
            .order_by(OutboxRow.occurred_at, OutboxRow.seq, OutboxRow.event_id)
            .limit(self.policy.batch_size)
        )
        async with self._sessions() as session:
            rows = list((await session.execute(query)).scalars())
        pending = []
        for row in rows:
            try:
                event, organization_id = proposed_event(
                    event_id=row.event_id,
                    event_type=row.event_type,
                    data_schema=row.data_schema,
                    data=row.data,
                    metadata=row.metadata_,
                    occurred_at=row.occurred_at,
                    source_service=self.service,
                )
            except UnreadableRow as error:
                pending.append(_Pending(row.event_id, row.stream, stream_name(row.stream, ""), "", None, str(error), 0))
                continue
            name = stream_name(row.stream, organization_id)
            pending.append(_Pending(row.event_id, row.stream, name, organization_id, event, "", event.ByteSize()))
        return pending

    async def _send_stream(self, group: Sequence[_Pending], result: Round) -> bool:
        """Send one stream's rows in order; ``False`` when the round must end (an outage).

        An unreadable row is parked where it stands: the rows before it go first, the rows
        after it next. After a failed append the stream's later rows wait for the next round.
        """
        segment: list[_Pending] = []
        for row in [*group, None]:
            if row is not None and row.event is not None:
                segment.append(row)
                continue
            for chunk in _chunks(segment):
                if not await self._send_chunk(chunk, result):
                    return result.error not in _OUTAGE_NAMES
            segment = []
            if row is not None:
                await self._park(row, "UNREADABLE", row.problem, result)
        return True

    async def _send_chunk(self, chunk: Sequence[_Pending], result: Round) -> bool:
        """Append ``chunk`` (one stream, in order); ``True`` when every row was relayed or parked."""
        first = chunk[0]
        request = events_service_pb2.AppendToStreamRequest(
            stream=first.stream,
            organization_id=first.organization_id,
            expected_state=events_service_pb2.EXPECTED_STREAM_STATE_ANY,
            events=[row.event for row in chunk if row.event is not None],
        )
        try:
            await self._append(request)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.ALREADY_EXISTS and len(chunk) == 1:
                await self._mark_relayed(chunk, result)  # the store holds this event id
                return True
            if code in (grpc.StatusCode.ALREADY_EXISTS, *PERMANENT) and len(chunk) > 1:
                for row in chunk:  # find the stored or refused rows one by one, in order
                    if not await self._send_chunk([row], result):
                        return False
                return True
            if code in PERMANENT:
                await self._park(first, code.name, error.details() or "", result)
                return True
            await self._count_attempt(chunk, code.name, error.details() or "")
            result.failed = True
            result.error = code.name
            return False
        await self._mark_relayed(chunk, result)
        return True

    # --- writes ----------------------------------------------------------------------------------------------------

    async def _mark_relayed(self, rows: Sequence[_Pending], result: Round) -> None:
        ids = [row.event_id for row in rows]
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxRow)
                .where(OutboxRow.event_id.in_(ids), OutboxRow.relayed_at.is_(None))
                .values(relayed_at=self._clock.now(), last_error="")
            )
        result.relayed += len(ids)
        self._relayed.inc(len(ids))

    async def _park(self, row: _Pending, code: str, message: str, result: Round) -> None:
        error = f"{code}: {message}"[:_ERROR_LIMIT]
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxRow)
                .where(OutboxRow.event_id == row.event_id)
                .values(failed_at=self._clock.now(), last_error=error, attempts=OutboxRow.attempts + 1)
            )
        result.parked += 1
        self._parked.inc()
        # Names and the store's answer only: never the payload.
        log.error("outbox relay of %s parked event %s on %s: %s", self.service, row.event_id, row.stream, error)

    async def _count_attempt(self, rows: Sequence[_Pending], code: str, message: str) -> None:
        ids = [row.event_id for row in rows]
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxRow)
                .where(OutboxRow.event_id.in_(ids))
                .values(attempts=OutboxRow.attempts + 1, last_error=f"{code}: {message}"[:_ERROR_LIMIT])
            )
        self._retried.inc(len(ids))

    async def _count_pending(self) -> None:
        query = (
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.relayed_at.is_(None), OutboxRow.failed_at.is_(None))
        )
        async with self._sessions() as session:
            self._pending.set(int((await session.execute(query)).scalar_one()))

    async def purge(self) -> int:
        """Delete relayed rows older than the retention; returns how many went."""
        cutoff = self._clock.now() - datetime.timedelta(seconds=self.policy.retention)
        async with self._sessions.begin() as session:
            outcome: Any = await session.execute(
                delete(OutboxRow).where(OutboxRow.relayed_at.is_not(None), OutboxRow.relayed_at < cutoff)
            )
        return int(outcome.rowcount or 0)


_OUTAGE_NAMES = frozenset(code.name for code in OUTAGE)


def _by_stream(rows: Sequence[_Pending]) -> list[list[_Pending]]:
    """Rows grouped by stream, each group in the rows' order, groups by their oldest row."""
    groups: dict[str, list[_Pending]] = {}
    for row in rows:
        groups.setdefault(row.key, []).append(row)
    return list(groups.values())


def _chunks(group: Sequence[_Pending]) -> list[list[_Pending]]:
    """A stream's rows cut into appends within the contract's limits."""
    chunks: list[list[_Pending]] = []
    current: list[_Pending] = []
    size = 0
    for row in group:
        if current and (len(current) >= MAX_EVENTS_PER_APPEND or size + row.size > MAX_BYTES_PER_APPEND):
            chunks.append(current)
            current, size = [], 0
        current.append(row)
        size += row.size
    if current:
        chunks.append(current)
    return chunks
