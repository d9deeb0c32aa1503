"""Organisation rows: lookup, the per-organisation lock, creation and listing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, not_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import AlreadyExists
from services.team_hub.domain import filters
from services.team_hub.domain.organizations import OrganizationState, Plan
from services.team_hub.models import Membership, Organization
from services.team_hub.store import keyset

FILTERABLE: dict[str, frozenset[str]] = {
    "state": filters.EQUALITY,
    "plan": filters.EQUALITY,
    "parent_organization_id": filters.EQUALITY,
    "kyc_verified": filters.EQUALITY,
    "labels.*": filters.EQUALITY,
}
_STATES = frozenset(s.value for s in OrganizationState)
_PLANS = frozenset(p.value for p in Plan)


async def get(session: AsyncSession, organization_id: str) -> Organization | None:
    """The organisation, or ``None``."""
    return await session.get(Organization, organization_id)


async def get_by_request_id(session: AsyncSession, request_id: str) -> Organization | None:
    """The organisation ProvisionOrganization created for this idempotency key."""
    result: Organization | None = await session.scalar(
        select(Organization).where(Organization.request_id == request_id)
    )
    return result


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
        AlreadyExists: the id (or the idempotency key) is taken.

    """
    session.add(organization)
    try:
        await session.flush()
    except IntegrityError:
        # The transaction is spoiled; the exception ends the request, which rolls it back.
        raise AlreadyExists(f"organization {organization.id} already exists") from None


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


def _condition(condition: filters.Condition) -> ColumnElement[bool]:
    value: Any
    clause: ColumnElement[bool]
    if condition.field == "state":
        value = filters.enum_value(condition.value, _STATES, "ORGANIZATION_STATE_", "state")
        clause = Organization.state == value
    elif condition.field == "plan":
        value = filters.enum_value(condition.value, _PLANS, "ORGANIZATION_PLAN_", "plan")
        clause = Organization.plan == value
    elif condition.field == "parent_organization_id":
        clause = Organization.parent_organization_id == condition.value
    elif condition.field == "kyc_verified":
        clause = Organization.kyc_verified == filters.bool_value(condition.value, "kyc_verified")
    else:
        label = condition.field.split(".", 1)[1]
        clause = Organization.labels[label].as_string() == condition.value
    return not_(clause) if condition.op == "!=" else clause


async def list_page(
    session: AsyncSession,
    *,
    conditions: list[filters.Condition],
    show_closed: bool,
    after: list[Any] | None,
    limit: int,
) -> tuple[list[Organization], list[Any] | None]:
    """One page of organisations, newest first, and the key to resume after."""
    statement = select(Organization).where(*(_condition(c) for c in conditions))
    if not show_closed:
        statement = statement.where(Organization.state != OrganizationState.CLOSED.value)
    if after is not None:
        created, organization_id = keyset.string_key(after, 2)
        statement = statement.where(
            keyset.seek(
                [Organization.create_time, Organization.id],
                [keyset.parse_time_key(created), organization_id],
                descending=True,
            )
        )
    statement = statement.order_by(Organization.create_time.desc(), Organization.id.desc()).limit(limit + 1)
    rows = (await session.execute(statement)).scalars().all()
    return keyset.split(rows, limit, lambda o: [keyset.time_key(o.create_time), o.id])
