"""The overview service's tables: its read models and the projection bookkeeping.

Every read-model row carries the ``generation`` (copy) of the projection it belongs to:
queries read the served copy, a rebuild fills a new one beside it (blue/green, see
``mesh/kit/projections.py``). Migration ``overview_0001`` creates them.
"""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.projection_tables import ProjectionEvent, ProjectionState
from mesh.kit.sql import UtcDateTime


class Base(DeclarativeBase):
    """The overview service's declarative base."""


class ProjectionStateRow(ProjectionState, Base):
    """The projection's served copy and checkpoint (the kit's columns)."""


class ProjectionEventRow(ProjectionEvent, Base):
    """Events applied to a copy, by id (the kit's columns)."""


class AgentSummaryRow(Base):
    """One agent as the dashboard counts it: its state and display name."""

    __tablename__ = "overview_agents"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # DRAFT, PUBLISHED, ARCHIVED
    display_name: Mapped[str] = mapped_column(String(100))


class ActivityRow(Base):
    """One activity feed item, made from one event."""

    __tablename__ = "overview_activity"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(Integer)  # overview.v1.ActivityKind
    severity: Mapped[int] = mapped_column(Integer)  # overview.v1.ActivitySeverity
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    resource: Mapped[str] = mapped_column(String(300))
    actor: Mapped[str] = mapped_column(String(300))
    occur_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_overview_activity_feed", "generation", "organization_id", "position"),)
