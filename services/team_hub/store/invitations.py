"""Invitation rows: lookup (by id, token hash, idempotency key), expiry, acceptance, listing."""

from __future__ import annotations

import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, func, not_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import AlreadyExists
from services.team_hub.domain import filters
from services.team_hub.domain.invitations import InvitationState
from services.team_hub.models import Invitation
from services.team_hub.store import keyset

FILTERABLE: dict[str, frozenset[str]] = {
    "state": filters.EQUALITY,
    "role": filters.ORDERED,
    "email": filters.EQUALITY,
}
_STATES = frozenset(s.value for s in InvitationState)
_PENDING = InvitationState.PENDING.value


async def get(session: AsyncSession, organization_id: str, invitation_id: str) -> Invitation | None:
    """The organisation's invitation with this id, or ``None``."""
    return await session.get(Invitation, (organization_id, invitation_id), populate_existing=True)


async def by_token_hash(session: AsyncSession, token_hash: str) -> Invitation | None:
    """The invitation whose token has this hash, or ``None``."""
    result: Invitation | None = await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))
    return result


async def by_request_id(session: AsyncSession, organization_id: str, request_id: str) -> Invitation | None:
    """The invitation an earlier CreateInvitation with this idempotency key created."""
    result: Invitation | None = await session.scalar(
        select(Invitation).where(Invitation.organization_id == organization_id, Invitation.request_id == request_id)
    )
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
        .values(state=InvitationState.EXPIRED.value, update_time=now, version=Invitation.version + 1)
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
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists(f"{invitation.email} already has a pending invitation") from None


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
                version=Invitation.version + 1,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        return False
    await session.refresh(invitation)
    return True


def _condition(condition: filters.Condition, now: datetime.datetime) -> ColumnElement[bool]:
    clause: ColumnElement[bool]
    if condition.field == "role":
        role = int(filters.role_value(condition.value))
        return {
            "=": Invitation.role == role,
            "!=": Invitation.role != role,
            "<": Invitation.role < role,
            "<=": Invitation.role <= role,
            ">": Invitation.role > role,
            ">=": Invitation.role >= role,
        }[condition.op]
    if condition.field == "state":
        state = filters.enum_value(condition.value, _STATES, "INVITATION_STATE_", "state")
        if state == _PENDING:
            clause = _pending(now)
        elif state == InvitationState.EXPIRED.value:
            clause = or_(Invitation.state == state, and_(Invitation.state == _PENDING, Invitation.expire_time <= now))
        else:
            clause = Invitation.state == state
    else:
        clause = Invitation.email == condition.value.lower()
    return not_(clause) if condition.op == "!=" else clause


async def list_page(
    session: AsyncSession,
    organization_id: str,
    *,
    conditions: list[filters.Condition],
    now: datetime.datetime,
    after: list[Any] | None,
    limit: int,
) -> tuple[list[Invitation], list[Any] | None]:
    """One page of an organisation's invitations, newest first, and the key to resume after."""
    statement = select(Invitation).where(
        Invitation.organization_id == organization_id, *(_condition(c, now) for c in conditions)
    )
    if after is not None:
        created, invitation_id = keyset.string_key(after, 2)
        statement = statement.where(
            keyset.seek(
                [Invitation.create_time, Invitation.id],
                [keyset.parse_time_key(created), invitation_id],
                descending=True,
            )
        )
    statement = statement.order_by(Invitation.create_time.desc(), Invitation.id.desc()).limit(limit + 1)
    rows = (await session.execute(statement)).scalars().all()
    return keyset.split(rows, limit, lambda i: [keyset.time_key(i.create_time), i.id])
