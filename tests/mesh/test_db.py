"""The service database: a probe of its own (readiness follows the database, not the load); idle pings."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import NullPool, QueuePool, text
from sqlalchemy.ext.asyncio import create_async_engine

from mesh.config import Settings
from mesh.db import ServiceDatabase, ping_when_idle


async def test_the_probe_answers_while_every_pooled_connection_is_checked_out(settings: Settings) -> None:
    database = ServiceDatabase(settings, "probed")
    try:
        pool = database.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        capacity = pool.size() + pool._max_overflow
        async with contextlib.AsyncExitStack() as held:
            for _ in range(capacity):
                connection = await held.enter_async_context(database.engine.connect())
                await connection.execute(text("SELECT 1"))
            assert pool.checkedout() == capacity
            # Sharing the pool, the probe would wait for a connection and time out: "not ready" under load.
            assert await database.probe(timeout=1.0)
            assert pool.checkedout() == capacity, "the probe must not touch the service's pool"
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_an_idle_connection_closed_by_the_server_is_replaced_at_checkout(postgres_available: str) -> None:
    engine = create_async_engine(with_driver(postgres_available), pool_size=1, max_overflow=0)
    ping_when_idle(engine.sync_engine, idle=0.0)
    try:
        async with engine.connect() as connection:
            first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        killer = create_async_engine(with_driver(postgres_available), poolclass=NullPool)
        async with killer.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await killer.dispose()
        # Without the ping the pooled connection is dead and this statement fails.
        async with engine.connect() as connection:
            second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await engine.dispose()


def with_driver(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)
