"""The store on SQLite and PostgreSQL: schema, uniqueness, tenancy, listing, single use, outbox."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from mesh import migrations
from mesh.access import Role
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import AlreadyExists
from mesh.kit.tables import KitBase
from services.team_hub.domain import filters
from services.team_hub.models import Base, Invitation, Membership, Organization, Team, TeamMember
from services.team_hub.store import invitations as invitation_store
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
from services.team_hub.store import outbox
from services.team_hub.store import teams as team_store

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "team_hub")
    await asyncio.to_thread(migrations.upgrade, database)
    yield database
    await database.dispose()


def audit(created: datetime.datetime = NOW) -> dict[str, object]:
    return {"create_time": created, "update_time": created, "creator": "test", "last_modifier": "test", "version": 1}


def organization(organization_id: str, *, created: datetime.datetime = NOW, **values) -> Organization:
    fields = {
        "display_name": organization_id.upper(),
        "state": "ACTIVE",
        "state_reason": "",
        "plan": "TRIAL",
        "concurrency_limit": 0,
        "max_members": 0,
        "parent_organization_id": "",
        "billing_email": "",
        "country_code": "",
        "kyc_verified": False,
        "labels": {},
        "member_epoch": 0,
        **audit(created),
    }
    fields.update(values)
    return Organization(id=organization_id, **fields)


def membership(membership_id: str, organization_id: str, user: str, role: Role = Role.AGENT, **values) -> Membership:
    fields = {
        "email": f"{user.split('/')[-1]}@example.com",
        "display_name": user.split("/")[-1],
        "role": int(role),
        "expire_time": None,
        "invitation": "",
        "join_time": NOW,
        **audit(),
    }
    fields.update(values)
    return Membership(id=membership_id, organization_id=organization_id, user=user, **fields)


def invitation(invitation_id: str, organization_id: str, email: str, **values) -> Invitation:
    fields = {
        "role": int(Role.AGENT),
        "teams": [],
        "member_expire_time": None,
        "message": "",
        "state": "PENDING",
        "expire_time": NOW + 7 * DAY,
        "inviter": "users/u_admin",
        "accepted_by": "",
        "membership": "",
        "token_hash": invitation_id.ljust(64, "0"),
        "token_salt": None,
        "request_id": None,
        **audit(),
    }
    fields.update(values)
    return Invitation(id=invitation_id, organization_id=organization_id, email=email, **fields)


async def seed(database: ServiceDatabase) -> None:
    async with database.sessions.begin() as session:
        await organization_store.add(session, organization("org_a", labels={"segment": "smb"}))
        await organization_store.add(session, organization("org_b", created=NOW + DAY, state="SUSPENDED"))
        await organization_store.add(session, organization("org_c", created=NOW + 2 * DAY, state="CLOSED"))
        await member_store.add(session, membership("mem_ann", "org_a", "users/ann", Role.ADMIN, display_name="Ann"))
        await member_store.add(session, membership("mem_bob", "org_a", "users/bob", Role.MANAGER, display_name="Bob"))
        await member_store.add(session, membership("mem_cid", "org_a", "users/cid", Role.AGENT, display_name="Cid"))
        await member_store.add(
            session,
            membership("mem_dee", "org_a", "users/dee", Role.GUEST, display_name="Dee", expire_time=NOW - DAY),
        )
        await member_store.add(session, membership("mem_ann_b", "org_b", "users/ann", Role.VIEWER, join_time=NOW + DAY))


async def test_the_migration_matches_the_models(database: ServiceDatabase):
    engine = database.sync_engine()
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    # The shared mesh branch's tables (outbox, the kit's) are not ours: tests/runtime/test_schema_drift.py checks them.
    shared = [f"Table({name!r}" for name in KitBase.metadata.tables] + ["ix_outbox_pending", "ix_identity_calls"]
    shared.append("ix_idempotency_keys")
    assert [d for d in differences if not any(marker in repr(d) for marker in shared)] == []


async def test_times_come_back_aware_in_utc(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await organization_store.add(
            session, organization("org_t", created=NOW.astimezone(datetime.timezone(datetime.timedelta(hours=5))))
        )
    async with database.sessions.begin() as session:
        row = await session.scalar(select(Organization).where(Organization.id == "org_t"))
        assert row is not None
        assert row.create_time == NOW
        assert row.create_time.tzinfo == datetime.UTC


async def test_ids_and_memberships_are_unique(database: ServiceDatabase):
    await seed(database)
    with pytest.raises(AlreadyExists):
        async with database.sessions.begin() as session:
            await organization_store.add(session, organization("org_a"))
    with pytest.raises(AlreadyExists, match="already a member"):
        async with database.sessions.begin() as session:
            await member_store.add(session, membership("mem_other", "org_a", "users/bob"))
    async with database.sessions.begin() as session:
        assert await member_store.count(session, "org_a") == 4
        assert await member_store.count_admins(session, "org_a") == 1
        assert await member_store.email_taken(session, "org_a", "bob@example.com")
        assert not await member_store.email_taken(session, "org_b", "bob@example.com")
        found = await member_store.find_by_user(session, "org_b", "users/ann")
        assert found is not None
        assert found.id == "mem_ann_b"
        assert await organization_store.member_counts(session, ["org_a", "org_c"]) == {"org_a": 4, "org_c": 0}


async def test_the_organization_lock_bumps_its_epoch(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        locked = await organization_store.lock(session, "org_a")
        assert locked is not None
        assert locked.member_epoch == 1
        assert await organization_store.lock(session, "org_missing") is None


async def test_members_page_by_display_name_with_filters(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await team_store.flush(
            session,
            Team(id="sales", organization_id="org_a", display_name="Sales", description="", labels={}, **audit()),
        )
        await team_store.add_place(
            session, TeamMember(team_id="sales", membership_id="mem_cid", lead=False, add_time=NOW)
        )

    async def names(filter_text: str = "", limit: int = 10, after=None):
        async with database.sessions.begin() as session:
            rows, key = await member_store.list_page(
                session,
                "org_a",
                conditions=filters.parse(filter_text, member_store.FILTERABLE),
                now=NOW,
                after=after,
                limit=limit,
            )
        return [r.display_name for r in rows], key

    first, key = await names(limit=2)
    assert first == ["Ann", "Bob"]
    assert key is not None
    second, key = await names(limit=2, after=key)
    assert second == ["Cid", "Dee"]
    assert key is None
    assert (await names("role >= MANAGER"))[0] == ["Ann", "Bob"]
    assert (await names("role < AGENT"))[0] == ["Dee"]
    assert (await names("state = EXPIRED"))[0] == ["Dee"]
    assert (await names("state = ACTIVE AND role != ADMIN"))[0] == ["Bob", "Cid"]
    assert (await names('teams : "teams/sales"'))[0] == ["Cid"]
    assert (await names('email = "BOB@example.com"'))[0] == ["Bob"]


async def test_a_users_memberships_leave_out_inactive_ones_by_default(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await member_store.add(session, membership("mem_dee_b", "org_b", "users/dee", Role.AGENT))
        active, _ = await member_store.list_for_user(
            session, "users/ann", show_inactive=False, now=NOW, after=None, limit=10
        )
        everything, key = await member_store.list_for_user(
            session, "users/ann", show_inactive=True, now=NOW, after=None, limit=1
        )
        rest, end = await member_store.list_for_user(
            session, "users/ann", show_inactive=True, now=NOW, after=key, limit=1
        )
        expired, _ = await member_store.list_for_user(
            session, "users/dee", show_inactive=False, now=NOW, after=None, limit=10
        )
    assert [(m.id, o.id) for m, o in active] == [("mem_ann", "org_a")]  # org_b is SUSPENDED
    assert [m.id for m, _ in everything + rest] == ["mem_ann", "mem_ann_b"]
    assert end is None
    assert expired == []  # an EXPIRED guest, and a SUSPENDED organisation


async def test_organizations_newest_first_without_closed_ones(database: ServiceDatabase):
    await seed(database)

    async def ids(filter_text: str = "", show_closed: bool = False):
        async with database.sessions.begin() as session:
            rows, _ = await organization_store.list_page(
                session,
                conditions=filters.parse(filter_text, organization_store.FILTERABLE),
                show_closed=show_closed,
                after=None,
                limit=10,
            )
        return [r.id for r in rows]

    assert await ids() == ["org_b", "org_a"]
    assert await ids(show_closed=True) == ["org_c", "org_b", "org_a"]
    assert await ids("state = ORGANIZATION_STATE_SUSPENDED") == ["org_b"]
    assert await ids('labels.segment = "smb"') == ["org_a"]
    assert await ids("kyc_verified = false AND plan = TRIAL") == ["org_b", "org_a"]
    async with database.sessions.begin() as session:
        page, key = await organization_store.list_page(session, conditions=[], show_closed=True, after=None, limit=2)
        tail, end = await organization_store.list_page(session, conditions=[], show_closed=True, after=key, limit=2)
    assert [r.id for r in page + tail] == ["org_c", "org_b", "org_a"]
    assert end is None


async def test_one_pending_invitation_per_address_enforced_by_the_database(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_1", "org_a", "new@example.com"))
    with pytest.raises(AlreadyExists, match="pending invitation"):
        async with database.sessions.begin() as session:
            await invitation_store.add(session, invitation("inv_2", "org_a", "new@example.com"))
    async with database.sessions.begin() as session:
        # Another organisation, or a non-pending one, is fine.
        await invitation_store.add(session, invitation("inv_3", "org_b", "new@example.com"))
        await invitation_store.add(session, invitation("inv_4", "org_a", "new@example.com", state="REVOKED"))


async def test_stale_pending_invitations_expire_and_free_the_address(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_old", "org_a", "late@example.com", expire_time=NOW - DAY))
        assert not await invitation_store.has_pending(session, "org_a", "late@example.com", NOW)
        assert await invitation_store.pending_count(session, "org_a", NOW) == 0
        await invitation_store.expire_stale(session, "org_a", "late@example.com", NOW)
        await invitation_store.add(session, invitation("inv_new", "org_a", "late@example.com"))
        assert await invitation_store.has_pending(session, "org_a", "late@example.com", NOW)
        old = await invitation_store.get(session, "inv_old")
        assert old is not None
        assert old.state == "EXPIRED"


async def test_an_invitation_is_accepted_once(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_1", "org_a", "new@example.com"))
    async with database.sessions.begin() as session:
        row = await invitation_store.by_token_hash(session, "inv_1".ljust(64, "0"))
        assert row is not None
        assert await invitation_store.mark_accepted(session, row, user="users/new", membership="members/m1", now=NOW)
        assert row.state == "ACCEPTED"
        assert row.accepted_by == "users/new"
        assert row.accept_time == NOW
        assert not await invitation_store.mark_accepted(
            session, row, user="users/eve", membership="members/m2", now=NOW
        )
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_x", "org_a", "x@example.com", expire_time=NOW - DAY))
        expired = await invitation_store.get(session, "inv_x")
        assert expired is not None
        assert not await invitation_store.mark_accepted(
            session, expired, user="users/x", membership="members/m3", now=NOW
        )


async def test_invitations_list_with_the_clock_in_their_state(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_1", "org_a", "a@example.com", **audit(NOW)))
        await invitation_store.add(
            session, invitation("inv_2", "org_a", "b@example.com", expire_time=NOW - DAY, **audit(NOW + DAY))
        )
        await invitation_store.add(
            session, invitation("inv_3", "org_a", "c@example.com", state="REVOKED", **audit(NOW + 2 * DAY))
        )
        await invitation_store.add(session, invitation("inv_4", "org_b", "d@example.com"))

    async def ids(filter_text: str = ""):
        async with database.sessions.begin() as session:
            rows, _ = await invitation_store.list_page(
                session,
                "org_a",
                conditions=filters.parse(filter_text, invitation_store.FILTERABLE),
                now=NOW,
                after=None,
                limit=10,
            )
        return [r.id for r in rows]

    assert await ids() == ["inv_3", "inv_2", "inv_1"]
    assert await ids("state = PENDING") == ["inv_1"]
    assert await ids("state = EXPIRED") == ["inv_2"]
    assert await ids("state != PENDING") == ["inv_3", "inv_2"]
    assert await ids('email = "C@example.com"') == ["inv_3"]


async def test_team_members_in_order_and_gone_with_their_membership(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await team_store.flush(
            session,
            Team(
                id="sales",
                organization_id="org_a",
                display_name="Sales",
                description="",
                labels={"region": "emea"},
                **audit(),
            ),
        )
        await team_store.flush(
            session, Team(id="ops", organization_id="org_a", display_name="Ops", description="", labels={}, **audit())
        )
        await team_store.add_place(
            session, TeamMember(team_id="sales", membership_id="mem_cid", lead=False, add_time=NOW + DAY)
        )
        await team_store.add_place(
            session, TeamMember(team_id="sales", membership_id="mem_bob", lead=True, add_time=NOW)
        )
        assert await team_store.display_name_taken(session, "org_a", "Sales")
        assert not await team_store.display_name_taken(session, "org_a", "Sales", other_than="sales")
        assert await team_store.existing_ids(session, "org_a", ["sales", "nope"]) == {"sales"}
        assert await team_store.existing_ids(session, "org_b", ["sales"]) == set()
        members = await team_store.members(session, ["sales"])
        assert [(p.membership_id, p.lead) for p, _ in members["sales"]] == [("mem_bob", True), ("mem_cid", False)]
        assert (await member_store.teams_of(session, ["mem_cid"]))["mem_cid"] == ["sales"]
        listed, _ = await team_store.list_page(session, "org_a", conditions=[], after=None, limit=10)
        assert [t.id for t in listed] == ["ops", "sales"]
        labelled, _ = await team_store.list_page(
            session,
            "org_a",
            conditions=filters.parse('labels.region = "emea"', team_store.FILTERABLE),
            after=None,
            limit=10,
        )
        with_cid, _ = await team_store.list_page(
            session,
            "org_a",
            conditions=filters.parse('members.member = "members/mem_cid"', team_store.FILTERABLE),
            after=None,
            limit=10,
        )
        assert [t.id for t in labelled] == [t.id for t in with_cid] == ["sales"]
    async with database.sessions.begin() as session:
        cid = await member_store.get(session, "mem_cid")
        assert cid is not None
        await member_store.remove(session, cid)
        assert await team_store.member_count(session, "sales") == 1
    with pytest.raises(AlreadyExists):
        async with database.sessions.begin() as session:
            await team_store.flush(
                session,
                Team(id="sales2", organization_id="org_a", display_name="Sales", description="", labels={}, **audit()),
            )


async def test_the_outbox_keeps_calls_until_delivered(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        first = await outbox.enqueue(
            session, organization_id="org_a", target="members/m1", kind=outbox.REVOKE, payload=b"\x01", now=NOW
        )
        second = await outbox.enqueue(
            session, organization_id="org_a", target="members/m2", kind=outbox.AUDIT, payload=b"\x02", now=NOW + DAY
        )
        await outbox.enqueue(
            session, organization_id="org_b", target="members/m3", kind=outbox.AUDIT, payload=b"", now=NOW
        )
    async with database.sessions.begin() as session:
        assert [c.id for c in await outbox.pending(session, "org_a")] == [first, second]
        assert await outbox.pending_for(session, "org_a", "members/m1") == [first]
        await outbox.mark_failed(session, first, "UNAVAILABLE: " + "x" * 1000)
        await outbox.mark_done(session, [second], NOW)
    async with database.sessions.begin() as session:
        pending = await outbox.pending(session, "org_a")
        assert [(c.id, c.attempts, len(c.last_error)) for c in pending] == [(first, 1, outbox.MAX_ERROR)]
        assert pending[0].payload == b"\x01"


async def test_no_token_is_stored_in_clear(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_1", "org_a", "a@example.com"))
    async with database.engine.connect() as connection:
        columns = (await connection.execute(text("SELECT * FROM invitations"))).keys()
    assert "token" not in columns
    assert "token_hash" in columns
