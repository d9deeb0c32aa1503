"""Organisation rows: lookup, the per-organisation lock, creation and listing."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit import paging
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.sql import flush
from services.team_hub.domain.organizations import OrganizationState, Plan
from services.team_hub.models import Membership, Organization

FILTERS: FilterSchema = {
    "state": FilterField.enum(Organization.state, {s.value: s.value for s in OrganizationState}, "ORGANIZATION_STATE_"),
    "plan": FilterField.enum(Organization.plan, {p.value: p.value for p in Plan}, "ORGANIZATION_PLAN_"),
    "parent_organization_id": FilterField(Kind.STRING, Organization.parent_organization_id),
    "kyc_verified": FilterField(Kind.BOOLEAN, Organization.kyc_verified),
    "labels": FilterField(Kind.LABELS, Organization.labels),
}


async def get(session: AsyncSession, organization_id: str) -> Organization | None:
    """The organisation, or ``None``."""
    return await session.get(Organization, organization_id)


async def lock(session: AsyncSession, organization_id: str) -> Organization | None:
    """The organisation, locked for the rest of the transaction (``None`` if absent).

    Membership changes take this lock first, so two of them in one organisation never
    interleave (two ADMINs demoting each other cannot both see "there is another ADMIN").
    An UPDATE locks on every backend: a row lock on PostgreSQL, the write lock on SQLite.
    """
    await session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(member_epoch=Organization.member_epoch + 1)
        .execution_options(synchronize_session=False)
    )
    result: Organization | None = await session.scalar(
        select(Organization).where(Organization.id == organization_id).execution_options(populate_existing=True)
    )
    return result


async def add(session: AsyncSession, organization: Organization) -> None:
    """Insert a new organisation.

    Raises:
        AlreadyExists: the id is taken.

    """
    session.add(organization)
    await flush(session, exists=f"organization {organization.id} already exists")


async def member_counts(session: AsyncSession, organization_ids: Sequence[str]) -> dict[str, int]:
    """How many members each organisation has."""
    if not organization_ids:
        return {}
    rows = await session.execute(
        select(Membership.organization_id, func.count())
        .where(Membership.organization_id.in_(organization_ids))
        .group_by(Membership.organization_id)
    )
    counts = {organization_id: 0 for organization_id in organization_ids}
    counts.update({str(organization_id): int(count) for organization_id, count in rows})
    return counts


async def list_page(
    session: AsyncSession,
    *,
    filter_text: str,
    show_closed: bool,
    after: paging.Position | None,
    limit: int,
) -> paging.Page[Organization]:
    """One page of organisations, newest first.

    Raises:
        InvalidArgument: a bad filter, or a page token of another shape.

    """
    statement = select(Organization)
    if (clause := compile_filter(filter_text, FILTERS)) is not None:
        statement = statement.where(clause)
    if not show_closed:
        statement = statement.where(Organization.state != OrganizationState.CLOSED.value)
    keys = None if after is None else paging.position_shape(after, int, str)
    return await paging.keyset_page(
        session,
        statement,
        keys=[Organization.create_time, Organization.id],
        after=None if keys is None else (paging.from_time_key(keys[0]), keys[1]),
        limit=limit,
        position_of=lambda row: (paging.time_key(row.create_time), row.id),
    )
