from __future__ import annotations

import sqlalchemy as sa

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase


def test_migrations_build_an_empty_database_and_are_idempotent(settings: Settings):
    database = ServiceDatabase(settings, "campaigns")
    migrations.upgrade(database)
    migrations.upgrade(database)  # a second run finds nothing to do
    assert migrations.current_heads(database) == {"mesh_0003"}
    engine = database.sync_engine()
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names(schema=database.schema))
        assert {"outbox", "idempotency_keys", "identity_calls", "alembic_version"} <= tables
        columns = {c["name"] for c in inspector.get_columns("outbox", schema=database.schema)}
        assert {"event_id", "stream", "event_type", "data_schema", "data", "occurred_at", "relayed_at"} <= columns
    finally:
        engine.dispose()


def test_each_service_has_its_own_database(settings: Settings):
    first = ServiceDatabase(settings, "billing")
    second = ServiceDatabase(settings, "webhooks")
    migrations.upgrade(first)
    assert first.describe() != second.describe()
    engine = second.sync_engine()
    try:
        assert "outbox" not in sa.inspect(engine).get_table_names(schema=second.schema)
    finally:
        engine.dispose()


def test_postgres_schemas_are_named_after_the_service(postgres_settings: Settings):
    database = ServiceDatabase(postgres_settings, "call_center")
    assert database.schema == f"{postgres_settings.schema_prefix}call_center"
    assert database.describe().endswith(f"#{database.schema}")
    assert "password" not in database.describe()


async def test_probe_tells_reachable_from_unreachable(settings: Settings):
    database = ServiceDatabase(settings, "overview")
    assert await database.probe(2.0) is True
    await database.dispose()
    unreachable = ServiceDatabase(
        Settings.from_environ({"VOCELIO_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}), "overview"
    )
    assert await unreachable.probe(2.0) is False
