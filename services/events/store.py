"""The log and its streams in SQL, each function taking the session (or the appender's connection).

**Ordering without gaps.** A reader that resumes after the last global position it saw
must never skip an event whose position was allocated earlier but committed later (the
classic sequence pitfall: transaction A takes position 7, B takes 8 and commits, a reader
sees 8 and moves on, then A commits 7 behind it). The store avoids it by making positions
commit in the order they are allocated: positions come from the single ``event_log`` row,
and whoever writes the log first locks that row until its transaction ends — an append
allocates with ``UPDATE event_log SET head_position = head_position + n … RETURNING``
(:func:`reserve`), which takes the row lock, reads the head and moves it in one statement;
truncation, deletion and archiving take the same lock with ``SELECT … FOR UPDATE``
(:func:`lock_log`). On PostgreSQL the lock is released by the commit or rollback itself (a
crashed appender never leaves it held) and a second writer's UPDATE waits, then re-reads
the row the first one committed. On SQLite the database's single writer plus an
in-process gate (:class:`WriteGate`) do the same. Under the lock the append checks the
streams' expected versions and inserts its events; the next writer only gets the row
after that commit. A reader reads the head row first and events up to it second:
everything at or below a committed head is committed. This is EventStoreDB's
single-writer model; group commit (:mod:`services.events.appender`: every append queued
meanwhile in one transaction) keeps the throughput, and the same lock makes "exactly one
winner per expected version" hold across processes and replicas. The alternative
(``xid8`` + ``pg_snapshot_xmin``, reading only below the oldest running transaction) lets
writers run in parallel but delays every reader behind the slowest writer and has no
SQLite equivalent; the single writer is simpler and measured fast enough (bench/).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.events.domain.appends import StoredId
from services.events.domain.reading import Filter
from services.events.models import EventLogRow, EventRow, EventStreamRow, StreamState


class WriteGate:
    """Serialises this process's write transactions on SQLite (a no-op on PostgreSQL).

    SQLite has one writer; two sessions that both read and then write would make the second
    fail with "database is locked" instead of waiting, so writers queue here first.
    PostgreSQL needs no gate: the log's row lock orders writers across processes.
    """

    def __init__(self, kind: str) -> None:
        self._lock = asyncio.Lock() if kind == "sqlite" else None

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the gate (at once on PostgreSQL)."""
        if self._lock is None:
            yield
            return
        async with self._lock:
            yield


Executor: TypeAlias = AsyncSession | AsyncConnection
"""Where the store's statements run: an ORM session, or the appender's own connection."""


async def lock_log(executor: Executor) -> None:
    """Take the log's row lock until the end of the transaction (PostgreSQL; SQLite is gated)."""
    await executor.execute(_LOCK_LOG)


@dataclasses.dataclass(frozen=True, slots=True)
class Head:
    """The log's head and archive watermark as of one read.

    Attributes:
        position: the last position allocated by a committed append (0 for an empty log).
        archived: every position at or below it is archived (0 when nothing is).

    """

    position: int
    archived: int


async def head(executor: Executor) -> Head:
    """The committed head of the log."""
    row = (await executor.execute(_HEAD)).one()
    return Head(int(row[0]), int(row[1]))


async def reserve(executor: Executor, count: int) -> Head:
    """Lock the log and move its head ``count`` positions on; the head as it was before.

    One statement takes the row lock, reads the committed head and reserves the positions
    after it. An append that ends up writing fewer (some of its requests refused) sets the
    head back with :func:`set_head` before it commits.
    """
    row = (await executor.execute(_RESERVE, {"count": count})).one()
    return Head(int(row[0]) - count, int(row[1]))


async def find_stream(session: AsyncSession, stream_id: str) -> EventStreamRow | None:
    """A stream by id (any organisation, any state)."""
    return await session.get(EventStreamRow, stream_id, populate_existing=True)


async def stored_ids(executor: Executor, event_ids: Sequence[str]) -> list[StoredId]:
    """The events already stored under any of these ids."""
    rows = (await executor.execute(_STORED_IDS, {"ids": list(event_ids)})).all()
    return [StoredId(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


async def set_head(executor: Executor, position: int) -> None:
    """Move the log's head to ``position`` (under the log's lock, after :func:`reserve`)."""
    await executor.execute(_SET_HEAD, {"head": position})


async def streams_by_id(executor: Executor, stream_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The ``event_streams`` rows of these streams (any organisation, any state), as column mappings."""
    result = await executor.execute(_STREAMS_BY_ID, {"ids": list(stream_ids)})
    return {str(row["stream_id"]): dict(row) for row in result.mappings()}


async def insert_events(executor: Executor, rows: Sequence[dict[str, Any]]) -> None:
    """Insert events given by column name (one executemany; the PostgreSQL appender COPYs instead)."""
    await executor.execute(_INSERT_EVENTS, list(rows))


async def insert_streams(executor: Executor, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new streams given by column name (one executemany)."""
    if rows:
        await executor.execute(_INSERT_STREAMS, list(rows))


async def update_streams(executor: Executor, rows: Sequence[dict[str, Any]]) -> None:
    """Write the append-moved columns of existing streams (one executemany)."""
    if rows:
        await executor.execute(_UPDATE_STREAM, [{"key": row["stream_id"], **row} for row in rows])


# The append path's statements, built once (SQLAlchemy then finds them in its compiled cache at once).
_EVENTS = cast(Table, EventRow.__table__)
_STREAMS = cast(Table, EventStreamRow.__table__)
_LOG = cast(Table, EventLogRow.__table__)
_LOCK_LOG = select(_LOG.c.head_position).with_for_update()
_RESERVE = (
    update(_LOG)
    .values(head_position=_LOG.c.head_position + bindparam("count"))
    .returning(_LOG.c.head_position, _LOG.c.archived_position)
)
_HEAD = select(_LOG.c.head_position, _LOG.c.archived_position)
_SET_HEAD = update(_LOG).values(head_position=bindparam("head"))
_STORED_IDS = select(
    _EVENTS.c.event_id, _EVENTS.c.stream_id, _EVENTS.c.stream_version, _EVENTS.c.global_position
).where(_EVENTS.c.event_id.in_(bindparam("ids", expanding=True)))
# The events' columns under EventRow's attribute names (its ``metadata`` column is ``event_metadata``).
_EVENT_FIELDS = tuple(
    column.label("event_metadata") if column.name == "metadata" else column for column in _EVENTS.columns
)
_STREAMS_BY_ID = select(_STREAMS).where(_STREAMS.c.stream_id.in_(bindparam("ids", expanding=True)))
_INSERT_EVENTS = insert(_EVENTS)
_INSERT_STREAMS = insert(_STREAMS)
APPEND_MOVED_COLUMNS = (
    "state",
    "delete_time",
    "last_version",
    "last_position",
    "last_event_type",
    "last_event_time",
    "last_modifier",
    "update_time",
)
"""The ``event_streams`` columns an append changes."""
_UPDATE_STREAM = (
    update(_STREAMS)
    .where(_STREAMS.c.stream_id == bindparam("key"))
    .values({column: bindparam(column) for column in APPEND_MOVED_COLUMNS})
)


def _filter_clause(filt: Filter) -> ColumnElement[bool] | None:
    clauses: list[ColumnElement[bool]] = []
    if filt.type_prefixes:
        options: list[ColumnElement[bool]] = []
        for prefix in filt.type_prefixes:
            if prefix.endswith("."):
                options.append(EventRow.type.startswith(prefix, autoescape=True))
            else:
                options.append(EventRow.type == prefix)
                options.append(EventRow.type.startswith(prefix + ".", autoescape=True))
        clauses.append(or_(*options))
    if filt.stream_prefixes:
        clauses.append(or_(*(EventRow.stream_id.startswith(p, autoescape=True) for p in filt.stream_prefixes)))
    return and_(*clauses) if clauses else None


async def read_all(
    session: AsyncSession,
    *,
    start: int,
    forwards: bool,
    limit: int,
    organization_id: str | None,
    filt: Filter,
    upto: int,
    above: int = 0,
) -> list[EventRow]:
    """Readable events of the global log from ``start`` (inclusive), at most ``limit``.

    Args:
        session: the session.
        start: the first position to consider.
        forwards: ascending positions (else descending).
        limit: most rows.
        organization_id: one organisation's events, or ``None`` for every organisation's.
        filt: the event filter.
        upto: the head read first; nothing above it is returned (see the module docstring).
        above: nothing at or below it is returned (the archive watermark, backwards).

    """
    query = select(EventRow).where(EventRow.hidden == false(), EventRow.global_position <= upto)
    if forwards:
        query = query.where(EventRow.global_position >= start).order_by(EventRow.global_position)
    else:
        query = query.where(EventRow.global_position <= start, EventRow.global_position > above)
        query = query.order_by(EventRow.global_position.desc())
    if organization_id is not None:
        query = query.where(EventRow.organization_id == organization_id)
    if (clause := _filter_clause(filt)) is not None:
        query = query.where(clause)
    return list((await session.execute(query.limit(limit))).scalars())


def read_after_statement(*, limit: int, organization_id: str | None, filt: Filter) -> Any:
    """The statement of :func:`read_after` for one subscription (built once; the position is a parameter)."""
    condition = and_(
        _EVENTS.c.global_position > bindparam("after"),
        _EVENTS.c.global_position <= _LOG.c.head_position,
        _EVENTS.c.hidden == false(),
    )
    if organization_id is not None:
        condition = and_(condition, _EVENTS.c.organization_id == organization_id)
    if (clause := _filter_clause(filt)) is not None:
        condition = and_(condition, clause)
    return (
        select(_LOG.c.head_position.label("log_head"), _LOG.c.archived_position.label("log_archived"), *_EVENT_FIELDS)
        .select_from(_LOG.outerjoin(_EVENTS, condition))
        .order_by(_EVENTS.c.global_position)
        .limit(limit)
    )


async def read_after(executor: Executor, statement: Any, after: int) -> tuple[Head, Sequence[Any]]:
    """The committed head and the readable events after position ``after`` up to it, in one statement.

    What a live subscription reads on every wake-up (``statement`` from :func:`read_after_statement`):
    ``read_all`` after ``head`` in one round trip. The log's row is joined to the events it bounds, so
    head and events come from one snapshot (nothing above that head, and everything at or below it
    committed). The rows carry the attributes of :class:`EventRow` that
    :func:`services.events.convert.event_to_proto` reads.
    """
    rows = (await executor.execute(statement, {"after": after})).all()
    head = Head(int(rows[0].log_head), int(rows[0].log_archived))
    return head, [row for row in rows if row.global_position is not None]


async def read_stream(
    session: AsyncSession, stream_id: str, *, start: int, forwards: bool, limit: int, lowest: int
) -> list[EventRow]:
    """Readable events of one stream from version ``start`` (inclusive), never below ``lowest``."""
    query = select(EventRow).where(
        EventRow.stream_id == stream_id, EventRow.hidden == false(), EventRow.stream_version >= lowest
    )
    if forwards:
        query = query.where(EventRow.stream_version >= start).order_by(EventRow.stream_version)
    else:
        query = query.where(EventRow.stream_version <= start).order_by(EventRow.stream_version.desc())
    return list((await session.execute(query.limit(limit))).scalars())


async def events_by_id(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, EventRow]:
    """Readable events by id."""
    query = select(EventRow).where(EventRow.event_id.in_(list(event_ids)), EventRow.hidden == false())
    return {row.event_id: row for row in (await session.execute(query)).scalars()}


async def hide_below(session: AsyncSession, stream_id: str, version: int) -> None:
    """Hide a stream's events below ``version`` (truncation, deletion)."""
    await session.execute(
        update(EventRow)
        .where(EventRow.stream_id == stream_id, EventRow.stream_version < version, EventRow.hidden == false())
        .values(hidden=True)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Archived:
    """What one archiving pass removed.

    Attributes:
        through: the new archive watermark (every position at or below it is gone).
        events: how many events it removed (archived or scavenged).

    """

    through: int
    events: int


async def archive_before(session: AsyncSession, cutoff: datetime.datetime, *, batch: int) -> Archived | None:
    """Archive (delete) up to ``batch`` of the oldest events recorded before ``cutoff``, under the log's lock.

    The oldest by position: the archived range is always a prefix of the log.

    Moves the log's watermark and each touched stream's ``archived_version`` in the same
    transaction, so a read never sees the events gone without the error that says so.
    Returns ``None`` when nothing is left to archive.
    """
    await lock_log(session)
    current = await head(session)
    # The oldest events by position (the primary key, no index on record_time): record times follow
    # positions (each batch is stamped as its writer's turn starts), so the old ones are a prefix; a clock that
    # stepped back only makes the prefix end early, never archives a recent event.
    oldest = (
        select(EventRow.global_position, EventRow.record_time)
        .where(EventRow.global_position > current.archived)
        .order_by(EventRow.global_position)
        .limit(batch)
    )
    positions: list[int] = []
    for position, recorded in (await session.execute(oldest)).all():
        if recorded >= cutoff:
            break
        positions.append(int(position))
    if not positions:
        return None
    # Archive by position: everything up to the last old event goes, so the log keeps no holes.
    through = positions[-1]
    touched = (
        select(EventRow.stream_id, func.max(EventRow.stream_version))
        .where(EventRow.global_position > current.archived, EventRow.global_position <= through)
        .group_by(EventRow.stream_id)
    )
    streams = [(str(r[0]), int(r[1])) for r in (await session.execute(touched)).all()]
    result = await session.execute(
        delete(EventRow).where(EventRow.global_position > current.archived, EventRow.global_position <= through)
    )
    for stream_id, highest in streams:
        await session.execute(
            update(EventStreamRow)
            .where(EventStreamRow.stream_id == stream_id, EventStreamRow.archived_version <= highest)
            .values(archived_version=highest + 1)
        )
    await session.execute(update(EventLogRow).values(archived_position=through))
    return Archived(through, int(result.rowcount or 0))  # type: ignore[attr-defined]


async def scavenge_hidden(session: AsyncSession, *, batch: int) -> int:
    """Remove up to ``batch`` events hidden by truncation or deletion; returns how many."""
    chosen = select(EventRow.global_position).where(EventRow.hidden.is_(True)).limit(batch)
    positions = [int(p) for p in (await session.execute(chosen)).scalars()]
    if not positions:
        return 0
    await session.execute(delete(EventRow).where(EventRow.global_position.in_(positions)))
    return len(positions)


def live_states(show_deleted: bool) -> tuple[StreamState, ...]:
    """The stream states a listing shows."""
    return (StreamState.ACTIVE, StreamState.DELETED) if show_deleted else (StreamState.ACTIVE,)
