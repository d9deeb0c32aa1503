"""The events service's tables (migration ``events_0001`` creates them).

- ``event_log``: one row, the log's head (the last global position allocated) and its
  archive watermark. Appends reserve positions by bumping ``head_position``, which locks
  the row until they commit, so positions commit in the order they were allocated (see
  :mod:`services.events.store`). The counter is a row, not ``max(global_position)``,
  because scavenging may delete the newest event and positions must never be reused.
- ``event_streams``: one row per stream: owner, state, last version, truncation and
  archive points.
- ``events``: the events. ``data`` and ``metadata`` are the serialised protobuf messages
  (``google.protobuf.Struct`` and ``EventMetadata``): a read hands them back without a
  JSON round trip. ``hidden`` marks events a truncation or deletion hid; the scavenger
  removes them later.
- ``consumer_checkpoints``: consumer groups' saved positions, per scope.
"""

from __future__ import annotations

import datetime
import enum

from sqlalchemy import BigInteger, Boolean, Enum, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import Revisioned, UtcDateTime


class Base(DeclarativeBase):
    """The events service's declarative base."""


class StreamState(enum.StrEnum):
    """A stream's lifecycle state (``EventStreamState`` without its prefix)."""

    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


class EventLogRow(Base):
    """The global log's head and archive watermark (a single row, id 1)."""

    __tablename__ = "event_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    head_position: Mapped[int] = mapped_column(BigInteger)
    # Every position at or below it has been archived (removed); 0 while nothing has.
    archived_position: Mapped[int] = mapped_column(BigInteger)


class EventStreamRow(Base):
    """One stream."""

    __tablename__ = "event_streams"

    stream_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(200))
    state: Mapped[StreamState] = mapped_column(Enum(StreamState, native_enum=False, length=16))
    last_version: Mapped[int] = mapped_column(BigInteger)
    first_readable_version: Mapped[int] = mapped_column(BigInteger)
    # The lowest version retention has not archived (0 while nothing has been).
    archived_version: Mapped[int] = mapped_column(BigInteger)
    last_position: Mapped[int] = mapped_column(BigInteger)
    last_event_type: Mapped[str] = mapped_column(String(100))
    last_event_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    delete_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    creator: Mapped[str] = mapped_column(String(200))
    last_modifier: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    update_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_event_streams_organization", "organization_id", "stream_id"),)


class EventRow(Base):
    """One recorded event."""

    __tablename__ = "events"

    global_position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36))
    stream_id: Mapped[str] = mapped_column(String(200))
    stream_version: Mapped[int] = mapped_column(BigInteger)
    organization_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)  # google.protobuf.Struct, serialised
    data_schema: Mapped[str] = mapped_column(String(200))
    event_metadata: Mapped[bytes] = mapped_column("metadata", LargeBinary)  # EventMetadata, serialised
    occur_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    record_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    hidden: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        UniqueConstraint("event_id", name="uq_events_event_id"),
        UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
        Index("ix_events_organization_position", "organization_id", "global_position"),
    )


class ConsumerCheckpointRow(Revisioned, Base):
    """A consumer group's saved position; ``organization_id`` is ``""`` in the platform scope."""

    __tablename__ = "consumer_checkpoints"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    stream: Mapped[str] = mapped_column(String(300))
    global_position: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stream_version: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    consumer_state: Mapped[str] = mapped_column(Text)
    save_count: Mapped[int] = mapped_column(BigInteger)
