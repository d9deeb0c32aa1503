"""identity_0002 moves existing rows to organisation-scoped names, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from services.identity import store, store_log

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def old_database(settings: Settings):
    """A database at identity_0001 (the schema before organisation-scoped names)."""
    database = ServiceDatabase(settings, "identity")
    await asyncio.to_thread(migrations.upgrade, database, "identity_0001")
    yield database
    await database.dispose()


_USER = """
INSERT INTO users (id, email, password_hash, display_name, avatar_uri, locale, time_zone, email_verified, state,
    failed_sign_in_count, lock_count, disabled_reason, platform_admin, home_organization_id, create_time,
    update_time, creator, updater, version)
VALUES ('u_1', 'ada@example.com', 'h', 'Ada', '', '', '', false, 'ACTIVE', 0, 0, '', false, 'acme', :now, :now,
    '', '', 1)
"""
_MEMBERSHIP = """
INSERT INTO user_organizations (user_id, organization_id, role, member, learn_time)
VALUES ('u_1', 'acme', 'ADMIN', 'members/m_1', :now)
"""
_REVOCATION = """
INSERT INTO revocations (sequence, kind, token_id, session, principal, organization_id, issued_before, revoke_time,
    expire_time, reason)
VALUES (:sequence, 'PRINCIPAL', '', '', :principal, :organization, :now, :now, :now, 'api_key_revoked')
"""
_AUDIT = """
INSERT INTO audit_events (id, organization_id, event_time, actor_principal, actor_kind, actor_display_name,
    actor_role, actor_session, action, outcome, target, client_address, user_agent, request_id, trace_id,
    source_service, details, idempotency_key)
VALUES (:id, :organization, :now, :actor, 'API_KEY', '', '', '', 'ROLE_CHANGED', 'SUCCESS', :target, '', '', '', '',
    'team_hub', '{}', :key)
"""


async def test_old_rows_come_back_with_scoped_names(old_database: ServiceDatabase):
    async with old_database.sessions.begin() as session:
        await session.execute(text(_USER), {"now": NOW})
        await session.execute(text(_MEMBERSHIP), {"now": NOW})
        for sequence, principal, organization in (
            (1, "api_keys/k_1", "acme"),
            (2, "users/u_1", "acme"),
            (3, "api_keys/k_2", ""),  # no organisation known: left as it was
        ):
            await session.execute(
                text(_REVOCATION),
                {"sequence": sequence, "principal": principal, "organization": organization, "now": NOW},
            )
        for event_id, organization, actor, target in (
            ("ae_1", "acme", "api_keys/k_1", "members/m_1"),
            ("ae_2", "", "services/identity", "signing_keys/k"),
        ):
            values = {"id": event_id, "organization": organization, "actor": actor, "target": target}
            await session.execute(text(_AUDIT), {**values, "now": NOW, "key": f"services/team_hub|{event_id}"})

    await asyncio.to_thread(migrations.upgrade, old_database)

    async with old_database.sessions.begin() as session:
        memberships = await store.user_organizations(session, "u_1")
        revocations = await store_log.revocations_after(session, 0, NOW - dt.timedelta(hours=1), 10)
        scoped = await store_log.audit_event_by_key(session, "acme", "services/team_hub|ae_1")
        platform = await store_log.audit_event_by_key(session, "", "services/team_hub|ae_2")
    assert [(m.organization_id, m.member) for m in memberships] == [("acme", "organizations/acme/members/m_1")]
    assert [r.principal for r in revocations] == [
        "organizations/acme/api_keys/k_1",
        "users/u_1",
        "api_keys/k_2",
    ]
    assert scoped is not None and (scoped.actor_principal, scoped.target) == (
        "organizations/acme/api_keys/k_1",
        "organizations/acme/members/m_1",
    )
    assert platform is not None and (platform.actor_principal, platform.target) == (
        "services/identity",
        "signing_keys/k",
    )


async def test_names_fit_and_idempotency_keys_are_unique_per_organisation(old_database: ServiceDatabase):
    await asyncio.to_thread(migrations.upgrade, old_database)
    long_member = "organizations/" + "o" * 64 + "/members/" + "m" * 63
    async with old_database.sessions.begin() as session:
        await session.execute(text(_USER), {"now": NOW})
        await session.execute(
            text(_MEMBERSHIP.replace("'members/m_1'", ":member")), {"now": NOW, "member": long_member}
        )
        for event_id, organization in (("ae_1", "acme"), ("ae_2", "globex")):
            values = {"id": event_id, "organization": organization, "actor": "", "target": ""}
            await session.execute(text(_AUDIT), {**values, "now": NOW, "key": "services/team_hub|same"})
    async with old_database.sessions.begin() as session:
        assert [m.member for m in await store.user_organizations(session, "u_1")] == [long_member]
    duplicate: dict[str, object] = {"id": "ae_3", "organization": "acme", "actor": "", "target": "", "now": NOW}
    async with old_database.sessions() as session:
        with pytest.raises(IntegrityError):
            await session.execute(text(_AUDIT), {**duplicate, "key": "services/team_hub|same"})
