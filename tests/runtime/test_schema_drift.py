"""Every service's SQLAlchemy models describe exactly the schema its migrations build.

For each service with ``services/<name>/models.py`` (and the kit's shared tables, which every
service database holds), the migrations run on a fresh database of each backend, and the
result is compared with the models' metadata: the same tables, and per table the same
columns (kind, length, nullability), primary key, foreign keys, and every declared index.
A model changed without a migration, or a migration without its model, fails here.
"""

from __future__ import annotations

import importlib
import pathlib
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import types

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.tables import KitBase

SERVICES_ROOT = pathlib.Path(__file__).resolve().parents[2] / "services"
SERVICES = sorted(path.parent.name for path in SERVICES_ROOT.glob("*/models.py"))


def test_the_check_covers_the_implemented_services():
    assert {"agents", "developer_api", "identity", "team_hub"} <= set(SERVICES)


def _kind(column_type: Any) -> tuple[str, int | None]:
    """A backend-neutral description of a column type: (kind, length)."""
    if isinstance(column_type, types.TypeDecorator):
        column_type = column_type.impl if isinstance(column_type.impl, types.TypeEngine) else column_type.impl()
    if isinstance(column_type, types.JSON) or type(column_type).__name__ in ("JSONB", "JSON"):
        return ("json", None)
    if isinstance(column_type, types.Enum):
        return ("string", column_type.length)
    if isinstance(column_type, types.Boolean):
        return ("boolean", None)
    if isinstance(column_type, types.DateTime):
        return ("datetime", None)
    if isinstance(column_type, types.LargeBinary) or type(column_type).__name__ in ("BYTEA", "BLOB"):
        return ("binary", None)
    if isinstance(column_type, types.Integer):
        return ("integer", None)
    if isinstance(column_type, types.Text) or (isinstance(column_type, types.String) and column_type.length is None):
        return ("text", None)
    if isinstance(column_type, types.String):
        return ("string", column_type.length)
    if isinstance(column_type, types.Numeric):
        return ("numeric", None)
    return (type(column_type).__name__.lower(), None)


def _metadata_tables(service: str) -> dict[str, sa.Table]:
    models = importlib.import_module(f"services.{service}.models")
    tables = {table.name: table for table in models.Base.metadata.sorted_tables}
    tables.update({table.name: table for table in KitBase.metadata.sorted_tables})
    return tables


def _model_type(column: sa.Column[Any], dialect: Any) -> Any:
    column_type = column.type
    variants = getattr(column_type, "_variant_mapping", {})
    return variants.get(dialect.name, column_type)


def _differences(inspector: Any, schema: str | None, expected: dict[str, sa.Table], dialect: Any) -> list[str]:
    problems: list[str] = []
    migrated = set(inspector.get_table_names(schema=schema)) - {"alembic_version"}
    if migrated != set(expected):
        problems.append(f"tables: migrations only {sorted(migrated - set(expected))}, models only "
                        f"{sorted(set(expected) - migrated)}")  # fmt: skip
    for name, table in sorted(expected.items()):
        if name not in migrated:
            continue
        columns = {c["name"]: c for c in inspector.get_columns(name, schema=schema)}
        if set(columns) != {c.name for c in table.columns}:
            problems.append(f"{name}: columns {sorted(columns)} != {sorted(c.name for c in table.columns)}")
            continue
        for column in table.columns:
            found = columns[column.name]
            if found["nullable"] != column.nullable:
                problems.append(f"{name}.{column.name}: nullable {found['nullable']} != {column.nullable}")
            want = _kind(_model_type(column, dialect))
            have = _kind(found["type"])
            if want != have:
                problems.append(f"{name}.{column.name}: type {have} != {want}")
        primary_key = inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]
        if sorted(primary_key) != sorted(c.name for c in table.primary_key.columns):
            problems.append(f"{name}: primary key {primary_key}")
        foreign_keys = {
            (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
            for fk in inspector.get_foreign_keys(name, schema=schema)
        }
        declared = {
            (
                tuple(element.parent.name for element in fk.elements),
                fk.referred_table.name,
                tuple(element.column.name for element in fk.elements),
            )
            for fk in table.foreign_key_constraints
        }
        if foreign_keys != declared:
            problems.append(f"{name}: foreign keys {sorted(foreign_keys)} != {sorted(declared)}")
        indexes = {index["name"] for index in inspector.get_indexes(name, schema=schema)}
        missing = {str(index.name) for index in table.indexes} - indexes
        if missing:
            problems.append(f"{name}: indexes missing from the migrations: {sorted(missing)}")
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_models_match_migrations(settings: Settings, service: str):
    database = ServiceDatabase(settings, service)
    migrations.upgrade(database)
    engine = database.sync_engine()
    try:
        problems = _differences(sa.inspect(engine), database.schema, _metadata_tables(service), engine.dialect)
    finally:
        engine.dispose()
    assert not problems, f"{service}: " + "; ".join(problems)


def test_drift_is_reported(settings: Settings):
    """A model that drifted from its migration is caught: extra column, nullability, length, index, table."""
    database = ServiceDatabase(settings, "agents")
    migrations.upgrade(database)
    drifted = sa.MetaData()
    tables = dict(_metadata_tables("agents"))
    versions = tables.pop("agent_versions")
    agents = tables.pop("agents")
    tables = {name: table.to_metadata(drifted) for name, table in tables.items()}
    copy = agents.to_metadata(drifted)
    copy.append_column(sa.Column("colour", sa.String(10), nullable=False))
    tables["agents"] = copy
    changed = sa.Table(
        "agent_versions",
        drifted,
        *[
            sa.Column(c.name, sa.String(99) if c.name == "creator" else c.type, primary_key=c.primary_key,
                      nullable=True if c.name == "change_note" else c.nullable)
            for c in versions.columns
        ],
        sa.Index("ix_not_migrated", "creator"),
    )  # fmt: skip
    tables["agent_versions"] = changed
    tables["ghosts"] = sa.Table("ghosts", drifted, sa.Column("id", sa.Integer, primary_key=True))
    engine = database.sync_engine()
    try:
        problems = " | ".join(_differences(sa.inspect(engine), database.schema, tables, engine.dialect))
    finally:
        engine.dispose()
    assert "models only ['ghosts']" in problems
    assert "agents: columns" in problems and "colour" in problems
    assert "agent_versions.creator: type ('string', 200) != ('string', 99)" in problems
    assert "agent_versions.change_note: nullable False != True" in problems
    assert "agent_versions: foreign keys" in problems  # the copy declares none
    assert "ix_not_migrated" in problems
