"""The identity outbox: calls to identity that committed changes owe."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.team_hub.domain.common import new_id
from services.team_hub.models import IdentityCall

REVOKE = "revoke"
AUDIT = "audit"
MAX_ERROR = 500
# Delivered calls are kept this long: they tell a retried RemoveMember that the removal happened.
RETENTION = datetime.timedelta(days=7)


async def enqueue(
    session: AsyncSession, *, organization_id: str, target: str, kind: str, payload: bytes, now: datetime.datetime
) -> str:
    """Add a call to the outbox, in the transaction of the change that owes it; its id."""
    call = IdentityCall(
        id=new_id("ic"),
        organization_id=organization_id,
        target=target,
        kind=kind,
        payload=payload,
        create_time=now,
        attempts=0,
        last_error="",
    )
    session.add(call)
    await session.flush()
    return call.id


async def pending(session: AsyncSession, organization_id: str, *, limit: int = 50) -> list[IdentityCall]:
    """The organisation's undelivered calls, oldest first."""
    rows = await session.scalars(
        select(IdentityCall)
        .where(IdentityCall.organization_id == organization_id, IdentityCall.done_time.is_(None))
        .order_by(IdentityCall.create_time, IdentityCall.id)
        .limit(limit)
    )
    return list(rows.all())


async def pending_for(session: AsyncSession, organization_id: str, target: str) -> list[str]:
    """The ids of undelivered calls about one resource."""
    rows = await session.scalars(
        select(IdentityCall.id).where(
            IdentityCall.organization_id == organization_id,
            IdentityCall.target == target,
            IdentityCall.done_time.is_(None),
        )
    )
    return list(rows.all())


async def known_target(session: AsyncSession, organization_id: str, target: str) -> bool:
    """Whether any call about the resource is still on record (delivered ones are kept for a while)."""
    found = await session.scalar(
        select(IdentityCall.id)
        .where(IdentityCall.organization_id == organization_id, IdentityCall.target == target)
        .limit(1)
    )
    return found is not None


async def prune(session: AsyncSession, organization_id: str, before: datetime.datetime) -> None:
    """Forget delivered calls older than ``before``."""
    await session.execute(
        delete(IdentityCall)
        .where(
            IdentityCall.organization_id == organization_id,
            IdentityCall.done_time.is_not(None),
            IdentityCall.done_time < before,
        )
        .execution_options(synchronize_session=False)
    )


async def mark_done(session: AsyncSession, call_ids: Sequence[str], now: datetime.datetime) -> None:
    """Record calls identity has taken."""
    if call_ids:
        await session.execute(
            update(IdentityCall)
            .where(IdentityCall.id.in_(call_ids))
            .values(done_time=now, attempts=IdentityCall.attempts + 1, last_error="")
            .execution_options(synchronize_session=False)
        )


async def mark_failed(session: AsyncSession, call_id: str, error: str) -> None:
    """Record a failed attempt (the call stays pending)."""
    await session.execute(
        update(IdentityCall)
        .where(IdentityCall.id == call_id)
        .values(attempts=IdentityCall.attempts + 1, last_error=error[:MAX_ERROR])
        .execution_options(synchronize_session=False)
    )
