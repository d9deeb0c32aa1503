"""A process that runs the overview projection against a real events service, to be killed.

``python -m tests.support.projection_worker EVENTS_ADDRESS TOKEN VAR_DIR DATABASE_URL SCHEMA_PREFIX``
follows the log with a slow apply (50 ms an event, 5 events a transaction) until it is killed (``kill -9`` in the
tests), so the kill lands mid-stream; it prints ``ready`` once its subscription is open.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from interceptors.client_auth import client_auth_interceptors
from mesh.config import Settings, parse_database_url
from mesh.db import ServiceDatabase
from mesh.kit.clock import SYSTEM_CLOCK
from mesh.kit.projections import EventsServiceSource, ProjectedEvent, Projections
from services.overview.models import ProjectionEventRow, ProjectionStateRow
from services.overview.projection import OverviewProjection
from vocelio.events.v1 import events_service_pb2_grpc


class SlowOverview(OverviewProjection):
    """The overview projection, 50 ms slower per event."""

    async def apply(self, session: AsyncSession, event: ProjectedEvent, generation: int) -> None:
        """Sleep inside the transaction, then apply."""
        await asyncio.sleep(0.05)
        await super().apply(session, event, generation)


async def main(address: str, token: str, var_dir: str, database_url: str, schema_prefix: str) -> None:
    """Follow the log until killed."""
    settings = Settings(
        var_dir=pathlib.Path(var_dir), database_url=parse_database_url(database_url), schema_prefix=schema_prefix
    )
    database = ServiceDatabase(settings, "overview")

    async def credential() -> str:
        return token

    channel = grpc.aio.insecure_channel(address, interceptors=client_auth_interceptors(credential))
    stub = events_service_pb2_grpc.EventsServiceStub(channel)
    projections = Projections(
        database.sessions,
        EventsServiceSource(lambda: stub),
        SYSTEM_CLOCK,
        state_row=ProjectionStateRow,
        event_row=ProjectionEventRow,
        batch_size=5,
    )
    projections.add(SlowOverview())
    projections.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
