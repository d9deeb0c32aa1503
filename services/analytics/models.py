"""The analytics service's tables: its read models and the projection bookkeeping.

Read-model rows carry the projection copy (``generation``) they belong to (blue/green
rebuilds, ``mesh/kit/projections.py``). Migration ``analytics_0001`` creates them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.projection_tables import ProjectionEvent, ProjectionState


class Base(DeclarativeBase):
    """The analytics service's declarative base."""


class ProjectionStateRow(ProjectionState, Base):
    """The projections' served copies and checkpoints (the kit's columns)."""


class ProjectionEventRow(ProjectionEvent, Base):
    """Events applied to a copy, by id (the kit's columns)."""


class EventCountRow(Base):
    """How many events of one type an organisation's streams recorded on one UTC day."""

    __tablename__ = "analytics_event_counts"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC) of occur_time
    count: Mapped[int] = mapped_column(BigInteger)
