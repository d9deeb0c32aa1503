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
from mesh.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from mesh.kit.outbox import Outbox
from mesh.kit.tables import OutboxRow
from mesh.principal import Principal, PrincipalKind
from services.agents import convert, events, store
from services.agents.domain.lifecycle import AgentState
from services.agents.models import AgentRow, AgentVersionRow
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

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


async def listed_ids(sessions, org="org_a", filter_text="", show_archived=False, after=None, limit=50):
    async with sessions.begin() as session:
        page = await store.list_agents(session, org, filter_text, show_archived=show_archived, after=after, limit=limit)
    return [row.id for row in page.items], page.next_after


def test_the_migrations_end_at_both_heads(database: ServiceDatabase):
    assert migrations.current_heads(database) == {"mesh_0003", "agents_0002"}


# Agents


async def test_an_agent_round_trips_with_utc_times_and_labels(sessions):
    await insert(sessions, agent_row("sales-bot", labels={"team": "sales"}))
    async with sessions.begin() as session:
        row = await store.get_agent(session, "org_a", "sales-bot")
    assert row.create_time == T0
    assert row.create_time.tzinfo == datetime.UTC
    assert row.labels == {"team": "sales"}
    assert row.state is AgentState.DRAFT
    assert row.revision == 1


async def test_two_organisations_may_use_the_same_agent_id(sessions):
    await insert(sessions, agent_row("sales-bot", org="org_b"), agent_row("sales-bot", org="org_a"))
    async with sessions.begin() as session:
        mine = await store.get_agent(session, "org_a", "sales-bot")
        theirs = await store.get_agent(session, "org_b", "sales-bot")
        assert (mine.organization_id, theirs.organization_id) == ("org_a", "org_b")
        with pytest.raises(NotFound, match="organizations/org_c/agents/sales-bot not found"):
            await store.get_agent(session, "org_c", "sales-bot")
    with pytest.raises(AlreadyExists, match="organizations/org_a/agents/sales-bot already exists"):
        await insert(sessions, agent_row("sales-bot", org="org_a"))


async def test_every_save_bumps_the_revision(sessions):
    await insert(sessions, agent_row("sales-bot"))
    async with sessions.begin() as session:
        row = await store.get_agent(session, "org_a", "sales-bot")
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
            mine = await store.get_agent(first, "org_a", "sales-bot")
        async with second.begin():
            theirs = await store.get_agent(second, "org_a", "sales-bot")
        await rename(second, theirs, "Theirs")
        with pytest.raises(Aborted, match="changed concurrently"):
            await rename(first, mine, "Mine")
    async with sessions.begin() as session:
        assert (await store.get_agent(session, "org_a", "sales-bot")).display_name == "Theirs"


async def test_deleting_an_agent_deletes_its_versions_only(sessions):
    await insert(sessions, agent_row("sales-bot"), agent_row("other-bot"), agent_row("sales-bot", org="org_b"))
    async with sessions.begin() as session:
        for org, agent_id in (("org_a", "sales-bot"), ("org_a", "other-bot"), ("org_b", "sales-bot")):
            await store.add_version(session, version_row(agent_id, 1, org=org))
    async with sessions.begin() as session:
        await store.delete_agent(session, await store.get_agent(session, "org_a", "sales-bot"))
    async with sessions.begin() as session:
        assert await store.find_agent(session, "org_a", "sales-bot") is None
        assert await store.find_version(session, "org_a", "sales-bot", 1) is None
        assert await store.find_version(session, "org_a", "other-bot", 1) is not None
        assert await store.find_version(session, "org_b", "sales-bot", 1) is not None


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

    async def ids(filter_text="", show_archived=False):
        return sorted((await listed_ids(sessions, filter_text=filter_text, show_archived=show_archived))[0])

    assert await ids() == ["draft-sales", "live-sales", "live-support"]
    assert await ids(show_archived=True) == ["draft-sales", "gone-sales", "live-sales", "live-support"]
    assert await ids("state = PUBLISHED") == ["live-sales", "live-support"]
    assert await ids("state = AGENT_STATE_ARCHIVED") == ["gone-sales"]
    assert await ids('labels.team = "sales"') == ["draft-sales", "live-sales"]
    assert await ids('labels.team = "sales"', show_archived=True) == ["draft-sales", "gone-sales", "live-sales"]
    assert await ids('state = PUBLISHED AND labels.team = "sales" AND labels.tier = "gold"') == ["live-sales"]
    assert await ids('labels.team = "nobody"') == []
    assert await ids('labels.absent = ""') == []
    assert await ids("state = DRAFT OR state = ARCHIVED") == ["draft-sales", "gone-sales"]
    with pytest.raises(InvalidArgument):
        await ids("colour = RED")


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


async def test_ties_on_create_time_page_without_loss_across_organisations(sessions):
    await insert(sessions, *(agent_row(f"same-{i}", created=T0) for i in range(3)))
    await insert(sessions, *(agent_row(f"same-{i}", org="org_b", created=T0) for i in range(2)))
    seen: list[str] = []
    after = None
    while True:
        async with sessions.begin() as session:
            page = await store.list_agents(session, None, "", show_archived=False, after=after, limit=2)
        seen += [f"{row.organization_id}/{row.id}" for row in page.items]
        after = page.next_after
        if after is None:
            break
    assert seen == ["org_b/same-1", "org_b/same-0", "org_a/same-2", "org_a/same-1", "org_a/same-0"]


# Versions


def version_row(agent_id: str, version: int, *, org: str = "org_a") -> AgentVersionRow:
    return AgentVersionRow(
        organization_id=org,
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
            page = await store.list_versions(session, "org_a", "sales-bot", after=after, limit=2)
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


# Outbox


async def outbox_rows(sessions) -> list[OutboxRow]:
    async with sessions.begin() as session:
        return list((await session.execute(sa.select(OutboxRow).order_by(OutboxRow.occurred_at))).scalars())


async def create_with_event(sessions, *, then_fail: bool = False) -> None:
    async with sessions.begin() as session:
        row = agent_row("sales-bot")
        await store.add_agent(session, row)
        agent = convert.agent_to_proto(row)
        await events.record(Outbox(_Fixed()), session, agent.name, events.created(agent), ALICE)
        if then_fail:
            raise Boom


class _Fixed:
    def now(self) -> datetime.datetime:
        return T0


async def test_a_typed_event_commits_with_its_change(sessions):
    await create_with_event(sessions)
    [event] = await outbox_rows(sessions)
    assert (event.stream, event.event_type) == ("agents-org_a-sales-bot", "agent.created")
    assert event.data_schema == "vocelio.agents.v1.AgentCreatedEvent"
    assert json.loads(event.data)["agent"]["name"] == "organizations/org_a/agents/sales-bot"
    assert json.loads(event.metadata_) == {"actor": "users/alice", "organizationId": "org_a"}
    assert event.occurred_at == T0
    assert (event.relayed_at, event.attempts) == (None, 0)
    assert len(event.event_id) == 36


async def test_an_event_rolls_back_with_its_change(sessions):
    with pytest.raises(Boom):
        await create_with_event(sessions, then_fail=True)
    assert await outbox_rows(sessions) == []
    async with sessions.begin() as session:
        assert await store.find_agent(session, "org_a", "sales-bot") is None


def test_typed_payloads_name_their_agents():
    agent = agent_pb2.Agent(name="organizations/org_a/agents/a-1")
    assert events.deleted(agent) == agents_events_pb2.AgentDeletedEvent(name=agent.name)
    assert events.stream_of(agent.name) == "agents-org_a-a-1"


async def test_the_point_read_returns_what_the_session_returns(database, sessions):
    await insert(sessions, agent_row("front-desk", labels={"team": "north"}, state=AgentState.PUBLISHED))
    async with sessions.begin() as session:
        expected = convert.agent_to_proto(await store.get_agent(session, "org_a", "front-desk"))
    row = await store.read_agent(database, "org_a", "front-desk")
    assert row is not None
    assert convert.agent_to_proto(row) == expected


async def test_the_point_read_is_scoped_to_the_organisation(database, sessions):
    await insert(sessions, agent_row("front-desk", org="org_b"))
    assert await store.read_agent(database, "org_a", "front-desk") is None
    assert await store.read_agent(database, "org_a", "nobody-here") is None
    assert await store.read_agent(database, "org_b", "front-desk") is not None


async def test_the_point_read_sees_the_latest_commit(database, sessions):
    await insert(sessions, agent_row("front-desk"))
    first = await store.read_agent(database, "org_a", "front-desk")
    assert first is not None and first.display_name == "Front-Desk"
    async with sessions.begin() as session:
        row = await store.get_agent(session, "org_a", "front-desk")
        row.display_name = "Renamed"
        await store.save_agent(session, row)
    renamed = await store.read_agent(database, "org_a", "front-desk")
    assert renamed is not None and renamed.display_name == "Renamed"
