"""Team hub's first tables: organisations, memberships, invitations, teams, identity outbox.

Revision ID: team_hub_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "team_hub_0001"
down_revision = None
branch_labels = ("team_hub",)
depends_on = None


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(500), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=False),
        sa.Column("max_members", sa.Integer(), nullable=False),
        sa.Column("parent_organization_id", sa.String(63), nullable=False),
        sa.Column("billing_email", sa.String(254), nullable=False),
        sa.Column("country_code", sa.String(2), nullable=False),
        sa.Column("kyc_verified", sa.Boolean(), nullable=False),
        sa.Column("suspend_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True, unique=True),
        sa.Column("member_epoch", sa.Integer(), nullable=False),
        *_audit_columns(),
    )
    op.create_index("ix_organizations_create_time", "organizations", ["create_time", "id"])

    op.create_table(
        "memberships",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invitation", sa.String(100), nullable=False),
        sa.Column("join_time", sa.DateTime(timezone=True), nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "user", name="uq_memberships_organization_user"),
    )
    op.create_index("ix_memberships_user", "memberships", ["user", "join_time"])
    op.create_index(
        "ix_memberships_organization_display_name", "memberships", ["organization_id", "display_name", "id"]
    )

    op.create_table(
        "invitations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.Column("member_expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("inviter", sa.String(200), nullable=False),
        sa.Column("accept_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", sa.String(200), nullable=False),
        sa.Column("membership", sa.String(100), nullable=False),
        sa.Column("revoke_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_send_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("token_salt", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "request_id", name="uq_invitations_request_id"),
    )
    op.create_index("ix_invitations_organization_create_time", "invitations", ["organization_id", "create_time", "id"])
    op.create_index(
        "uq_invitations_pending_email",
        "invitations",
        ["organization_id", "email"],
        unique=True,
        sqlite_where=sa.text("state = 'PENDING'"),
        postgresql_where=sa.text("state = 'PENDING'"),
    )

    op.create_table(
        "teams",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "display_name", name="uq_teams_organization_display_name"),
        sa.UniqueConstraint("organization_id", "request_id", name="uq_teams_request_id"),
    )

    op.create_table(
        "team_members",
        sa.Column("team_id", sa.String(63), sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "membership_id", sa.String(32), sa.ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("add_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_team_members_membership", "team_members", ["membership_id"])

    op.create_table(
        "identity_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("organization_id", sa.String(63), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("done_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_identity_outbox_pending", "identity_outbox", ["organization_id", "done_time", "create_time"])


def downgrade() -> None:
    """Drop the tables."""
    op.drop_index("ix_identity_outbox_pending", table_name="identity_outbox")
    op.drop_table("identity_outbox")
    op.drop_index("ix_team_members_membership", table_name="team_members")
    op.drop_table("team_members")
    op.drop_table("teams")
    op.drop_index("uq_invitations_pending_email", table_name="invitations")
    op.drop_index("ix_invitations_organization_create_time", table_name="invitations")
    op.drop_table("invitations")
    op.drop_index("ix_memberships_organization_display_name", table_name="memberships")
    op.drop_index("ix_memberships_user", table_name="memberships")
    op.drop_table("memberships")
    op.drop_index("ix_organizations_create_time", table_name="organizations")
    op.drop_table("organizations")
