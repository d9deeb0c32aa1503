"""The store on SQLite and PostgreSQL: schema, uniqueness, tenancy, listing, single use, identity calls."""

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
from mesh.kit.tables import IdentityCallRow, KitBase
from mesh.kit.tenancy import ReadScope
from services.team_hub.models import Base, Invitation, Membership, Organization, Team, TeamMember
from services.team_hub.store import identity_calls
from services.team_hub.store import invitations as invitation_store
from services.team_hub.store import members as member_store
from services.team_hub.store import organizations as organization_store
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
    return {"create_time": created, "update_time": created, "creator": "test", "last_modifier": "test", "revision": 1}


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
        "invitation_id": "",
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
        "membership_id": "",
        "token_hash": invitation_id.ljust(64, "0"),
        "token_salt": None,
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
            # Ours and the kit's shared tables: together, everything the database holds.
            differences = compare_metadata(
                MigrationContext.configure(connection),
                [Base.metadata, KitBase.metadata],  # type: ignore[arg-type]  # alembic accepts a sequence
            )
    finally:
        engine.dispose()
    assert differences == []


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
            session,
            TeamMember(organization_id="org_a", team_id="sales", membership_id="mem_cid", lead=False, add_time=NOW),
        )

    async def names(filter_text: str = "", limit: int = 10, after=None):
        async with database.sessions.begin() as session:
            page = await member_store.list_page(
                session, ReadScope("org_a"), filter_text=filter_text, now=NOW, after=after, limit=limit
            )
        return [r.display_name for r in page.items], page.next_after

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
    assert (await names('teams : "organizations/org_a/teams/sales"'))[0] == ["Cid"]
    # The same team id in another organisation names another team.
    assert (await names('teams : "organizations/org_b/teams/sales"'))[0] == []
    assert (await names('email = "bob@example.com"'))[0] == ["Bob"]
    assert (await names("role >= MANAGER OR state = EXPIRED"))[0] == ["Ann", "Bob", "Dee"]
    # organizations/-: every organisation's members, org_b's Ann after org_a's.
    async with database.sessions.begin() as session:
        everyone = await member_store.list_page(
            session, ReadScope(None), filter_text='user = "users/ann"', now=NOW, after=None, limit=10
        )
    assert [(m.organization_id, m.id) for m in everyone.items] == [("org_a", "mem_ann"), ("org_b", "mem_ann_b")]


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
            page = await organization_store.list_page(
                session, filter_text=filter_text, show_closed=show_closed, after=None, limit=10
            )
        return [r.id for r in page.items]

    assert await ids() == ["org_b", "org_a"]
    assert await ids(show_closed=True) == ["org_c", "org_b", "org_a"]
    assert await ids("state = ORGANIZATION_STATE_SUSPENDED") == ["org_b"]
    assert await ids('labels.segment = "smb"') == ["org_a"]
    assert await ids("kyc_verified = false AND plan = TRIAL") == ["org_b", "org_a"]
    async with database.sessions.begin() as session:
        page = await organization_store.list_page(session, filter_text="", show_closed=True, after=None, limit=2)
        tail = await organization_store.list_page(
            session, filter_text="", show_closed=True, after=page.next_after, limit=2
        )
    assert [r.id for r in [*page.items, *tail.items]] == ["org_c", "org_b", "org_a"]
    assert tail.next_after is None


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
        old = await invitation_store.get(session, "org_a", "inv_old")
        assert old is not None
        assert old.state == "EXPIRED"


async def test_an_invitation_is_accepted_once(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_1", "org_a", "new@example.com"))
    async with database.sessions.begin() as session:
        row = await invitation_store.by_token_hash(session, "inv_1".ljust(64, "0"))
        assert row is not None
        assert await invitation_store.mark_accepted(session, row, user="users/new", membership_id="m1", now=NOW)
        assert row.state == "ACCEPTED"
        assert row.accepted_by == "users/new"
        assert row.accept_time == NOW
        assert not await invitation_store.mark_accepted(session, row, user="users/eve", membership_id="m2", now=NOW)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_x", "org_a", "x@example.com", expire_time=NOW - DAY))
        expired = await invitation_store.get(session, "org_a", "inv_x")
        assert expired is not None
        assert not await invitation_store.mark_accepted(session, expired, user="users/x", membership_id="m3", now=NOW)


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
            page = await invitation_store.list_page(
                session, ReadScope("org_a"), filter_text=filter_text, now=NOW, after=None, limit=10
            )
        return [r.id for r in page.items]

    assert await ids() == ["inv_3", "inv_2", "inv_1"]
    assert await ids("state = PENDING") == ["inv_1"]
    assert await ids("state = EXPIRED") == ["inv_2"]
    assert await ids("state != PENDING") == ["inv_3", "inv_2"]
    assert await ids('email = "c@example.com"') == ["inv_3"]
    assert await ids("role >= AGENT AND NOT state = REVOKED") == ["inv_2", "inv_1"]


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
            session,
            TeamMember(
                organization_id="org_a", team_id="sales", membership_id="mem_cid", lead=False, add_time=NOW + DAY
            ),
        )
        await team_store.add_place(
            session,
            TeamMember(organization_id="org_a", team_id="sales", membership_id="mem_bob", lead=True, add_time=NOW),
        )
        assert await team_store.display_name_taken(session, "org_a", "Sales")
        assert not await team_store.display_name_taken(session, "org_a", "Sales", other_than="sales")
        assert await team_store.existing_ids(session, "org_a", ["sales", "nope"]) == {"sales"}
        assert await team_store.existing_ids(session, "org_b", ["sales"]) == set()
        members = await team_store.members(session, "org_a", ["sales"])
        assert [(p.membership_id, p.lead) for p, _ in members["sales"]] == [("mem_bob", True), ("mem_cid", False)]
        assert (await member_store.teams_of(session, [("org_a", "mem_cid")]))[("org_a", "mem_cid")] == ["sales"]
        scope = ReadScope("org_a")
        listed = await team_store.list_page(session, scope, filter_text="", after=None, limit=10)
        assert [t.id for t in listed.items] == ["ops", "sales"]
        labelled = await team_store.list_page(
            session, scope, filter_text='labels.region = "emea"', after=None, limit=10
        )
        with_cid = await team_store.list_page(
            session, scope, filter_text='members.member = "organizations/org_a/members/mem_cid"', after=None, limit=10
        )
        elsewhere = await team_store.list_page(
            session, scope, filter_text='members.member = "organizations/org_b/members/mem_cid"', after=None, limit=10
        )
        assert [t.id for t in labelled.items] == [t.id for t in with_cid.items] == ["sales"]
        assert list(elsewhere.items) == []
    async with database.sessions.begin() as session:
        assert await member_store.get(session, "org_b", "mem_cid") is None
        cid = await member_store.get(session, "org_a", "mem_cid")
        assert cid is not None
        await member_store.remove(session, cid)
        assert await team_store.member_count(session, "org_a", "sales") == 1
    with pytest.raises(AlreadyExists):
        async with database.sessions.begin() as session:
            await team_store.flush(
                session,
                Team(id="sales2", organization_id="org_a", display_name="Sales", description="", labels={}, **audit()),
            )


async def test_calls_owed_to_identity_are_found_by_their_target(database: ServiceDatabase):
    await seed(database)
    removed = "organizations/org_a/members/m1"
    async with database.sessions.begin() as session:
        session.add_all(
            [
                IdentityCallRow(
                    id="ic_1",
                    organization_id="org_a",
                    target=removed,
                    kind="revoke",
                    payload=b"\x01",
                    create_time=NOW,
                    attempts=0,
                    last_error="",
                ),
                IdentityCallRow(
                    id="ic_2",
                    organization_id="org_a",
                    target=removed,
                    kind="audit",
                    payload=b"\x02",
                    create_time=NOW,
                    attempts=1,
                    last_error="",
                    done_time=NOW,
                ),
                IdentityCallRow(
                    id="ic_3",
                    organization_id="org_b",
                    target="organizations/org_b/members/m1",
                    kind="audit",
                    payload=b"",
                    create_time=NOW,
                    attempts=0,
                    last_error="",
                ),
            ]
        )
    async with database.sessions.begin() as session:
        assert await identity_calls.pending_for(session, "org_a", removed) == ["ic_1"]
        assert await identity_calls.known_target(session, "org_a", removed)
        assert not await identity_calls.known_target(session, "org_b", removed)
        assert not await identity_calls.known_target(session, "org_a", "organizations/org_a/members/m2")


async def test_no_token_is_stored_in_clear(database: ServiceDatabase):
    await seed(database)
    async with database.sessions.begin() as session:
        await invitation_store.add(session, invitation("inv_1", "org_a", "a@example.com"))
    async with database.engine.connect() as connection:
        columns = (await connection.execute(text("SELECT * FROM invitations"))).keys()
    assert "token" not in columns
    assert "token_hash" in columns
