"""Index ``projection_events`` by copy and position: the runner prunes a copy's oldest event ids.

Revision ID: overview_0002
Revises: overview_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from mesh.kit import projection_tables

revision = "overview_0002"
down_revision = "overview_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the pruning index."""
    projection_tables.create_position_index(op)


def downgrade() -> None:
    """Drop it."""
    projection_tables.drop_position_index(op)
