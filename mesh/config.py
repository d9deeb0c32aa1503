"""Process configuration: one frozen, validated dataclass read from the environment.

The environment is injected (``Settings.from_environ(os.environ)``), read once at start-up
and passed explicitly; nothing else in the code reads ``os.environ``. A bad value stops
start-up with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from mesh.limits.rates import Rate, parse_rate

Environment = Literal["development", "production"]
MeshMode = Literal["processes", "all-in-one"]
LogFormat = Literal["json", "text", "auto"]

_SCHEMA_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,30}$|^$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Per (organisation, principal) and method class, in each service: calls per second and burst.
# Generous on purpose: a flood guard, not a product quota (identity keeps its own sign-in limits).
DEFAULT_READ_RATE = Rate(200, 400)
DEFAULT_WRITE_RATE = Rate(50, 200)
DEFAULT_EXPENSIVE_RATE = Rate(5, 20)
DEFAULT_AUTH_RATE = Rate(10, 100)


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
        log_format: ``json`` (one object per line), ``text``, or ``auto``: text on a
            terminal, JSON anywhere else (files under ``var/log``, containers).
        rpc_log: write one log line per RPC (``interceptors/rpc_log.py``).
        revocation_max_staleness: seconds a service may go without hearing from identity's
            revocation stream before it refuses every credential with UNAVAILABLE.
        revocation_heartbeat: seconds between identity's heartbeats on an idle revocation stream.
        jwks_ttl: seconds a fetched JWKS is used before it is fetched again.
        jwks_max_age: seconds a JWKS is still used while refetching fails; then tokens are refused.
        api_key_max_lifetime_days: the longest an API key may live; a key created without an
            expiry expires this many days after its creation.
        service_secret: the mesh's master service secret. Only identity (which verifies
            service credentials) and the supervisor (which hands them out) read it.
        service_credential: this process's own service credential
            (``VOCELIO_SERVICE_CREDENTIAL``, set by the supervisor); empty means "derive it
            from the master secret" (in-process meshes, tests).
        edge_host: address the REST edge binds (public); empty means ``host``.
        edge_trusted_proxies: networks whose ``X-Forwarded-For``/``Forwarded`` the edge believes.
        argon2_max_concurrency: password hashes identity runs at once (each takes ~64 MiB);
            0 means two per CPU core, between 2 and 8.
        argon2_max_wait: seconds a sign-in waits for a free hashing slot before it fails
            with RESOURCE_EXHAUSTED (and a RetryInfo).
        client_timeout_read: default deadline, in seconds, of an outgoing call to a READ method
            (likewise ``client_timeout_write``, ``client_timeout_expensive``, ``client_timeout_auth``;
            STREAM methods get none).
        client_deadline_margin: seconds kept back from the caller's remaining time when a call
            is propagated downstream; a call with no more than this left fails at once.
        client_retry_max_attempts: attempts (2–5) gRPC makes of a call safe to retry; 1 turns
            retries off.
        client_retry_initial_backoff: gRFC A6 ``initialBackoff`` in seconds (also
            ``client_retry_max_backoff``, ``client_retry_backoff_multiplier``).
        client_retry_throttle_tokens: gRFC A6 ``retryThrottling.maxTokens`` per upstream (and
            ``client_retry_throttle_ratio``, its ``tokenRatio``).
        client_breaker_failures: consecutive failures that open an upstream's circuit.
        client_breaker_open_seconds: how long an open circuit fails calls fast before it lets
            probes through (half-open).
        client_breaker_half_open_probes: trial calls a half-open circuit lets through; all must
            succeed for it to close.
        client_max_concurrency: calls in flight per upstream (bulkhead); more fail at once.
        rate_limit_read, rate_limit_write, rate_limit_expensive, rate_limit_auth: the token
            bucket of each method class per (organisation, principal) in each service, or per
            client address for public methods; ``None`` means no limit. Service principals
            are never rate-limited.
        max_streams_per_principal: server streams (class STREAM) one principal may hold
            open in one service at once; 0 means no limit.
        max_in_flight: running calls above which a service refuses new ones at once
            (UNAVAILABLE, load shedding); health and reflection are never refused; 0 means
            no limit.
        edge_workers: REST edge worker processes on its one port; 0 means one per CPU this
            process may run on (:attr:`edge_worker_count`).
        metrics: serve Prometheus metrics (``VOCELIO_METRICS``, on by default).
        metrics_port_offset: a service's metrics port is its gRPC port plus this (``0``
            turns the metrics ports off); the all-in-one process serves one, at the edge's
            port plus this.
        metrics_scrape_timeout: seconds the edge's ``/metrics`` waits for each service's (3: a busy
            service answers late, and Prometheus itself gives a scrape 10 s).
        prometheus_multiproc_dir: ``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's own
            variable, set for the edge's workers when there are several; their metrics are
            then kept in files there and summed at ``/metrics``.
        outbox_relay: run the outbox relay in every service process but events (off: events
            wait in the outbox until a process with the relay on starts).
        outbox_poll_interval: seconds between the relay's looks at the outbox when no commit
            woke it (rows a crashed process left, rows written by another replica).
        outbox_batch_size: pending rows the relay reads per round (sent per stream, at most
            500 events per append).
        outbox_retry_initial_backoff: seconds the relay waits after a failed round before the
            next (``outbox_retry_max_backoff``: the cap); doubled per failure, with jitter.
        outbox_retention: seconds a relayed row is kept before it is purged.
        events_retention_days: the event store archives events recorded more than this many
            days ago (``VOCELIO_EVENTS_RETENTION_DAYS``); 0 keeps them forever.
        events_retention_interval: seconds between the event store's archiving passes
            (which also scavenge events hidden by truncation or deletion).
        events_poll_interval: seconds a live subscription waits before re-reading the store
            when no local append woke it (appends made by other replicas).

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
    revocation_max_staleness: float = 30.0
    revocation_heartbeat: float = 5.0
    jwks_ttl: float = 300.0
    jwks_max_age: float = 3600.0
    api_key_max_lifetime_days: int = 365
    # --- trusted client addresses, per-service credentials (issue #9) ---
    service_credential: str = dataclasses.field(default="", repr=False)
    edge_host: str = ""
    edge_trusted_proxies: tuple[IPNetwork, ...] = ()
    # --- password hashing (identity) ---
    argon2_max_concurrency: int = 0
    argon2_max_wait: float = 5.0
    # --- client resilience: deadlines, retries, circuit breaker, bulkhead (issue #10) ---
    client_timeout_read: float = 5.0
    client_timeout_write: float = 10.0
    client_timeout_expensive: float = 30.0
    client_timeout_auth: float = 10.0
    client_deadline_margin: float = 0.05
    client_retry_max_attempts: int = 3
    client_retry_initial_backoff: float = 0.1
    client_retry_max_backoff: float = 1.0
    client_retry_backoff_multiplier: float = 2.0
    client_retry_throttle_tokens: int = 10
    client_retry_throttle_ratio: float = 0.1
    client_breaker_failures: int = 5
    client_breaker_open_seconds: float = 5.0
    client_breaker_half_open_probes: int = 1
    client_max_concurrency: int = 64
    # --- server protection (issue #10) ---
    rate_limit_read: Rate | None = DEFAULT_READ_RATE
    rate_limit_write: Rate | None = DEFAULT_WRITE_RATE
    rate_limit_expensive: Rate | None = DEFAULT_EXPENSIVE_RATE
    rate_limit_auth: Rate | None = DEFAULT_AUTH_RATE
    max_streams_per_principal: int = 16
    max_in_flight: int = 1000
    # --- logs (issue #10) ---
    log_format: LogFormat = "auto"
    rpc_log: bool = True
    # --- edge workers (issue #10) ---
    edge_workers: int = 0
    # --- metrics (issue #10) ---
    metrics: bool = True
    metrics_port_offset: int = 1000
    metrics_scrape_timeout: float = 3.0
    prometheus_multiproc_dir: pathlib.Path | None = None
    # --- outbox relay (issue #11) ---
    outbox_relay: bool = True
    outbox_poll_interval: float = 2.0
    outbox_batch_size: int = 200
    outbox_retry_initial_backoff: float = 0.5
    outbox_retry_max_backoff: float = 30.0
    outbox_retention: float = 7 * 24 * 3600.0
    # --- event store (issue #11) ---
    events_retention_days: int = 0
    events_retention_interval: float = 3600.0
    events_poll_interval: float = 0.5

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
        self._check_trust_settings()
        if not 0 <= self.events_retention_days <= 36500:
            raise ConfigError(
                "VOCELIO_EVENTS_RETENTION_DAYS", f"must be 0 (keep forever) to 36500, got {self.events_retention_days}"
            )
        if not 1.0 <= self.events_retention_interval <= 7 * 86400:
            raise ConfigError(
                "VOCELIO_EVENTS_RETENTION_INTERVAL",
                f"must be 1 to 604800 seconds, got {self.events_retention_interval}",
            )
        if not 0.01 <= self.events_poll_interval <= 60:
            raise ConfigError(
                "VOCELIO_EVENTS_POLL_INTERVAL", f"must be 0.01 to 60 seconds, got {self.events_poll_interval}"
            )
        if not 1 <= self.api_key_max_lifetime_days <= 3650:
            raise ConfigError("VOCELIO_API_KEY_MAX_LIFETIME_DAYS", "must be between 1 and 3650 days")
        # --- password hashing (identity) ---
        if not 0 <= self.argon2_max_concurrency <= 256:
            raise ConfigError("VOCELIO_ARGON2_MAX_CONCURRENCY", "must be between 0 (automatic) and 256")
        if not 0 < self.argon2_max_wait <= 60:
            raise ConfigError("VOCELIO_ARGON2_MAX_WAIT", "must be more than 0 and at most 60 seconds")
        self._check_client_settings()
        # --- server protection (issue #10) ---
        if not 0 <= self.max_streams_per_principal <= 100_000:
            raise ConfigError("VOCELIO_MAX_STREAMS_PER_PRINCIPAL", "must be between 0 (no limit) and 100000")
        if not 0 <= self.max_in_flight <= 1_000_000:
            raise ConfigError("VOCELIO_MAX_IN_FLIGHT", "must be between 0 (no limit) and 1000000")
        if not 0 <= self.edge_workers <= 64:
            raise ConfigError("VOCELIO_EDGE_WORKERS", "must be between 0 (one per CPU) and 64")
        # --- metrics (issue #10) ---
        if not 0 <= self.metrics_port_offset <= 50000:
            raise ConfigError("VOCELIO_METRICS_PORT_OFFSET", "must be between 0 (no metrics ports) and 50000")
        if not 0 < self.metrics_scrape_timeout <= 30:
            raise ConfigError("VOCELIO_METRICS_SCRAPE_TIMEOUT", "must be more than 0 and at most 30 seconds")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError("VOCELIO_LOG_LEVEL", f"must be one of {', '.join(_LOG_LEVELS)}")
        self._check_outbox_settings()
        if self.environment == "production":
            _check_production_secrets(self)

    def _check_trust_settings(self) -> None:
        for variable, value in (
            ("VOCELIO_REVOCATION_MAX_STALENESS", self.revocation_max_staleness),
            ("VOCELIO_REVOCATION_HEARTBEAT", self.revocation_heartbeat),
            ("VOCELIO_JWKS_TTL", self.jwks_ttl),
            ("VOCELIO_JWKS_MAX_AGE", self.jwks_max_age),
        ):
            if value <= 0:
                raise ConfigError(variable, f"must be positive, got {value}")
        if self.revocation_heartbeat >= self.revocation_max_staleness:
            raise ConfigError("VOCELIO_REVOCATION_HEARTBEAT", "must be shorter than VOCELIO_REVOCATION_MAX_STALENESS")
        if self.jwks_max_age < self.jwks_ttl:
            raise ConfigError("VOCELIO_JWKS_MAX_AGE", "must be at least VOCELIO_JWKS_TTL")

    def _check_outbox_settings(self) -> None:
        for variable, value in (
            ("VOCELIO_OUTBOX_POLL_INTERVAL", self.outbox_poll_interval),
            ("VOCELIO_OUTBOX_RETRY_INITIAL_BACKOFF", self.outbox_retry_initial_backoff),
            ("VOCELIO_OUTBOX_RETRY_MAX_BACKOFF", self.outbox_retry_max_backoff),
            ("VOCELIO_OUTBOX_RETENTION", self.outbox_retention),
        ):
            if value <= 0:
                raise ConfigError(variable, f"must be positive, got {value}")
        if self.outbox_retry_max_backoff < self.outbox_retry_initial_backoff:
            raise ConfigError(
                "VOCELIO_OUTBOX_RETRY_MAX_BACKOFF", "must be at least VOCELIO_OUTBOX_RETRY_INITIAL_BACKOFF"
            )
        if not 1 <= self.outbox_batch_size <= 10_000:
            raise ConfigError("VOCELIO_OUTBOX_BATCH_SIZE", "must be between 1 and 10000")

    def _check_client_settings(self) -> None:
        for variable, value in (
            ("VOCELIO_CLIENT_TIMEOUT_READ", self.client_timeout_read),
            ("VOCELIO_CLIENT_TIMEOUT_WRITE", self.client_timeout_write),
            ("VOCELIO_CLIENT_TIMEOUT_EXPENSIVE", self.client_timeout_expensive),
            ("VOCELIO_CLIENT_TIMEOUT_AUTH", self.client_timeout_auth),
            ("VOCELIO_CLIENT_RETRY_INITIAL_BACKOFF", self.client_retry_initial_backoff),
            ("VOCELIO_CLIENT_RETRY_MAX_BACKOFF", self.client_retry_max_backoff),
            ("VOCELIO_CLIENT_BREAKER_OPEN_SECONDS", self.client_breaker_open_seconds),
        ):
            if value <= 0:
                raise ConfigError(variable, f"must be positive, got {value}")
        if not 0 <= self.client_deadline_margin < 1:
            raise ConfigError("VOCELIO_CLIENT_DEADLINE_MARGIN", "must be at least 0 and under 1 second")
        if not 1 <= self.client_retry_max_attempts <= 5:
            raise ConfigError("VOCELIO_CLIENT_RETRY_MAX_ATTEMPTS", "must be between 1 (no retries) and 5 (gRPC's cap)")
        if self.client_retry_max_backoff < self.client_retry_initial_backoff:
            raise ConfigError(
                "VOCELIO_CLIENT_RETRY_MAX_BACKOFF", "must be at least VOCELIO_CLIENT_RETRY_INITIAL_BACKOFF"
            )
        if self.client_retry_backoff_multiplier < 1:
            raise ConfigError("VOCELIO_CLIENT_RETRY_BACKOFF_MULTIPLIER", "must be at least 1")
        if not 1 <= self.client_retry_throttle_tokens <= 1000:
            raise ConfigError("VOCELIO_CLIENT_RETRY_THROTTLE_TOKENS", "must be between 1 and 1000 (gRFC A6)")
        if not 0 < self.client_retry_throttle_ratio <= 1:
            raise ConfigError("VOCELIO_CLIENT_RETRY_THROTTLE_RATIO", "must be more than 0 and at most 1")
        if not 1 <= self.client_breaker_failures <= 1000:
            raise ConfigError("VOCELIO_CLIENT_BREAKER_FAILURES", "must be between 1 and 1000")
        if not 1 <= self.client_breaker_half_open_probes <= 100:
            raise ConfigError("VOCELIO_CLIENT_BREAKER_HALF_OPEN_PROBES", "must be between 1 and 100")
        if not 1 <= self.client_max_concurrency <= 100_000:
            raise ConfigError("VOCELIO_CLIENT_MAX_CONCURRENCY", "must be between 1 and 100000")

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
            revocation_max_staleness=_number(environ, "VOCELIO_REVOCATION_MAX_STALENESS", 30.0),
            revocation_heartbeat=_number(environ, "VOCELIO_REVOCATION_HEARTBEAT", 5.0),
            jwks_ttl=_number(environ, "VOCELIO_JWKS_TTL", 300.0),
            jwks_max_age=_number(environ, "VOCELIO_JWKS_MAX_AGE", 3600.0),
            api_key_max_lifetime_days=_integer(environ, "VOCELIO_API_KEY_MAX_LIFETIME_DAYS", 365),
            service_credential=environ.get("VOCELIO_SERVICE_CREDENTIAL", "").strip(),
            edge_host=environ.get("VOCELIO_EDGE_HOST", "").strip(),
            edge_trusted_proxies=parse_networks(
                "VOCELIO_EDGE_TRUSTED_PROXIES", environ.get("VOCELIO_EDGE_TRUSTED_PROXIES", "")
            ),
            # --- password hashing (identity) ---
            argon2_max_concurrency=_integer(environ, "VOCELIO_ARGON2_MAX_CONCURRENCY", 0),
            argon2_max_wait=_number(environ, "VOCELIO_ARGON2_MAX_WAIT", 5.0),
            **_client_settings(environ),  # type: ignore[arg-type]
            # --- server protection (issue #10) ---
            rate_limit_read=_rate(environ, "VOCELIO_RATE_LIMIT_READ", DEFAULT_READ_RATE),
            rate_limit_write=_rate(environ, "VOCELIO_RATE_LIMIT_WRITE", DEFAULT_WRITE_RATE),
            rate_limit_expensive=_rate(environ, "VOCELIO_RATE_LIMIT_EXPENSIVE", DEFAULT_EXPENSIVE_RATE),
            rate_limit_auth=_rate(environ, "VOCELIO_RATE_LIMIT_AUTH", DEFAULT_AUTH_RATE),
            max_streams_per_principal=_integer(environ, "VOCELIO_MAX_STREAMS_PER_PRINCIPAL", 16),
            max_in_flight=_integer(environ, "VOCELIO_MAX_IN_FLIGHT", 1000),
            # --- logs (issue #10) ---
            log_format=_choice(environ, "VOCELIO_LOG_FORMAT", ("json", "text", "auto"), "auto"),  # type: ignore[arg-type]
            rpc_log=_boolean(environ, "VOCELIO_RPC_LOG", True),
            # --- edge workers (issue #10) ---
            edge_workers=_integer(environ, "VOCELIO_EDGE_WORKERS", 0),
            # --- metrics (issue #10) ---
            metrics=_boolean(environ, "VOCELIO_METRICS", True),
            metrics_port_offset=_integer(environ, "VOCELIO_METRICS_PORT_OFFSET", 1000),
            metrics_scrape_timeout=_number(environ, "VOCELIO_METRICS_SCRAPE_TIMEOUT", 3.0),
            prometheus_multiproc_dir=pathlib.Path(environ["PROMETHEUS_MULTIPROC_DIR"])
            if environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
            else None,
            # --- outbox relay (issue #11) ---
            outbox_relay=_boolean(environ, "VOCELIO_OUTBOX_RELAY", True),
            outbox_poll_interval=_number(environ, "VOCELIO_OUTBOX_POLL_INTERVAL", 2.0),
            outbox_batch_size=_integer(environ, "VOCELIO_OUTBOX_BATCH_SIZE", 200),
            outbox_retry_initial_backoff=_number(environ, "VOCELIO_OUTBOX_RETRY_INITIAL_BACKOFF", 0.5),
            outbox_retry_max_backoff=_number(environ, "VOCELIO_OUTBOX_RETRY_MAX_BACKOFF", 30.0),
            outbox_retention=_number(environ, "VOCELIO_OUTBOX_RETENTION", 7 * 24 * 3600.0),
            # --- event store (issue #11) ---
            events_retention_days=_integer(environ, "VOCELIO_EVENTS_RETENTION_DAYS", 0),
            events_retention_interval=_number(environ, "VOCELIO_EVENTS_RETENTION_INTERVAL", 3600.0),
            events_poll_interval=_number(environ, "VOCELIO_EVENTS_POLL_INTERVAL", 0.5),
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

    def mesh_service_credential(self, name: str) -> str:
        """The credential of service ``name`` (``edge`` for the REST edge).

        A process the supervisor started holds only its own (``VOCELIO_SERVICE_CREDENTIAL``);
        one that holds the master secret (identity, an in-process mesh) derives any.
        """
        if self.service_credential:
            return self.service_credential
        from mesh.service_credentials import derive

        return derive(self.mesh_service_secret(), name)

    def mesh_key_encryption_key(self) -> str:
        """The key-encryption key: configured, or generated once under ``var_dir``."""
        if self.key_encryption_key:
            return self.key_encryption_key
        from mesh.secrets import load_or_create

        return load_or_create(self.var_dir / "secrets" / "key-encryption-key")

    def metrics_port_for(self, service_port: int) -> int | None:
        """The metrics port beside a service (or the edge) on ``service_port``; ``None`` when metrics are off.

        A service on an ephemeral port (``0``) gets an ephemeral metrics port too.
        """
        if not self.metrics or not self.metrics_port_offset:
            return None
        return service_port + self.metrics_port_offset if service_port else 0

    @property
    def edge_bind_host(self) -> str:
        """The address the REST edge listens on (``VOCELIO_EDGE_HOST``, else ``VOCELIO_HOST``)."""
        return self.edge_host or self.host

    @property
    def edge_worker_count(self) -> int:
        """How many edge worker processes: ``edge_workers``, or one per CPU available to this process."""
        if self.edge_workers:
            return self.edge_workers
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

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


def parse_networks(variable: str, raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128).

    Raises:
        ConfigError: an entry is not an IP network (host bits set count as an error too).

    """
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as error:
            raise ConfigError(
                variable, f"{entry!r} is not a network like 10.0.0.0/8 or 2001:db8::/32 ({error})"
            ) from None
    return tuple(networks)


# --- production secrets (issue #9) ---

_MIN_SECRET_BYTES = 32
_PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "secret",
    "password",
    "example",
    "default",
    "placeholder",
    "vocelio",
)
_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "passw0rd",
        "p@ssw0rd",
        "admin",
        "administrator",
        "letmein",
        "welcome",
        "qwerty",
        "qwertyuiop",
        "iloveyou",
        "changeme",
        "secret",
        "vocelio",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "superman",
        "trustno",
        "master",
        "sunshine",
        "princess",
        "shadow",
        "abc",
        "login",
        "root",
        "test",
        "guest",
    }
)
_LEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "l", "3": "e", "$": "s", "5": "s", "7": "t"})
_RUNS = (
    "0123456789012345678901234567890",
    "9876543210987654321098765432109",
    "qwertyuiopasdfghjklzxcvbnm",
    "abcdefghijklmnopqrstuvwxyz",
)


def _check_production_secrets(settings: Settings) -> None:
    # A supervised child holds only its own credential; identity and the supervisor hold the master.
    service = (
        ("VOCELIO_SERVICE_CREDENTIAL", settings.service_credential)
        if settings.service_credential
        else ("VOCELIO_SERVICE_SECRET", settings.service_secret)
    )
    for name, secret in (service, ("VOCELIO_KEY_ENCRYPTION_KEY", settings.key_encryption_key)):
        problem = secret_weakness(secret)
        if problem:
            raise ConfigError(name, problem)
    if settings.bootstrap_admin_password:
        problem = password_weakness(settings.bootstrap_admin_password, settings.bootstrap_admin_email)
        if problem:
            raise ConfigError("VOCELIO_BOOTSTRAP_ADMIN_PASSWORD", problem)


def secret_weakness(secret: str) -> str:
    """Why a secret is too weak for production, or ``""``: it must carry at least 256 bits.

    Accepted: 64+ hex digits or 43+ base64url characters (``openssl rand -base64 32``,
    ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``) that are not a
    placeholder or a run of a few repeated characters. The message never shows the value.
    """
    if not secret:
        return "is required in production"
    value = secret.strip().rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        size = len(value) // 2
    elif re.fullmatch(r"[A-Za-z0-9_\-+/]+", value):
        size = len(value) * 6 // 8
    else:
        return "must be hex or base64url (for example: openssl rand -base64 32)"
    if size < _MIN_SECRET_BYTES:
        return f"must carry at least {_MIN_SECRET_BYTES * 8} bits (43+ base64url characters or 64+ hex digits)"
    lowered = value.lower()
    if any(word in lowered for word in _PLACEHOLDERS) or len(set(value)) < 10:
        return "looks like a placeholder, not a random secret; generate one (openssl rand -base64 32)"
    return ""


def password_weakness(password: str, email: str = "") -> str:
    """Why a bootstrap administrator password is too weak, or ``""``.

    At least 12 characters; not a common password with digits or symbols around it; not
    a keyboard or digit run; not containing the e-mail address's local part.
    """
    if len(password) < 12:
        return "must be at least 12 characters"
    lowered = password.lower()
    # "Password123!", "P@ssw0rd!!2024": the word inside digits and symbols, leetspeak undone
    core = re.sub(r"^[^a-z]+|[^a-z]+$", "", lowered).translate(_LEET)
    if {re.sub(r"[^a-z]", "", lowered), re.sub(r"[^a-z]", "", core)} & _COMMON_PASSWORDS:
        return "is a common password"
    if len(set(lowered)) < 5 or any(lowered in run for run in _RUNS):
        return "is too predictable (repeated characters or a keyboard run)"
    local = email.partition("@")[0].lower()
    if len(local) >= 3 and local in lowered:
        return "must not contain the e-mail address"
    return ""


def _client_settings(environ: Mapping[str, str]) -> dict[str, float | int]:
    """The ``client_*`` settings (deadlines, retries, breaker, bulkhead) from ``VOCELIO_CLIENT_*``."""
    defaults = Settings()
    values: dict[str, float | int] = {}
    for field in dataclasses.fields(Settings):
        if not field.name.startswith("client_"):
            continue
        variable = "VOCELIO_" + field.name.upper()
        default = getattr(defaults, field.name)
        values[field.name] = (
            _integer(environ, variable, default) if isinstance(default, int) else _number(environ, variable, default)
        )
    return values


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


def _rate(environ: Mapping[str, str], name: str, default: Rate | None) -> Rate | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_rate(raw)
    except ValueError as error:
        raise ConfigError(name, str(error)) from None


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
