"""The store on SQLite and PostgreSQL: tenancy, states, idempotency, usage — and no secret at rest."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import Aborted, AlreadyExists, NotFound
from services.developer_api import credentials, domain, store, usage_store
from services.developer_api.listing import Condition
from services.developer_api.models import Base, utc
from services.developer_api.restrictions import Restrictions
from services.developer_api.usage import Counters

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
REQUEST_ID = "0b6f2c4e-5d7a-4e8b-9c1d-2e3f4a5b6c7d"
HOUR = datetime.timedelta(hours=1)


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "developer_api")
    await asyncio.to_thread(migrations.upgrade, database)
    yield database
    await database.dispose()


def key_settings(**changes) -> domain.KeySettings:
    values: dict[str, Any] = {
        "display_name": "CRM sync",
        "key_type": domain.KeyType.SECRET,
        "environment": domain.Environment.LIVE,
        "scopes": ("calls.create", "calls.get"),
        "restrictions": Restrictions(allowed_ip_ranges=("203.0.113.0/24",)),
        "expire_time": None,
        "labels": {"system": "crm"},
    }
    values.update(changes)
    return domain.KeySettings(**values)


async def add_key(session, key_id, *, organization_id="org_a", now=NOW, **changes):
    secret = credentials.new_secret(domain.Environment.LIVE)
    row = await store.insert_key(
        session,
        key_id=key_id,
        organization_id=organization_id,
        settings=key_settings(**changes),
        secret_hash=credentials.secret_hash(secret),
        prefix=credentials.visible_prefix(secret),
        creator="users/u_admin",
        creator_role="ADMIN",
        now=now,
    )
    return row, secret


def test_migration_matches_the_models(database: ServiceDatabase):
    engine = database.sync_engine()
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    ours = [d for d in differences if "outbox" not in repr(d)]
    assert ours == []


async def test_the_secret_is_never_stored_in_plain_text(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        _, secret = await add_key(session, "k_one")
        await store.claim_request(
            session,
            organization_id="org_a",
            method="CreateApiKey",
            request_id=REQUEST_ID,
            fingerprint="f" * 64,
            api_key_id="k_one",
            sealed_secret=credentials.SecretBox("kek").seal(secret, "organizations/org_a/api_keys/k_one"),
            expire_time=NOW + domain.IDEMPOTENCY_WINDOW,
        )
    async with database.engine.connect() as connection:
        keys = (await connection.execute(text("SELECT * FROM api_keys"))).mappings().all()
        requests = (await connection.execute(text("SELECT * FROM idempotent_requests"))).mappings().all()
    assert len(keys) == 1
    raw = keys[0]
    assert raw["secret_hash"] == credentials.secret_hash(secret)
    assert raw["prefix"] == secret[:16]
    body = secret[16:]
    for row in [*keys, *requests]:
        for value in row.values():
            stored = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
            assert body.encode() not in stored


async def test_ids_are_unique_per_organisation(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await add_key(session, "k_one")
    with pytest.raises(AlreadyExists):
        async with database.sessions.begin() as session:
            await add_key(session, "k_one")
    # Another organisation may use the same id.
    async with database.sessions.begin() as session:
        await add_key(session, "k_one", organization_id="org_b", display_name="B's key")
    async with database.sessions.begin() as session:
        assert (await store.get_key(session, "org_a", "k_one")).display_name == "CRM sync"
        assert (await store.get_key(session, "org_b", "k_one")).display_name == "B's key"


async def test_another_organisations_key_is_not_found_like_a_missing_one(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await add_key(session, "k_one")
    async with database.sessions.begin() as session:
        with pytest.raises(NotFound) as other:
            await store.get_key(session, "org_b", "k_one")
        with pytest.raises(NotFound) as missing:
            await store.get_key(session, "org_b", "k_two")
    assert other.value.message.replace("k_one", "X") == missing.value.message.replace("k_two", "X")


async def test_lookup_by_hash(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        _, secret = await add_key(session, "k_one")
    async with database.sessions.begin() as session:
        found = await store.find_by_hash(session, credentials.secret_hash(secret))
        assert found is not None
        assert found.id == "k_one"
        assert await store.find_by_hash(session, credentials.secret_hash(secret + "x")) is None


async def test_states_counts_and_pages(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        for index in range(5):
            await add_key(session, f"k_{index}", now=NOW - datetime.timedelta(minutes=10 - index))
        expiring, _ = await add_key(session, "k_expired", now=NOW - datetime.timedelta(minutes=1))
        expiring.expire_time = NOW - datetime.timedelta(seconds=1)
        revoked, _ = await add_key(session, "k_revoked", now=NOW)
        revoked.state = domain.KeyState.REVOKED.value
        await add_key(session, "k_other", organization_id="org_b")
    async with database.sessions.begin() as session:
        assert await store.count_active(session, "org_a", NOW) == 5
        first = await store.list_keys(session, "org_a", states={domain.KeyState.ACTIVE}, now=NOW, after=None, limit=3)
        assert [r.id for r in first] == ["k_4", "k_3", "k_2"]
        rest = await store.list_keys(
            session,
            "org_a",
            states={domain.KeyState.ACTIVE},
            now=NOW,
            after=(first[-1].create_time, first[-1].id),
            limit=10,
        )
        assert [r.id for r in rest] == ["k_1", "k_0"]
        inactive = await store.list_keys(
            session, "org_a", states={domain.KeyState.EXPIRED, domain.KeyState.REVOKED}, now=NOW, after=None, limit=10
        )
        assert [r.id for r in inactive] == ["k_revoked", "k_expired"]
        everywhere = await store.list_keys(session, None, states=set(domain.KeyState), now=NOW, after=None, limit=50)
        assert len(everywhere) == 8


async def test_last_used_is_written_once_a_minute(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await add_key(session, "k_one")
    minute = domain.last_used_minute(NOW)
    async with database.sessions.begin() as session:
        row = await store.get_key(session, "org_a", "k_one")
        assert await store.touch_last_used(session, row, minute, "203.0.113.9")
        assert not await store.touch_last_used(session, row, minute, "203.0.113.10")
        assert await store.touch_last_used(session, row, minute + datetime.timedelta(minutes=1), "203.0.113.11")
    async with database.sessions.begin() as session:
        row = await store.get_key(session, "org_a", "k_one")
        assert row.last_used_time is not None
        assert utc(row.last_used_time) == minute + datetime.timedelta(minutes=1)
        assert row.last_used_address == "203.0.113.11"


async def test_request_ids_are_claimed_once_and_forgotten_after_their_window(database: ServiceDatabase):
    claim: dict[str, Any] = {
        "organization_id": "org_a",
        "method": "CreateApiKey",
        "request_id": REQUEST_ID,
        "fingerprint": "f" * 64,
        "api_key_id": "k_one",
        "sealed_secret": b"sealed",
        "expire_time": NOW + domain.IDEMPOTENCY_WINDOW,
    }
    async with database.sessions.begin() as session:
        await store.claim_request(session, **claim)
    with pytest.raises(Aborted):
        async with database.sessions.begin() as session:
            await store.claim_request(session, **claim)
    # The same id in another organisation or on another method is another request.
    async with database.sessions.begin() as session:
        await store.claim_request(session, **{**claim, "organization_id": "org_b"})
        await store.claim_request(session, **{**claim, "method": "RotateApiKey"})
    async with database.sessions.begin() as session:
        assert (await store.find_request(session, "org_a", "CreateApiKey", REQUEST_ID, NOW)) is not None
        assert (await store.find_request(session, "org_c", "CreateApiKey", REQUEST_ID, NOW)) is None
        assert (await store.find_request(session, "org_a", "RevokeApiKey", REQUEST_ID, NOW)) is None
        later = NOW + domain.IDEMPOTENCY_WINDOW
        assert (await store.find_request(session, "org_a", "CreateApiKey", REQUEST_ID, later)) is None
        await store.wipe_expired_requests(session, later)
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM idempotent_requests"))).scalar_one() == 0


def log_row(request_id, *, key_id="k_one", organization_id="org_a", status=200, when=NOW, latency_ms=20):
    return {
        "id": f"r_{request_id}",
        "organization_id": organization_id,
        "api_key_id": key_id,
        "environment": "LIVE",
        "request_id": request_id,
        "request_time": when,
        "method": "/vocelio.agents.v1.AgentsService/GetAgent",
        "http_method": "GET",
        "http_path": "/v1/agents/a1",
        "http_status": status,
        "grpc_code": "OK" if status < 400 else "NOT_FOUND",
        "error_reason": "",
        "latency_micros": latency_ms * 1000,
        "client_address": "203.0.113.9",
        "user_agent": "test",
    }


async def test_logs_skip_request_ids_already_stored(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        inserted = await usage_store.insert_logs(session, [log_row("a"), log_row("b")])
        assert inserted == {("org_a", "a"), ("org_a", "b")}
    async with database.sessions.begin() as session:
        duplicate = {**log_row("b"), "id": "r_b2"}
        elsewhere = log_row("b", organization_id="org_b", key_id="k_b")
        inserted = await usage_store.insert_logs(session, [duplicate, log_row("c"), elsewhere])
        assert inserted == {("org_a", "c"), ("org_b", "b")}
    async with database.sessions.begin() as session:
        rows = await usage_store.list_logs(session, "org_a", conditions=[], after=None, limit=10)
    assert sorted(r.request_id for r in rows) == ["a", "b", "c"]


async def test_log_queries_filter_and_page_within_the_organisation(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await usage_store.insert_logs(
            session,
            [
                log_row("a", when=NOW - 3 * HOUR),
                log_row("b", status=404, when=NOW - 2 * HOUR),
                log_row("c", status=500, when=NOW - HOUR),
                log_row("d", organization_id="org_b", key_id="k_one", status=500),
            ],
        )
    async with database.sessions.begin() as session:
        mine = await usage_store.list_logs(
            session,
            None,
            conditions=[usage_store.log_condition(Condition("api_key", "=", "org_a/k_one"))],
            after=None,
            limit=10,
        )
        assert [r.request_id for r in mine] == ["c", "b", "a"]
        errors = await usage_store.list_logs(
            session,
            "org_a",
            conditions=[usage_store.log_condition(Condition("http_status", ">=", "400"))],
            after=None,
            limit=10,
        )
        assert [r.request_id for r in errors] == ["c", "b"]
        recent = await usage_store.list_logs(
            session,
            "org_a",
            conditions=[
                usage_store.log_condition(
                    Condition("request_time", ">=", (NOW - 150 * datetime.timedelta(minutes=1)).isoformat())
                )
            ],
            after=None,
            limit=10,
        )
        assert [r.request_id for r in recent] == ["c", "b"]
        page = await usage_store.list_logs(session, "org_a", conditions=[], after=None, limit=1)
        after = (page[0].request_time, page[0].id)
        rest = await usage_store.list_logs(session, "org_a", conditions=[], after=after, limit=10)
        assert [r.request_id for r in page + rest] == ["c", "b", "a"]


async def test_usage_accumulates_per_key_and_hour(database: ServiceDatabase):
    hour = NOW.replace(minute=0, second=0)
    for status in (200, 404, 500):
        counters = Counters()
        counters.add_request(status, "", datetime.timedelta(milliseconds=15))
        async with database.sessions.begin() as session:
            await usage_store.add_usage(session, key=("org_a", "k_one"), hour=hour, counters=counters)
    async with database.sessions.begin() as session:
        other = Counters()
        other.add_request(200, "", datetime.timedelta(milliseconds=1))
        # The same key id in another organisation is another key.
        await usage_store.add_usage(session, key=("org_b", "k_one"), hour=hour, counters=other)
    async with database.sessions.begin() as session:
        hours = await usage_store.usage_hours(session, "org_a", None, hour - HOUR, hour + HOUR)
        one = await usage_store.usage_hours(session, "org_a", "k_one", hour, hour + HOUR)
        theirs = await usage_store.usage_hours(session, "org_b", "k_one", hour, hour + HOUR)
    assert len(hours) == 1
    key, start, total = hours[0]
    assert (key, start) == (("org_a", "k_one"), hour)
    assert theirs[0][2].request_count == 1
    assert (total.request_count, total.client_error_count, total.server_error_count) == (3, 1, 1)
    assert sum(total.histogram) == 3
    assert one[0][2].request_count == 3


async def test_old_logs_are_pruned(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await usage_store.insert_logs(session, [log_row("old", when=NOW - datetime.timedelta(days=31)), log_row("new")])
        await usage_store.prune(session, NOW)
    async with database.sessions.begin() as session:
        rows = await usage_store.list_logs(session, None, conditions=[], after=None, limit=10)
    assert [r.request_id for r in rows] == ["new"]
