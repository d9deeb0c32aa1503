"""The event store: the log's head, streams, events and consumer checkpoints.

Mirrors services/events/models.py.

Revision ID: events_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "events_0001"
down_revision = None
branch_labels = ("events",)
depends_on = None


def upgrade() -> None:
    """Create the event store's tables and the log's single head row."""
    log = op.create_table(
        "event_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("head_position", sa.BigInteger(), nullable=False),
        sa.Column("archived_position", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(log, [{"id": 1, "head_position": 0, "archived_position": 0}])
    op.create_table(
        "event_streams",
        sa.Column("stream_id", sa.String(200), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_version", sa.BigInteger(), nullable=False),
        sa.Column("first_readable_version", sa.BigInteger(), nullable=False),
        sa.Column("archived_version", sa.BigInteger(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("last_event_type", sa.String(100), nullable=False),
        sa.Column("last_event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delete_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_event_streams_organization", "event_streams", ["organization_id", "stream_id"])
    op.create_table(
        "events",
        sa.Column("global_position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_version", sa.BigInteger(), nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("data_schema", sa.String(200), nullable=False),
        sa.Column("metadata", sa.LargeBinary(), nullable=False),
        sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
    )
    op.create_index("ix_events_organization_position", "events", ["organization_id", "global_position"])
    op.create_index("ix_events_record_time", "events", ["record_time"])
    op.create_table(
        "consumer_checkpoints",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("stream", sa.String(300), nullable=False),
        sa.Column("global_position", sa.BigInteger(), nullable=True),
        sa.Column("stream_version", sa.BigInteger(), nullable=True),
        sa.Column("consumer_state", sa.Text(), nullable=False),
        sa.Column("save_count", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the event store's tables."""
    op.drop_table("consumer_checkpoints")
    op.drop_index("ix_events_record_time", table_name="events")
    op.drop_index("ix_events_organization_position", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_event_streams_organization", table_name="event_streams")
    op.drop_table("event_streams")
    op.drop_table("event_log")
