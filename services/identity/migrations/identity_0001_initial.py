"""Identity's tables.

Users, their organisations, sessions and refresh tokens, signing keys, the revocation
log and the security audit log.

Revision ID: identity_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0001"
down_revision = None
branch_labels = ("identity",)
depends_on = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("avatar_uri", sa.String(2048), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failed_sign_in_count", sa.Integer(), nullable=False),
        sa.Column("lock_count", sa.Integer(), nullable=False),
        _time("locked_until", nullable=True),
        sa.Column("disabled_reason", sa.String(500), nullable=False),
        sa.Column("platform_admin", sa.Boolean(), nullable=False),
        sa.Column("home_organization_id", sa.String(64), nullable=False),
        _time("last_sign_in_time", nullable=True),
        _time("password_update_time", nullable=True),
        sa.Column("signup_request_id", sa.String(100), nullable=True),
        _time("create_time"),
        _time("update_time"),
        sa.Column("creator", sa.String(100), nullable=False),
        sa.Column("updater", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("signup_request_id", name="uq_users_signup_request_id"),
    )
    op.create_table(
        "user_organizations",
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("member", sa.String(100), nullable=False),
        _time("learn_time"),
    )
    op.create_index("ix_user_organizations_organization", "user_organizations", ["organization_id"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("grant_type", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(4000), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        _time("create_time"),
        _time("last_refresh_time"),
        _time("expire_time"),
        _time("revoke_time", nullable=True),
        sa.Column("revoke_reason", sa.String(64), nullable=False),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id"])
    op.create_index("ix_sessions_organization", "sessions", ["organization_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(40), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        _time("create_time"),
        _time("expire_time"),
        _time("used_time", nullable=True),
    )
    op.create_index("ix_refresh_tokens_session", "refresh_tokens", ["session_id"])
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("sealed_private_key", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _time("create_time"),
        _time("activate_time", nullable=True),
        _time("deactivate_time", nullable=True),
        _time("retire_time", nullable=True),
        sa.Column("creator", sa.String(100), nullable=False),
        sa.Column("rotation_request_id", sa.String(100), nullable=True),
        sa.UniqueConstraint("rotation_request_id", name="uq_signing_keys_rotation_request_id"),
    )
    op.create_index(
        "ux_signing_keys_one_active",
        "signing_keys",
        ["state"],
        unique=True,
        sqlite_where=sa.text("state = 'ACTIVE'"),
        postgresql_where=sa.text("state = 'ACTIVE'"),
    )
    op.create_table(
        "revocations",
        sa.Column("sequence", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("token_id", sa.String(100), nullable=False),
        sa.Column("session", sa.String(100), nullable=False),
        sa.Column("principal", sa.String(100), nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False),
        _time("issued_before", nullable=True),
        _time("revoke_time"),
        _time("expire_time"),
        sa.Column("reason", sa.String(64), nullable=False),
    )
    op.create_index("ix_revocations_expire", "revocations", ["expire_time"])
    op.create_index("ix_revocations_principal", "revocations", ["principal", "issued_before"])
    counter = op.create_table(
        "revocation_counter",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "sequence": 0}])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        _time("event_time"),
        sa.Column("actor_principal", sa.String(100), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_display_name", sa.String(254), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("actor_session", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("source_service", sa.String(64), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.UniqueConstraint("idempotency_key", name="uq_audit_events_idempotency_key"),
    )
    op.create_index("ix_audit_events_organization_time", "audit_events", ["organization_id", "event_time"])
    op.create_index("ix_audit_events_time", "audit_events", ["event_time"])


def downgrade() -> None:
    """Drop the tables."""
    for table in (
        "audit_events",
        "revocation_counter",
        "revocations",
        "signing_keys",
        "refresh_tokens",
        "sessions",
        "user_organizations",
        "users",
    ):
        op.drop_table(table)
