"""The raw-PostgreSQL floor of ``make bench-events``: the same events, straight into a table with psycopg 3.

What an event store on PostgreSQL cannot beat, measured on the same server in the same run: the bench's own
asyncio connections (psycopg 3, autocommit) insert the very payloads the events service is given into an
equivalent table — a global position from an identity column, the stream and its version unique together,
the event id unique, the payload as ``jsonb`` — with ``INSERT … RETURNING global_position``:

* single: one event per statement, so one commit each, from ``writers`` connections at once;
* batched: ``batch`` events per statement (one multi-row ``INSERT … RETURNING``), one commit each;
* live lag: one event per statement at a steady rate, the ``INSERT`` and a ``pg_notify`` in one statement
  (so the notification leaves at commit, as a store's wake-up would); a listening connection receives it
  and reads the row back (what a subscriber needs in hand); the lag runs from the moment the append was
  sent to the moment the row was read.

Nothing here knows the events service: it is the yardstick the service's figures are divided by.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import psycopg

from bench.events_load import Appender, LagResult, Payload, RateResult, paced, run_writers, until

Connection = psycopg.AsyncConnection[tuple[object, ...]]

CHANNEL = "bench_events"

TABLE = """
CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    stream text NOT NULL,
    version bigint NOT NULL,
    type text NOT NULL,
    organization_id text NOT NULL,
    data_schema text NOT NULL,
    data jsonb NOT NULL,
    record_time timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
)
"""

_COLUMNS = "(event_id, stream, version, type, organization_id, data_schema, data)"
_ROW = "(%s, %s, %s, %s, %s, %s, %s)"


class Floor:
    """Connections to one fresh schema holding the floor's table (``create`` it, ``drop`` it afterwards)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    async def connect(self) -> Connection:
        """One autocommit connection whose search path is the floor's schema."""
        return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, options=f"-c search_path={self.schema}")

    async def create(self) -> None:
        """Create the schema and the table."""
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as connection:
            await connection.execute(f'CREATE SCHEMA "{self.schema}"')
            await connection.execute(f'SET search_path = "{self.schema}"')
            await connection.execute(TABLE)

    async def drop(self) -> None:
        """Drop the schema and everything in it."""
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as connection:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    @contextlib.asynccontextmanager
    async def pool(self, size: int) -> AsyncIterator[list[Connection]]:
        """``size`` connections, closed afterwards."""
        connections: list[Connection] = []
        try:
            for _ in range(size):
                connections.append(await self.connect())
            yield connections
        finally:
            for connection in connections:
                await connection.close()


def _row(payload: Payload, stream: str, version: int) -> tuple[object, ...]:
    return (
        uuid.uuid4(),
        stream,
        version,
        payload.type,
        payload.organization_id,
        payload.data_schema,
        payload.json_text,
    )


def _appender(connection: Connection, payload: Payload, batch: int) -> Appender:
    sql = f"INSERT INTO events {_COLUMNS} VALUES {', '.join([_ROW] * batch)} RETURNING global_position"
    stream = f"bench-floor{batch}-{uuid.uuid4().hex[:12]}"
    version = -1

    async def append() -> int:
        nonlocal version
        parameters: list[object] = []
        for _ in range(batch):
            version += 1
            parameters.extend(_row(payload, stream, version))
        cursor = await connection.execute(sql, parameters)
        positions = await cursor.fetchall()
        if len(positions) != batch:
            raise RuntimeError(f"floor: {len(positions)} positions returned for {batch} rows")
        return batch

    return append


async def appends(floor: Floor, payload: Payload, *, writers: int, batch: int, duration: float) -> RateResult:
    """Events per second inserted by ``writers`` connections, ``batch`` events per statement, for ``duration`` s."""
    async with floor.pool(writers) as connections:
        return await run_writers([_appender(connection, payload, batch) for connection in connections], duration)


async def live_lag(floor: Floor, payload: Payload, *, rate: float, duration: float, senders: int = 4) -> LagResult:
    """Append-to-read lag through ``LISTEN``/``NOTIFY`` at a steady ``rate`` events/s for ``duration`` s."""
    sql = (
        f"WITH appended AS (INSERT INTO events {_COLUMNS} VALUES {_ROW} RETURNING global_position) "
        f"SELECT pg_notify('{CHANNEL}', global_position::text || ':' || %s) FROM appended"
    )
    stream = f"bench-floor-live-{uuid.uuid4().hex[:12]}"
    sent: dict[int, float] = {}
    lags: list[float] = []
    async with floor.pool(2) as (listener, reader), floor.pool(senders) as connections:
        await listener.execute(f"LISTEN {CHANNEL}")

        async def listen() -> None:
            async for notification in listener.notifies():
                position, sequence = (int(part) for part in notification.payload.split(":"))
                cursor = await reader.execute("SELECT data FROM events WHERE global_position = %s", (position,))
                if await cursor.fetchone() is None:
                    raise RuntimeError(f"floor: notified position {position} is not readable")
                lags.append(time.perf_counter() - sent[sequence])

        listening = asyncio.create_task(listen())
        try:
            idle: asyncio.Queue[Connection] = asyncio.Queue()
            for connection in connections:
                idle.put_nowait(connection)

            async def send(sequence: int) -> None:
                connection = await idle.get()
                try:
                    sent[sequence] = time.perf_counter()
                    await connection.execute(sql, (*_row(payload, stream, sequence), str(sequence)))
                finally:
                    idle.put_nowait(connection)

            achieved = await paced(send, rate, duration)
            await until(lambda: len(lags) >= len(sent) or listening.done(), timeout=5)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
        return LagResult.of(lags, expected=len(sent), rate=achieved)
