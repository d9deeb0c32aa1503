"""The store on SQLite and PostgreSQL: tenancy, states, filters, pages, usage — and no secret at rest."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from sqlalchemy import text

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.errors import AlreadyExists, InvalidArgument, NotFound
from services.developer_api import credentials, domain, store, usage_store
from services.developer_api.restrictions import Restrictions
from services.developer_api.usage import Counters

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
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


async def test_the_secret_is_never_stored_in_plain_text(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        _, secret = await add_key(session, "k_one")
        await store.keep_sealed_secret(
            session,
            organization_id="org_a",
            api_key_id="k_one",
            sealed=credentials.SecretBox("kek").seal(secret, "organizations/org_a/api_keys/k_one"),
            expire_time=NOW + domain.SEALED_SECRET_WINDOW,
        )
    async with database.engine.connect() as connection:
        keys = (await connection.execute(text("SELECT * FROM api_keys"))).mappings().all()
        requests = (await connection.execute(text("SELECT * FROM sealed_secrets"))).mappings().all()
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
        assert await store.find_key(session, "org_c", "k_one") is None


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


async def _listed(session, organization_id, filter_text="", *, show_inactive=False, limit=50) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = await store.list_keys(
            session, organization_id, filter_text, show_inactive=show_inactive, now=NOW, after=after, limit=limit
        )
        seen += [row.id for row in page.items]
        if page.next_after is None:
            return seen
        after = page.next_after


async def test_states_filters_counts_and_pages(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        for index in range(5):
            await add_key(session, f"k_{index}", now=NOW - datetime.timedelta(minutes=10 - index))
        expiring, _ = await add_key(session, "k_expired", now=NOW - datetime.timedelta(minutes=1))
        expiring.expire_time = NOW - datetime.timedelta(seconds=1)
        revoked, _ = await add_key(session, "k_revoked", now=NOW, scopes=("*",), labels={"system": "ops"})
        revoked.state = domain.KeyState.REVOKED.value
        await add_key(session, "k_other", organization_id="org_b")
    async with database.sessions.begin() as session:
        assert await store.count_active(session, "org_a", NOW) == 5
        assert await _listed(session, "org_a", limit=3) == ["k_4", "k_3", "k_2", "k_1", "k_0"]
        assert await _listed(session, "org_a", "state != ACTIVE") == ["k_revoked", "k_expired"]
        assert await _listed(session, "org_a", "state = API_KEY_STATE_EXPIRED") == ["k_expired"]
        assert len(await _listed(session, "org_a", show_inactive=True)) == 7
        assert len(await _listed(session, None, show_inactive=True, limit=2)) == 8
        # A key holding "*" holds every scope.
        assert await _listed(session, "org_a", "scopes:calls.get AND state = REVOKED") == ["k_revoked"]
        assert await _listed(session, "org_a", "scopes:agents.get", show_inactive=True) == ["k_revoked"]
        assert await _listed(session, "org_a", 'labels.system = "ops"', show_inactive=True) == ["k_revoked"]
        assert await _listed(session, "org_a", 'display_name = "CRM*" AND environment = LIVE') == [
            "k_4",
            "k_3",
            "k_2",
            "k_1",
            "k_0",
        ]
        for bad in ("secret_hash = x", "scopes:calls%", "state > ACTIVE", "environment = MOON"):
            with pytest.raises(InvalidArgument):
                await _listed(session, "org_a", bad)


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
        assert row.last_used_time == minute + datetime.timedelta(minutes=1)
        assert row.last_used_address == "203.0.113.11"


async def test_sealed_secrets_are_kept_for_their_window(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await store.keep_sealed_secret(
            session, organization_id="org_a", api_key_id="k_one", sealed=b"sealed", expire_time=NOW + HOUR
        )
        # The same key id in another organisation is another key.
        await store.keep_sealed_secret(
            session, organization_id="org_b", api_key_id="k_one", sealed=b"theirs", expire_time=NOW + HOUR
        )
    async with database.sessions.begin() as session:
        assert await store.find_sealed_secret(session, "org_a", "k_one", NOW) == b"sealed"
        assert await store.find_sealed_secret(session, "org_c", "k_one", NOW) is None
        assert await store.find_sealed_secret(session, "org_a", "k_one", NOW + HOUR) is None
        await store.wipe_expired_secrets(session, NOW + HOUR)
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM sealed_secrets"))).scalar_one() == 0


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
        page = await usage_store.list_logs(session, "org_a", "", after=None, limit=10)
    assert sorted(r.request_id for r in page.items) == ["a", "b", "c"]


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
    since = (NOW - 150 * datetime.timedelta(minutes=1)).isoformat()

    async def ids(organization_id, filter_text="", limit=10):
        page = await usage_store.list_logs(session, organization_id, filter_text, after=None, limit=limit)
        return [row.request_id for row in page.items]

    async with database.sessions.begin() as session:
        assert await ids(None, 'api_key = "organizations/org_a/api_keys/k_one"') == ["c", "b", "a"]
        assert await ids("org_a", "http_status >= 400") == ["c", "b"]
        assert await ids("org_a", "grpc_code = NOT_FOUND") == ["c", "b"]
        assert await ids("org_a", f'request_time >= "{since}"') == ["c", "b"]
        first = await usage_store.list_logs(session, "org_a", "", after=None, limit=1)
        assert first.next_after is not None
        rest = await usage_store.list_logs(session, "org_a", "", after=first.next_after, limit=10)
        assert [r.request_id for r in (*first.items, *rest.items)] == ["c", "b", "a"]
        with pytest.raises(InvalidArgument):
            await ids("org_a", "latency_micros > 1")


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
        page = await usage_store.list_logs(session, None, "", after=None, limit=10)
    assert [r.request_id for r in page.items] == ["new"]
