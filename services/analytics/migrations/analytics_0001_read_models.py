"""The analytics read models (event counts) and the projection bookkeeping.

Mirrors services/analytics/models.py.

Revision ID: analytics_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mesh.kit import projection_tables

revision = "analytics_0001"
down_revision = None
branch_labels = ("analytics",)
depends_on = None


def upgrade() -> None:
    """Create the analytics tables."""
    projection_tables.create_tables(op)
    op.create_table(
        "analytics_event_counts",
        sa.Column("generation", sa.Integer(), primary_key=True),
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    """Drop the analytics tables."""
    op.drop_table("analytics_event_counts")
    projection_tables.drop_tables(op)
