"""Projections (CQRS read models) fed by the event store's global log.

A :class:`Projection` is a service's read model: the event type prefixes it consumes, a
schema version, ``apply(session, event, generation)`` and ``clear(session, generation)``.
:class:`Projections` runs a service's projections in the background: one subscription per
projection to ``EventsService.SubscribeToAll`` (through :class:`EventsServiceSource`, the
mesh client with the service's own credential — a platform principal, so it reads every
organisation's events) from the projection's own checkpoint.

Decisions:

- **One transaction per event, with its checkpoint and its event id.** Applying an event,
  moving the checkpoint (``projection_state.position``) and recording the event id
  (``projection_events``) commit together in the consumer's database. A crash — ``kill -9``
  included — leaves either all three or none: after restart the subscription resumes after
  the checkpoint, and an event delivered again (at-least-once: the relay may append late, a
  subscription may repeat its tail) is recognised by its position or its id and changes
  nothing. The checkpoint is the consumer's own row, not the events service's consumer
  checkpoint, which lives in another database and could not commit with the read model.
- **The checkpoint row is taken first.** The transaction starts with
  ``UPDATE projection_state … WHERE generation = g AND position < p``: it locks the row (on
  PostgreSQL), so two replicas of a consumer never apply one event twice and a swap (below)
  never interleaves with an apply; zero rows updated means "already applied" or "this copy
  is no longer served", both of which end the transaction without writing anything.
- **Blue/green rebuild** (``projection.proto``): every read-model row carries a
  ``generation``; queries read ``served_generation``. ``rebuild`` picks a new generation
  (the shadow) and replays the log from position 0 into it on a second subscription while the
  live one keeps the served copy current. When the shadow subscription says it has caught up,
  one transaction makes the shadow the served copy (its position becomes the checkpoint) and
  deletes the old copy's rows; the live subscription then restarts from the new checkpoint.
  A schema version that differs from the stored one starts such a rebuild at start-up.
- **Failures**: the events service being down (any other RPC error) means reconnecting with
  exponential backoff (0.2 s doubling to 10 s, reset once the subscription delivers). An
  event the projection cannot apply is a bug or bad data: the projection turns FAILED with
  the error, its subscription stops, queries keep the last good copy; a rebuild is the way
  out. OUT_OF_RANGE means retention archived events the copy still needed (a checkpoint left
  behind, or a rebuild from position 0 over an archived log): that copy's subscription stops
  and the projection turns FAILED with the store's message, since no retry can bring them
  back. Stopping (:meth:`Projections.stop`) cancels every task through :mod:`mesh.tasks`.
- **Event ids are pruned; positions cover what they no longer do.** ``projection_events``
  would otherwise grow with the log. After each applied transaction the runner deletes, at
  most ``prune_batch`` (500) at a time and once per ``prune_batch`` positions, the ids of the
  copy whose position is ``retain_ids`` (10,000) or more below the checkpoint it has just
  committed. That is sound because an event is recognised twice over. (1) By position: the
  transaction reads the checkpoint it started from (``_claim``) and skips every event at or
  below it, with or without a recorded id. A position holds one event for good (the store
  allocates each once and never rewrites it), and everything up to a committed checkpoint
  has been applied to that copy, so an event delivered again at its own position — a
  subscription resuming after a crash, a repeated tail, a second replica — changes nothing.
  (2) By id, above the checkpoint: the same event at a *new* position. The event store
  refuses a second append of a stored id (``uq_events_event_id``), so that could only come
  from a late relay retry whose first copy the store no longer holds (archived); ids are
  kept for the last ``retain_ids`` positions for that, a window far wider than a relay's
  retries. A pruned id therefore only ever protects positions the checkpoint already does.
  A rebuild deletes the old copy's ids with the copy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf import message
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh import event_types
from mesh.errors import FailedPrecondition, NotFound
from mesh.kit.clock import Clock
from mesh.kit.projection_tables import ProjectionEvent, ProjectionState
from mesh.tasks import cancel_and_wait
from vocelio.events.v1 import event_pb2, events_service_pb2, events_service_pb2_grpc

log = logging.getLogger(__name__)

LIVE = "LIVE"
REBUILDING = "REBUILDING"
FAILED = "FAILED"

_BACKOFF_FIRST = 0.2
# Most events applied in one transaction.
_BATCH = 200
_BACKOFF_MAX = 10.0
# Event ids kept below a checkpoint (positions), and the most deleted in one pruning pass.
_RETAIN_IDS = 10_000
_PRUNE_BATCH = 500
# Every consumer reads the whole log: the platform-wide parent (AIP-159).
_EVERY_ORGANIZATION = "organizations/-"


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectedEvent:
    """One event of the global log, as a projection sees it.

    Attributes:
        event_id: the producer's id (what idempotency is keyed by).
        position: its global position.
        type: ``agent.created``.
        organization_id: the owning organisation ("" for platform streams).
        stream: the stream's name.
        occur_time: when the change happened in the producer.
        actor: who caused it (``users/u1``), "" when unknown.
        payload: the typed payload message (``AgentCreatedEvent``).

    """

    event_id: str
    position: int
    type: str
    organization_id: str
    stream: str
    occur_time: datetime.datetime
    actor: str
    payload: message.Message

    @classmethod
    def of(cls, event: event_pb2.Event) -> ProjectedEvent:
        """Decode a stored event (its payload through the contracts' event registry)."""
        occur = event.occur_time if event.HasField("occur_time") else event.record_time
        return cls(
            event_id=event.event_id,
            position=event.global_position,
            type=event.type,
            organization_id=event.organization_id,
            stream=event.stream,
            occur_time=occur.ToDatetime(tzinfo=datetime.UTC),
            actor=event.metadata.actor,
            payload=event_types.decode(event.type, event.data_schema, event.data),
        )


class Projection(Protocol):
    """A read model: what it consumes and how an event changes it."""

    @property
    def name(self) -> str:
        """Short id (``agents``), unique within the service."""

    @property
    def description(self) -> str:
        """What the read model holds."""

    @property
    def event_type_prefixes(self) -> Sequence[str]:
        """Event types it consumes (``agent.``); empty means every event."""

    @property
    def schema_version(self) -> int:
        """Version of the read model's shape; a new one rebuilds it from position 0."""

    async def apply(self, session: AsyncSession, event: ProjectedEvent, generation: int) -> None:
        """Apply one event to the copy ``generation`` (inside the runner's transaction)."""

    async def clear(self, session: AsyncSession, generation: int) -> None:
        """Delete every row of the copy ``generation``."""


class EventSource(Protocol):
    """Where projections read the log from (the events service, or a test's fake)."""

    def subscribe(
        self, *, after_position: int, event_type_prefixes: Sequence[str]
    ) -> AsyncIterator[events_service_pb2.SubscribeToAllResponse]:
        """Catch-up from ``after_position`` (exclusive), a caught-up marker, then live events."""

    async def head_position(self) -> int:
        """The newest event's global position (0 for an empty log)."""


class EventsServiceSource:
    """:class:`EventSource` over ``EventsService`` with the calling service's own credential."""

    def __init__(self, stub: Callable[[], events_service_pb2_grpc.EventsServiceStub]) -> None:
        """``stub`` gives the events stub (``lambda: clients.stub("events", EventsServiceStub)``)."""
        self._stub = stub

    async def subscribe(
        self, *, after_position: int, event_type_prefixes: Sequence[str]
    ) -> AsyncIterator[events_service_pb2.SubscribeToAllResponse]:
        """The ``SubscribeToAll`` stream over every organisation; cancelled when the caller stops."""
        request = events_service_pb2.SubscribeToAllRequest(
            parent=_EVERY_ORGANIZATION,
            after_position=after_position,
            event_filter=event_pb2.EventFilter(event_type_prefixes=list(event_type_prefixes)),
        )
        call = self._stub().SubscribeToAll(request)
        try:
            async for reply in call:
                yield reply
        finally:
            call.cancel()

    async def head_position(self) -> int:
        """From one backwards ``ReadAll``'s ``head_position``."""
        reply = await self._stub().ReadAll(
            events_service_pb2.ReadAllRequest(
                parent=_EVERY_ORGANIZATION, direction=event_pb2.READ_DIRECTION_BACKWARDS, max_count=1
            ),
            timeout=5,
        )
        return int(reply.head_position)


@dataclasses.dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """A projection's operational state (``analytics.v1.Projection`` is made from it)."""

    name: str
    description: str
    event_type_prefixes: tuple[str, ...]
    schema_version: int
    state: str
    served_generation: int
    position: int
    last_event_time: datetime.datetime | None
    rebuild_position: int
    rebuild_start_time: datetime.datetime | None
    rebuild_complete_time: datetime.datetime | None
    error_message: str


class _Superseded(Exception):
    """The copy this subscription feeds is no longer the one it was started for."""


class Projections:
    """A service's projections, kept current in the background and rebuilt on demand."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        source: EventSource,
        clock: Clock,
        *,
        state_row: type[ProjectionState],
        event_row: type[ProjectionEvent],
        batch_size: int = _BATCH,
        retain_ids: int = _RETAIN_IDS,
        prune_batch: int = _PRUNE_BATCH,
    ) -> None:
        """Nothing runs until :meth:`start`; ``state_row``/``event_row`` are the service's mapped tables.

        ``batch_size`` is the most events applied in one transaction; event ids are kept for the
        last ``retain_ids`` positions below a copy's checkpoint and pruned ``prune_batch`` at a time.
        """
        if batch_size < 1 or retain_ids < 0 or prune_batch < 1:
            raise ValueError("batch_size and prune_batch must be positive, retain_ids not negative")
        self._batch_size = batch_size
        self._retain_ids = retain_ids
        self._prune_batch = prune_batch
        # (projection, generation) → the checkpoint at which its next pruning pass is due.
        self._prune_due: dict[tuple[str, int], int] = {}
        self._sessions = sessions
        self._source = source
        self._clock = clock
        self._state = state_row
        self._events = event_row
        self._projections: dict[str, Projection] = {}
        self._live: dict[str, asyncio.Task[None]] = {}
        self._rebuilds: dict[str, asyncio.Task[None]] = {}
        self._started = False
        self._stopping = False
        # Caught up once: the test and readiness hook (live subscriptions past their marker).
        self._caught_up: dict[str, asyncio.Event] = {}

    def add(self, projection: Projection) -> None:
        """Declare a projection (before :meth:`start`)."""
        if projection.name in self._projections:
            raise ValueError(f"projection {projection.name!r} is declared twice")
        self._projections[projection.name] = projection
        self._caught_up[projection.name] = asyncio.Event()

    def __bool__(self) -> bool:
        return bool(self._projections)

    @property
    def names(self) -> list[str]:
        """The declared projections, by name."""
        return sorted(self._projections)

    def projection(self, name: str) -> Projection:
        """A declared projection.

        Raises:
            NotFound: none has that name.

        """
        found = self._projections.get(name)
        if found is None:
            raise NotFound(f"projection {name!r} not found")
        return found

    async def served_generation(self, session: AsyncSession, name: str) -> tuple[int, int, datetime.datetime | None]:
        """``(generation, position, last_event_time)`` of the copy queries read (1, 0, None before the start)."""
        row = await session.get(self._state, name)
        if row is None:
            return 1, 0, None
        return row.served_generation, row.position, row.last_event_time

    def start(self) -> None:
        """Start one background task per projection (its set-up retries while the database is down)."""
        if self._started or not self._projections:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for name in self._projections:
            self._live[name] = loop.create_task(self._begin(name), name=f"projection-{name}")

    async def _begin(self, name: str) -> None:
        """Create the state row if missing, resume an interrupted rebuild, then follow the log."""
        projection = self._projections[name]
        backoff = _BACKOFF_FIRST
        while True:
            try:
                row = await self._ensure_state(projection)
                if row.state == REBUILDING:
                    self._start_rebuild(name)
                elif row.schema_version != projection.schema_version:
                    log.info(
                        "projection %s: schema version %d → %d, rebuilding",
                        name,
                        row.schema_version,
                        projection.schema_version,
                    )
                    async with self._sessions.begin() as session:
                        await self.begin_rebuild(session, name)
                    self._start_rebuild(name)
                break
            except (SQLAlchemyError, OSError) as error:
                log.warning("projection %s: cannot read its state (%s), retrying in %.1fs", name, error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        await self._follow(name, shadow=False)

    async def stop(self) -> None:
        """Cancel every subscription and wait (bounded) for them to unwind."""
        self._stopping = True
        await cancel_and_wait([*self._live.values(), *self._rebuilds.values()])
        self._live.clear()
        self._rebuilds.clear()

    async def wait_caught_up(self, name: str) -> None:
        """Wait until the live subscription of ``name`` has caught up once (tests, start-up)."""
        await self._caught_up[name].wait()

    async def status(self, name: str, session: AsyncSession | None = None) -> ProjectionStatus:
        """The projection's current state (read in ``session`` when given).

        Raises:
            NotFound: no such projection.

        """
        projection = self.projection(name)
        if session is None:
            async with self._sessions() as own:
                row = await own.get(self._state, name)
        else:
            row = await session.get(self._state, name, populate_existing=True)
        if row is None:
            return ProjectionStatus(
                name,
                projection.description,
                tuple(projection.event_type_prefixes),
                projection.schema_version,
                LIVE,
                1,
                0,
                None,
                0,
                None,
                None,
                "",
            )
        return ProjectionStatus(
            name=name,
            description=projection.description,
            event_type_prefixes=tuple(projection.event_type_prefixes),
            schema_version=row.schema_version,
            state=row.state,
            served_generation=row.served_generation,
            position=row.position,
            last_event_time=row.last_event_time,
            rebuild_position=row.shadow_position if row.state == REBUILDING else 0,
            rebuild_start_time=row.rebuild_start_time,
            rebuild_complete_time=row.rebuild_complete_time,
            error_message=row.error_message,
        )

    async def head_position(self) -> int | None:
        """The log's newest position, or ``None`` when the events service cannot say now."""
        try:
            return await self._source.head_position()
        except grpc.aio.AioRpcError as error:
            log.info("events head position unavailable: %s", error.code().name)
            return None

    async def rebuild(self, name: str) -> ProjectionStatus:
        """Start a blue/green rebuild: replay from position 0 into a new copy, swap when caught up.

        Raises:
            NotFound: no such projection.
            FailedPrecondition: a rebuild is already running.

        """
        async with self._sessions.begin() as session:
            await self.begin_rebuild(session, name)
        self.resume_rebuild(name)
        return await self.status(name)

    async def begin_rebuild(self, session: AsyncSession, name: str) -> None:
        """Mark a rebuild in the caller's transaction; call :meth:`resume_rebuild` after the commit.

        Raises:
            NotFound: no such projection.
            FailedPrecondition: a rebuild is already running.

        """
        projection = self.projection(name)
        row = await session.get(self._state, name, with_for_update=True, populate_existing=True)
        if row is None:
            row = self._new_state(projection)
            session.add(row)
            await session.flush()
        if row.state == REBUILDING:
            raise FailedPrecondition(f"projection {name!r} is already being rebuilt")
        shadow = row.served_generation + 1
        await self._clear(session, projection, shadow)
        now = self._clock.now()
        row.state = REBUILDING
        row.shadow_generation = shadow
        row.shadow_position = 0
        row.rebuild_start_time = now
        row.rebuild_complete_time = None
        row.error_message = ""
        row.update_time = now

    def resume_rebuild(self, name: str) -> None:
        """Start the shadow subscription of a committed rebuild (unless it runs or the runner is stopped)."""
        running = self._rebuilds.get(name)
        if self._started and not self._stopping and (running is None or running.done()):
            self._start_rebuild(name)

    # -- the subscriptions -------------------------------------------------------------

    def _start_live(self, name: str) -> None:
        self._live[name] = asyncio.get_running_loop().create_task(
            self._follow(name, shadow=False), name=f"projection-{name}"
        )

    def _start_rebuild(self, name: str) -> None:
        self._rebuilds[name] = asyncio.get_running_loop().create_task(
            self._follow(name, shadow=True), name=f"projection-{name}-rebuild"
        )

    async def _follow(self, name: str, *, shadow: bool) -> None:
        """Feed one copy from the log until cancelled, a swap, or a failure; reconnect on outages."""
        projection = self._projections[name]
        backoff = _BACKOFF_FIRST
        while True:
            generation, position = await self._target(name, shadow=shadow)
            if generation is None:
                return  # the rebuild this task was for has ended (swapped, or failed)
            try:
                async for batch in self._batches(position, projection.event_type_prefixes):
                    backoff = _BACKOFF_FIRST
                    events: list[event_pb2.Event] = []
                    for reply in batch:
                        kind = reply.WhichOneof("message")
                        if kind == "event":
                            events.append(reply.event)
                            continue
                        await self._apply(projection, events, generation, shadow=shadow)
                        events = []
                        marker = reply.checkpoint if kind == "checkpoint" else reply.caught_up
                        await self._advance(name, generation, marker.global_position, shadow=shadow)
                        if kind == "caught_up":
                            if shadow:
                                await self._swap(projection, generation)
                                self._restart_live(name)
                                return
                            self._caught_up[name].set()
                    await self._apply(projection, events, generation, shadow=shadow)
            except _Superseded:
                if shadow:
                    return
                continue
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.OUT_OF_RANGE:
                    # Retention archived events this copy has not applied: no retry brings them back.
                    log.error("projection %s stopped: %s", name, error.details())
                    await self._fail(name, f"OUT_OF_RANGE: {error.details()}"[:1000], shadow=shadow)
                    return
                log.warning(
                    "projection %s: subscription lost (%s), retrying in %.1fs", name, error.code().name, backoff
                )
            except (OperationalError, InterfaceError, OSError) as error:
                log.warning("projection %s: database unavailable (%s), retrying in %.1fs", name, error, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # an event that cannot be applied stops the projection
                log.exception("projection %s stopped: an event could not be applied", name)
                await self._fail(name, f"{type(error).__name__}: {error}"[:1000], shadow=shadow)
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _restart_live(self, name: str) -> None:
        """After a swap, the live subscription starts over on the new served copy."""
        old = self._live.pop(name, None)
        if old is not None:
            old.cancel()
        self._start_live(name)

    async def _target(self, name: str, *, shadow: bool) -> tuple[int | None, int]:
        async with self._sessions() as session:
            row = await session.get(self._state, name)
        if row is None:
            return (None, 0) if shadow else (1, 0)
        if shadow:
            if row.state != REBUILDING or row.shadow_generation is None:
                return None, 0
            return row.shadow_generation, row.shadow_position
        return row.served_generation, row.position

    def _guard(
        self, name: str, generation: int, position: int, *, shadow: bool, event_time: datetime.datetime | None = None
    ) -> Any:
        """``UPDATE projection_state``: the copy's checkpoint forward to ``position``, if it is still this copy's."""
        state = self._state
        column = state.shadow_position if shadow else state.position
        owner = state.shadow_generation if shadow else state.served_generation
        values: dict[str, Any] = {column.key: position, "update_time": self._clock.now()}
        if event_time is not None and not shadow:
            values["last_event_time"] = event_time
        return update(state).where(state.name == name, owner == generation, column < position).values(**values)

    def _claim(self, name: str, generation: int, position: int, *, shadow: bool) -> Any:
        """``UPDATE projection_state … RETURNING`` the copy's checkpoint, if ``position`` is past it.

        It writes only ``update_time``, so what it returns is the checkpoint before this
        transaction, and it takes the row (PostgreSQL's row lock, SQLite's write lock) so the
        checkpoint cannot move until the transaction ends.
        """
        state = self._state
        column = state.shadow_position if shadow else state.position
        owner = state.shadow_generation if shadow else state.served_generation
        return (
            update(state)
            .where(state.name == name, owner == generation, column < position)
            .values(update_time=self._clock.now())
            .returning(column)
        )

    async def _batches(
        self, after_position: int, prefixes: Sequence[str]
    ) -> AsyncIterator[list[events_service_pb2.SubscribeToAllResponse]]:
        """The subscription's messages, in order, grouped as they arrive (at most ``batch_size`` at once).

        A reader task keeps receiving while a batch is applied, so what arrived meanwhile is
        applied together, in one transaction: one commit per batch instead of one per event
        is what lets a rebuild replay at the database's pace. Live events still go one by
        one when they come one by one.
        """
        queue: asyncio.Queue[events_service_pb2.SubscribeToAllResponse | BaseException | None] = asyncio.Queue(
            maxsize=2 * self._batch_size
        )

        async def read() -> None:
            try:
                async for reply in self._source.subscribe(after_position=after_position, event_type_prefixes=prefixes):
                    await queue.put(reply)
                await queue.put(None)
            except Exception as error:  # noqa: BLE001 - handed to the consumer, which decides
                await queue.put(error)

        reader = asyncio.get_running_loop().create_task(read(), name="projection-subscription")
        try:
            while True:
                item = await queue.get()
                batch: list[events_service_pb2.SubscribeToAllResponse] = []
                while True:
                    if item is None:
                        if batch:
                            yield batch
                        return  # the server ended the stream: the caller reconnects
                    if isinstance(item, BaseException):
                        if batch:
                            yield batch
                        raise item
                    batch.append(item)
                    if len(batch) >= self._batch_size or queue.empty():
                        break
                    item = queue.get_nowait()
                yield batch
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _apply(
        self, projection: Projection, events: Sequence[event_pb2.Event], generation: int, *, shadow: bool
    ) -> None:
        """Apply events in one transaction: each with its id record, the checkpoint moved to the last."""
        if not events:
            return
        projected = [ProjectedEvent.of(event) for event in events]
        last = projected[-1]
        async with self._sessions.begin() as session:
            checkpoint = (
                await session.execute(self._claim(projection.name, generation, last.position, shadow=shadow))
            ).scalar_one_or_none()
            if checkpoint is None:
                if not await self._still_target(session, projection.name, generation, shadow=shadow):
                    raise _Superseded
                return  # all at or below the checkpoint: applied before
            # At or below the checkpoint means applied before (a position holds one event for good),
            # whether or not its id is still recorded: pruning relies on this (module docstring).
            projected = [event for event in projected if event.position > checkpoint]
            ids = {event.event_id for event in projected}
            seen = set(
                await session.scalars(
                    select(self._events.event_id).where(
                        self._events.projection == projection.name,
                        self._events.generation == generation,
                        self._events.event_id.in_(ids),
                    )
                )
            )
            for event in projected:
                if event.event_id in seen:
                    continue  # applied before (below the checkpoint, or the same event at another position)
                seen.add(event.event_id)
                seen_row = self._events()
                seen_row.projection = projection.name
                seen_row.generation = generation
                seen_row.event_id = event.event_id
                seen_row.position = event.position
                session.add(seen_row)
                await projection.apply(session, event, generation)
            await session.execute(
                self._guard(projection.name, generation, last.position, shadow=shadow, event_time=last.occur_time)
            )
        await self._prune(projection.name, generation, last.position)

    async def _prune(self, name: str, generation: int, checkpoint: int) -> int:
        """Delete up to ``prune_batch`` event ids of a copy at or below ``checkpoint - retain_ids``.

        A pass runs once the checkpoint has moved ``prune_batch`` positions since the last one
        that found nothing more to delete; a pass that deleted a full batch leaves the next one
        due at once (after the next transaction), so a backlog shrinks by a batch per applied
        transaction and the table settles at about ``retain_ids + prune_batch + batch_size`` rows.

        Returns:
            how many ids it deleted.

        """
        key = (name, generation)
        horizon = checkpoint - self._retain_ids
        if checkpoint < self._prune_due.get(key, 0) or horizon <= 0:
            return 0
        events = self._events
        oldest = (
            select(events.event_id)
            .where(events.projection == name, events.generation == generation, events.position <= horizon)
            .limit(self._prune_batch)
        )
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(events).where(
                    events.projection == name, events.generation == generation, events.event_id.in_(oldest)
                )
            )
        deleted = int(result.rowcount)  # type: ignore[attr-defined]
        if deleted < self._prune_batch:
            self._prune_due[key] = checkpoint + self._prune_batch
        return deleted

    async def _advance(self, name: str, generation: int, position: int, *, shadow: bool) -> None:
        """Move the checkpoint past events the filter skipped (a SubscriptionCheckpoint, the caught-up marker)."""
        async with self._sessions.begin() as session:
            moved = await session.execute(self._guard(name, generation, position, shadow=shadow))
            if moved.rowcount != 1 and not await self._still_target(session, name, generation, shadow=shadow):  # type: ignore[attr-defined]
                raise _Superseded

    async def _still_target(self, session: AsyncSession, name: str, generation: int, *, shadow: bool) -> bool:
        row = await session.get(self._state, name, populate_existing=True)
        if row is None:
            return False
        return (row.shadow_generation if shadow else row.served_generation) == generation

    async def _swap(self, projection: Projection, shadow: int) -> None:
        """Serve the caught-up shadow copy and delete the old one, in one transaction."""
        async with self._sessions.begin() as session:
            row = await session.get(self._state, projection.name, with_for_update=True, populate_existing=True)
            if row is None or row.shadow_generation != shadow:
                raise _Superseded
            old = row.served_generation
            now = self._clock.now()
            row.served_generation = shadow
            row.position = row.shadow_position
            row.shadow_generation = None
            row.shadow_position = 0
            row.schema_version = projection.schema_version
            row.state = LIVE
            row.error_message = ""
            row.rebuild_complete_time = now
            row.update_time = now
            await self._clear(session, projection, old)
        log.info("projection %s: rebuilt copy %d swapped in", projection.name, shadow)

    async def _fail(self, name: str, message_text: str, *, shadow: bool) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(self._state, name, with_for_update=True)
            if row is None:
                return
            if shadow and row.shadow_generation is not None:
                await self._clear(session, self._projections[name], row.shadow_generation)
                row.shadow_generation = None
                row.shadow_position = 0
            row.state = FAILED
            row.error_message = message_text
            row.update_time = self._clock.now()

    async def _clear(self, session: AsyncSession, projection: Projection, generation: int) -> None:
        await projection.clear(session, generation)
        await session.execute(
            delete(self._events).where(
                self._events.projection == projection.name, self._events.generation == generation
            )
        )

    def _new_state(self, projection: Projection) -> ProjectionState:
        row = self._state()
        row.name = projection.name
        row.state = LIVE
        row.schema_version = projection.schema_version
        row.served_generation = 1
        row.position = 0
        row.last_event_time = None
        row.shadow_generation = None
        row.shadow_position = 0
        row.rebuild_start_time = None
        row.rebuild_complete_time = None
        row.error_message = ""
        row.update_time = self._clock.now()
        return row

    async def _ensure_state(self, projection: Projection) -> ProjectionState:
        try:
            async with self._sessions.begin() as session:
                row = await session.get(self._state, projection.name)
                if row is None:
                    row = self._new_state(projection)
                    session.add(row)
                return row
        except IntegrityError:  # another replica created it first
            async with self._sessions() as session:
                found = await session.get(self._state, projection.name)
            if found is None:
                raise
            return found
