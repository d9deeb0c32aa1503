"""Agents, their published versions and CreateAgent idempotency keys.

Mirrors services/agents/models.py.

Revision ID: agents_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "agents_0001"
down_revision = None
branch_labels = ("agents",)
depends_on = None


def upgrade() -> None:
    """Create the agents tables."""
    op.create_table(
        "agents",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("draft", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("pinned_version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agents_organization_listing", "agents", ["organization_id", "create_time", "id"])
    op.create_table(
        "agent_versions",
        sa.Column("agent_id", sa.String(63), sa.ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("change_note", sa.Text(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "agent_create_requests",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("agent_id", sa.String(63), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_create_requests_create_time", "agent_create_requests", ["create_time"])


def downgrade() -> None:
    """Drop the agents tables."""
    op.drop_index("ix_agent_create_requests_create_time", table_name="agent_create_requests")
    op.drop_table("agent_create_requests")
    op.drop_table("agent_versions")
    op.drop_index("ix_agents_organization_listing", table_name="agents")
    op.drop_table("agents")
