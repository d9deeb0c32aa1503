"""Kill -9 a projection consumer mid-stream, against the real events service.

A worker process (``tests/support/projection_worker.py``) follows the events service's
SubscribeToAll into the overview read model, slowly, and is killed with SIGKILL while it
is applying. A new runner then resumes from the consumer's own checkpoint row; the read
model it reaches equals a from-scratch rebuild, and nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import message
from sqlalchemy import select

from interceptors.client_auth import client_auth_interceptors
from mesh import event_types
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.clock import SYSTEM_CLOCK
from mesh.kit.projections import LIVE, EventsServiceSource, Projections
from mesh.registry import default_registry
from services.overview.models import ActivityRow, ProjectionEventRow, ProjectionStateRow
from services.overview.projection import OverviewProjection
from tests.mesh.kit.test_projections import snapshot
from tests.services.events.support import Events, running_events
from tests.support.kit import ISSUER
from tests.support.projection_service import migrated_database
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.events.v1 import events_service_pb2, events_service_pb2_grpc

NAME = OverviewProjection.name
EVENTS = 60


def overview_token() -> str:
    """The overview service's own token, with the permissions its contract's calls need."""
    return ISSUER.mint_service("overview")


async def append(events: Events, org: str, agent_id: str, payload: message.Message) -> None:
    event_type, schema, data = event_types.encode(payload)
    proposed = events_service_pb2.ProposedEvent(event_id=str(uuid.uuid4()), type=event_type, data_schema=schema)
    proposed.data.update(data)
    await events.append(f"organizations/{org}/event_streams/agents-{agent_id}", [proposed], organization_id=org)


async def history(events: Events) -> int:
    """EVENTS agent events; returns how many activity items they make."""
    items = 0
    for index in range(EVENTS // 2):
        org = "org-a" if index % 2 else "org-b"
        made = agent_pb2.Agent(name=f"organizations/{org}/agents/ag-{index}", display_name=f"Agent {index}")
        await append(events, org, f"ag-{index}", agents_events_pb2.AgentCreatedEvent(agent=made))
        if index % 3:
            made.state = agent_pb2.AGENT_STATE_PUBLISHED
            await append(events, org, f"ag-{index}", agents_events_pb2.AgentPublishedEvent(agent=made))
        else:
            await append(events, org, f"ag-{index}", agents_events_pb2.AgentUpdatedEvent(agent=made, changed=["x"]))
        items += 2 if index % 3 else 1
    return items


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[ServiceDatabase]:
    async with migrated_database(settings, "overview") as database:
        yield database


async def position(database: ServiceDatabase) -> int:
    async with database.sessions() as session:
        row = await session.get(ProjectionStateRow, NAME, populate_existing=True)
        return 0 if row is None else row.position


async def test_a_consumer_killed_mid_stream_resumes_and_equals_a_rebuild(settings: Settings, database: ServiceDatabase):
    assert default_registry().service("overview")  # the token's permissions come from its contract
    async with running_events(settings) as events:
        items = await history(events)
        address = f"127.0.0.1:{events.service.host.port}"
        url = "" if settings.database_url is None else settings.database_url.render_as_string(hide_password=False)
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.projection_worker",
            address,
            overview_token(),
            str(settings.var_dir),
            url,
            settings.schema_prefix,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert worker.stdout is not None
            assert (await worker.stdout.readline()).strip() == b"ready"
            while True:
                if await position(database) >= 10:
                    break
                await asyncio.sleep(0.02)
            os.kill(worker.pid, signal.SIGKILL)
        finally:
            if worker.returncode is None:
                worker.kill()
            await worker.wait()
        killed_at = await position(database)
        assert 10 <= killed_at < EVENTS

        async def credential() -> str:
            return overview_token()

        async with grpc.aio.insecure_channel(address, interceptors=client_auth_interceptors(credential)) as channel:
            stub = events_service_pb2_grpc.EventsServiceStub(channel)
            source = EventsServiceSource(lambda: stub)
            assert await source.head_position() == EVENTS
            resumed = Projections(
                database.sessions, source, SYSTEM_CLOCK, state_row=ProjectionStateRow, event_row=ProjectionEventRow
            )
            resumed.add(OverviewProjection())
            resumed.start()
            try:
                await resumed.wait_caught_up(NAME)
                while True:
                    if (await resumed.status(NAME)).position >= EVENTS:
                        break
                    await asyncio.sleep(0.02)
                model = await snapshot(database)
                agents, activity = model
                assert len(agents) == EVENTS // 2  # nothing lost
                assert len(activity) == items  # nothing counted twice
                await resumed.rebuild(NAME)
                while True:
                    status = await resumed.status(NAME)
                    if status.state == LIVE and status.served_generation == 2:
                        break
                    await asyncio.sleep(0.02)
                assert await snapshot(database) == model
                async with database.sessions() as session:
                    old = await session.scalars(select(ActivityRow).where(ActivityRow.generation == 1))
                    assert old.all() == []
            finally:
                await resumed.stop()
