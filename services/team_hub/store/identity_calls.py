"""What team hub reads back from the kit's ``identity_calls``: the calls owed about one resource.

A retried RemoveMember finds its membership gone; the calls the first attempt queued
about that membership (kept for a while once delivered) tell it the removal did happen,
and which of them identity still has to take.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit.audit import REVOKE
from mesh.kit.tables import IdentityCallRow
from vocelio.identity.v1 import identity_service_pb2


async def pending_for(session: AsyncSession, organization_id: str, target: str) -> list[str]:
    """The ids of undelivered calls about one resource."""
    rows = await session.scalars(
        select(IdentityCallRow.id).where(
            IdentityCallRow.organization_id == organization_id,
            IdentityCallRow.target == target,
            IdentityCallRow.done_time.is_(None),
        )
    )
    return list(rows.all())


async def known_target(session: AsyncSession, organization_id: str, target: str) -> bool:
    """Whether any call about the resource is still on record (delivered ones are kept for a while)."""
    found = await session.scalar(
        select(IdentityCallRow.id)
        .where(IdentityCallRow.organization_id == organization_id, IdentityCallRow.target == target)
        .limit(1)
    )
    return found is not None


async def revoked_principal(session: AsyncSession, organization_id: str, target: str) -> str | None:
    """The principal a queued token revocation about the resource names (a removed member's user)."""
    payload = await session.scalar(
        select(IdentityCallRow.payload)
        .where(
            IdentityCallRow.organization_id == organization_id,
            IdentityCallRow.target == target,
            IdentityCallRow.kind == REVOKE,
        )
        .limit(1)
    )
    if payload is None:
        return None
    return identity_service_pb2.RevokePrincipalTokensRequest.FromString(payload).principal or None
