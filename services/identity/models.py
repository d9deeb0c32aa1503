"""Identity's tables. The migrations in ``migrations/`` (``identity_0001``, ``identity_0002``) build them exactly."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import Revisioned, UtcDateTime


class Base(DeclarativeBase):
    """Identity's declarative base."""


class User(Revisioned, Base):
    """A person who can sign in (``Revisioned``: its revision, times and who created and last changed it)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("email", name="uq_users_email"),
        UniqueConstraint("signup_request_id", name="uq_users_signup_request_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(100))
    avatar_uri: Mapped[str] = mapped_column(String(2048), default="")
    locale: Mapped[str] = mapped_column(String(35), default="")
    time_zone: Mapped[str] = mapped_column(String(64), default="")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16))
    failed_sign_in_count: Mapped[int] = mapped_column(Integer, default=0)
    lock_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    disabled_reason: Mapped[str] = mapped_column(String(500), default="")
    platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    home_organization_id: Mapped[str] = mapped_column(String(64), default="")
    last_sign_in_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    password_update_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    signup_request_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Users are changed by users and services ("users/…", "services/…"), never by API keys, so the
    # columns keep their width: widening them would copy the table on SQLite, whose drop cascades.
    creator: Mapped[str] = mapped_column(String(100))
    last_modifier: Mapped[str] = mapped_column(String(100))


class UserOrganization(Base):
    """An organisation identity has seen the user be an active member of (a cache of team_hub's memberships)."""

    __tablename__ = "user_organizations"
    __table_args__ = (Index("ix_user_organizations_organization", "organization_id"),)

    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), default="")
    # team_hub's membership name, "organizations/{organization}/members/{member}".
    member: Mapped[str] = mapped_column(String(200), default="")
    learn_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class Session(Base):
    """A signed-in client: one refresh-token family."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user", "user_id"),
        Index("ix_sessions_organization", "organization_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(String(64), default="")
    grant_type: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(4000), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_refresh_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expire_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoke_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoke_reason: Mapped[str] = mapped_column(String(64), default="")


class RefreshToken(Base):
    """One refresh token of a family, by the SHA-256 of its value (the value itself is never stored)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_session", "session_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(40), ForeignKey("sessions.id", ondelete="CASCADE"))
    create_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expire_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SigningKey(Base):
    """An access-token signing key; the private half sealed with AES-256-GCM."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        # Exactly one ACTIVE key, even when two processes start at once.
        Index(
            "ux_signing_keys_one_active",
            "state",
            unique=True,
            sqlite_where=text("state = 'ACTIVE'"),
            postgresql_where=text("state = 'ACTIVE'"),
        ),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    activate_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deactivate_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    retire_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    creator: Mapped[str] = mapped_column(String(100), default="")


class Revocation(Base):
    """One entry of the revocation log, totally ordered by ``sequence``."""

    __tablename__ = "revocations"
    __table_args__ = (
        Index("ix_revocations_expire", "expire_time"),
        Index("ix_revocations_principal", "principal", "issued_before"),
    )

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    token_id: Mapped[str] = mapped_column(String(100), default="")
    session: Mapped[str] = mapped_column(String(100), default="")
    principal: Mapped[str] = mapped_column(String(200), default="")
    organization_id: Mapped[str] = mapped_column(String(64), default="")
    issued_before: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoke_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expire_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(64), default="")


class RevocationCounter(Base):
    """The last sequence handed out; its row lock orders concurrent writers by commit."""

    __tablename__ = "revocation_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(BigInteger)


class AuditEvent(Base):
    """One security audit log entry."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_organization_time", "organization_id", "event_time"),
        Index("ix_audit_events_time", "event_time"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), default="")
    event_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_principal: Mapped[str] = mapped_column(String(200), default="")
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_display_name: Mapped[str] = mapped_column(String(254), default="")
    actor_role: Mapped[str] = mapped_column(String(20), default="")
    actor_session: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(255), default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    request_id: Mapped[str] = mapped_column(String(100), default="")
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    source_service: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
