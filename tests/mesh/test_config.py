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


# Random 256-bit values, as `openssl rand -base64 32` / `secrets.token_urlsafe(32)` / `token_hex(32)` give them.
STRONG_BASE64URL = "q3F9xL2vT8mZ0bW7cR4nJ6yK1pA5sD-eG_hU9iO3tYk"
STRONG_HEX = "9f2c4e6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f"
PRODUCTION = {
    "VOCELIO_ENV": "production",
    "VOCELIO_SERVICE_SECRET": STRONG_BASE64URL,
    "VOCELIO_KEY_ENCRYPTION_KEY": STRONG_HEX,
}


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
        ("VOCELIO_OUTBOX_RELAY", "sometimes", "must be true or false"),
        ("VOCELIO_OUTBOX_POLL_INTERVAL", "0", "must be positive"),
        ("VOCELIO_OUTBOX_BATCH_SIZE", "0", "between 1 and 10000"),
        ("VOCELIO_OUTBOX_RETRY_MAX_BACKOFF", "0.1", "at least VOCELIO_OUTBOX_RETRY_INITIAL_BACKOFF"),
        ("VOCELIO_OUTBOX_RETENTION", "-1", "must be positive"),
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


# --- production secrets and bootstrap passwords (issue #9) ---------------------------


@pytest.mark.parametrize("variable", ["VOCELIO_SERVICE_SECRET", "VOCELIO_KEY_ENCRYPTION_KEY"])
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("s" * 32, "at least 256 bits"),  # 24 bytes of base64url: too short
        ("s" * 64, "placeholder"),  # long enough, but one repeated character
        ("ab" * 40, "placeholder"),  # a short pattern repeated
        ("changeme-changeme-changeme-changeme-changeme", "placeholder"),
        ("my-super-secret-value-for-the-vocelio-mesh-0001", "placeholder"),
        ("0123456789abcdef" * 2, "at least 256 bits"),  # 16 bytes of hex
        ("not base64 at all! not base64 at all! not base64", "hex or base64url"),
    ],
)
def test_production_refuses_weak_or_placeholder_secrets(variable, value, fragment):
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**PRODUCTION, variable: value})
    assert caught.value.variable == variable
    assert fragment in str(caught.value)
    assert value not in str(caught.value)  # the message never shows the secret


def test_production_accepts_random_hex_and_base64url_secrets_and_development_anything():
    Settings.from_environ({**PRODUCTION, "VOCELIO_SERVICE_SECRET": STRONG_HEX})
    Settings.from_environ({**PRODUCTION, "VOCELIO_KEY_ENCRYPTION_KEY": STRONG_BASE64URL + "="})
    Settings.from_environ({"VOCELIO_SERVICE_SECRET": "changeme"})  # development: not checked


def test_a_supervised_child_needs_only_its_own_credential_in_production():
    child = {k: v for k, v in PRODUCTION.items() if k != "VOCELIO_SERVICE_SECRET"}
    settings = Settings.from_environ({**child, "VOCELIO_SERVICE_CREDENTIAL": STRONG_BASE64URL})
    assert settings.mesh_service_credential("agents") == STRONG_BASE64URL
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**child, "VOCELIO_SERVICE_CREDENTIAL": "short"})
    assert caught.value.variable == "VOCELIO_SERVICE_CREDENTIAL"
    with pytest.raises(ConfigError) as missing:
        Settings.from_environ(child)
    assert missing.value.variable == "VOCELIO_SERVICE_SECRET"


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short-pw-1", "at least 12 characters"),
        ("Password1234!", "common password"),
        ("P@ssw0rd!!2024", "common password"),
        ("administrator1", "common password"),
        ("qwertyuiop12", "common password"),
        ("123456789012", "predictable"),
        ("aaaaaaaaaaaaaaaa", "predictable"),
        ("grace.hopper-1906!", "e-mail address"),
    ],
)
def test_production_refuses_weak_bootstrap_passwords(password, fragment):
    environ = {**PRODUCTION, "VOCELIO_BOOTSTRAP_ADMIN_EMAIL": "grace.hopper@example.com"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**environ, "VOCELIO_BOOTSTRAP_ADMIN_PASSWORD": password})
    assert caught.value.variable == "VOCELIO_BOOTSTRAP_ADMIN_PASSWORD"
    assert fragment in str(caught.value)
    assert password not in str(caught.value)


def test_production_accepts_a_strong_bootstrap_password_and_development_a_long_one():
    strong = {
        "VOCELIO_BOOTSTRAP_ADMIN_EMAIL": "root@example.com",
        "VOCELIO_BOOTSTRAP_ADMIN_PASSWORD": "tidal-ochre-Wombat-73",
    }
    assert Settings.from_environ({**PRODUCTION, **strong}).bootstrap_admin_password
    weak = {**strong, "VOCELIO_BOOTSTRAP_ADMIN_PASSWORD": "password1234"}
    assert Settings.from_environ(weak).bootstrap_admin_password == "password1234"  # development


# --- trusted proxies, edge bind address, service credentials (issue #9) -------------


def test_trusted_proxies_are_cidrs_and_default_to_none():
    assert Settings.from_environ({}).edge_trusted_proxies == ()
    settings = Settings.from_environ({"VOCELIO_EDGE_TRUSTED_PROXIES": " 10.0.0.0/8, 2001:db8::/32 ,192.0.2.7,"})
    assert [str(n) for n in settings.edge_trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.1/8", "lb.internal", "10.0.0.0/8;", "::1/129"])
def test_a_bad_trusted_proxy_stops_start_up(value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"VOCELIO_EDGE_TRUSTED_PROXIES": value})
    assert caught.value.variable == "VOCELIO_EDGE_TRUSTED_PROXIES"


def test_the_edge_binds_its_own_host_and_dials_services_on_the_internal_one():
    assert Settings.from_environ({"VOCELIO_HOST": "10.1.2.3"}).edge_bind_host == "10.1.2.3"
    split = Settings.from_environ({"VOCELIO_HOST": "10.1.2.3", "VOCELIO_EDGE_HOST": "0.0.0.0"})
    assert (split.host, split.edge_bind_host) == ("10.1.2.3", "0.0.0.0")


def test_each_service_credential_derives_from_the_master_and_differs(tmp_path):
    settings = Settings(var_dir=tmp_path, service_secret=STRONG_BASE64URL)
    agents, edge = settings.mesh_service_credential("agents"), settings.mesh_service_credential("edge")
    assert agents != edge and STRONG_BASE64URL not in (agents, edge) and len(agents) == 43
    assert Settings(var_dir=tmp_path, service_secret=STRONG_BASE64URL).mesh_service_credential("agents") == agents
    assert "q3F9" not in repr(Settings(service_credential=STRONG_BASE64URL))


def test_log_format_and_rpc_log_settings():
    assert (Settings().log_format, Settings().rpc_log) == ("auto", True)
    chosen = Settings.from_environ({"VOCELIO_LOG_FORMAT": "JSON", "VOCELIO_RPC_LOG": "off"})
    assert (chosen.log_format, chosen.rpc_log) == ("json", False)
    assert Settings.from_environ({"VOCELIO_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(ConfigError, match="VOCELIO_LOG_FORMAT"):
        Settings.from_environ({"VOCELIO_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="VOCELIO_RPC_LOG"):
        Settings.from_environ({"VOCELIO_RPC_LOG": "sometimes"})


def test_edge_workers_default_to_one_per_cpu_and_are_bounded():
    import os

    assert Settings.from_environ({}).edge_worker_count == len(os.sched_getaffinity(0))
    assert Settings.from_environ({"VOCELIO_EDGE_WORKERS": "3"}).edge_worker_count == 3
    for bad in ("-1", "65", "two"):
        with pytest.raises(ConfigError, match="VOCELIO_EDGE_WORKERS"):
            Settings.from_environ({"VOCELIO_EDGE_WORKERS": bad})
