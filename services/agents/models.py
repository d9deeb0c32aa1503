"""The agents service's tables (migrations ``agents_0001`` and ``agents_0002`` create them).

An agent is identified by ``(organization_id, id)``: ids are unique per organisation, so
two organisations may both have ``support``. Configurations are stored as the protobuf
JSON of ``AgentConfig``: the contract is the schema, and a field added to it needs no
migration. Times, JSON columns and revisions are the kit's (:mod:`mesh.kit.sql`); the
outbox and idempotency tables are the kit's shared ones (:mod:`mesh.kit.tables`).
"""

from __future__ import annotations

import datetime

from sqlalchemy import Enum, ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import JsonDocument, Revisioned, UtcDateTime
from services.agents.domain.lifecycle import AgentState


class Base(DeclarativeBase):
    """The agents service's declarative base."""


class AgentRow(Revisioned, Base):
    """An agent: identity, metadata, the editable draft and the pointers into its versions."""

    __tablename__ = "agents"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[AgentState] = mapped_column(Enum(AgentState, native_enum=False, length=16))
    draft: Mapped[str] = mapped_column(Text)  # AgentConfig as protobuf JSON
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    latest_version: Mapped[int] = mapped_column(Integer)
    pinned_version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_agents_organization_listing", "organization_id", "create_time", "id"),)


class AgentVersionRow(Base):
    """A published version: an immutable copy of the draft."""

    __tablename__ = "agent_versions"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[str] = mapped_column(Text)  # AgentConfig as protobuf JSON
    change_note: Mapped[str] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name="fk_agent_versions_agent",
            ondelete="CASCADE",
        ),
    )
