"""Pruning ``projection_events``: the ids table stays bounded, and positions still stop a duplicate.

The read model is analytics' ``event_counts``: counting is not idempotent by itself, so an
event applied twice shows as a count one too high. Ids are kept for ``RETAIN`` positions below
the checkpoint and pruned ``PRUNE`` at a time; the runner applies at most ``BATCH`` events a
transaction, so the table never holds more than ``RETAIN + PRUNE + BATCH`` ids of a copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import func, select

from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.clock import FixedClock
from mesh.kit.projections import LIVE, Projections
from services.analytics.models import EventCountRow, ProjectionEventRow, ProjectionStateRow
from services.analytics.projection import EventCountsProjection
from tests.support.fake_events import FakeLog
from tests.support.projection_service import migrated_database
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

NAME = EventCountsProjection.name
RETAIN = 10
PRUNE = 4
BATCH = 3
BOUND = RETAIN + PRUNE + BATCH


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[ServiceDatabase]:
    async with migrated_database(settings, "analytics") as database:
        yield database


def runner(database: ServiceDatabase, log: FakeLog, batch_size: int = BATCH) -> Projections:
    projections = Projections(
        database.sessions,
        log,
        FixedClock(),
        state_row=ProjectionStateRow,
        event_row=ProjectionEventRow,
        batch_size=batch_size,
        retain_ids=RETAIN,
        prune_batch=PRUNE,
    )
    projections.add(EventCountsProjection())
    return projections


async def created(log: FakeLog, count: int, org: str = "org-a") -> None:
    for _ in range(count):
        index = log.head + 1
        made = agent_pb2.Agent(name=f"organizations/{org}/agents/a{index}", display_name=f"Agent {index}")
        await log.append(org, agents_events_pb2.AgentCreatedEvent(agent=made))


async def wait_for(projections: Projections, position: int) -> None:
    """Until the served copy has reached ``position``; bounded by the test timeout."""
    while True:
        status = await projections.status(NAME)
        if status.state == LIVE and status.position >= position:
            return
        await asyncio.sleep(0.02)


async def recorded_positions(database: ServiceDatabase) -> list[int]:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(ProjectionEventRow.position)
            .where(ProjectionEventRow.projection == NAME)
            .order_by(ProjectionEventRow.position)
        )
        return list(rows)


async def ids_settle(database: ServiceDatabase, done: Callable[[int], bool], what: str, limit: float = 10.0) -> None:
    """Until the copy's number of ids satisfies ``done`` (a pruning pass runs just after its applying transaction)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not done(found := len(await recorded_positions(database))):
        assert loop.time() < deadline, f"{found} ids recorded, not {what}"
        await asyncio.sleep(0.02)


async def total_count(database: ServiceDatabase) -> int:
    async with database.sessions() as session:
        total = await session.scalar(select(func.coalesce(func.sum(EventCountRow.count), 0)))
    return int(total or 0)


async def test_the_ids_table_stays_bounded_as_the_log_grows(database: ServiceDatabase):
    log = FakeLog()
    await created(log, 5)
    projections = runner(database, log)
    projections.start()
    try:
        for _ in range(4):
            await created(log, 30)  # live, after the catch-up
            await wait_for(projections, log.head)
            positions = await recorded_positions(database)
            assert len(positions) <= BOUND, positions
            # the newest RETAIN positions keep their ids: only ids far below the checkpoint go
            assert positions[-RETAIN:] == list(range(log.head - RETAIN + 1, log.head + 1))
        assert await total_count(database) == log.head
    finally:
        await projections.stop()


async def test_a_backlog_of_ids_is_pruned_a_batch_at_a_time(database: ServiceDatabase):
    log = FakeLog()
    await created(log, 40)
    unpruned = Projections(
        database.sessions,
        log,
        FixedClock(),
        state_row=ProjectionStateRow,
        event_row=ProjectionEventRow,
        retain_ids=10**9,  # as before pruning existed: every id kept
    )
    unpruned.add(EventCountsProjection())
    unpruned.start()
    try:
        await wait_for(unpruned, log.head)
    finally:
        await unpruned.stop()
    assert len(await recorded_positions(database)) == 40
    projections = runner(database, log)
    projections.start()
    try:
        for applied in range(1, 7):  # each applied transaction adds one id and prunes PRUNE, no more
            await created(log, 1)
            await wait_for(projections, log.head)
            expected = 40 + applied - PRUNE * applied
            await ids_settle(database, expected.__eq__, str(expected))
        await created(log, 20)
        await wait_for(projections, log.head)
        await ids_settle(database, BOUND.__ge__, f"at most {BOUND}")  # the backlog is gone
        positions = await recorded_positions(database)
        assert positions[-RETAIN:] == list(range(log.head - RETAIN + 1, log.head + 1))
    finally:
        await projections.stop()


async def test_an_event_delivered_again_after_its_id_was_pruned_changes_nothing(database: ServiceDatabase):
    log = FakeLog()
    await created(log, 40, "org-a")
    await created(log, 5, "org-b")
    projections = runner(database, log)
    projections.start()
    try:
        await wait_for(projections, log.head)
    finally:
        await projections.stop()
    positions = await recorded_positions(database)
    assert positions[0] > 1 and len(positions) <= BOUND  # the first events' ids are gone
    before = await total_count(database)
    assert before == 45

    # every event is delivered again at its own position, then one new event; a big batch takes them
    # all into one transaction, which the new event's position lets past the checkpoint guard
    log.rewind = log.head
    await created(log, 1, "org-b")
    again = runner(database, log, batch_size=100)
    again.start()
    try:
        await wait_for(again, log.head)
        async with database.sessions() as session:
            rows = await session.execute(
                select(EventCountRow.organization_id, EventCountRow.count).order_by(EventCountRow.organization_id)
            )
            assert [tuple(row) for row in rows.all()] == [("org-a", 40), ("org-b", 6)]
        assert log.subscriptions >= 2
    finally:
        await again.stop()
