"""Process configuration: one frozen, validated dataclass read from the environment.

The environment is injected (``Settings.from_environ(os.environ)``), read once at start-up
and passed explicitly; nothing else in the code reads ``os.environ``. A bad value stops
start-up with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

Environment = Literal["development", "production"]
MeshMode = Literal["processes", "all-in-one"]

_SCHEMA_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,30}$|^$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A configuration variable has a value the product cannot run with."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Vocelio process needs to know about its surroundings.

    Attributes:
        environment: ``development`` applies migrations on start; ``production`` expects
            ``make migrate`` to have run.
        database_url: PostgreSQL URL (psycopg 3); ``None`` means SQLite files under ``var_dir``.
        schema_prefix: prepended to every service's PostgreSQL schema name (tests use it to
            isolate runs that share one database).
        var_dir: where SQLite files, logs and pid files live.
        host: address services bind and dial.
        port_offset: added to every contract port (runs side by side with another mesh).
        edge_port: port of the REST edge, before the offset.
        shutdown_grace: seconds in-flight RPCs get to finish after SIGTERM.
        shutdown_drain: seconds the server keeps answering (health NOT_SERVING) before it
            stops accepting calls, so balancers and probes see the change.
        health_probe_interval: seconds between database probes.
        health_probe_timeout: seconds one database probe, or one health check the edge or
            the supervisor makes of a service, may take.
        ready_timeout: seconds ``make run`` waits for every service to be SERVING before it
            reports the mesh NOT ready (two dozen Python processes start slowly on a busy
            2-core machine).
        migrate_on_start: apply pending migrations when a service starts.
        mesh_mode: ``processes`` (one per service) or ``all-in-one`` (one process).
        log_level: DEBUG, INFO, WARNING or ERROR.
        argon2_max_concurrency: password hashes identity runs at once (each takes ~64 MiB);
            0 means two per CPU core, between 2 and 8.
        argon2_max_wait: seconds a sign-in waits for a free hashing slot before it fails
            with RESOURCE_EXHAUSTED (and a RetryInfo).

    """

    environment: Environment = "development"
    database_url: URL | None = None
    schema_prefix: str = ""
    var_dir: pathlib.Path = pathlib.Path("var")
    host: str = "127.0.0.1"
    port_offset: int = 0
    edge_port: int = 8000
    shutdown_grace: float = 10.0
    shutdown_drain: float = 0.5
    health_probe_interval: float = 2.0
    health_probe_timeout: float = 2.0
    ready_timeout: float = 120.0
    migrate_on_start: bool = True
    mesh_mode: MeshMode = "processes"
    log_level: str = "INFO"
    edge_cors_origins: tuple[str, ...] = ()
    edge_max_body_bytes: int = 4 * 1024 * 1024
    edge_timeout: float = 30.0
    edge_strict: bool = False
    service_secret: str = dataclasses.field(default="", repr=False)
    key_encryption_key: str = dataclasses.field(default="", repr=False)
    jwt_issuer: str = "https://identity.vocelio.local"
    jwt_audience: str = "vocelio"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    jwt_signing_key_file: pathlib.Path | None = None
    bootstrap_admin_email: str = ""
    bootstrap_admin_password: str = dataclasses.field(default="", repr=False)
    # --- password hashing (identity) ---
    argon2_max_concurrency: int = 0
    argon2_max_wait: float = 5.0

    def __post_init__(self) -> None:
        if self.port_offset < 0 or self.port_offset > 50000:
            raise ConfigError("VOCELIO_PORT_OFFSET", f"must be between 0 and 50000, got {self.port_offset}")
        if not 0 <= self.edge_port <= 65535:
            raise ConfigError("VOCELIO_EDGE_PORT", f"must be a TCP port, got {self.edge_port}")
        if not _SCHEMA_PREFIX.match(self.schema_prefix):
            raise ConfigError(
                "VOCELIO_DATABASE_SCHEMA_PREFIX",
                "must be lower case letters, digits and underscores, starting with a letter",
            )
        for variable, value in (
            ("VOCELIO_SHUTDOWN_GRACE", self.shutdown_grace),
            ("VOCELIO_SHUTDOWN_DRAIN", self.shutdown_drain),
        ):
            if value < 0:
                raise ConfigError(variable, f"must not be negative, got {value}")
        for variable, value in (
            ("VOCELIO_HEALTH_PROBE_INTERVAL", self.health_probe_interval),
            ("VOCELIO_HEALTH_PROBE_TIMEOUT", self.health_probe_timeout),
            ("VOCELIO_READY_TIMEOUT", self.ready_timeout),
        ):
            if value <= 0:
                raise ConfigError(variable, f"must be positive, got {value}")
        if self.edge_max_body_bytes <= 0:
            raise ConfigError("VOCELIO_EDGE_MAX_BODY_BYTES", f"must be positive, got {self.edge_max_body_bytes}")
        if self.edge_timeout <= 0:
            raise ConfigError("VOCELIO_EDGE_TIMEOUT", f"must be positive, got {self.edge_timeout}")
        for origin in self.edge_cors_origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ConfigError(
                    "VOCELIO_EDGE_CORS_ORIGINS", f"{origin!r} is not an origin like https://app.example.com"
                )
        if not 60 <= self.access_token_ttl <= 900:
            raise ConfigError("VOCELIO_ACCESS_TOKEN_TTL", "must be between 60 and 900 seconds")
        if self.refresh_token_ttl < self.access_token_ttl:
            raise ConfigError("VOCELIO_REFRESH_TOKEN_TTL", "must be at least the access token lifetime")
        if self.jwt_signing_key_file is not None and not self.jwt_signing_key_file.is_file():
            raise ConfigError("VOCELIO_JWT_SIGNING_KEY_FILE", f"{self.jwt_signing_key_file} is not a readable file")
        if bool(self.bootstrap_admin_email) != bool(self.bootstrap_admin_password):
            raise ConfigError(
                "VOCELIO_BOOTSTRAP_ADMIN_PASSWORD",
                "set both VOCELIO_BOOTSTRAP_ADMIN_EMAIL and VOCELIO_BOOTSTRAP_ADMIN_PASSWORD, or neither",
            )
        if self.bootstrap_admin_password and len(self.bootstrap_admin_password) < 12:
            raise ConfigError("VOCELIO_BOOTSTRAP_ADMIN_PASSWORD", "must be at least 12 characters")
        if self.environment == "production":
            for name, secret in (
                ("VOCELIO_SERVICE_SECRET", self.service_secret),
                ("VOCELIO_KEY_ENCRYPTION_KEY", self.key_encryption_key),
            ):
                if not secret:
                    raise ConfigError(name, "is required in production")
        # --- password hashing (identity) ---
        if not 0 <= self.argon2_max_concurrency <= 256:
            raise ConfigError("VOCELIO_ARGON2_MAX_CONCURRENCY", "must be between 0 (automatic) and 256")
        if not 0 < self.argon2_max_wait <= 60:
            raise ConfigError("VOCELIO_ARGON2_MAX_WAIT", "must be more than 0 and at most 60 seconds")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError("VOCELIO_LOG_LEVEL", f"must be one of {', '.join(_LOG_LEVELS)}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate the settings from an environment mapping.

        Raises:
            ConfigError: a variable is malformed or out of range.

        """
        environment = _choice(environ, "VOCELIO_ENV", ("development", "production"), "development")
        return cls(
            environment=environment,  # type: ignore[arg-type]
            database_url=parse_database_url(environ.get("VOCELIO_DATABASE_URL", "")),
            schema_prefix=environ.get("VOCELIO_DATABASE_SCHEMA_PREFIX", ""),
            var_dir=pathlib.Path(environ.get("VOCELIO_VAR_DIR", "var")),
            host=environ.get("VOCELIO_HOST", "127.0.0.1") or "127.0.0.1",
            port_offset=_integer(environ, "VOCELIO_PORT_OFFSET", 0),
            edge_port=_integer(environ, "VOCELIO_EDGE_PORT", 8000),
            shutdown_grace=_number(environ, "VOCELIO_SHUTDOWN_GRACE", 10.0),
            shutdown_drain=_number(environ, "VOCELIO_SHUTDOWN_DRAIN", 0.5),
            health_probe_interval=_number(environ, "VOCELIO_HEALTH_PROBE_INTERVAL", 2.0),
            health_probe_timeout=_number(environ, "VOCELIO_HEALTH_PROBE_TIMEOUT", 2.0),
            ready_timeout=_number(environ, "VOCELIO_READY_TIMEOUT", 120.0),
            migrate_on_start=_boolean(environ, "VOCELIO_MIGRATE_ON_START", environment == "development"),
            mesh_mode=_choice(environ, "VOCELIO_MESH_MODE", ("processes", "all-in-one"), "processes"),  # type: ignore[arg-type]
            log_level=environ.get("VOCELIO_LOG_LEVEL", "INFO").upper(),
            edge_cors_origins=tuple(
                o.strip() for o in environ.get("VOCELIO_EDGE_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            edge_max_body_bytes=_integer(environ, "VOCELIO_EDGE_MAX_BODY_BYTES", 4 * 1024 * 1024),
            edge_timeout=_number(environ, "VOCELIO_EDGE_TIMEOUT", 30.0),
            edge_strict=_boolean(environ, "VOCELIO_EDGE_STRICT", False),
            service_secret=environ.get("VOCELIO_SERVICE_SECRET", ""),
            key_encryption_key=environ.get("VOCELIO_KEY_ENCRYPTION_KEY", ""),
            jwt_issuer=environ.get("VOCELIO_JWT_ISSUER", "") or "https://identity.vocelio.local",
            jwt_audience=environ.get("VOCELIO_JWT_AUDIENCE", "") or "vocelio",
            access_token_ttl=_integer(environ, "VOCELIO_ACCESS_TOKEN_TTL", 900),
            refresh_token_ttl=_integer(environ, "VOCELIO_REFRESH_TOKEN_TTL", 30 * 24 * 3600),
            jwt_signing_key_file=pathlib.Path(environ["VOCELIO_JWT_SIGNING_KEY_FILE"])
            if environ.get("VOCELIO_JWT_SIGNING_KEY_FILE")
            else None,
            bootstrap_admin_email=environ.get("VOCELIO_BOOTSTRAP_ADMIN_EMAIL", "").strip(),
            bootstrap_admin_password=environ.get("VOCELIO_BOOTSTRAP_ADMIN_PASSWORD", ""),
            # --- password hashing (identity) ---
            argon2_max_concurrency=_integer(environ, "VOCELIO_ARGON2_MAX_CONCURRENCY", 0),
            argon2_max_wait=_number(environ, "VOCELIO_ARGON2_MAX_WAIT", 5.0),
        )

    def port_for(self, contract_port: int) -> int:
        """The port a service with this contract port listens on."""
        return contract_port + self.port_offset if contract_port else 0

    def mesh_service_secret(self) -> str:
        """The service secret: configured, or generated once under ``var_dir``."""
        if self.service_secret:
            return self.service_secret
        from mesh.secrets import load_or_create

        return load_or_create(self.var_dir / "secrets" / "service-secret")

    def mesh_key_encryption_key(self) -> str:
        """The key-encryption key: configured, or generated once under ``var_dir``."""
        if self.key_encryption_key:
            return self.key_encryption_key
        from mesh.secrets import load_or_create

        return load_or_create(self.var_dir / "secrets" / "key-encryption-key")

    @property
    def edge_listen_port(self) -> int:
        """The port the REST edge listens on."""
        return self.edge_port + self.port_offset if self.edge_port else 0


def parse_database_url(raw: str) -> URL | None:
    """Validate ``VOCELIO_DATABASE_URL`` and normalise it to the psycopg 3 driver.

    Returns:
        The URL, or ``None`` when the variable is empty (SQLite under ``var/``).

    Raises:
        ConfigError: the URL cannot be parsed or names an unsupported database. The
            message never contains the password.

    """
    raw = raw.strip()
    if not raw:
        return None
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "VOCELIO_DATABASE_URL",
            "is not a database URL; expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
        ) from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            "VOCELIO_DATABASE_URL",
            f"names the {url.get_backend_name()!r} backend; only postgresql is supported "
            "(leave it unset for the embedded SQLite default)",
        )
    if url.get_driver_name() not in ("psycopg", "psycopg2", "psycopg_async", ""):
        raise ConfigError("VOCELIO_DATABASE_URL", f"driver {url.get_driver_name()!r} is not supported; use psycopg")
    if not url.host and "host" not in url.query:
        raise ConfigError("VOCELIO_DATABASE_URL", "has no host")
    if not url.database:
        raise ConfigError("VOCELIO_DATABASE_URL", "has no database name")
    return url.set(drivername="postgresql+psycopg")


def _integer(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None


def _boolean(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw
