"""Invitation rows: lookup (by id, token hash), expiry, acceptance, listing."""

from __future__ import annotations

import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit import paging
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.sql import flush
from mesh.kit.tenancy import ReadScope
from services.team_hub.domain.invitations import InvitationState
from services.team_hub.models import Invitation
from services.team_hub.store.members import ROLES

_PENDING = InvitationState.PENDING.value


def filters(now: datetime.datetime) -> FilterSchema:
    """ListInvitations' filterable fields; ``state`` is the one readers see (PENDING past expiry is EXPIRED)."""
    state = case(
        (and_(Invitation.state == _PENDING, Invitation.expire_time <= now), InvitationState.EXPIRED.value),
        else_=Invitation.state,
    )
    return {
        "state": FilterField.enum(state, {s.value: s.value for s in InvitationState}, "INVITATION_STATE_"),
        "role": FilterField.enum(Invitation.role, ROLES, "ROLE_", ordered=True),
        "email": FilterField(Kind.STRING, Invitation.email),
    }


async def get(session: AsyncSession, organization_id: str, invitation_id: str) -> Invitation | None:
    """The organisation's invitation with this id, or ``None``."""
    return await session.get(Invitation, (organization_id, invitation_id), populate_existing=True)


async def by_token_hash(session: AsyncSession, token_hash: str) -> Invitation | None:
    """The invitation whose token has this hash, or ``None``."""
    result: Invitation | None = await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))
    return result


def _pending(now: datetime.datetime) -> ColumnElement[bool]:
    return and_(Invitation.state == _PENDING, Invitation.expire_time > now)


async def expire_stale(session: AsyncSession, organization_id: str, email: str, now: datetime.datetime) -> None:
    """Record as EXPIRED the PENDING invitations of an address whose time has passed.

    A reader already sees them EXPIRED; writing it frees the one-pending-per-address slot.
    """
    await session.execute(
        update(Invitation)
        .where(
            Invitation.organization_id == organization_id,
            Invitation.email == email,
            Invitation.state == _PENDING,
            Invitation.expire_time <= now,
        )
        .values(state=InvitationState.EXPIRED.value, update_time=now, revision=Invitation.revision + 1)
        .execution_options(synchronize_session=False)
    )


async def pending_count(session: AsyncSession, organization_id: str, now: datetime.datetime) -> int:
    """How many unexpired PENDING invitations the organisation has."""
    value = await session.scalar(
        select(func.count()).select_from(Invitation).where(Invitation.organization_id == organization_id, _pending(now))
    )
    return int(value or 0)


async def has_pending(session: AsyncSession, organization_id: str, email: str, now: datetime.datetime) -> bool:
    """Whether the address has an unexpired PENDING invitation."""
    found = await session.scalar(
        select(Invitation.id)
        .where(Invitation.organization_id == organization_id, Invitation.email == email, _pending(now))
        .limit(1)
    )
    return found is not None


async def add(session: AsyncSession, invitation: Invitation) -> None:
    """Insert an invitation.

    Raises:
        AlreadyExists: the address has a PENDING invitation already (a concurrent create).

    """
    session.add(invitation)
    await flush(session, exists=f"{invitation.email} already has a pending invitation")


async def mark_accepted(
    session: AsyncSession, invitation: Invitation, *, user: str, membership_id: str, now: datetime.datetime
) -> bool:
    """PENDING → ACCEPTED, only if it still is PENDING and unexpired (single use under races)."""
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(Invitation)
            .where(
                Invitation.organization_id == invitation.organization_id, Invitation.id == invitation.id, _pending(now)
            )
            .values(
                state=InvitationState.ACCEPTED.value,
                accept_time=now,
                accepted_by=user,
                membership_id=membership_id,
                update_time=now,
                last_modifier=user,
                revision=Invitation.revision + 1,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        return False
    await session.refresh(invitation)
    return True


async def list_page(
    session: AsyncSession,
    scope: ReadScope,
    *,
    filter_text: str,
    now: datetime.datetime,
    after: paging.Position | None,
    limit: int,
) -> paging.Page[Invitation]:
    """One page of invitations, newest first (one organisation's, or every one's).

    Raises:
        InvalidArgument: a bad filter, or a page token of another shape.

    """
    statement = select(Invitation)
    if not scope.everywhere:
        statement = statement.where(Invitation.organization_id == scope.organization_id)
    if (clause := compile_filter(filter_text, filters(now))) is not None:
        statement = statement.where(clause)
    keys = None if after is None else paging.position_shape(after, int, str, str)
    return await paging.keyset_page(
        session,
        statement,
        keys=[Invitation.create_time, Invitation.organization_id, Invitation.id],
        after=None if keys is None else (paging.from_time_key(keys[0]), keys[1], keys[2]),
        limit=limit,
        position_of=lambda row: (paging.time_key(row.create_time), row.organization_id, row.id),
    )
