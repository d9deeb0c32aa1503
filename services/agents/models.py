"""The agents service's tables (the migration ``agents_0001`` creates them).

Configurations are stored as the protobuf JSON of ``AgentConfig``: the contract is the
schema, and a field added to it needs no migration. Times are timezone-aware UTC.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mesh.kit.tables import OutboxRow
from services.agents.domain.lifecycle import AgentState

__all__ = ["AgentRow", "AgentVersionRow", "Base", "CreateRequestRow", "OutboxRow", "UtcDateTime"]


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones and hands back naive
    values. Binding refuses naive datetimes and converts to UTC; reading always returns
    UTC-aware datetimes. This is the one place where that normalisation happens.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Dialect) -> datetime.datetime | None:
        """UTC on the way in (naive on SQLite, which would otherwise drop the offset unconverted)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC times")
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        """UTC-aware on the way out."""
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


# JSONB on PostgreSQL (indexable, compared by value), JSON text on SQLite.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """The agents service's declarative base."""


class AgentRow(Base):
    """An agent: identity, metadata, the editable draft and the pointers into its versions."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[AgentState] = mapped_column(Enum(AgentState, native_enum=False, length=16))
    draft: Mapped[str] = mapped_column(Text)  # AgentConfig as protobuf JSON
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    latest_version: Mapped[int] = mapped_column(Integer)
    pinned_version: Mapped[int] = mapped_column(Integer)
    # Bumped by SQLAlchemy on every UPDATE, which also checks it (optimistic locking).
    revision: Mapped[int] = mapped_column(Integer)
    creator: Mapped[str] = mapped_column(String(200))
    last_modifier: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    update_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012 - SQLAlchemy's declarative protocol
    __table_args__ = (Index("ix_agents_organization_listing", "organization_id", "create_time", "id"),)


class AgentVersionRow(Base):
    """A published version: an immutable copy of the draft."""

    __tablename__ = "agent_versions"

    agent_id: Mapped[str] = mapped_column(String(63), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[str] = mapped_column(Text)  # AgentConfig as protobuf JSON
    change_note: Mapped[str] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class CreateRequestRow(Base):
    """A ``CreateAgent`` request_id seen in the last 24 hours, and the agent it created."""

    __tablename__ = "agent_create_requests"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(63))
    # SHA-256 of the request without its request_id: a reused key with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime(), index=True)
