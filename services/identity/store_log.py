"""Queries on the two logs: revocations and security audit events. Every function takes the session first.

Revocation sequences come from a one-row counter incremented with ``UPDATE … RETURNING``:
the row lock it takes is held until commit, so sequences are handed out in commit order
and a follower that resumes after the highest sequence it saw misses nothing. (An
autoincrement column would not do: two transactions can commit in the opposite order
of their sequences.)

Cut-offs strictly increase. Tokens carry ``iat`` in whole seconds and a PRINCIPAL or
ORGANIZATION entry revokes the tokens whose ``iat`` is before its ``issued_before``. The
cut-off of a new entry is chosen here, under the counter's row lock (so concurrent
writers see each other's cut-offs): the next whole second, and later than every cut-off
still ahead of now that a token it must revoke could carry as its ``iat`` — the
principal's own and every organisation's for a PRINCIPAL entry, every one for an
ORGANIZATION entry — by one second. :func:`latest_cutoff` gives ``Identity.mint`` the
latest cut-off of a token's principal and organisation, and the token's ``iat`` is never
before it. So a token minted between two revocations within one second carries the
first cut-off as ``iat``, the second cut-off is a second later, and the token is revoked.

A SIGNING_KEY entry keeps the revoked key's ``kid`` in the ``token_id`` column.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import AuditEvent, Revocation, RevocationCounter

TOKEN = "TOKEN"
SESSION = "SESSION"
PRINCIPAL = "PRINCIPAL"
ORGANIZATION = "ORGANIZATION"
SIGNING_KEY = "SIGNING_KEY"
_CUT_KINDS = (PRINCIPAL, ORGANIZATION)
_SECOND = dt.timedelta(seconds=1)

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
    """Append a revocation with the next sequence.

    For PRINCIPAL and ORGANIZATION entries ``issued_before`` is chosen here (any value
    given is only a lower bound): see the module docstring.
    """
    result = await session.execute(
        update(RevocationCounter)
        .where(RevocationCounter.id == 1)
        .values(sequence=RevocationCounter.sequence + 1)
        .returning(RevocationCounter.sequence)
    )
    sequence = int(result.scalar_one())
    if kind in _CUT_KINDS:
        issued_before = await next_cutoff(session, kind, principal, now, issued_before)
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


def first_cutoff(now: dt.datetime) -> dt.datetime:
    """The earliest cut-off of a revocation written at ``now``: the next whole second.

    Always after ``now``'s second, so a token stamped in the current second (``iat`` =
    ``now`` rounded down) is before it.
    """
    return now.replace(microsecond=0) + _SECOND


async def next_cutoff(
    session: AsyncSession, kind: str, principal: str, now: dt.datetime, floor: dt.datetime | None = None
) -> dt.datetime:
    """The cut-off of a new PRINCIPAL or ORGANIZATION entry (call under the counter's lock)."""
    ahead = [Revocation.kind.in_(_CUT_KINDS), Revocation.issued_before > now]
    if kind == PRINCIPAL:
        # a token of the principal may carry its own cut-off or its organisation's
        ahead.append((Revocation.principal == principal) | (Revocation.kind == ORGANIZATION))
    latest = _utc(
        (await session.execute(select(func.max(Revocation.issued_before)).where(*ahead))).scalar_one_or_none()
    )
    cutoff = first_cutoff(now)
    if floor is not None:
        cutoff = max(cutoff, floor)
    if latest is not None:
        cutoff = max(cutoff, latest + _SECOND)
    return cutoff


async def latest_cutoff(
    session: AsyncSession, principal: str, now: dt.datetime, organization_id: str = ""
) -> dt.datetime | None:
    """The latest cut-off still ahead of ``now`` of ``principal`` or of its organisation ``organization_id``."""
    names = [principal] + ([f"organizations/{organization_id}"] if organization_id else [])
    query = select(func.max(Revocation.issued_before)).where(
        Revocation.principal.in_(names), Revocation.kind.in_(_CUT_KINDS), Revocation.issued_before > now
    )
    return _utc((await session.execute(query)).scalar_one_or_none())


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # func.max bypasses the column type on SQLite, so normalise here too.
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


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
