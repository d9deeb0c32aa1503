"""agents_0002: data written under the old, globally keyed schema survives, organisation-scoped."""

from __future__ import annotations

import asyncio
import datetime

import sqlalchemy as sa

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from services.agents import convert, store

T0 = datetime.datetime(2026, 11, 26, 9, 0, tzinfo=datetime.UTC)
_ROW = {
    "display_name": "Front desk",
    "description": "",
    "state": "PUBLISHED",
    "draft": '{"prompt": "Hi"}',
    "labels": '{"team": "sales"}',
    "latest_version": 1,
    "pinned_version": 0,
    "revision": 3,
    "creator": "users/alice",
    "last_modifier": "users/bob",
    "create_time": T0,
    "update_time": T0 + datetime.timedelta(hours=1),
}


def _old_schema_with_data(database: ServiceDatabase) -> None:
    migrations.upgrade(database, "agents_0001")
    engine = database.sync_engine()
    try:
        with engine.begin() as connection:
            metadata = sa.MetaData(schema=database.schema)
            agents = sa.Table("agents", metadata, autoload_with=connection)
            versions = sa.Table("agent_versions", metadata, autoload_with=connection)
            requests = sa.Table("agent_create_requests", metadata, autoload_with=connection)
            labels = {"team": "sales"}
            connection.execute(
                agents.insert(), [{**_ROW, "labels": labels, "id": "front-desk", "organization_id": "org_a"}]
            )
            connection.execute(
                agents.insert(), [{**_ROW, "labels": labels, "id": "ag_aaaaaaaaaaaaaaaa", "organization_id": "org_b"}]
            )
            connection.execute(
                versions.insert(),
                [
                    {
                        "agent_id": "front-desk",
                        "version": 1,
                        "config": '{"prompt": "Hi"}',
                        "change_note": "first",
                        "creator": "users/alice",
                        "create_time": T0,
                    }
                ],
            )
            connection.execute(
                requests.insert(),
                [
                    {
                        "organization_id": "org_a",
                        "request_id": "r1",
                        "agent_id": "front-desk",
                        "fingerprint": "f" * 64,
                        "create_time": T0,
                    }
                ],
            )
    finally:
        engine.dispose()


async def test_existing_agents_and_versions_move_to_organisation_scoped_keys(settings: Settings):
    database = ServiceDatabase(settings, "agents")
    try:
        await asyncio.to_thread(_old_schema_with_data, database)
        await asyncio.to_thread(migrations.upgrade, database)
        assert await asyncio.to_thread(migrations.current_heads, database) == {"mesh_0003", "agents_0002"}
        async with database.sessions.begin() as session:
            row = await store.get_agent(session, "org_a", "front-desk")
            other = await store.get_agent(session, "org_b", "ag_aaaaaaaaaaaaaaaa")
            version = await store.find_version(session, "org_a", "front-desk", 1)
            assert await store.find_agent(session, "org_b", "front-desk") is None
            agent = convert.agent_to_proto(row)
        assert agent.name == "organizations/org_a/agents/front-desk"
        assert (row.revision, row.labels, row.create_time) == (3, {"team": "sales"}, T0)
        assert (row.creator, row.last_modifier) == ("users/alice", "users/bob")
        assert other.organization_id == "org_b"
        assert version is not None
        assert convert.version_to_proto(version).name == "organizations/org_a/agents/front-desk/versions/1"
        engine = database.sync_engine()
        try:
            tables = set(sa.inspect(engine).get_table_names(schema=database.schema))
        finally:
            engine.dispose()
        assert "agent_create_requests" not in tables
        assert {"agents", "agent_versions", "idempotency_keys"} <= tables
    finally:
        await database.dispose()
