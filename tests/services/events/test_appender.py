"""Group commit: appends queued together are written in one transaction, each decided as if alone.

The appends of one ``asyncio.gather`` all queue before the writer's first turn, so they
form one batch deterministically; ``Appender.batches`` counts transactions.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import Aborted, AlreadyExists, FailedPrecondition, Unavailable
from mesh.kit.clock import SystemClock
from services.events import store
from services.events.appender import Appender
from services.events.batch_writers import BatchWriter, PostgresWriter, writer_for
from services.events.domain import batches, names
from services.events.domain.reading import Filter
from services.events.models import EventRow
from services.events.notifier import LogNotifier
from tests.services.events.support import pb, proposed_event


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[ServiceDatabase]:
    db = ServiceDatabase(settings, "events")
    await asyncio.to_thread(migrations.upgrade, db)
    try:
        yield db
    finally:
        await db.dispose()


class Faulty:
    """The real batch writer behind a switch: the first ``failures`` writes fail as a dropped connection would."""

    def __init__(self, real: BatchWriter) -> None:
        self.real = real
        self.failures = 0
        self.calls: list[int] = []
        self.contexts: list[str] = []

    async def write(self, queued: Sequence[batches.Queued], now: datetime.datetime) -> batches.Plan:
        self.calls.append(len(queued))
        self.contexts.append(MARKER.get())
        if self.failures:
            self.failures -= 1
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return await self.real.write(queued, now)

    async def close(self) -> None:
        await self.real.close()


MARKER: contextvars.ContextVar[str] = contextvars.ContextVar("test_appender_caller", default="none")


@pytest.fixture
def faulty(database: ServiceDatabase) -> Faulty:
    return Faulty(writer_for(database, store.WriteGate(database.kind)))


@pytest.fixture
async def appender(faulty: Faulty) -> AsyncIterator[Appender]:
    writer = Appender(faulty, LogNotifier(), SystemClock())
    try:
        yield writer
    finally:
        await writer.close(timeout=5)


def queued(
    stream: str, events: Sequence[pb.ProposedEvent] | int = 1, org: str = "org_a", **expected: Any
) -> batches.Queued:
    proposed = [proposed_event() for _ in range(events)] if isinstance(events, int) else list(events)
    request = pb.AppendToStreamRequest(stream=stream, organization_id=org, events=proposed, **expected)
    return batches.queued(request, names.Scoped(org, stream), names.stream_name(org, stream), "services/test")


async def stored(database: ServiceDatabase) -> list[tuple[int, str, int]]:
    async with database.sessions() as session:
        head = await store.head(session)
        rows = await store.read_all(
            session, start=1, forwards=True, limit=1000, organization_id=None, filt=Filter(), upto=head.position
        )
    return [(row.global_position, row.stream_id, row.stream_version) for row in rows]


async def test_concurrent_appends_share_one_transaction_with_consecutive_positions(
    appender: Appender, database: ServiceDatabase
) -> None:
    replies = await asyncio.gather(*(appender.append(queued(f"s-{i % 3}", 2)) for i in range(9)))
    assert appender.batches == 1
    assert [r.global_position for r in replies] == list(range(2, 19, 2))
    assert [r.current_version for r in replies] == [1, 1, 1, 3, 3, 3, 5, 5, 5]
    rows = await stored(database)
    assert [position for position, _, _ in rows] == list(range(1, 19))
    for stream in ("s-0", "s-1", "s-2"):
        assert [v for _, s, v in rows if s == stream] == list(range(6))


async def test_the_batches_show_in_the_metrics(appender: Appender) -> None:
    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (sample("vocelio_events_append_batches_total"), sample("vocelio_events_appended_total"))
    over_four = sample("vocelio_events_append_batch_requests_count") - sample(
        "vocelio_events_append_batch_requests_bucket", {"le": "4.0"}
    )
    await asyncio.gather(*(appender.append(queued(f"s-{i}", 3)) for i in range(6)))
    assert sample("vocelio_events_append_batches_total") == before[0] + 1
    assert sample("vocelio_events_appended_total") == before[1] + 18
    after = sample("vocelio_events_append_batch_requests_count") - sample(
        "vocelio_events_append_batch_requests_bucket", {"le": "4.0"}
    )
    assert after == over_four + 1  # one transaction of six requests


async def test_later_appends_in_a_batch_see_the_earlier_ones(appender: Appender, database: ServiceDatabase) -> None:
    first, second, third = await asyncio.gather(
        appender.append(queued("s", 1, expected_revision=-1)),
        appender.append(queued("s", 1, expected_revision=-1)),
        appender.append(queued("s", 1, expected_revision=0)),
        return_exceptions=True,
    )
    assert appender.batches == 1
    assert isinstance(first, pb.AppendToStreamResponse) and first.current_version == 0
    assert isinstance(second, Aborted) and "is at version 0, not -1" in str(second)
    assert isinstance(third, pb.AppendToStreamResponse) and (third.current_version, third.global_position) == (1, 2)
    assert await stored(database) == [(1, "s", 0), (2, "s", 1)]


async def test_a_refused_append_fails_alone_and_leaves_no_hole(appender: Appender, database: ServiceDatabase) -> None:
    await appender.append(queued("theirs", 1, org="org_b"))
    reused = proposed_event()
    await appender.append(queued("mine", [reused]))
    results = await asyncio.gather(
        appender.append(queued("theirs", 1)),  # another organisation's stream
        appender.append(queued("other", [reused])),  # an id stored in another stream
        appender.append(queued("mine", 1)),
        return_exceptions=True,
    )
    assert isinstance(results[0], FailedPrecondition)
    assert isinstance(results[1], AlreadyExists)
    assert isinstance(results[2], pb.AppendToStreamResponse) and results[2].global_position == 3
    assert [position for position, _, _ in await stored(database)] == [1, 2, 3]
    async with database.sessions() as session:
        assert (await store.head(session)).position == 3


async def test_a_retry_in_the_same_batch_answers_the_first_result(appender: Appender) -> None:
    events = [proposed_event(), proposed_event()]
    first, again = await asyncio.gather(appender.append(queued("s", events)), appender.append(queued("s", events)))
    assert (first.current_version, first.global_position, first.already_appended) == (1, 2, False)
    assert (again.current_version, again.global_position, again.already_appended) == (1, 2, True)


async def test_a_failed_batch_is_written_again_one_append_at_a_time(
    appender: Appender, faulty: Faulty, database: ServiceDatabase
) -> None:
    faulty.failures = 1
    replies = await asyncio.gather(*(appender.append(queued(f"s-{i}", 1)) for i in range(3)))
    assert faulty.calls == [3, 1, 1, 1]
    assert sorted(r.global_position for r in replies) == [1, 2, 3]
    assert [position for position, _, _ in await stored(database)] == [1, 2, 3]


async def test_an_append_failing_twice_gets_the_error_and_the_next_one_is_written(
    appender: Appender, faulty: Faulty
) -> None:
    faulty.failures = 2
    with pytest.raises(OperationalError):
        await appender.append(queued("s", 1))
    assert faulty.calls == [1, 1]
    reply = await appender.append(queued("s", 1))
    assert (reply.current_version, reply.global_position) == (0, 1)


async def test_close_writes_what_is_queued_then_refuses(appender: Appender, database: ServiceDatabase) -> None:
    pending = [asyncio.ensure_future(appender.append(queued(f"s-{i}", 1))) for i in range(4)]
    await asyncio.sleep(0)
    await appender.close(timeout=5)
    assert sorted(p.result().global_position for p in pending) == [1, 2, 3, 4]
    with pytest.raises(Unavailable):
        await appender.append(queued("late", 1))
    assert len(await stored(database)) == 4


async def test_the_writer_runs_in_no_callers_context(appender: Appender, faulty: Faulty) -> None:
    MARKER.set("first caller")
    await appender.append(queued("s", 1))
    assert faulty.contexts == ["none"]


@pytest.mark.postgres
async def test_a_connection_killed_between_batches_costs_no_append(postgres_settings: Settings) -> None:
    database = ServiceDatabase(postgres_settings, "events")
    await asyncio.to_thread(migrations.upgrade, database)
    writer = Appender(writer_for(database, store.WriteGate(database.kind)), LogNotifier(), SystemClock())
    try:
        await writer.append(queued("s", 1))
        async with database.engine.connect() as admin:
            killed = await admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'vocelio-events' AND pid <> pg_backend_pid() AND query ILIKE '%COMMIT%'"
                )
            )
            assert killed.all(), "the writer's idle connection was not found"
        reply = await writer.append(queued("s", 1))
        assert (reply.current_version, reply.global_position) == (1, 2)
    finally:
        await writer.close(timeout=5)
        await database.dispose()


@pytest.mark.postgres
async def test_the_postgresql_writer_plans_each_batch_for_its_own_values(postgres_settings: Settings) -> None:
    # A generic plan cached while the log was small (a sequential scan for the stored ids) made every
    # batch slower as the log grew: 700 events took 250 ms after a few seconds of load instead of 25.
    database = ServiceDatabase(postgres_settings, "events")
    await asyncio.to_thread(migrations.upgrade, database)
    writer = PostgresWriter(database)
    try:
        await writer.write([queued("s", 1)], datetime.datetime.now(datetime.UTC))
        assert writer._connection is not None
        cursor = await writer._connection.execute("SHOW plan_cache_mode")
        assert await cursor.fetchone() == ("force_custom_plan",)
        await writer._connection.rollback()
    finally:
        await writer.close()
        await database.dispose()


def test_the_event_rows_name_every_column_of_the_events_table() -> None:
    assert sorted(batches.EVENT_COLUMNS) == sorted(column.name for column in EventRow.__table__.columns)
