"""team_hub_0002 moves existing rows to per-organisation keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from sqlalchemy import text

from mesh import migrations
from mesh.access import Role
from mesh.config import Settings
from mesh.db import ServiceDatabase
from services.team_hub import convert
from services.team_hub.models import Team
from services.team_hub.store import identity_calls
from services.team_hub.store import invitations as invitation_store
from services.team_hub.store import members as member_store
from services.team_hub.store import teams as team_store

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
_AUDIT = "create_time, update_time, creator, last_modifier, version"
_AUDIT_VALUES = ":now, :now, 'test', 'test', 1"


@pytest.fixture
async def old_database(settings: Settings):
    """A database at team_hub_0001 (ids unique across every organisation)."""
    database = ServiceDatabase(settings, "team_hub")
    await asyncio.to_thread(migrations.upgrade, database, "team_hub_0001")
    yield database
    await database.dispose()


_ORGANIZATION = f"""
INSERT INTO organizations (id, display_name, state, state_reason, plan, concurrency_limit, max_members,
    parent_organization_id, billing_email, country_code, kyc_verified, labels, member_epoch, {_AUDIT})
VALUES (:id, :id, 'ACTIVE', '', 'TRIAL', 0, 0, '', '', '', false, '{{}}', 0, {_AUDIT_VALUES})
"""
_MEMBERSHIP = f"""
INSERT INTO memberships (id, organization_id, "user", email, display_name, role, invitation, join_time, {_AUDIT})
VALUES (:id, :organization, :user, :email, :user, :role, :invitation, :now, {_AUDIT_VALUES})
"""
_INVITATION = f"""
INSERT INTO invitations (id, organization_id, email, role, teams, message, state, expire_time, inviter, accepted_by,
    membership, token_hash, {_AUDIT})
VALUES ('inv_1', 'acme', 'bob@acme.example', 30, '["sales"]', '', 'ACCEPTED', :now, 'users/ann', 'users/bob',
    'members/mem_bob', :hash, {_AUDIT_VALUES})
"""
_TEAM = f"""
INSERT INTO teams (id, organization_id, display_name, description, labels, {_AUDIT})
VALUES ('sales', 'acme', 'Sales', '', '{{}}', {_AUDIT_VALUES})
"""
_PLACE = """
INSERT INTO team_members (team_id, membership_id, lead, add_time) VALUES ('sales', 'mem_bob', true, :now)
"""
_OUTBOX = """
INSERT INTO identity_outbox (id, organization_id, target, kind, payload, create_time, attempts, last_error)
VALUES (:id, 'acme', :target, 'revoke', :payload, :now, 0, '')
"""


async def test_old_rows_come_back_under_their_organization(old_database: ServiceDatabase):
    async with old_database.sessions.begin() as session:
        for organization in ("acme", "globex"):
            await session.execute(text(_ORGANIZATION), {"id": organization, "now": NOW})
        members = [
            ("mem_ann", "acme", "users/ann", Role.ADMIN, ""),
            ("mem_bob", "acme", "users/bob", Role.AGENT, "invitations/inv_1"),
            ("mem_gil", "globex", "users/gil", Role.ADMIN, ""),
        ]
        for membership_id, organization, user, role, invitation in members:
            await session.execute(
                text(_MEMBERSHIP),
                {
                    "id": membership_id,
                    "organization": organization,
                    "user": user,
                    "email": f"{user[6:]}@{organization}.example",
                    "role": int(role),
                    "invitation": invitation,
                    "now": NOW,
                },
            )
        await session.execute(text(_INVITATION), {"now": NOW, "hash": "f" * 64})
        await session.execute(text(_TEAM), {"now": NOW})
        await session.execute(text(_PLACE), {"now": NOW})
        for call_id, target in (("ic_1", "members/mem_bob"), ("ic_2", "organizations/acme")):
            await session.execute(text(_OUTBOX), {"id": call_id, "target": target, "payload": b"\x01", "now": NOW})

    await asyncio.to_thread(migrations.upgrade, old_database)

    async with old_database.sessions.begin() as session:
        bob = await member_store.get(session, "acme", "mem_bob")
        assert bob is not None
        assert await member_store.get(session, "globex", "mem_bob") is None
        teams = await member_store.teams_of(session, [member_store.key(bob)])
        message = convert.membership(bob, teams[member_store.key(bob)], NOW)
        assert message.name == "organizations/acme/members/mem_bob"
        assert message.invitation == "organizations/acme/invitations/inv_1"
        assert list(message.teams) == ["organizations/acme/teams/sales"]
        ann = await member_store.get(session, "acme", "mem_ann")
        assert ann is not None
        assert convert.membership(ann, [], NOW).invitation == ""
        accepted = await invitation_store.get(session, "acme", "inv_1")
        assert accepted is not None
        shown = convert.invitation(accepted, NOW)
        assert shown.membership == "organizations/acme/members/mem_bob"
        assert list(shown.teams) == ["organizations/acme/teams/sales"]
        team = await team_store.get(session, "acme", "sales")
        assert team is not None
        [(place, member)] = (await team_store.members(session, "acme", ["sales"]))["sales"]
        assert (place.lead, member.user) == (True, "users/bob")
        assert await identity_calls.known_target(session, "acme", "organizations/acme/members/mem_bob")
        assert await identity_calls.known_target(session, "acme", "organizations/acme")
        assert not await identity_calls.known_target(session, "acme", "members/mem_bob")
        # The key is per organisation now: globex may have its own team "sales".
        await team_store.flush(
            session,
            Team(
                id="sales",
                organization_id="globex",
                display_name="Sales",
                description="",
                labels={},
                create_time=NOW,
                update_time=NOW,
                creator="test",
                last_modifier="test",
                revision=1,
            ),
        )
        assert await team_store.existing_ids(session, "globex", ["sales"]) == {"sales"}
