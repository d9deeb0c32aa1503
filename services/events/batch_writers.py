"""How the appender's batch reaches the database: one transaction, as few round trips as the backend allows.

Both writers do the same steps under the log's row lock (:mod:`services.events.store`):
reserve positions for every event of the batch (the statement that takes the lock), read
the batch's streams and the events already stored under its ids, let
:func:`services.events.domain.batches.plan` decide each append, put the head back if some
were refused, then insert the events and the streams' new state, and commit.

- :class:`PostgresWriter` (production): a psycopg connection of its own. The three opening
  statements go out in one pipeline (one round trip; each still runs after the previous,
  so the reads see everything committed before the lock was granted), the events go in
  with ``COPY … FROM STDIN`` (a few µs a row), and the stream rows in one pipelined
  executemany. Five round trips a batch, whatever its size.
- :class:`SqlWriter` (SQLite, and any other dialect): the same statements through
  SQLAlchemy Core on a connection it keeps, under the in-process :class:`~services.events.store.WriteGate`.

Either starts on a fresh connection after any error, so a broken one never serves twice.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mesh.db import ServiceDatabase
from services.events import store
from services.events.domain import batches
from services.events.domain.appends import StoredId
from services.events.models import EventLogRow, EventRow, EventStreamRow, StreamState


class BatchWriter(Protocol):
    """Writes one batch of queued appends in one transaction."""

    async def write(self, queued: Sequence[batches.Queued], now: datetime.datetime) -> batches.Plan:
        """Decide and write ``queued``; the plan (outcomes, head) once committed.

        Raises:
            Exception: the transaction failed as a whole; nothing of it was written.

        """

    async def close(self) -> None:
        """Release the connection."""


def writer_for(database: ServiceDatabase, gate: store.WriteGate) -> BatchWriter:
    """The writer for this service's database."""
    if database.kind == "postgresql":
        return PostgresWriter(database)
    return SqlWriter(database.engine, gate)


def _ids(queued: Sequence[batches.Queued]) -> tuple[list[str], list[str]]:
    stream_ids = sorted({item.scoped.id for item in queued})
    event_ids = [event.event_id for item in queued for event in item.request.events]
    return stream_ids, event_ids


class SqlWriter:
    """The batch through SQLAlchemy Core (SQLite; see the module docstring)."""

    def __init__(self, engine: AsyncEngine, gate: store.WriteGate) -> None:
        self._engine = engine
        self._gate = gate
        self._connection: AsyncConnection | None = None

    async def write(self, queued: Sequence[batches.Queued], now: datetime.datetime) -> batches.Plan:
        """See :class:`BatchWriter`."""
        stream_ids, event_ids = _ids(queued)
        async with self._gate.held():
            if self._connection is None:
                self._connection = await self._engine.connect()
            connection = self._connection
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
                        await store.set_head(connection, plan.head)
                    if plan.events:
                        await store.insert_streams(connection, plan.inserted_streams())
                        columns = batches.EVENT_COLUMNS
                        await store.insert_events(
                            connection, [dict(zip(columns, row, strict=True)) for row in plan.events]
                        )
                        await store.update_streams(connection, plan.updated_streams())
            except BaseException:
                await self._drop(invalidate=True)
                raise
        return plan

    async def close(self) -> None:
        """See :class:`BatchWriter`."""
        await self._drop()

    async def _drop(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                await connection.invalidate()
            await connection.close()


def _table(mapped: Any) -> Table:
    table: Table = mapped.__table__
    return table


_LOG, _STREAMS, _EVENTS = _table(EventLogRow), _table(EventStreamRow), _table(EventRow)
_STREAM_COLUMNS = tuple(column.name for column in _STREAMS.columns)
_MOVED_COLUMNS = store.APPEND_MOVED_COLUMNS

_RESERVE = (
    f"UPDATE {_LOG.name} SET head_position = head_position + %(count)s RETURNING head_position, archived_position"
)
_SET_HEAD = f"UPDATE {_LOG.name} SET head_position = %(head)s"
_STREAMS_BY_ID = f"SELECT {', '.join(_STREAM_COLUMNS)} FROM {_STREAMS.name} WHERE stream_id = ANY(%(ids)s)"
_STORED_IDS = (
    f"SELECT event_id, stream_id, stream_version, global_position FROM {_EVENTS.name} WHERE event_id = ANY(%(ids)s)"
)
_COPY_EVENTS = f"COPY {_EVENTS.name} ({', '.join(batches.EVENT_COLUMNS)}) FROM STDIN"
_INSERT_STREAM = (
    f"INSERT INTO {_STREAMS.name} ({', '.join(_STREAM_COLUMNS)}) "
    f"VALUES ({', '.join(f'%({c})s' for c in _STREAM_COLUMNS)})"
)
_UPDATE_STREAM = (
    f"UPDATE {_STREAMS.name} SET {', '.join(f'{c} = %({c})s' for c in _MOVED_COLUMNS)} WHERE stream_id = %(stream_id)s"
)


def _stream_values(row: Sequence[Any]) -> dict[str, Any]:
    values = dict(zip(_STREAM_COLUMNS, row, strict=True))
    values["state"] = StreamState(values["state"])
    return values


def _stream_params(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "state": values["state"].value}


class PostgresWriter:
    """The batch through psycopg: a pipeline, a COPY and an executemany (see the module docstring)."""

    def __init__(self, database: ServiceDatabase) -> None:
        self._database = database
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def write(self, queued: Sequence[batches.Queued], now: datetime.datetime) -> batches.Plan:
        """See :class:`BatchWriter`."""
        stream_ids, event_ids = _ids(queued)
        if self._connection is None or self._connection.closed:
            self._connection = await self._database.connect_driver()
            # Prepared statements, but planned for each batch's own values: a generic plan made while the
            # log was small (a sequential scan for the stored ids) would stay cached as it grows.
            await self._connection.execute("SET plan_cache_mode = force_custom_plan")
            await self._connection.commit()
        connection = self._connection
        try:
            async with connection.transaction():
                reserve, streams, stored = connection.cursor(), connection.cursor(), connection.cursor()
                async with connection.pipeline():
                    await reserve.execute(_RESERVE, {"count": len(event_ids)}, prepare=True)
                    await streams.execute(_STREAMS_BY_ID, {"ids": stream_ids}, prepare=True)
                    await stored.execute(_STORED_IDS, {"ids": event_ids}, prepare=True)
                head_row = await reserve.fetchone()
                assert head_row is not None, "the event_log row is missing"
                before = int(head_row[0]) - len(event_ids)
                plan = batches.plan(
                    queued,
                    {str(row[0]): _stream_values(row) for row in await streams.fetchall()},
                    [StoredId(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in await stored.fetchall()],
                    head=before,
                    now=now,
                )
                if plan.head != before + len(event_ids):
                    await connection.execute(_SET_HEAD, {"head": plan.head})
                if plan.events:
                    await self._insert(connection, plan)
        except BaseException:
            self._connection = None
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return plan

    @staticmethod
    async def _insert(connection: psycopg.AsyncConnection[Any], plan: batches.Plan) -> None:
        async with connection.cursor() as cursor:
            inserted = plan.inserted_streams()
            if inserted:
                await cursor.executemany(_INSERT_STREAM, [_stream_params(v) for v in inserted])
            async with cursor.copy(_COPY_EVENTS) as copy:
                for row in plan.events:
                    await copy.write_row(row)
            updated = plan.updated_streams()
            if updated:
                await cursor.executemany(_UPDATE_STREAM, [_stream_params(v) for v in updated])

    async def close(self) -> None:
        """See :class:`BatchWriter`."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
