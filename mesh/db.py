"""Database engines and sessions, one database (schema or file) per service.

PostgreSQL (psycopg 3) when ``VOCELIO_DATABASE_URL`` is set, each service in its own
schema; otherwise one SQLite file per service under ``var/``. One engine and one
``async_sessionmaker(expire_on_commit=False)`` per service per process; servicers open
``async with database.sessions.begin() as session`` per RPC and pass the session down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, create_engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from mesh.config import Settings
from mesh.reads import AnySelect, PointReader, Row, libpq_conninfo
from mesh.telemetry.tracing import instrument_engine, untraced

log = logging.getLogger(__name__)

# libpq waits this long for a TCP connection before giving up; the health probe has its
# own, usually shorter, timeout on top.
_CONNECT_TIMEOUT_SECONDS = 3


class ServiceDatabase:
    """The database of one service: where it lives, its engine and its sessions."""

    def __init__(self, settings: Settings, service_name: str) -> None:
        self.service_name = service_name
        self.schema: str | None = None
        self._connect_args: dict[str, Any] = {}
        if settings.database_url is None:
            settings.var_dir.mkdir(parents=True, exist_ok=True)
            path = (settings.var_dir / f"{service_name}.sqlite3").resolve()
            self.kind = "sqlite"
            self.async_url = URL.create("sqlite+aiosqlite", database=str(path))
            self.sync_url = URL.create("sqlite", database=str(path))
            self.engine = create_async_engine(self.async_url)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self._probe_engine = create_async_engine(self.async_url, pool_size=1, max_overflow=0, pool_pre_ping=True)
            self.reads = PointReader(self.engine, sqlite_path=str(path))
        else:
            self.kind = "postgresql"
            self.schema = f"{settings.schema_prefix}{service_name}"
            self.async_url = settings.database_url
            self.sync_url = settings.database_url
            self._connect_args = {
                "options": f"-c search_path={self.schema}",
                "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
                "application_name": f"vocelio-{service_name}",
            }
            self.engine = create_async_engine(
                self.async_url,
                connect_args=self._connect_args,
                pool_size=5,
                max_overflow=5,
                pool_recycle=1800,
            )
            self.reads = PointReader(self.engine, conninfo=libpq_conninfo(self.async_url), **self._connect_args)
            self._probe_engine = create_async_engine(
                self.async_url,
                connect_args={**self._connect_args, "application_name": f"vocelio-{service_name}-probe"},
                pool_size=1,
                max_overflow=0,
                pool_pre_ping=True,
                pool_recycle=1800,
            )
        ping_when_idle(self.engine.sync_engine)
        # SQL spans (children of the RPC's span) when tracing is on.
        instrument_engine(self.engine.sync_engine)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)

    def describe(self) -> str:
        """Where the data lives, without credentials (for logs and tables)."""
        if self.kind == "sqlite":
            return f"sqlite:{self.async_url.database}"
        return f"postgresql:{self.async_url.host}:{self.async_url.port or 5432}/{self.async_url.database}#{self.schema}"

    def sync_engine(self) -> Engine:
        """A short-lived synchronous engine, for migrations."""
        engine = create_engine(self.sync_url, connect_args=self._connect_args, poolclass=None)
        if self.kind == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    async def probe(self, timeout: float) -> bool:
        """Whether the database answers ``SELECT 1`` within ``timeout`` seconds.

        On a connection of its own (a one-connection pool beside the service's): a busy
        service whose pool is fully checked out still gets its probe through at once, so
        readiness follows the database, not the load. The service's own pool needs nothing
        from a failed probe: :func:`ping_when_idle` replaces stale connections at checkout.
        """
        try:
            # The probe every few seconds is no request of anyone's: no span of its own.
            async with asyncio.timeout(timeout):
                with untraced():
                    async with self._probe_engine.connect() as connection:
                        await connection.execute(text("SELECT 1"))
            return True
        except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
            log.debug("database probe failed for %s: %s", self.service_name, type(error).__name__)
            # Start the next probe on a fresh connection.
            await self._probe_engine.dispose()
            return False

    async def connect_driver(self) -> psycopg.AsyncConnection[Any]:
        """A psycopg connection of its own, outside the pool (PostgreSQL only), for a writer that holds one.

        Raises:
            RuntimeError: the database is SQLite.

        """
        if self.kind != "postgresql":
            raise RuntimeError("connect_driver is for PostgreSQL")
        return await psycopg.AsyncConnection.connect(libpq_conninfo(self.async_url), **self._connect_args)

    async def point_read(self, statement: AnySelect, params: Mapping[str, Any]) -> Row | None:
        """One row of a single-row ``statement`` (built once, with ``bindparam``), outside any session.

        For hot lookups by key: no ORM session, no transaction (see ``mesh.reads``). The
        values are processed by the columns' types, as the ORM would; ``None`` if no row.
        """
        return await self.reads.one(statement, params)

    async def dispose(self) -> None:
        """Close every pooled connection (the point reader's too)."""
        await self.reads.close()
        await self.engine.dispose()
        await self._probe_engine.dispose()


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached or did not answer (worth a retry).

    Connection failures, dropped connections, a pool with no free connection in time, and the
    driver's operational errors (which also cover a cancelled statement, a deadlock or "database
    is locked" on SQLite: all transient). Programming and integrity errors are not: they are bugs
    or conflicts, and stay what they are.
    """
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(error, sa_exc.TimeoutError | psycopg.OperationalError | psycopg.InterfaceError)


IDLE_PING_SECONDS = 5.0
"""A pooled connection idle longer than this is pinged before it serves again."""


def ping_when_idle(engine: Engine, idle: float = IDLE_PING_SECONDS) -> None:
    """Ping a pooled connection at checkout only when it sat idle for ``idle`` seconds or more.

    ``pool_pre_ping`` costs every checkout a round trip (``SELECT 1``), on a busy service most of
    its statements' worth. A connection returned moments ago is as alive as the last statement
    it ran; one that sat idle may have been closed by the server, a proxy or a restart, and a
    failed ping makes the pool replace it (``DisconnectionError``: SQLAlchemy retries the
    checkout on a fresh connection), so the caller never sees it. A restart in the last
    ``idle`` seconds is still caught by the first statement: SQLAlchemy then invalidates the
    whole pool, and that one call fails as the database being unreachable.
    """

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as error:
            raise DisconnectionError(f"idle connection failed its ping: {type(error).__name__}") from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
