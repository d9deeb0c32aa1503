"""Alembic migrations, applied per service.

Each service's database (PostgreSQL schema or SQLite file) gets the shared ``mesh``
branch (tables every service owns, such as the outbox) and, where the service has one,
its own branch in ``services/<name>/migrations``. ``make migrate`` and development
start-up call :func:`upgrade`.
"""

from __future__ import annotations

import logging
import pathlib
import threading

from sqlalchemy import text

from mesh.db import ServiceDatabase

log = logging.getLogger(__name__)

HERE = pathlib.Path(__file__).resolve().parent
SERVICES_ROOT = HERE.parent.parent / "services"

# Alembic keeps the running migration context in module globals (``alembic.op``,
# ``alembic.context``), so two migrations in one process must never overlap; the
# all-in-one mode starts every service's host in one process.
_ALEMBIC_LOCK = threading.Lock()


def version_locations(service_name: str) -> list[pathlib.Path]:
    """The folders holding the migrations of one service: the shared branch and its own."""
    locations = [HERE / "versions"]
    own = SERVICES_ROOT / service_name / "migrations"
    if own.is_dir():
        locations.append(own)
    return locations


def upgrade(database: ServiceDatabase, revision: str = "heads") -> None:
    """Bring a service's database up to ``revision`` (all heads by default).

    On PostgreSQL this takes a transaction-scoped advisory lock per schema, so processes
    that start together never migrate the same schema twice at once, and creates the
    schema first. Runs synchronously; call it in a thread from async code.
    """
    # Imported here: a service that does not migrate on start never pays for Alembic.
    from alembic import command
    from alembic.config import Config

    engine = database.sync_engine()
    try:
        with _ALEMBIC_LOCK, engine.begin() as connection:
            if database.schema is not None:
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": database.schema})
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
            config = Config()
            config.set_main_option("script_location", str(HERE))
            config.set_main_option(
                "version_locations", " ".join(str(p) for p in version_locations(database.service_name))
            )
            config.set_main_option("path_separator", "space")
            config.attributes["connection"] = connection
            config.attributes["schema"] = database.schema
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log.info("migrated %s (%s)", database.service_name, database.describe())


def current_heads(database: ServiceDatabase) -> set[str]:
    """The revisions a service's database is at."""
    engine = database.sync_engine()
    try:
        with engine.connect() as connection:
            table = "alembic_version" if database.schema is None else f'"{database.schema}".alembic_version'
            rows = connection.execute(text(f"SELECT version_num FROM {table}")).scalars()
            return set(rows)
    finally:
        engine.dispose()
