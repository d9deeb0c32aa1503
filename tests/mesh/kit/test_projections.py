"""The projection runner (``mesh.kit.projections``) over a real database, fed by a fake log.

The overview projection is the read model under test (it is the kit's first consumer); the
log is ``tests.support.fake_events.FakeLog``, shaped like SubscribeToAll. Properties: an
event delivered twice changes nothing; the model built incrementally equals the one a
rebuild from position 0 makes (random event sequences); a runner stopped mid-stream resumes
from its checkpoint without losing or double-counting; an events outage is survived.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import FailedPrecondition
from mesh.kit.clock import FixedClock
from mesh.kit.projections import LIVE, Projections
from services.overview.models import ActivityRow, AgentSummaryRow, ProjectionEventRow, ProjectionStateRow
from services.overview.projection import OverviewProjection
from tests.support.fake_events import FakeLog
from tests.support.projection_service import migrated_database
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

NAME = OverviewProjection.name


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[ServiceDatabase]:
    async with migrated_database(settings, "overview") as database:
        yield database


def runner(database: ServiceDatabase, log: FakeLog) -> Projections:
    projections = Projections(
        database.sessions, log, FixedClock(), state_row=ProjectionStateRow, event_row=ProjectionEventRow
    )
    projections.add(OverviewProjection())
    return projections


async def wait_for(projections: Projections, position: int, *, generation: int | None = None) -> None:
    """Until the served copy has reached ``position`` (and is ``generation``); bounded by the test timeout."""
    while True:
        status = await projections.status(NAME)
        if status.position >= position and status.state == LIVE and generation in (None, status.served_generation):
            return
        await asyncio.sleep(0.02)


async def snapshot(database: ServiceDatabase) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The served copy's content, without its generation."""
    async with database.sessions() as session:
        state = await session.get(ProjectionStateRow, NAME)
        generation = 1 if state is None else state.served_generation
        agents = (
            await session.execute(
                select(
                    AgentSummaryRow.organization_id,
                    AgentSummaryRow.agent_id,
                    AgentSummaryRow.state,
                    AgentSummaryRow.display_name,
                )
                .where(AgentSummaryRow.generation == generation)
                .order_by(AgentSummaryRow.organization_id, AgentSummaryRow.agent_id)
            )
        ).all()
        activity = (
            await session.execute(
                select(
                    ActivityRow.organization_id,
                    ActivityRow.event_id,
                    ActivityRow.kind,
                    ActivityRow.title,
                    ActivityRow.position,
                )
                .where(ActivityRow.generation == generation)
                .order_by(ActivityRow.position)
            )
        ).all()
    return [tuple(a) for a in agents], [tuple(a) for a in activity]


def agent(
    org: str, agent_id: str, name: str, state: agent_pb2.AgentState = agent_pb2.AGENT_STATE_DRAFT
) -> agent_pb2.Agent:
    return agent_pb2.Agent(name=f"organizations/{org}/agents/{agent_id}", display_name=name, state=state)


async def random_history(log: FakeLog, rng: random.Random, count: int) -> None:
    """``count`` agent events over two organisations: creates, renames, publishes, archives, deletes."""
    alive: dict[tuple[str, str], str] = {}
    for step in range(count):
        org = rng.choice(["org-a", "org-b"])
        mine = [key for key in alive if key[0] == org]
        action = rng.choice(["create", "create", "update", "publish", "archive", "delete"]) if mine else "create"
        if action == "create":
            agent_id = f"ag-{step}"
            alive[(org, agent_id)] = f"Agent {step}"
            await log.append(org, agents_events_pb2.AgentCreatedEvent(agent=agent(org, agent_id, f"Agent {step}")))
            continue
        key = rng.choice(mine)
        if action == "update":
            alive[key] = f"Renamed {step}"
            await log.append(org, agents_events_pb2.AgentUpdatedEvent(agent=agent(*key, alive[key]), changed=["x"]))
        elif action == "publish":
            await log.append(
                org,
                agents_events_pb2.AgentPublishedEvent(
                    agent=agent(*key, alive[key], agent_pb2.AGENT_STATE_PUBLISHED),
                    agent_version=agent_pb2.AgentVersion(version=step),
                ),
            )
        elif action == "archive":
            await log.append(
                org, agents_events_pb2.AgentArchivedEvent(agent=agent(*key, alive[key], agent_pb2.AGENT_STATE_ARCHIVED))
            )
        else:
            del alive[key]
            await log.append(org, agents_events_pb2.AgentDeletedEvent(name=f"organizations/{key[0]}/agents/{key[1]}"))


async def test_an_event_delivered_twice_changes_nothing(database: ServiceDatabase):
    log = FakeLog()
    first = await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "ag-1", "One")))
    projections = runner(database, log)
    projections.start()
    try:
        await wait_for(projections, 1)
        before = await snapshot(database)
        # the same event again at a later position (a relay retry appended late), and a later one
        await log.append(
            "org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "ag-1", "One")), event_id=first.event_id
        )
        await wait_for(projections, 2)
        assert await snapshot(database) == before
    finally:
        await projections.stop()
    # and the whole log delivered again from 0 to a new runner: still the same
    async with database.sessions.begin() as session:
        state = await session.get(ProjectionStateRow, NAME)
        assert state is not None
        state.position = 0  # as if the checkpoint had been lost: only the event ids protect the model now
    again = runner(database, log)
    again.start()
    try:
        await wait_for(again, 2)
        assert await snapshot(database) == before
        agents, activity = before
        assert agents == [("org-a", "ag-1", "DRAFT", "One")]
        assert len(activity) == 1
    finally:
        await again.stop()


@pytest.mark.parametrize("seed", range(4))
async def test_the_incremental_model_equals_a_rebuild_from_zero(database: ServiceDatabase, seed: int):
    rng = random.Random(seed)
    log = FakeLog()
    await random_history(log, rng, 15)
    projections = runner(database, log)
    projections.start()
    try:
        await wait_for(projections, log.head)
        await random_history(log, rng, 25)  # live, after the catch-up
        await wait_for(projections, log.head)
        incremental = await snapshot(database)
        status = await projections.rebuild(NAME)
        assert status.state == "REBUILDING"
        with pytest.raises(FailedPrecondition):
            await projections.rebuild(NAME)
        await wait_for(projections, log.head, generation=2)
        assert await snapshot(database) == incremental
        # the old copy is gone, and live events keep reaching the new one
        async with database.sessions() as session:
            assert (await session.scalars(select(AgentSummaryRow).where(AgentSummaryRow.generation == 1))).all() == []
        await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "late", "Late")))
        await wait_for(projections, log.head)
        agents, _ = await snapshot(database)
        assert ("org-a", "late", "DRAFT", "Late") in agents
    finally:
        await projections.stop()


async def test_a_runner_stopped_mid_stream_resumes_without_loss_or_double_count(database: ServiceDatabase):
    log = FakeLog()
    await random_history(log, random.Random(7), 40)
    log.delay = 0.01
    projections = runner(database, log)
    projections.start()
    while True:
        if (await projections.status(NAME)).position >= 10:
            break
        await asyncio.sleep(0.01)
    await projections.stop()  # cancelled between (or inside) event transactions
    stopped_at = (await projections.status(NAME)).position
    assert 10 <= stopped_at < log.head
    log.delay = 0
    resumed = runner(database, log)
    resumed.start()
    try:
        await wait_for(resumed, log.head)
        model = await snapshot(database)
        await resumed.rebuild(NAME)
        await wait_for(resumed, log.head, generation=2)
        assert await snapshot(database) == model
        _, activity = model
        assert len({row[1] for row in activity}) == len(activity)
    finally:
        await resumed.stop()


async def test_an_events_outage_is_survived(database: ServiceDatabase):
    log = FakeLog()
    await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "ag-1", "One")))
    projections = runner(database, log)
    projections.start()
    try:
        await wait_for(projections, 1)
        await log.fail()
        await asyncio.sleep(0.3)
        log.outage = False
        await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "ag-2", "Two")))
        await wait_for(projections, 2)
        assert log.subscriptions >= 2
        agents, _ = await snapshot(database)
        assert [a[1] for a in agents] == ["ag-1", "ag-2"]
    finally:
        await projections.stop()
