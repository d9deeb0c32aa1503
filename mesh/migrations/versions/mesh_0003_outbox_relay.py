"""What the outbox relay keeps on each row: append order, and why a row was parked.

- ``seq``: the order of appends (``mesh.kit.outbox``), the tie-breaker after ``occurred_at``
  when the relay reads rows oldest first (several events of one transaction, or a frozen
  test clock, share one ``occurred_at``). Rows written before this revision keep 0.
- ``failed_at`` / ``last_error``: a row the events service refused for good
  (INVALID_ARGUMENT, FAILED_PRECONDITION) is parked so it never blocks the rows behind it;
  ``last_error`` holds the status code and message, never the payload.

Additive: existing rows stay pending and are relayed as before.

Revision ID: mesh_0003
Revises: mesh_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "mesh_0003"
down_revision = "mesh_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``outbox.seq``, ``outbox.failed_at`` and ``outbox.last_error``; index the relay's read."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=False, server_default=""))
    op.create_index("ix_outbox_relay_order", "outbox", ["relayed_at", "failed_at", "occurred_at", "seq"])


def downgrade() -> None:
    """Drop the relay's columns and index."""
    op.drop_index("ix_outbox_relay_order", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("last_error")
        batch.drop_column("failed_at")
        batch.drop_column("seq")
