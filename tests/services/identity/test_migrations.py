"""identity_0002 moves existing rows to organisation-scoped names, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from services.identity import store, store_log
from services.identity.models import AuditEvent

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
    update_time, creator, {updater}, {version})
VALUES ('u_1', 'ada@example.com', 'h', 'Ada', '', '', '', false, 'ACTIVE', 0, 0, '', false, 'acme', :now, :now,
    'users/u_1', 'users/u_1', 3)
"""
OLD_USER = _USER.format(updater="updater", version="version")
NEW_USER = _USER.format(updater="last_modifier", version="revision")
_SESSION = """
INSERT INTO sessions (id, user_id, organization_id, grant_type, scope, user_agent, client_address, create_time,
    last_refresh_time, expire_time, revoke_reason)
VALUES ('s_1', 'u_1', 'acme', 'password', '', '', '', :now, :now, :now, '')
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
        await session.execute(text(OLD_USER), {"now": NOW})
        await session.execute(text(_SESSION), {"now": NOW})
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
        user = await store.get_user(session, "u_1")
        kept_session = await store.get_session(session, "s_1")
        memberships = await store.user_organizations(session, "u_1")
        revocations = await store_log.revocations_after(session, 0, NOW - dt.timedelta(hours=1), 10)
        scoped = await session.get(AuditEvent, "ae_1")
        platform = await session.get(AuditEvent, "ae_2")
    # The user's columns were renamed in place: the user, its session and membership are all still there.
    assert user is not None and (user.revision, user.last_modifier) == (3, "users/u_1")
    assert kept_session is not None and kept_session.user_id == "u_1"
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


_KEY = """
INSERT INTO signing_keys (kid, algorithm, state, public_jwk, sealed_private_key, source, create_time, creator)
VALUES (:kid, 'ES256', 'ACTIVE', '{}', :sealed, 'generated', :now, '')
"""


async def test_names_fit_the_wider_columns_and_one_key_is_still_active(old_database: ServiceDatabase):
    await asyncio.to_thread(migrations.upgrade, old_database)
    long_member = "organizations/" + "o" * 64 + "/members/" + "m" * 63
    async with old_database.sessions.begin() as session:
        await session.execute(text(NEW_USER), {"now": NOW})
        await session.execute(
            text(_MEMBERSHIP.replace("'members/m_1'", ":member")), {"now": NOW, "member": long_member}
        )
        await session.execute(text(_KEY), {"kid": "k1", "sealed": b"x", "now": NOW})
    async with old_database.sessions.begin() as session:
        assert [m.member for m in await store.user_organizations(session, "u_1")] == [long_member]
    # The partial unique index survived the table copy: a second ACTIVE key is refused.
    async with old_database.sessions() as session:
        with pytest.raises(IntegrityError):
            await session.execute(text(_KEY), {"kid": "k2", "sealed": b"x", "now": NOW})
    columns = await asyncio.to_thread(_columns, old_database)
    assert "idempotency_key" not in columns["audit_events"]
    assert "rotation_request_id" not in columns["signing_keys"]


def _columns(database: ServiceDatabase) -> dict[str, set[str]]:
    engine = database.sync_engine()
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {
                table: {c["name"] for c in inspector.get_columns(table, schema=database.schema)}
                for table in ("audit_events", "signing_keys")
            }
    finally:
        engine.dispose()
