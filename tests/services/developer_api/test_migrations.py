"""developer_api_0002 on SQLite and PostgreSQL: rows of the global-id schema, migrated and read back."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest
from sqlalchemy import DateTime, bindparam, inspect, text

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from services.developer_api import convert, credentials, domain, store, usage_store

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
HOUR = NOW.replace(minute=0)


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "developer_api")
    yield database
    await database.dispose()


def _key(key_id: str, organization_id: str, secret: str, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": key_id,
        "organization_id": organization_id,
        "display_name": f"{key_id} of {organization_id}",
        "prefix": secret[:16],
        "secret_hash": credentials.secret_hash(secret),
        "key_type": "SECRET",
        "environment": "LIVE",
        "scopes": json.dumps(["calls.get"]),
        "restrictions": json.dumps(
            {"allowed_agents": ["agents/a1"], "allowed_ip_ranges": [], "allowed_origins": []}, sort_keys=True
        ),
        "labels": json.dumps({"system": "crm"}),
        "state": "ACTIVE",
        "expire_time": None,
        "last_used_time": None,
        "last_used_address": "",
        "revoke_time": None,
        "revoke_reason": "",
        "rotated_from": "",
        "rotated_to": "",
        "creator": "users/u_admin",
        "creator_role": "ADMIN",
        "last_modifier": "users/u_admin",
        "create_time": NOW,
        "update_time": NOW,
        "version": 3,
    }
    values.update(changes)
    return values


async def _insert(database: ServiceDatabase, table: str, rows: list[dict[str, object]]) -> None:
    """Insert rows as the service of the old schema stored them (times through the DateTime type)."""
    async with database.sessions.begin() as session:
        for row in rows:
            columns = ", ".join(row)
            values = ", ".join(f":{column}" for column in row)
            statement = text(f"INSERT INTO {table} ({columns}) VALUES ({values})").bindparams(
                *(
                    bindparam(column, type_=DateTime(timezone=True))
                    for column in row
                    if column.endswith(("_time", "_start"))
                )
            )
            await session.execute(statement, row)


async def test_0002_keeps_every_row_and_scopes_ids_per_organisation(database: ServiceDatabase):
    await asyncio.to_thread(migrations.upgrade, database, "developer_api_0001")
    first = credentials.new_secret(domain.Environment.LIVE)
    successor = credentials.new_secret(domain.Environment.LIVE)
    await _insert(
        database,
        "api_keys",
        [
            _key("k_old", "org_a", first, rotated_to="k_new"),
            _key("k_new", "org_a", successor, rotated_from="k_old"),
        ],
    )
    expire = NOW + datetime.timedelta(hours=24)
    await _insert(
        database,
        "idempotent_requests",
        [
            {
                "organization_id": "org_a",
                "request_id": "req-create",
                "fingerprint": "f" * 64,
                "api_key_id": "k_old",
                "sealed_secret": b"sealed",
                "expire_time": expire,
            },
            {
                "organization_id": "org_a",
                "request_id": "req-rotate",
                "fingerprint": "f" * 64,
                "api_key_id": "k_new",
                "sealed_secret": b"sealed",
                "expire_time": expire,
            },
        ],
    )
    await _insert(
        database,
        "api_request_logs",
        [
            {
                "id": "r_1",
                "organization_id": "org_a",
                "api_key_id": "k_old",
                "environment": "LIVE",
                "request_id": "x-1",
                "request_time": NOW,
                "method": "/vocelio.agents.v1.AgentsService/GetAgent",
                "http_method": "GET",
                "http_path": "/v1/agents/a1",
                "http_status": 200,
                "grpc_code": "OK",
                "error_reason": "",
                "latency_micros": 1500,
                "client_address": "203.0.113.9",
                "user_agent": "crm/1.0",
            }
        ],
    )
    await _insert(
        database,
        "api_key_usage_hours",
        [
            {
                "api_key_id": "k_old",
                "hour_start": HOUR,
                "organization_id": "org_a",
                "request_count": 7,
                "client_error_count": 1,
                "server_error_count": 0,
                "throttled_count": 0,
                "latency_histogram": "[7]",
            }
        ],
    )

    await asyncio.to_thread(migrations.upgrade, database)

    async with database.sessions.begin() as session:
        old = await store.get_key(session, "org_a", "k_old")
        assert (old.display_name, old.rotated_to, old.secret_hash) == (
            "k_old of org_a",
            "k_new",
            credentials.secret_hash(first),
        )
        # Allowed agents now name the key's own organisation's agents.
        assert json.loads(old.restrictions)["allowed_agents"] == ["organizations/org_a/agents/a1"]
        assert (await store.find_by_hash(session, credentials.secret_hash(successor))) is not None
        # Labels are a JSON document now, and the version is the kit's revision.
        assert (old.labels, old.revision) == ({"system": "crm"}, 3)
        # developer_api_0003: a key's owner starts as its creator.
        assert old.owner == "users/u_admin"
        logs = await usage_store.list_logs(session, "org_a", "", after=None, limit=10)
        assert [(r.id, r.api_key_id, r.latency_micros) for r in logs.items] == [("r_1", "k_old", 1500)]
        [(key, start, counters)] = await usage_store.usage_hours(
            session, "org_a", None, HOUR, HOUR + datetime.timedelta(hours=1)
        )
        assert (key, start, counters.request_count) == (("org_a", "k_old"), HOUR, 7)

    # After the migration another organisation may take the same ids.
    # Request ids of before are forgotten (the kit's idempotency_keys holds them from now on).
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "idempotent_requests" not in tables
    assert {"sealed_secrets", "idempotency_keys"} <= set(tables)

    async with database.sessions.begin() as session:
        secret = credentials.new_secret(domain.Environment.LIVE)
        await store.insert_key(
            session,
            key_id="k_old",
            organization_id="org_b",
            settings=convert.settings_of(old),
            secret_hash=credentials.secret_hash(secret),
            prefix=credentials.visible_prefix(secret),
            creator="users/u_b",
            creator_role="ADMIN",
            now=NOW,
        )
    async with database.sessions.begin() as session:
        assert (await store.get_key(session, "org_b", "k_old")).creator == "users/u_b"
        assert (await store.get_key(session, "org_a", "k_old")).display_name == "k_old of org_a"
