"""The log and its streams in SQL, each function taking the session.

**Ordering without gaps.** A reader that resumes after the last global position it saw
must never skip an event whose position was allocated earlier but committed later (the
classic sequence pitfall: transaction A takes position 7, B takes 8 and commits, a reader
sees 8 and moves on, then A commits 7 behind it). The store avoids it by making positions
commit in the order they are allocated: every append runs under one transaction-scoped
lock of the whole log — on PostgreSQL ``pg_advisory_xact_lock`` (released by the commit or
rollback itself, so a crashed appender never leaves it held), on SQLite the database's own
single writer plus an in-process gate (:class:`WriteGate`) so two sessions never race for
the write lock. Under the lock the append checks the stream's expected version, allocates
its positions by bumping the ``event_log`` head row and inserts its events; the next
appender only gets the lock after that commit. A reader then reads the head row first and
events up to it second: everything at or below a committed head is committed. This is
EventStoreDB's single-writer model; batches (up to 500 events per append) keep the
throughput, and the same lock makes "exactly one winner per expected version" hold across
processes and replicas. The alternative (``xid8`` + ``pg_snapshot_xmin``, reading only
below the oldest running transaction) lets writers run in parallel but delays every reader
behind the slowest writer and has no SQLite equivalent; the lock is simpler and measured
fast enough (bench/).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.domain.appends import StoredId
from services.events.domain.reading import Filter
from services.events.models import EventLogRow, EventRow, EventStreamRow, StreamState

# pg_advisory_xact_lock key of the global log ("vocelio.events.log" as 64-bit ASCII prefix).
LOG_LOCK_KEY = 0x766F63656C696F31


class WriteGate:
    """Serialises this process's write transactions on SQLite (a no-op on PostgreSQL).

    SQLite has one writer; two sessions that both read and then write would make the second
    fail with "database is locked" instead of waiting, so writers queue here first.
    PostgreSQL needs no gate: its advisory lock orders writers across processes.
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


async def lock_log(session: AsyncSession) -> None:
    """Take the log's append lock until the end of the transaction (PostgreSQL; SQLite is gated)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOG_LOCK_KEY})


@dataclasses.dataclass(frozen=True, slots=True)
class Head:
    """The log's head and archive watermark as of one read.

    Attributes:
        position: the last position allocated by a committed append (0 for an empty log).
        archived: every position at or below it is archived (0 when nothing is).

    """

    position: int
    archived: int


async def head(session: AsyncSession) -> Head:
    """The committed head of the log."""
    row = (await session.execute(select(EventLogRow.head_position, EventLogRow.archived_position))).one()
    return Head(int(row[0]), int(row[1]))


async def allocate(session: AsyncSession, count: int) -> int:
    """Allocate ``count`` consecutive positions (under the append lock); returns the first."""
    statement = (
        update(EventLogRow).values(head_position=EventLogRow.head_position + count).returning(EventLogRow.head_position)
    )
    last = int((await session.execute(statement)).scalar_one())
    return last - count + 1


async def find_stream(session: AsyncSession, stream_id: str) -> EventStreamRow | None:
    """A stream by id (any organisation, any state)."""
    return await session.get(EventStreamRow, stream_id, populate_existing=True)


async def stored_ids(session: AsyncSession, event_ids: Sequence[str]) -> list[StoredId]:
    """The events already stored under any of these ids."""
    query = select(EventRow.event_id, EventRow.stream_id, EventRow.stream_version, EventRow.global_position).where(
        EventRow.event_id.in_(list(event_ids))
    )
    return [StoredId(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in (await session.execute(query)).all()]


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert events (one executemany)."""
    await session.execute(insert(EventRow), list(rows))


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
    """Archive (delete) up to ``batch`` of the oldest events recorded before ``cutoff``, under the append lock.

    Moves the log's watermark and each touched stream's ``archived_version`` in the same
    transaction, so a read never sees the events gone without the error that says so.
    Returns ``None`` when nothing is left to archive.
    """
    await lock_log(session)
    current = await head(session)
    candidates = (
        select(EventRow.global_position)
        .where(EventRow.global_position > current.archived, EventRow.record_time < cutoff)
        .order_by(EventRow.global_position)
        .limit(batch)
    )
    positions = [int(p) for p in (await session.execute(candidates)).scalars()]
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
