"""The tables every service's database holds, created by the shared ``mesh`` migrations.

They live on their own declarative base: a service's models never redeclare them, and a
session works with rows of both bases at once. The model↔migration drift check compares
``KitBase.metadata`` too.
"""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import UtcDateTime


class KitBase(DeclarativeBase):
    """The declarative base of the shared tables."""


class OutboxRow(KitBase):
    """An event waiting for the relay (``mesh_0001``; ``data_schema`` since 0002; relay columns since 0003).

    Pending: ``relayed_at`` and ``failed_at`` both empty. The relay (``mesh.kit.relay``) reads
    pending rows by ``(occurred_at, seq)``, stamps ``relayed_at`` once the events service has
    the event, and parks a row the store refuses for good with ``failed_at``/``last_error``.
    """

    __tablename__ = "outbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stream: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(200))
    # Full name of the typed payload message; "" on rows written before events were typed.
    data_schema: Mapped[str] = mapped_column(String(200), server_default="")
    data: Mapped[str] = mapped_column(Text)  # the payload's proto3 JSON object
    metadata_: Mapped[str] = mapped_column("metadata", Text, server_default="{}")  # "metadata" is reserved
    occurred_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    relayed_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Append order (a per-process hybrid clock, ``mesh.kit.outbox``): the tie-breaker after occurred_at.
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failed_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")  # code and message, no payload

    __table_args__ = (
        Index("ix_outbox_pending", "relayed_at", "occurred_at"),
        Index("ix_outbox_relay_order", "relayed_at", "failed_at", "occurred_at", "seq"),
    )


class IdempotencyKeyRow(KitBase):
    """A request_id seen recently, and the response it got (AIP-155)."""

    __tablename__ = "idempotency_keys"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    principal: Mapped[str] = mapped_column(String(200))
    # SHA-256 of the request with request_id cleared: a reused id with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_idempotency_keys_create_time", "create_time"),)


class IdentityCallRow(KitBase):
    """A call to identity a committed change owes (an audit event, a token revocation).

    Written in the same transaction as the change, sent right after the commit, and
    retried by later deliveries in the organisation until identity has taken it.
    """

    __tablename__ = "identity_calls"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))  # the resource the call is about
    kind: Mapped[str] = mapped_column(String(16))  # "audit" or "revoke"
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the serialised request message
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    done_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (Index("ix_identity_calls_pending", "organization_id", "done_time", "create_time"),)
