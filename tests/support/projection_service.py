"""Run one projecting service (overview, analytics) on port 0, fed by a :class:`FakeLog`; or only its database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.clock import FixedClock
from mesh.kit.projections import LIVE, Projections
from mesh.registry import default_registry
from runtime.server import ServiceHost
from tests.support.fake_events import FakeLog
from tests.support.kit import ISSUER
from tests.support.mesh import trusting


@contextlib.asynccontextmanager
async def migrated_database(settings: Settings, name: str) -> AsyncIterator[ServiceDatabase]:
    """The service's database, migrated to its head; disposed afterwards."""
    database = ServiceDatabase(settings, name)
    await asyncio.to_thread(migrations.upgrade, database)
    try:
        yield database
    finally:
        await database.dispose()


@contextlib.asynccontextmanager
async def projecting_service(
    settings: Settings, name: str, log: FakeLog
) -> AsyncIterator[tuple[ServiceHost, grpc.aio.Channel]]:
    """The service with its projections reading ``log``; stopped (bounded) afterwards."""
    registry = default_registry()
    host = ServiceHost(
        registry.service(name),
        settings,
        registry,
        port=0,
        security=trusting(ISSUER),
        clock=FixedClock(),
        event_source=log,
        serve_metrics=False,
    )
    port = await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield host, channel
    finally:
        await host.shutdown()


def projections_of(host: ServiceHost) -> Projections:
    """The service's one :class:`Projections` collection."""
    assert host.context is not None
    (projections,) = host.context.projections
    return projections


async def caught_up(host: ServiceHost, log: FakeLog) -> None:
    """Wait until every projection of the service has applied the whole log (test timeout bounds it)."""
    projections = projections_of(host)
    for name in projections.names:
        while True:
            status = await projections.status(name)
            if status.state == LIVE and status.position >= log.head:
                break
            await asyncio.sleep(0.02)
