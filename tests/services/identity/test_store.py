"""Identity's queries on a real database, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.caller import CallerInfo
from mesh.kit.filtering import compile_filter
from services.identity import audit, signing, store, store_keys, store_log
from services.identity.accounts import USER_FILTERS
from services.identity.domain import Membership
from services.identity.keyring import Keyring
from services.identity.models import AuditEvent, Session, SigningKey, User
from services.identity.security import AUDIT_FILTERS

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
KEK = os.urandom(32)


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "identity")
    await asyncio.to_thread(migrations.upgrade, database)
    yield database
    await database.dispose()


def a_user(user_id: str, email: str, name: str = "Ada", **changes) -> User:
    values = {
        "id": user_id,
        "email": email,
        "password_hash": "$argon2id$placeholder",
        "display_name": name,
        "avatar_uri": "",
        "locale": "",
        "time_zone": "",
        "email_verified": False,
        "state": "ACTIVE",
        "failed_sign_in_count": 0,
        "lock_count": 0,
        "disabled_reason": "",
        "platform_admin": False,
        "home_organization_id": "",
        "create_time": NOW,
        "update_time": NOW,
        "creator": "",
        "last_modifier": "",
    }
    return User(**{**values, **changes})


def a_session(session_id: str, user_id: str, org: str = "org_a", **changes) -> Session:
    values = {
        "id": session_id,
        "user_id": user_id,
        "organization_id": org,
        "grant_type": "password",
        "scope": "",
        "user_agent": "",
        "client_address": "",
        "create_time": NOW,
        "last_refresh_time": NOW,
        "expire_time": NOW + dt.timedelta(days=30),
        "revoke_reason": "",
    }
    return Session(**{**values, **changes})


async def test_migrations_reach_both_heads(database: ServiceDatabase):
    assert await asyncio.to_thread(migrations.current_heads, database) == {"mesh_0003", "identity_0002"}


async def test_emails_are_unique_and_times_come_back_aware(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await store.add_user(session, a_user("u_1", "ada@example.com", locked_until=NOW + dt.timedelta(minutes=15)))
    with pytest.raises(IntegrityError):
        async with database.sessions.begin() as session:
            await store.add_user(session, a_user("u_2", "ada@example.com"))
    async with database.sessions.begin() as session:
        user = await store.get_user_by_email(session, "ada@example.com")
    assert user is not None and user.id == "u_1"
    assert user.create_time == NOW and user.create_time.tzinfo is not None
    assert user.locked_until == NOW + dt.timedelta(minutes=15)


async def test_users_are_listed_per_organisation_by_name_with_filters_and_pages(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        for index, (name, state) in enumerate(
            [("Cy", "ACTIVE"), ("Ada", "LOCKED"), ("Bo", "ACTIVE"), ("Di", "ACTIVE")]
        ):
            user_id = f"u_{index}"
            await store.add_user(session, a_user(user_id, f"{name.lower()}@example.com", name, state=state))
            org = "org_b" if name == "Di" else "org_a"
            await store.remember_memberships(session, user_id, [Membership(org, "AGENT")], NOW, complete=False)

    async def names(organization_id: str | None, text: str = "") -> list[str]:
        query = store.users_query(organization_id=organization_id, condition=compile_filter(text, USER_FILTERS))
        async with database.sessions.begin() as session:
            return [u.display_name for u in (await session.execute(query.order_by(User.display_name))).scalars()]

    assert await names("org_a") == ["Ada", "Bo", "Cy"]
    assert await names(None) == ["Ada", "Bo", "Cy", "Di"]
    assert await names("org_a", "state = LOCKED") == ["Ada"]
    assert await names(None, 'email : "bo@"') == ["Bo"]
    assert await names("org_b", 'email : "bo@"') == []


async def test_memberships_are_remembered_replaced_and_forgotten(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await store.add_user(session, a_user("u_1", "ada@example.com"))
        await store.remember_memberships(
            session, "u_1", [Membership("org_a", "ADMIN"), Membership("org_b", "AGENT")], NOW, complete=True
        )
    async with database.sessions.begin() as session:
        await store.remember_memberships(session, "u_1", [Membership("org_b", "MANAGER")], NOW, complete=True)
        rows = await store.user_organizations(session, "u_1")
        assert [(r.organization_id, r.role) for r in rows] == [("org_b", "MANAGER")]
        assert await store.is_member(session, "u_1", "org_b")
        await store.forget_membership(session, "u_1", "org_b")
        assert not await store.is_member(session, "u_1", "org_b")


async def test_open_sessions_leave_out_revoked_and_expired_ones(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await store.add_user(session, a_user("u_1", "ada@example.com"))
        await store.add_session(session, a_session("s_old", "u_1", last_refresh_time=NOW - dt.timedelta(hours=1)))
        await store.add_session(session, a_session("s_new", "u_1", org="org_b"))
        await store.add_session(session, a_session("s_revoked", "u_1", revoke_time=NOW))
        await store.add_session(session, a_session("s_expired", "u_1", expire_time=NOW - dt.timedelta(seconds=1)))
    async with database.sessions.begin() as session:
        rows = await store.open_sessions(session, user_id="u_1", now=NOW)
        in_a = await store.open_sessions(session, user_id="u_1", now=NOW, organization_id="org_a")
    assert [r.id for r in rows] == ["s_new", "s_old"]
    assert [r.id for r in in_a] == ["s_old"]


async def test_a_refresh_token_can_be_spent_only_once(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await store.add_user(session, a_user("u_1", "ada@example.com"))
        await store.add_session(session, a_session("s_1", "u_1"))
        await store.add_refresh_token(session, "h" * 64, "s_1", NOW, NOW + dt.timedelta(days=1))
    async with database.sessions.begin() as session:
        found = await store.find_refresh_token(session, "h" * 64)
        assert found is not None and found[1].id == "s_1" and found[0].used_time is None
        assert await store.spend_refresh_token(session, "h" * 64, NOW)
    async with database.sessions.begin() as session:
        assert not await store.spend_refresh_token(session, "h" * 64, NOW)
        assert await store.find_refresh_token(session, "nope") is None


async def test_deleting_a_user_removes_everything_that_hangs_off_it(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await store.add_user(session, a_user("u_1", "ada@example.com"))
        await store.add_session(session, a_session("s_1", "u_1"))
        await store.add_refresh_token(session, "h" * 64, "s_1", NOW, NOW + dt.timedelta(days=1))
        await store.remember_memberships(session, "u_1", [Membership("org_a", "ADMIN")], NOW, complete=False)
    async with database.sessions.begin() as session:
        await store.delete_user(session, "u_1")
    async with database.sessions.begin() as session:
        assert await store.get_user(session, "u_1") is None
        assert await store.find_refresh_token(session, "h" * 64) is None
        assert not await store.is_member(session, "u_1", "org_a")


async def test_revocation_sequences_increase_from_one_and_expired_entries_drop_out(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        assert await store_log.head_sequence(session) == 0
        first = await store_log.append_revocation(
            session,
            kind=store_log.TOKEN,
            now=NOW,
            expire_time=NOW + dt.timedelta(minutes=15),
            reason="logout",
            token_id="j1",
        )
        old = await store_log.append_revocation(
            session,
            kind=store_log.SESSION,
            now=NOW,
            expire_time=NOW - dt.timedelta(seconds=1),
            reason="x",
            session_name="sessions/s",
        )
        third = await store_log.append_revocation(
            session,
            kind=store_log.PRINCIPAL,
            now=NOW,
            expire_time=NOW + dt.timedelta(minutes=15),
            reason="role_changed",
            principal="users/u_1",
            issued_before=NOW + dt.timedelta(seconds=1),
        )
        assert session.info[store_log.WROTE_REVOCATION]
    assert (first.sequence, old.sequence, third.sequence) == (1, 2, 3)
    async with database.sessions.begin() as session:
        assert await store_log.head_sequence(session) == 3
        rows = await store_log.revocations_after(session, 0, NOW, 10)
        assert [r.sequence for r in rows] == [1, 3]
        assert [r.sequence for r in await store_log.revocations_after(session, 1, NOW, 10)] == [3]
        assert await store_log.latest_cutoff(session, "users/u_1", NOW) == NOW + dt.timedelta(seconds=1)
        assert await store_log.latest_cutoff(session, "users/u_1", NOW + dt.timedelta(seconds=1)) is None
        assert await store_log.prune_revocations(session, NOW) == 1
    async with database.sessions.begin() as session:
        # Pruning never hands a sequence out twice.
        fourth = await store_log.append_revocation(
            session, kind=store_log.TOKEN, now=NOW, expire_time=NOW + dt.timedelta(minutes=1), reason="x", token_id="j2"
        )
    assert fourth.sequence == 4


async def test_concurrent_revocations_get_distinct_sequences_in_commit_order(database: ServiceDatabase):
    first_wrote = asyncio.Event()
    release = asyncio.Event()

    async def first() -> int:
        async with database.sessions.begin() as session:
            row = await store_log.append_revocation(
                session,
                kind=store_log.TOKEN,
                now=NOW,
                expire_time=NOW + dt.timedelta(minutes=5),
                reason="a",
                token_id="a",
            )
            first_wrote.set()
            await release.wait()
            return row.sequence

    async def second() -> int:
        await first_wrote.wait()
        async with database.sessions.begin() as session:
            row = await store_log.append_revocation(
                session,
                kind=store_log.TOKEN,
                now=NOW,
                expire_time=NOW + dt.timedelta(minutes=5),
                reason="b",
                token_id="b",
            )
            return row.sequence

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await first_wrote.wait()
    release.set()
    assert sorted(await asyncio.gather(first_task, second_task)) == [1, 2]
    async with database.sessions.begin() as session:
        rows = await store_log.revocations_after(session, 0, NOW, 10)
    assert [(r.sequence, r.token_id) for r in rows] == [(1, "a"), (2, "b")]


async def test_only_one_signing_key_can_be_active(database: ServiceDatabase):
    keyring = Keyring(KEK)
    async with database.sessions.begin() as session:
        await store_keys.add_key(session, keyring.new_row(signing.generate(), NOW, creator="t"))
    with pytest.raises(IntegrityError):
        async with database.sessions.begin() as session:
            await store_keys.add_key(session, keyring.new_row(signing.generate(), NOW, creator="t"))


async def test_the_keyring_creates_one_key_seals_it_and_retires_demoted_keys(database: ServiceDatabase):
    keyring = Keyring(KEK)
    async with database.sessions.begin() as session:
        await keyring.load(session, NOW, dt.timedelta(minutes=16))
    async with database.sessions.begin() as session:
        await keyring.load(session, NOW, dt.timedelta(minutes=16))
        rows = list((await session.execute(select(SigningKey))).scalars())
        raw = (await session.execute(text("SELECT sealed_private_key FROM signing_keys"))).scalar_one()
    assert len(rows) == 1 and rows[0].state == "ACTIVE" and rows[0].kid == keyring.active().kid
    assert b"PRIVATE KEY" not in bytes(raw) and b"-----BEGIN" not in bytes(raw)
    assert [jwk["kid"] for jwk in keyring.jwks()] == [rows[0].kid]
    async with database.sessions.begin() as session:
        current = await store_keys.active_key(session)
        assert current is not None
        await store_keys.demote(session, current, NOW, dt.timedelta(minutes=16))
        await store_keys.add_key(session, keyring.new_row(signing.generate(signing.EDDSA), NOW, creator="t"))
    async with database.sessions.begin() as session:
        await keyring.load(session, NOW + dt.timedelta(minutes=1), dt.timedelta(minutes=16))
    assert [jwk["alg"] for jwk in keyring.jwks()] == ["EdDSA", "ES256"]
    async with database.sessions.begin() as session:
        await keyring.load(session, NOW + dt.timedelta(minutes=16), dt.timedelta(minutes=16))
        states = {k.algorithm: k.state for k in (await session.execute(select(SigningKey))).scalars()}
    assert states == {"EdDSA": "ACTIVE", "ES256": "RETIRED"}
    assert [jwk["alg"] for jwk in keyring.jwks()] == ["EdDSA"]


async def test_a_configured_key_file_becomes_the_active_key_once(database: ServiceDatabase):
    generated = Keyring(KEK)
    async with database.sessions.begin() as session:
        await generated.load(session, NOW, dt.timedelta(minutes=16))
    file_key = signing.generate(signing.EDDSA)
    configured = Keyring(KEK, file_key)
    for _ in range(2):  # idempotent across restarts
        async with database.sessions.begin() as session:
            await configured.load(session, NOW, dt.timedelta(minutes=16))
    assert configured.active().kid == file_key.kid
    async with database.sessions.begin() as session:
        rows = {k.kid: (k.state, k.source) for k in (await session.execute(select(SigningKey))).scalars()}
    assert rows == {file_key.kid: ("ACTIVE", "file"), generated.active().kid: ("PREVIOUS", "generated")}


async def test_a_different_key_encryption_key_cannot_open_the_stored_keys(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await Keyring(KEK).load(session, NOW, dt.timedelta(minutes=16))
    with pytest.raises(signing.KeyMaterialError, match="key-encryption key"):
        async with database.sessions.begin() as session:
            await Keyring(os.urandom(32)).load(session, NOW, dt.timedelta(minutes=16))


async def test_audit_events_are_selected_by_organisation_and_filter(database: ServiceDatabase):
    actor = audit.Actor("users/u_1", "USER", "ada@example.com", "ADMIN")
    async with database.sessions.begin() as session:
        for minutes, (org, action) in enumerate(
            [
                ("org_a", "SIGN_IN_FAILED"),
                ("org_a", "SIGN_IN_SUCCEEDED"),
                ("org_b", "SIGN_IN_FAILED"),
                ("", "SIGNING_KEY_ROTATED"),
            ]
        ):
            await store_log.add_audit_event(
                session,
                audit.event(
                    action=action,
                    outcome="SUCCESS",
                    actor=actor,
                    request=CallerInfo("203.0.113.9"),
                    now=NOW + dt.timedelta(minutes=minutes),
                    organization_id=org,
                ),
            )

    async def events(organization_id: str | None, text: str = "") -> list[AuditEvent]:
        condition = compile_filter(text, AUDIT_FILTERS)
        query = store_log.audit_events_query(organization_id=organization_id, condition=condition)
        async with database.sessions.begin() as session:
            return list((await session.execute(query.order_by(AuditEvent.event_time.desc()))).scalars())

    assert [e.action for e in await events("org_a")] == ["SIGN_IN_SUCCEEDED", "SIGN_IN_FAILED"]
    assert [e.action for e in await events("")] == ["SIGNING_KEY_ROTATED"]
    assert [e.action for e in await events(None, 'organization_id = ""')] == ["SIGNING_KEY_ROTATED"]
    failed = await events(None, "action = AUDIT_ACTION_SIGN_IN_FAILED")
    assert [e.organization_id for e in failed] == ["org_b", "org_a"]
    recent = await events(None, f'event_time >= "{(NOW + dt.timedelta(minutes=2)).isoformat()}"')
    assert [e.action for e in recent] == ["SIGNING_KEY_ROTATED", "SIGN_IN_FAILED"]
    assert {e.client_address for e in recent} == {"203.0.113.9"}
