"""Queries on the two logs: revocations and security audit events. Every function takes the session first.

Revocation sequences come from a one-row counter incremented with ``UPDATE … RETURNING``:
the row lock it takes is held until commit, so sequences are handed out in commit order
and a follower that resumes after the highest sequence it saw misses nothing. (An
autoincrement column would not do: two transactions can commit in the opposite order
of their sequences.)
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import AuditEvent, Revocation, RevocationCounter

TOKEN = "TOKEN"
SESSION = "SESSION"
PRINCIPAL = "PRINCIPAL"

# session.info key set when a transaction wrote a revocation (see app.Identity.transaction).
WROTE_REVOCATION = "identity.wrote_revocation"


async def append_revocation(
    session: AsyncSession,
    *,
    kind: str,
    now: dt.datetime,
    expire_time: dt.datetime,
    reason: str,
    token_id: str = "",
    session_name: str = "",
    principal: str = "",
    organization_id: str = "",
    issued_before: dt.datetime | None = None,
) -> Revocation:
    """Append a revocation with the next sequence."""
    result = await session.execute(
        update(RevocationCounter)
        .where(RevocationCounter.id == 1)
        .values(sequence=RevocationCounter.sequence + 1)
        .returning(RevocationCounter.sequence)
    )
    sequence = int(result.scalar_one())
    row = Revocation(
        sequence=sequence,
        kind=kind,
        token_id=token_id,
        session=session_name,
        principal=principal,
        organization_id=organization_id,
        issued_before=issued_before,
        revoke_time=now,
        expire_time=expire_time,
        reason=reason[:64],
    )
    session.add(row)
    await session.flush()
    session.info[WROTE_REVOCATION] = True
    return row


async def head_sequence(session: AsyncSession) -> int:
    """The highest sequence handed out (committed)."""
    result = await session.execute(select(RevocationCounter.sequence).where(RevocationCounter.id == 1))
    return int(result.scalar_one_or_none() or 0)


async def revocations_after(session: AsyncSession, after: int, now: dt.datetime, limit: int) -> list[Revocation]:
    """Unexpired revocations with a sequence above ``after``, oldest first."""
    query = revocations_query(after, now).order_by(Revocation.sequence).limit(limit)
    return list((await session.execute(query)).scalars())


async def latest_cutoff(session: AsyncSession, principal: str, now: dt.datetime) -> dt.datetime | None:
    """The latest principal-revocation cut-off of ``principal`` that is still ahead of ``now``."""
    query = select(func.max(Revocation.issued_before)).where(
        Revocation.principal == principal, Revocation.kind == PRINCIPAL, Revocation.issued_before > now
    )
    value = (await session.execute(query)).scalar_one_or_none()
    if value is None:
        return None
    moment: dt.datetime = value
    # func.max bypasses the column type on SQLite, so normalise here too.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


async def prune_revocations(session: AsyncSession, now: dt.datetime) -> int:
    """Delete revocations no unexpired token can match any more; returns how many."""
    result = await session.execute(delete(Revocation).where(Revocation.expire_time <= now))
    return int(getattr(result, "rowcount", 0) or 0)


async def add_audit_event(session: AsyncSession, event: AuditEvent) -> AuditEvent:
    """Append an audit event."""
    session.add(event)
    await session.flush()
    return event


def audit_events_query(*, organization_id: str | None, condition: ColumnElement[bool] | None) -> Select[AuditEvent]:
    """Audit events, unordered, for a keyset page.

    Args:
        organization_id: only this organisation's events; ``None`` for every event (platform ones included).
        condition: the compiled filter, if any.

    """
    query = select(AuditEvent)
    if organization_id is not None:
        query = query.where(AuditEvent.organization_id == organization_id)
    return query if condition is None else query.where(condition)


def revocations_query(after: int, now: dt.datetime) -> Select[Revocation]:
    """Unexpired revocations with a sequence above ``after``, unordered."""
    return select(Revocation).where(Revocation.sequence > after, Revocation.expire_time > now)
