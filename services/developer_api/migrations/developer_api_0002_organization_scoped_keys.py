"""Ids unique per organisation: every table keyed by organization_id first; the service kit.

Names became ``organizations/{organization}/api_keys/{api_key}`` (AIP-122), so two
organisations may use the same key id. Each table is rebuilt with the organisation in
its primary key and its rows copied over; a key's ``allowed_agents`` restriction moves to
the new agent names of the key's own organisation (``agents/x`` →
``organizations/{organization}/agents/x``). Keys take the kit's revision columns
(``version`` becomes ``revision``) and their labels become a JSON document.

``idempotent_requests`` goes: request_ids now live in the kit's shared ``idempotency_keys``
(scoped per organisation and method), and the secrets a replay shows again in
``sealed_secrets``. Request ids remembered before this migration are forgotten (they would
expire within 24 hours anyway): a retry of such a request is treated as a new one.

A table is rebuilt as ``<table>_0002``, filled, swapped in place of the old one, and only
then given its indexes: index names are per schema on both backends, so they can only be
created once the old table (and its indexes) is gone.

Revision ID: developer_api_0002
Revises: developer_api_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "developer_api_0002"
down_revision = "developer_api_0001"
branch_labels = None
depends_on = None

_KEY_COLUMNS = (
    "id",
    "organization_id",
    "display_name",
    "prefix",
    "secret_hash",
    "key_type",
    "environment",
    "scopes",
    "restrictions",
    "state",
    "expire_time",
    "last_used_time",
    "last_used_address",
    "revoke_time",
    "revoke_reason",
    "rotated_from",
    "rotated_to",
    "creator",
    "creator_role",
    "last_modifier",
    "create_time",
    "update_time",
)
_LOG_COLUMNS = (
    "id",
    "organization_id",
    "api_key_id",
    "environment",
    "request_id",
    "request_time",
    "method",
    "http_method",
    "http_path",
    "http_status",
    "grpc_code",
    "error_reason",
    "latency_micros",
    "client_address",
    "user_agent",
)
_USAGE_COLUMNS = (
    "api_key_id",
    "hour_start",
    "organization_id",
    "request_count",
    "client_error_count",
    "server_error_count",
    "throttled_count",
    "latency_histogram",
)


def _api_keys(name: str) -> None:
    op.create_table(
        name,
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("restrictions", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_address", sa.String(64), nullable=False),
        sa.Column("revoke_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(500), nullable=False),
        sa.Column("rotated_from", sa.String(63), nullable=False),
        sa.Column("rotated_to", sa.String(63), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("creator_role", sa.String(32), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "id", name="pk_api_keys"),
    )


def _sealed_secrets() -> None:
    op.create_table(
        "sealed_secrets",
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(63), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "api_key_id", name="pk_sealed_secrets"),
    )
    op.create_index("ix_sealed_secrets_expire", "sealed_secrets", ["expire_time"])


def _api_request_logs(name: str) -> None:
    op.create_table(
        name,
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("api_key_id", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("request_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(300), nullable=False),
        sa.Column("http_method", sa.String(16), nullable=False),
        sa.Column("http_path", sa.String(2048), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("grpc_code", sa.String(32), nullable=False),
        sa.Column("error_reason", sa.String(128), nullable=False),
        sa.Column("latency_micros", sa.BigInteger(), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "id", name="pk_api_request_logs"),
    )


def _api_key_usage_hours(name: str) -> None:
    op.create_table(
        name,
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(63), nullable=False),
        sa.Column("hour_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("client_error_count", sa.BigInteger(), nullable=False),
        sa.Column("server_error_count", sa.BigInteger(), nullable=False),
        sa.Column("throttled_count", sa.BigInteger(), nullable=False),
        sa.Column("latency_histogram", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "api_key_id", "hour_start", name="pk_api_key_usage_hours"),
    )


def _copy(source: str, target: str, columns: tuple[str, ...], extra: dict[str, str] | None = None) -> None:
    """Copy rows; ``extra`` maps further target columns to the SQL expression that fills them."""
    extra = extra or {}
    targets = ", ".join([*columns, *extra])
    sources = ", ".join([*columns, *extra.values()])
    op.execute(f"INSERT INTO {target} ({targets}) SELECT {sources} FROM {source}")


def _swap(old: str, new: str) -> None:
    op.drop_table(old)
    op.rename_table(new, old)


def _scoped_agents(restrictions: str, organization_id: str) -> str:
    data: dict[str, Any] = json.loads(restrictions)
    data["allowed_agents"] = sorted(
        agent if agent.startswith("organizations/") else f"organizations/{organization_id}/{agent}"
        for agent in data.get("allowed_agents", [])
    )
    return json.dumps(data, sort_keys=True)


def _rescope_restrictions() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT organization_id, id, restrictions FROM api_keys")).all()
    for organization_id, key_id, restrictions in rows:
        scoped = _scoped_agents(restrictions, organization_id)
        if scoped != restrictions:
            connection.execute(
                sa.text("UPDATE api_keys SET restrictions = :r WHERE organization_id = :o AND id = :i"),
                {"r": scoped, "o": organization_id, "i": key_id},
            )


def upgrade() -> None:
    """Rebuild each table keyed by organisation and copy its rows."""
    _api_keys("api_keys_0002")
    # Labels were JSON text; PostgreSQL needs the cast to its JSON document type.
    labels = "CAST(labels AS JSONB)" if op.get_bind().dialect.name == "postgresql" else "labels"
    _copy("api_keys", "api_keys_0002", _KEY_COLUMNS, {"labels": labels, "revision": "version"})
    _swap("api_keys", "api_keys_0002")
    op.create_index("uq_api_keys_secret_hash", "api_keys", ["secret_hash"], unique=True)
    op.create_index("ix_api_keys_organization_created", "api_keys", ["organization_id", "create_time", "id"])
    _rescope_restrictions()

    op.drop_index("ix_idempotent_requests_expire", table_name="idempotent_requests")
    op.drop_table("idempotent_requests")
    _sealed_secrets()

    _api_request_logs("api_request_logs_0002")
    _copy("api_request_logs", "api_request_logs_0002", _LOG_COLUMNS)
    _swap("api_request_logs", "api_request_logs_0002")
    op.create_index(
        "uq_api_request_logs_request_id", "api_request_logs", ["organization_id", "request_id"], unique=True
    )
    op.create_index(
        "ix_api_request_logs_organization_time", "api_request_logs", ["organization_id", "request_time", "id"]
    )
    op.create_index("ix_api_request_logs_request_time", "api_request_logs", ["request_time"])

    _api_key_usage_hours("api_key_usage_hours_0002")
    _copy("api_key_usage_hours", "api_key_usage_hours_0002", _USAGE_COLUMNS)
    _swap("api_key_usage_hours", "api_key_usage_hours_0002")
    op.create_index(
        "ix_api_key_usage_hours_organization_hour", "api_key_usage_hours", ["organization_id", "hour_start"]
    )


def downgrade() -> None:
    """Not supported: once two organisations share a key id, global ids cannot be restored."""
    raise NotImplementedError("developer_api_0002 cannot be undone: key ids are no longer globally unique")
