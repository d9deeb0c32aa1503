"""The overview read models (agents by state, the activity feed) and the projection bookkeeping.

Mirrors services/overview/models.py.

Revision ID: overview_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mesh.kit import projection_tables

revision = "overview_0001"
down_revision = None
branch_labels = ("overview",)
depends_on = None


def upgrade() -> None:
    """Create the overview tables."""
    projection_tables.create_tables(op)
    op.create_table(
        "overview_agents",
        sa.Column("generation", sa.Integer(), primary_key=True),
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(63), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
    )
    op.create_table(
        "overview_activity",
        sa.Column("generation", sa.Integer(), primary_key=True),
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_overview_activity_feed", "overview_activity", ["generation", "organization_id", "position"])


def downgrade() -> None:
    """Drop the overview tables."""
    op.drop_table("overview_activity")
    op.drop_table("overview_agents")
    projection_tables.drop_tables(op)
