"""Tables of the developer_api service (mirrored by its migrations in ``migrations/``).

Every table is keyed by ``organization_id`` first: ids are unique per organisation (AIP-122
names ``organizations/{organization}/api_keys/{api_key}``), so two organisations may use the
same caller-chosen id, and every query names the organisation it reads. Times are the kit's
:class:`~mesh.kit.sql.UtcDateTime`; labels a :data:`~mesh.kit.sql.JsonDocument` (the kit's
filter reads them). Scopes and restrictions are JSON text only this service reads: the
``scopes:`` filter matches the text.
"""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import JsonDocument, Revisioned, UtcDateTime


class Base(DeclarativeBase):
    """Declarative base of this service's tables."""


class ApiKeyRow(Revisioned, Base):
    """An API key. The secret itself is never stored; ``secret_hash`` is its SHA-256.

    ``rotated_from`` and ``rotated_to`` are ids of keys of the same organisation. The
    revision (etag) changes with the key's settings and state, not with ``last_used_*``.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id", name="pk_api_keys"),
        # Secrets are 238-bit random, so their hashes are unique across every organisation.
        Index("uq_api_keys_secret_hash", "secret_hash", unique=True),
        Index("ix_api_keys_organization_created", "organization_id", "create_time", "id"),
        Index("ix_api_keys_owner", "organization_id", "owner"),
    )

    organization_id: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(63))
    display_name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    key_type: Mapped[str] = mapped_column(String(16))
    environment: Mapped[str] = mapped_column(String(8))
    scopes: Mapped[str] = mapped_column(Text)
    restrictions: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    state: Mapped[str] = mapped_column(String(16))
    expire_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    last_used_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    last_used_address: Mapped[str] = mapped_column(String(64), default="")
    revoke_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    revoke_reason: Mapped[str] = mapped_column(String(500), default="")
    rotated_from: Mapped[str] = mapped_column(String(63), default="")
    rotated_to: Mapped[str] = mapped_column(String(63), default="")
    creator_role: Mapped[str] = mapped_column(String(32))
    # The member who answers for the key (the creator until TransferApiKey); their removal revokes it.
    owner: Mapped[str] = mapped_column(String(200), default="")


class SealedSecretRow(Base):
    """The secret a CreateApiKey or RotateApiKey with a request_id showed, sealed, for 24 hours.

    The request_id itself lives in the kit's ``idempotency_keys``, whose stored response has
    the secret redacted; a replay puts it back from here.
    """

    __tablename__ = "sealed_secrets"
    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "api_key_id", name="pk_sealed_secrets"),
        Index("ix_sealed_secrets_expire", "expire_time"),
    )

    organization_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(63))
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    expire_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class ApiRequestLogRow(Base):
    """One request authenticated by an API key, kept 30 days."""

    __tablename__ = "api_request_logs"
    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "id", name="pk_api_request_logs"),
        Index("uq_api_request_logs_request_id", "organization_id", "request_id", unique=True),
        Index("ix_api_request_logs_organization_time", "organization_id", "request_time", "id"),
        Index("ix_api_request_logs_request_time", "request_time"),
    )

    organization_id: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(40))
    api_key_id: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str] = mapped_column(String(128))
    request_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    method: Mapped[str] = mapped_column(String(300))
    http_method: Mapped[str] = mapped_column(String(16))
    http_path: Mapped[str] = mapped_column(String(2048))
    http_status: Mapped[int] = mapped_column(Integer)
    grpc_code: Mapped[str] = mapped_column(String(32))
    error_reason: Mapped[str] = mapped_column(String(128))
    latency_micros: Mapped[int] = mapped_column(BigInteger)
    client_address: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512))


class ApiKeyUsageRow(Base):
    """A key's traffic in one UTC hour: counters and a latency histogram (JSON list of counts)."""

    __tablename__ = "api_key_usage_hours"
    __table_args__ = (
        PrimaryKeyConstraint("organization_id", "api_key_id", "hour_start", name="pk_api_key_usage_hours"),
        Index("ix_api_key_usage_hours_organization_hour", "organization_id", "hour_start"),
    )

    organization_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(63))
    hour_start: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    request_count: Mapped[int] = mapped_column(BigInteger, default=0)
    client_error_count: Mapped[int] = mapped_column(BigInteger, default=0)
    server_error_count: Mapped[int] = mapped_column(BigInteger, default=0)
    throttled_count: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_histogram: Mapped[str] = mapped_column(Text, default="[]")
