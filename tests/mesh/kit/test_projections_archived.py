"""A projection over a log whose oldest events retention archived: it fails clearly instead of retrying forever."""

from __future__ import annotations

import asyncio

from mesh.db import ServiceDatabase
from mesh.kit.projections import FAILED, Projections, ProjectionStatus
from tests.mesh.kit.test_projections import NAME, agent, database, runner, snapshot, wait_for
from tests.support.fake_events import FakeLog
from vocelio.agents.v1 import agents_events_pb2

__all__ = ["database"]  # the fixture


async def created(log: FakeLog, count: int) -> None:
    for _ in range(count):
        index = log.head + 1
        await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", f"a{index}", f"A{index}")))


async def failed(projections: Projections) -> ProjectionStatus:
    """The status once FAILED (bounded by the test timeout)."""
    while True:
        status = await projections.status(NAME)
        if status.state == FAILED:
            return status
        await asyncio.sleep(0.02)


async def test_a_new_consumer_of_an_archived_log_fails_with_the_stores_message(database: ServiceDatabase):
    log = FakeLog()
    await created(log, 5)
    log.archived = 3
    projections = runner(database, log)
    projections.start()
    try:
        status = await failed(projections)
        assert status.error_message == "OUT_OF_RANGE: events up to global position 3 are archived (retention)"
        assert status.position == 0
        subscriptions = log.subscriptions
        await asyncio.sleep(0.5)  # longer than the first back-off: a retry would have subscribed again
        assert log.subscriptions == subscriptions == 1
    finally:
        await projections.stop()


async def test_a_rebuild_over_an_archived_log_fails_and_keeps_the_served_copy(database: ServiceDatabase):
    log = FakeLog()
    await created(log, 5)
    projections = runner(database, log)
    projections.start()
    try:
        await wait_for(projections, log.head)
        served = await snapshot(database)
        log.archived = 3
        await projections.rebuild(NAME)
        status = await failed(projections)
        assert status.error_message.startswith("OUT_OF_RANGE: events up to global position 3 are archived")
        assert status.served_generation == 1
        assert await snapshot(database) == served
        await created(log, 1)  # the live copy is still kept current
        await wait_for_position(projections, log.head)
        agents, _ = await snapshot(database)
        assert len(agents) == 6
    finally:
        await projections.stop()


async def wait_for_position(projections: Projections, position: int) -> None:
    """Until the served copy's checkpoint reaches ``position``, whatever the state (bounded by the test timeout)."""
    while True:
        if (await projections.status(NAME)).position >= position:
            return
        await asyncio.sleep(0.02)
