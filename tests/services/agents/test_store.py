"""The agents store against real databases: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import Aborted, AlreadyExists, NotFound
from mesh.principal import Principal, PrincipalKind
from services.agents import convert, events, store
from services.agents.domain.filtering import AgentFilter
from services.agents.domain.lifecycle import AgentState
from services.agents.models import AgentRow, AgentVersionRow, Base, CreateRequestRow, OutboxRow
from vocelio.agents.v1 import agent_pb2

T0 = datetime.datetime(2026, 11, 26, 9, 0, tzinfo=datetime.UTC)
ALICE = Principal("users/alice", PrincipalKind.USER, "org_a", "ADMIN", frozenset({"*"}))


class Boom(Exception):
    pass


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "agents")
    await asyncio.to_thread(migrations.upgrade, database)
    yield database
    await database.dispose()


@pytest.fixture
def sessions(database: ServiceDatabase) -> async_sessionmaker[AsyncSession]:
    return database.sessions


def agent_row(
    agent_id: str,
    *,
    org: str = "org_a",
    created: datetime.datetime = T0,
    state: AgentState = AgentState.DRAFT,
    labels: dict[str, str] | None = None,
) -> AgentRow:
    row = convert.new_agent_row(
        agent_id,
        org,
        agent_pb2.Agent(display_name=agent_id.title(), labels=labels or {}),
        agent_pb2.AgentConfig(),
        "users/alice",
        created,
    )
    row.state = state
    return row


async def insert(sessions: async_sessionmaker[AsyncSession], *rows: AgentRow) -> None:
    async with sessions.begin() as session:
        for row in rows:
            await store.add_agent(session, row)


async def listed_ids(sessions, org="org_a", agent_filter=None, show_archived=False, after=None, limit=50):
    async with sessions.begin() as session:
        page = await store.list_agents(
            session, org, agent_filter or AgentFilter(), show_archived=show_archived, after=after, limit=limit
        )
    return [row.id for row in page.items], page.next_after


# Schema


def test_the_migration_creates_exactly_what_the_models_describe(database: ServiceDatabase):
    engine = database.sync_engine()
    try:
        inspector = sa.inspect(engine)
        for table in Base.metadata.sorted_tables:
            columns = {c["name"]: c for c in inspector.get_columns(table.name, schema=database.schema)}
            assert set(columns) == {c.name for c in table.columns}, table.name
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, f"{table.name}.{column.name}"
            primary_key = inspector.get_pk_constraint(table.name, schema=database.schema)["constrained_columns"]
            assert primary_key == [c.name for c in table.primary_key.columns], table.name
            indexes = {i["name"] for i in inspector.get_indexes(table.name, schema=database.schema)}
            assert {i.name for i in table.indexes} <= indexes, table.name
    finally:
        engine.dispose()
    assert migrations.current_heads(database) == {"mesh_0002", "agents_0001"}


# Agents


async def test_an_agent_round_trips_with_utc_times_and_labels(sessions):
    await insert(sessions, agent_row("sales-bot", labels={"team": "sales"}))
    async with sessions.begin() as session:
        row = await store.get_agent(session, "sales-bot", "org_a")
    assert row.create_time == T0
    assert row.create_time.tzinfo == datetime.UTC
    assert row.labels == {"team": "sales"}
    assert row.state is AgentState.DRAFT
    assert row.revision == 1


async def test_another_organisations_agent_is_not_found_like_a_missing_one(sessions):
    await insert(sessions, agent_row("sales-bot", org="org_b"))
    async with sessions.begin() as session:
        with pytest.raises(NotFound) as foreign:
            await store.get_agent(session, "sales-bot", "org_a")
        with pytest.raises(NotFound) as missing:
            await store.get_agent(session, "sold-bot", "org_a")
        assert (await store.get_agent(session, "sales-bot", None)).organization_id == "org_b"
    assert foreign.value.message == "agents/sales-bot not found"
    assert missing.value.message == "agents/sold-bot not found"


async def test_agent_ids_are_unique_across_organisations(sessions):
    await insert(sessions, agent_row("sales-bot", org="org_b"))
    with pytest.raises(AlreadyExists, match="agents/sales-bot already exists"):
        await insert(sessions, agent_row("sales-bot", org="org_a"))


async def test_every_save_bumps_the_revision(sessions):
    await insert(sessions, agent_row("sales-bot"))
    async with sessions.begin() as session:
        row = await store.get_agent(session, "sales-bot", "org_a")
        row.display_name = "Renamed"
        await store.save_agent(session, row)
        assert row.revision == 2


async def rename(session: AsyncSession, row: AgentRow, display_name: str) -> None:
    async with session.begin():
        row.display_name = display_name
        await store.save_agent(session, row)


async def test_a_concurrent_change_aborts_the_later_writer(sessions):
    await insert(sessions, agent_row("sales-bot"))
    async with sessions() as first, sessions() as second:
        async with first.begin():
            mine = await store.get_agent(first, "sales-bot", "org_a")
        async with second.begin():
            theirs = await store.get_agent(second, "sales-bot", "org_a")
        await rename(second, theirs, "Theirs")
        with pytest.raises(Aborted, match="changed concurrently"):
            await rename(first, mine, "Mine")
    async with sessions.begin() as session:
        assert (await store.get_agent(session, "sales-bot", "org_a")).display_name == "Theirs"


async def test_deleting_an_agent_deletes_its_versions(sessions):
    await insert(sessions, agent_row("sales-bot"), agent_row("other-bot"))
    async with sessions.begin() as session:
        for agent_id in ("sales-bot", "other-bot"):
            await store.add_version(session, version_row(agent_id, 1))
    async with sessions.begin() as session:
        await store.delete_agent(session, await store.get_agent(session, "sales-bot", "org_a"))
    async with sessions.begin() as session:
        assert await store.find_agent(session, "sales-bot", None) is None
        assert await store.find_version(session, "sales-bot", 1) is None
        assert await store.find_version(session, "other-bot", 1) is not None


# Listing


async def test_agents_list_newest_first_with_ties_broken_by_id(sessions):
    await insert(
        sessions,
        agent_row("oldest", created=T0),
        agent_row("tie-a", created=T0 + datetime.timedelta(seconds=1)),
        agent_row("tie-b", created=T0 + datetime.timedelta(seconds=1)),
        agent_row("newest", created=T0 + datetime.timedelta(seconds=2)),
        agent_row("foreign", org="org_b", created=T0 + datetime.timedelta(seconds=3)),
    )
    assert (await listed_ids(sessions))[0] == ["newest", "tie-b", "tie-a", "oldest"]
    assert (await listed_ids(sessions, org=None))[0] == ["foreign", "newest", "tie-b", "tie-a", "oldest"]


async def test_listing_filters_on_state_labels_and_archiving(sessions):
    await insert(
        sessions,
        agent_row("draft-sales", labels={"team": "sales"}),
        agent_row("live-sales", state=AgentState.PUBLISHED, labels={"team": "sales", "tier": "gold"}),
        agent_row("live-support", state=AgentState.PUBLISHED, labels={"team": "support"}),
        agent_row("gone-sales", state=AgentState.ARCHIVED, labels={"team": "sales"}),
    )

    async def ids(agent_filter=None, show_archived=False):
        return sorted((await listed_ids(sessions, agent_filter=agent_filter, show_archived=show_archived))[0])

    assert await ids() == ["draft-sales", "live-sales", "live-support"]
    assert await ids(show_archived=True) == ["draft-sales", "gone-sales", "live-sales", "live-support"]
    assert await ids(AgentFilter(state=AgentState.PUBLISHED)) == ["live-sales", "live-support"]
    assert await ids(AgentFilter(state=AgentState.ARCHIVED)) == ["gone-sales"]
    assert await ids(AgentFilter(labels={"team": "sales"})) == ["draft-sales", "live-sales"]
    assert await ids(AgentFilter(labels={"team": "sales"}), show_archived=True) == [
        "draft-sales",
        "gone-sales",
        "live-sales",
    ]
    assert await ids(AgentFilter(state=AgentState.PUBLISHED, labels={"team": "sales", "tier": "gold"})) == [
        "live-sales"
    ]
    assert await ids(AgentFilter(labels={"team": "nobody"})) == []
    assert await ids(AgentFilter(labels={"absent": ""})) == []


async def test_pages_are_stable_while_agents_are_added(sessions):
    await insert(sessions, *(agent_row(f"agent-{i}", created=T0 + datetime.timedelta(seconds=i)) for i in range(7)))
    seen: list[str] = []
    first, after = await listed_ids(sessions, limit=3)
    seen += first
    # New agents arrive between pages, newer than everything listed so far.
    await insert(sessions, *(agent_row(f"late-{i}", created=T0 + datetime.timedelta(minutes=5 + i)) for i in range(3)))
    while after is not None:
        page, after = await listed_ids(sessions, after=after, limit=3)
        seen += page
    assert seen == [f"agent-{i}" for i in reversed(range(7))]


async def test_ties_on_create_time_page_without_loss(sessions):
    await insert(sessions, *(agent_row(f"same-{i}", created=T0) for i in range(5)))
    seen: list[str] = []
    after = None
    while True:
        page, after = await listed_ids(sessions, after=after, limit=2)
        seen += page
        if after is None:
            break
    assert seen == [f"same-{i}" for i in reversed(range(5))]


# Versions


def version_row(agent_id: str, version: int) -> AgentVersionRow:
    return AgentVersionRow(
        agent_id=agent_id,
        version=version,
        config=convert.config_to_json(agent_pb2.AgentConfig(prompt=f"v{version}")),
        change_note=f"note {version}",
        creator="users/alice",
        create_time=T0 + datetime.timedelta(minutes=version),
    )


async def test_versions_list_newest_first_in_pages(sessions):
    await insert(sessions, agent_row("sales-bot"))
    async with sessions.begin() as session:
        for number in range(1, 6):
            await store.add_version(session, version_row("sales-bot", number))
    seen: list[int] = []
    after = None
    while True:
        async with sessions.begin() as session:
            page = await store.list_versions(session, "sales-bot", after=after, limit=2)
        seen += [row.version for row in page.items]
        after = page.next_after
        if after is None:
            break
    assert seen == [5, 4, 3, 2, 1]


async def test_a_version_number_is_taken_once(sessions):
    await insert(sessions, agent_row("sales-bot"))
    async with sessions.begin() as session:
        await store.add_version(session, version_row("sales-bot", 1))
    with pytest.raises(Aborted, match="published concurrently"):
        async with sessions.begin() as session:
            await store.add_version(session, version_row("sales-bot", 1))


# Idempotency keys


def request_row(request_id: str, agent_id: str, created: datetime.datetime) -> CreateRequestRow:
    return CreateRequestRow(
        organization_id="org_a", request_id=request_id, agent_id=agent_id, fingerprint="f" * 64, create_time=created
    )


async def test_create_requests_are_remembered_for_the_window(sessions):
    window_start = T0 - datetime.timedelta(hours=24)
    async with sessions.begin() as session:
        await store.remember_create_request(session, request_row("r1", "first", T0), not_before=window_start)
    async with sessions.begin() as session:
        found = await store.find_create_request(session, "org_a", "r1", not_before=window_start)
        assert found is not None
        assert found.agent_id == "first"
        assert await store.find_create_request(session, "org_b", "r1", not_before=window_start) is None
        later = T0 + datetime.timedelta(hours=25)
        assert (
            await store.find_create_request(session, "org_a", "r1", not_before=later - datetime.timedelta(hours=24))
            is None
        )


async def test_an_expired_request_id_can_be_used_again(sessions):
    async with sessions.begin() as session:
        await store.remember_create_request(session, request_row("r1", "first", T0), not_before=T0)
    later = T0 + datetime.timedelta(hours=25)
    async with sessions.begin() as session:
        await store.remember_create_request(
            session, request_row("r1", "second", later), not_before=later - datetime.timedelta(hours=24)
        )
    async with sessions.begin() as session:
        found = await store.find_create_request(session, "org_a", "r1", not_before=T0)
        assert found is not None
        assert found.agent_id == "second"


async def test_a_live_request_id_is_never_replaced(sessions):
    async with sessions.begin() as session:
        await store.remember_create_request(session, request_row("r1", "first", T0), not_before=T0)
    with pytest.raises(Aborted, match="in progress"):
        async with sessions.begin() as session:
            await store.remember_create_request(
                session, request_row("r1", "second", T0), not_before=T0 - datetime.timedelta(hours=24)
            )


# Outbox


async def outbox_rows(sessions) -> list[OutboxRow]:
    async with sessions.begin() as session:
        return list((await session.execute(sa.select(OutboxRow).order_by(OutboxRow.occurred_at))).scalars())


async def test_an_event_commits_with_its_change(sessions):
    await create_with_event(sessions)
    [event] = await outbox_rows(sessions)
    assert (event.stream, event.event_type) == ("agents-sales-bot", "agent.created")
    assert json.loads(event.data)["agent"]["name"] == "agents/sales-bot"
    assert json.loads(event.metadata_) == {"actor": "users/alice", "organizationId": "org_a"}
    assert event.occurred_at == T0
    assert (event.relayed_at, event.attempts) == (None, 0)
    assert len(event.event_id) == 36


async def create_with_event(sessions, *, then_fail: bool = False) -> None:
    async with sessions.begin() as session:
        row = agent_row("sales-bot")
        await store.add_agent(session, row)
        await store.append_event(session, events.created(convert.agent_to_proto(row), ALICE), T0)
        if then_fail:
            raise Boom


async def test_an_event_rolls_back_with_its_change(sessions):
    with pytest.raises(Boom):
        await create_with_event(sessions, then_fail=True)
    assert await outbox_rows(sessions) == []
    async with sessions.begin() as session:
        assert await store.find_agent(session, "sales-bot", None) is None
