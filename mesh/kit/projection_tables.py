"""The two bookkeeping tables of a projection consumer, declared once for every consumer.

A service that keeps read models (overview, analytics) holds, in its own database:

- ``projection_state``: one row per projection — which copy of the read model queries read
  (``served_generation``), the global position of the last event applied to it, and, during
  a blue/green rebuild, the shadow copy's generation and position;
- ``projection_events``: the ``event_id`` of the events applied to a copy, so a redelivered
  event (at-least-once delivery, a replay after a crash) is recognised and changes nothing;
  ids far below the checkpoint are pruned (``mesh/kit/projections.py`` says why that is sound).

They are the consumer's own rows, written in the transaction that applies the event, so the
checkpoint can never disagree with the read model (the events service's consumer checkpoints
alone could: they are saved in another database, after the fact).

They live on the service's own declarative base (``class ProjectionStateRow(ProjectionState,
Base)``) rather than on the shared ``mesh`` migration branch, which every service's database
gets: only consumers need them. Each consumer's first migration creates them with
:func:`create_tables`, so the schema is written once and the drift check compares it with the
models like any other table.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from mesh.kit.sql import UtcDateTime

POSITION_INDEX = "ix_projection_events_position"


class ProjectionState:
    """Columns of ``projection_state``: a projection's served copy, its checkpoint and its rebuild."""

    __tablename__ = "projection_state"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # LIVE, REBUILDING, FAILED
    schema_version: Mapped[int] = mapped_column(Integer)
    served_generation: Mapped[int] = mapped_column(Integer)
    # Global position of the last event applied to (or scanned past by) the served copy.
    position: Mapped[int] = mapped_column(BigInteger)
    last_event_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    shadow_generation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shadow_position: Mapped[int] = mapped_column(BigInteger)
    rebuild_start_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    rebuild_complete_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    error_message: Mapped[str] = mapped_column(Text)
    update_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class ProjectionEvent:
    """Columns of ``projection_events``: an event applied to one copy of a projection."""

    __tablename__ = "projection_events"

    projection: Mapped[str] = mapped_column(String(63), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index]:
        # A pruning pass finds a copy's oldest ids by position (``mesh/kit/projections.py``).
        return (Index(POSITION_INDEX, "projection", "generation", "position"),)


def create_tables(op: Any) -> None:
    """Create both tables in a consumer's migration (``op`` is Alembic's ``alembic.op``)."""
    op.create_table(
        "projection_state",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("served_generation", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("last_event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shadow_generation", sa.Integer(), nullable=True),
        sa.Column("shadow_position", sa.BigInteger(), nullable=False),
        sa.Column("rebuild_start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rebuild_complete_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "projection_events",
        sa.Column("projection", sa.String(63), primary_key=True),
        sa.Column("generation", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
    )


def create_position_index(op: Any) -> None:
    """Index ``projection_events`` by copy and position, for pruning (a consumer's second migration)."""
    op.create_index(POSITION_INDEX, "projection_events", ["projection", "generation", "position"])


def drop_position_index(op: Any) -> None:
    """Drop the pruning index (that migration's downgrade)."""
    op.drop_index(POSITION_INDEX, table_name="projection_events")


def drop_tables(op: Any) -> None:
    """Drop both tables (a consumer migration's downgrade)."""
    op.drop_table("projection_events")
    op.drop_table("projection_state")
