"""Point reads: one row by key, without an ORM session, for the hot read paths.

An ORM session costs far more than the lookup itself: on SQLite every step of
``session.execute`` (connect, begin, execute, fetch, rollback, reset) is a hand-off to
aiosqlite's thread, and the ORM builds, identity-maps and expires objects nobody
changes. A point read by primary key needs none of it:

* SQLite: a plain ``sqlite3`` connection used on the event loop's thread. A lookup by
  primary key in WAL mode takes microseconds and never waits for writers; if the file
  is locked anyway (a checkpoint, a schema change), the read goes through the async
  engine instead of blocking the loop.
* PostgreSQL: a few autocommit psycopg connections of its own, each statement prepared
  on first use.

Statements are SQLAlchemy ``Select`` objects built once with ``bindparam``; each is
compiled once per dialect, and the columns' own result processors (UTC times, enums,
JSON) turn raw values into what the ORM would have returned.

They bypass the engine, so SQLAlchemy's instrumentation never sees them: with tracing on,
each read makes its own CLIENT span (``SELECT <table>``, the statement without values),
a few µs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import psycopg
from opentelemetry import trace
from sqlalchemy import Select
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.telemetry.tracing import active as tracing_active

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"
_POOL_SIZE = 4


@dataclasses.dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional: tuple[str, ...]  # parameter names in placeholder order (SQLite's "?")
    names: frozenset[str]
    processors: tuple[Callable[[Any], Any] | None, ...]
    span_name: str

    def row(self, raw: Any) -> Row:
        return tuple(value if p is None else p(value) for p, value in zip(self.processors, raw, strict=True))


def _compile(statement: AnySelect, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    processors = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in statement.selected_columns
    )
    froms = statement.get_final_froms()
    table = getattr(froms[0], "name", "") if froms else ""
    return _Compiled(
        str(compiled),
        tuple(compiled.positiontup or ()),
        frozenset(compiled.params),
        processors,
        f"SELECT {table}".strip(),
    )


class PointReader:
    """Single-row reads of one service database (see the module docstring)."""

    def __init__(
        self, engine: AsyncEngine, *, sqlite_path: str | None = None, conninfo: str = "", **connect: Any
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._sqlite_path = sqlite_path
        self._conninfo = conninfo
        self._connect = connect
        self._compiled: dict[int, tuple[AnySelect, _Compiled]] = {}
        self._sqlite: sqlite3.Connection | None = None
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0
        self._available = asyncio.Condition()
        self._tracer = trace.get_tracer(__name__) if tracing_active() else None
        self._system = "sqlite" if sqlite_path is not None else "postgresql"

    def compiled(self, statement: AnySelect) -> _Compiled:
        """The statement compiled for this database (once per statement object)."""
        cached = self._compiled.get(id(statement))
        if cached is not None and cached[0] is statement:
            return cached[1]
        compiled = _compile(statement, self._dialect)
        # The statement is kept with its compilation, so its id cannot be reused while cached.
        self._compiled[id(statement)] = (statement, compiled)
        return compiled

    async def one(self, statement: AnySelect, params: Mapping[str, Any]) -> Row | None:
        """The first row of ``statement`` with ``params``, processed like the ORM's, or ``None``.

        Raises:
            KeyError: a parameter of the statement is missing from ``params``.

        """
        compiled = self.compiled(statement)
        if not compiled.names <= params.keys():
            raise KeyError(f"missing parameters: {', '.join(sorted(compiled.names - params.keys()))}")
        if self._tracer is None:
            return await self._one(statement, compiled, params)
        attributes = {"db.system": self._system, "db.operation": "SELECT", "db.statement": compiled.sql}
        with self._tracer.start_as_current_span(compiled.span_name, kind=trace.SpanKind.CLIENT, attributes=attributes):
            return await self._one(statement, compiled, params)

    async def _one(self, statement: AnySelect, compiled: _Compiled, params: Mapping[str, Any]) -> Row | None:
        if self._sqlite_path is not None:
            return await self._sqlite_one(statement, compiled, params)
        return await self._postgres_one(compiled, params)

    async def close(self) -> None:
        """Close every idle connection, like ``engine.dispose()``; the next read opens new ones."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.close()

    # SQLite

    async def _sqlite_one(self, statement: AnySelect, compiled: _Compiled, params: Mapping[str, Any]) -> Row | None:
        values = tuple(params[name] for name in compiled.positional)
        try:
            raw = self._sqlite_connection().execute(compiled.sql, values).fetchone()
        except sqlite3.OperationalError as error:
            # Locked (a checkpoint, a migration): never block the loop; the engine's thread may wait.
            log.debug("point read fell back to the engine: %s", error)
            async with self._engine.connect() as connection:
                result = (await connection.execute(statement, dict(params))).first()
            return None if result is None else tuple(result)
        return None if raw is None else compiled.row(raw)

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            assert self._sqlite_path is not None
            # autocommit (isolation_level=None): each read sees the latest commit, no transaction stays open.
            connection = sqlite3.connect(self._sqlite_path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout=0")
            connection.execute("PRAGMA query_only=ON")
            self._sqlite = connection
        return self._sqlite

    # PostgreSQL

    async def _postgres_one(self, compiled: _Compiled, params: Mapping[str, Any]) -> Row | None:
        connection = await self._acquire()
        healthy = False
        try:
            cursor = await connection.execute(compiled.sql, dict(params), prepare=True)
            raw = await cursor.fetchone()
            healthy = True
        finally:
            await self._release(connection, healthy)
        return None if raw is None else compiled.row(raw)

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        async with self._available:
            while not self._idle and self._open >= _POOL_SIZE:
                await self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **self._connect)
        except BaseException:
            async with self._available:
                self._open -= 1
                self._available.notify()
            raise

    async def _release(self, connection: psycopg.AsyncConnection[Any], healthy: bool) -> None:
        if not healthy or connection.closed:
            with contextlib.suppress(Exception):
                await connection.close()
            async with self._available:
                self._open -= 1
                self._available.notify()
            return
        async with self._available:
            self._idle.append(connection)
            self._available.notify()


def libpq_conninfo(url: URL) -> str:
    """A libpq connection URI for a SQLAlchemy PostgreSQL URL (whatever its driver)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
