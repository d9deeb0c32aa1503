"""A migrated kit database (the shared ``mesh`` branch only) on each backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase


@pytest.fixture
async def kit_database(settings: Settings) -> AsyncIterator[ServiceDatabase]:
    """A service database holding the kit's tables (outbox, idempotency keys, identity calls)."""
    database = ServiceDatabase(settings, "kitdemo")
    await asyncio.to_thread(migrations.upgrade, database)
    yield database
    await database.dispose()
