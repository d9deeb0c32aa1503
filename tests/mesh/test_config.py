from __future__ import annotations

import pathlib

import pytest

from mesh.config import ConfigError, Settings


def test_defaults_need_no_environment():
    settings = Settings.from_environ({})
    assert settings.database_url is None
    assert settings.var_dir == pathlib.Path("var")
    assert settings.environment == "development"
    assert settings.migrate_on_start is True
    assert settings.port_for(8002) == 8002
    assert settings.edge_listen_port == 8000


def test_postgres_url_is_normalised_to_psycopg3():
    settings = Settings.from_environ({"VOCELIO_DATABASE_URL": "postgresql://app:pw@db.internal:6543/vocelio"})
    assert settings.database_url is not None
    assert settings.database_url.drivername == "postgresql+psycopg"
    assert settings.database_url.port == 6543


PRODUCTION = {"VOCELIO_ENV": "production", "VOCELIO_SERVICE_SECRET": "s" * 32, "VOCELIO_KEY_ENCRYPTION_KEY": "k" * 43}


def test_production_does_not_migrate_on_start_unless_told():
    assert Settings.from_environ(PRODUCTION).migrate_on_start is False
    assert Settings.from_environ({**PRODUCTION, "VOCELIO_MIGRATE_ON_START": "yes"}).migrate_on_start


@pytest.mark.parametrize("missing", ["VOCELIO_SERVICE_SECRET", "VOCELIO_KEY_ENCRYPTION_KEY"])
def test_production_requires_its_secrets(missing):
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(environ)
    assert caught.value.variable == missing


def test_development_generates_shared_secrets_once(tmp_path):
    settings = Settings(var_dir=tmp_path)
    first = settings.mesh_service_secret()
    assert len(first) >= 40
    assert Settings(var_dir=tmp_path).mesh_service_secret() == first
    assert (tmp_path / "secrets" / "service-secret").stat().st_mode & 0o777 == 0o600
    assert settings.mesh_key_encryption_key() != first


def test_secrets_stay_out_of_repr():
    settings = Settings(
        service_secret="topsecret-value", bootstrap_admin_email="a@b.c", bootstrap_admin_password="another-secret-1"
    )
    assert "topsecret-value" not in repr(settings)
    assert "another-secret-1" not in repr(settings)


def test_port_offset_moves_every_port():
    settings = Settings.from_environ({"VOCELIO_PORT_OFFSET": "1000"})
    assert settings.port_for(8023) == 9023
    assert settings.edge_listen_port == 9000


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("VOCELIO_DATABASE_URL", "not a url at all", "is not a database URL"),
        ("VOCELIO_DATABASE_URL", "mysql://root@localhost/test", "only postgresql is supported"),
        ("VOCELIO_DATABASE_URL", "postgresql://user@/test", "has no host"),
        ("VOCELIO_DATABASE_URL", "postgresql://user@localhost", "has no database name"),
        ("VOCELIO_DATABASE_URL", "postgresql+asyncpg://u@localhost/db", "use psycopg"),
        ("VOCELIO_DATABASE_URL", "postgresql://u@localhost:port/db", "is not a database URL"),
        ("VOCELIO_ENV", "staging", "must be one of development, production"),
        ("VOCELIO_PORT_OFFSET", "ten", "must be a whole number"),
        ("VOCELIO_PORT_OFFSET", "-5", "between 0 and 50000"),
        ("VOCELIO_SHUTDOWN_GRACE", "soon", "must be a number of seconds"),
        ("VOCELIO_SHUTDOWN_GRACE", "-1", "must not be negative"),
        ("VOCELIO_HEALTH_PROBE_INTERVAL", "0", "must be positive"),
        ("VOCELIO_MIGRATE_ON_START", "maybe", "must be true or false"),
        ("VOCELIO_MESH_MODE", "threads", "must be one of processes, all-in-one"),
        ("VOCELIO_DATABASE_SCHEMA_PREFIX", "Bad-Prefix", "lower case letters"),
        ("VOCELIO_LOG_LEVEL", "chatty", "must be one of"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(variable, value, fragment):
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert fragment in str(caught.value)


def test_a_rejected_url_never_echoes_its_password():
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"VOCELIO_DATABASE_URL": "mysql://root:hunter2secret@localhost/test"})
    assert "hunter2secret" not in str(caught.value)


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.host = "0.0.0.0"  # type: ignore[misc]


def test_api_keys_have_a_configurable_maximum_lifetime():
    assert Settings.from_environ({}).api_key_max_lifetime_days == 365
    assert Settings.from_environ({"VOCELIO_API_KEY_MAX_LIFETIME_DAYS": "30"}).api_key_max_lifetime_days == 30
    for bad in ("0", "5000", "soon"):
        with pytest.raises(ConfigError) as caught:
            Settings.from_environ({"VOCELIO_API_KEY_MAX_LIFETIME_DAYS": bad})
        assert "VOCELIO_API_KEY_MAX_LIFETIME_DAYS" in str(caught.value)
