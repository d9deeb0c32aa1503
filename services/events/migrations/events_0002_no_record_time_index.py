"""Drop ``ix_events_record_time``: retention walks the log by position, whose record times are in order.

Every append paid an entry in this index for the benefit of one archiving pass an hour; the pass now
reads the oldest events by position (the primary key) and stops at the first recent one.

Revision ID: events_0002
Revises: events_0001
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "events_0002"
down_revision = "events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_events_record_time", table_name="events")


def downgrade() -> None:
    """Create it again."""
    op.create_index("ix_events_record_time", "events", [sa.column("record_time")])
