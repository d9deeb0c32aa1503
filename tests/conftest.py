"""Shared fixtures: settings for each database backend, and PostgreSQL itself.

PostgreSQL comes from ``VOCELIO_TEST_DATABASE_URL`` (default: the local server's ``test``
database). Each test that uses it gets its own schema prefix, dropped afterwards. When
PostgreSQL cannot be reached, its tests fail under CI (``CI`` set) and skip elsewhere.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from mesh.config import Settings, parse_database_url
from tests.support.leaks import no_leftover_tasks

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"

__all__ = ["no_leftover_tasks"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test checks, last of all, that it left no task running."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.insert(0, "no_leftover_tasks")  # type: ignore[attr-defined]


def postgres_url() -> str:
    return os.environ.get("VOCELIO_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_available() -> str:
    """The PostgreSQL URL, after checking that the server answers."""
    url = postgres_url()
    try:
        with psycopg.connect(_libpq_dsn(url), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        message = f"PostgreSQL at {make_url(url).render_as_string()} is unreachable: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def drop_schemas(url: str, prefix: str) -> None:
    with psycopg.connect(_libpq_dsn(url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix.replace("_", r"\_") + "%",)
        ).fetchall()
        for (schema,) in rows:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_settings(tmp_path: pathlib.Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", health_probe_interval=0.1, health_probe_timeout=1.0, shutdown_drain=0.0)


@pytest.fixture
def postgres_settings(postgres_available: str, tmp_path: pathlib.Path) -> Iterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    settings = Settings(
        database_url=parse_database_url(postgres_available),
        schema_prefix=prefix,
        var_dir=tmp_path / "var",
        health_probe_interval=0.1,
        health_probe_timeout=1.0,
        shutdown_drain=0.0,
    )
    yield settings
    drop_schemas(postgres_available, prefix)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for each backend the product runs on."""
    fixture = "sqlite_settings" if request.param == "sqlite" else "postgres_settings"
    value: Settings = request.getfixturevalue(fixture)
    return value


def with_database_url(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, database_url=parse_database_url(url))
