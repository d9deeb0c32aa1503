"""The database probe has a connection of its own: readiness follows the database, not the load."""

from __future__ import annotations

import contextlib

from sqlalchemy import QueuePool, text

from mesh.config import Settings
from mesh.db import ServiceDatabase


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
