"""Team hub's tables: organisations, memberships, invitations and teams.

Every row that belongs to an organisation has ``(organization_id, id)`` as its primary
key, so ids are unique per organisation (two organisations may both have a team
``sales``) and every lookup names the organisation it reads in. Rows refer to other rows
of their organisation by id; resource names are composed on the way out.

Times, JSON documents, revisions and audit columns come from the kit
(:mod:`mesh.kit.sql`); calls owed to identity and request_ids live in the kit's shared
tables (:mod:`mesh.kit.tables`). Roles are stored as their ladder numbers
(``vocelio.team_hub.v1.Role``), states as their names without prefix.
"""

from __future__ import annotations

import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import JsonDocument, Revisioned, UtcDateTime


class Base(DeclarativeBase):
    """Declarative base of team hub's tables."""


class Organization(Revisioned, Base):
    """A tenant."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(String(500), default="")
    plan: Mapped[str] = mapped_column(String(32))
    concurrency_limit: Mapped[int] = mapped_column(Integer, default=0)
    max_members: Mapped[int] = mapped_column(Integer, default=0)
    parent_organization_id: Mapped[str] = mapped_column(String(63), default="")
    billing_email: Mapped[str] = mapped_column(String(254), default="")
    country_code: Mapped[str] = mapped_column(String(2), default="")
    kyc_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    suspend_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    close_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument, default=dict)
    # Bumped by every membership change: the row lock that serialises them (last ADMIN).
    member_epoch: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_organizations_create_time", "create_time", "id"),)


class Membership(Revisioned, Base):
    """A user's place, and role, in an organisation."""

    __tablename__ = "memberships"

    organization_id: Mapped[str] = mapped_column(String(63), ForeignKey("organizations.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[int] = mapped_column(Integer)
    # GUEST only: when access ends (the membership is EXPIRED from then on).
    expire_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The invitation the member joined with, in the same organisation ("" for a creator).
    invitation_id: Mapped[str] = mapped_column(String(32), default="")
    join_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        UniqueConstraint("organization_id", "user", name="uq_memberships_organization_user"),
        Index("ix_memberships_user", "user", "join_time"),
        Index("ix_memberships_organization_display_name", "organization_id", "display_name", "id"),
    )


class Invitation(Revisioned, Base):
    """An invitation to join an organisation; only the token's hash is kept."""

    __tablename__ = "invitations"

    organization_id: Mapped[str] = mapped_column(String(63), ForeignKey("organizations.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[int] = mapped_column(Integer)
    # Ids of teams of the same organisation.
    teams: Mapped[list[str]] = mapped_column(JsonDocument, default=list)
    member_expire_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    message: Mapped[str] = mapped_column(String(500), default="")
    state: Mapped[str] = mapped_column(String(16))
    expire_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    inviter: Mapped[str] = mapped_column(String(200))
    accept_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    accepted_by: Mapped[str] = mapped_column(String(200), default="")
    # The membership created on acceptance, in the same organisation.
    membership_id: Mapped[str] = mapped_column(String(32), default="")
    revoke_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_send_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # SHA-256 of the token, hex.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Only for an idempotent create (request_id): the random input the token is derived
    # from with the configured key, so that a retry answers with the same token.
    token_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_invitations_organization_create_time", "organization_id", "create_time", "id"),
        # One PENDING invitation per address and organisation.
        Index(
            "uq_invitations_pending_email",
            "organization_id",
            "email",
            unique=True,
            sqlite_where=text("state = 'PENDING'"),
            postgresql_where=text("state = 'PENDING'"),
        ),
    )


class Team(Revisioned, Base):
    """A named group of members."""

    __tablename__ = "teams"

    organization_id: Mapped[str] = mapped_column(String(63), ForeignKey("organizations.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument, default=dict)

    __table_args__ = (UniqueConstraint("organization_id", "display_name", name="uq_teams_organization_display_name"),)


class TeamMember(Base):
    """A membership's place in a team."""

    __tablename__ = "team_members"

    organization_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    membership_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    lead: Mapped[bool] = mapped_column(Boolean, default=False)
    add_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "team_id"],
            ["teams.organization_id", "teams.id"],
            name="fk_team_members_team",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["organization_id", "membership_id"],
            ["memberships.organization_id", "memberships.id"],
            name="fk_team_members_membership",
            ondelete="CASCADE",
        ),
        Index("ix_team_members_membership", "organization_id", "membership_id"),
    )
