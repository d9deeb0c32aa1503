"""API keys, idempotent requests, the request log and hourly usage.

Revision ID: developer_api_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "developer_api_0001"
down_revision = None
branch_labels = ("developer_api",)
depends_on = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("environment", sa.String(8), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("restrictions", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
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
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
    )
    op.create_index("ix_api_keys_organization_created", "api_keys", ["organization_id", "create_time", "id"])

    op.create_table(
        "idempotent_requests",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(63), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotent_requests_expire", "idempotent_requests", ["expire_time"])

    op.create_table(
        "api_request_logs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
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
        sa.UniqueConstraint("request_id", name="uq_api_request_logs_request_id"),
    )
    op.create_index(
        "ix_api_request_logs_organization_time", "api_request_logs", ["organization_id", "request_time", "id"]
    )
    op.create_index("ix_api_request_logs_request_time", "api_request_logs", ["request_time"])

    op.create_table(
        "api_key_usage_hours",
        sa.Column("api_key_id", sa.String(63), primary_key=True),
        sa.Column("hour_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("client_error_count", sa.BigInteger(), nullable=False),
        sa.Column("server_error_count", sa.BigInteger(), nullable=False),
        sa.Column("throttled_count", sa.BigInteger(), nullable=False),
        sa.Column("latency_histogram", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_api_key_usage_hours_organization_hour", "api_key_usage_hours", ["organization_id", "hour_start"]
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_index("ix_api_key_usage_hours_organization_hour", table_name="api_key_usage_hours")
    op.drop_table("api_key_usage_hours")
    op.drop_index("ix_api_request_logs_request_time", table_name="api_request_logs")
    op.drop_index("ix_api_request_logs_organization_time", table_name="api_request_logs")
    op.drop_table("api_request_logs")
    op.drop_index("ix_idempotent_requests_expire", table_name="idempotent_requests")
    op.drop_table("idempotent_requests")
    op.drop_index("ix_api_keys_organization_created", table_name="api_keys")
    op.drop_table("api_keys")
