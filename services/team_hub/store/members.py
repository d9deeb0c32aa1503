"""Membership rows: lookup, counting, listing (per organisation and per user)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, false, func, not_, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.errors import AlreadyExists
from services.team_hub.domain import filters
from services.team_hub.domain.common import parse_child
from services.team_hub.domain.organizations import OrganizationState
from services.team_hub.models import Membership, Organization, TeamMember
from services.team_hub.store import keyset

FILTERABLE: dict[str, frozenset[str]] = {
    "role": filters.ORDERED,
    "state": filters.EQUALITY,
    "user": filters.EQUALITY,
    "email": filters.EQUALITY,
    "teams": filters.HAS,
}
_MEMBERSHIP_STATES = frozenset({"ACTIVE", "EXPIRED"})


async def get(session: AsyncSession, organization_id: str, membership_id: str) -> Membership | None:
    """The organisation's membership with this id, or ``None``."""
    return await session.get(Membership, (organization_id, membership_id), populate_existing=True)


async def find_by_user(session: AsyncSession, organization_id: str, user: str) -> Membership | None:
    """A user's membership in an organisation, or ``None``."""
    result: Membership | None = await session.scalar(
        select(Membership).where(Membership.organization_id == organization_id, Membership.user == user)
    )
    return result


async def email_taken(session: AsyncSession, organization_id: str, email: str) -> bool:
    """Whether a member of the organisation has this e-mail address."""
    found = await session.scalar(
        select(Membership.id).where(Membership.organization_id == organization_id, Membership.email == email).limit(1)
    )
    return found is not None


async def count(session: AsyncSession, organization_id: str) -> int:
    """How many members the organisation has."""
    value = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.organization_id == organization_id)
    )
    return int(value or 0)


async def count_admins(session: AsyncSession, organization_id: str) -> int:
    """How many ADMINs the organisation has."""
    value = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.organization_id == organization_id, Membership.role == int(Role.ADMIN))
    )
    return int(value or 0)


async def add(session: AsyncSession, membership: Membership) -> None:
    """Insert a membership.

    Raises:
        AlreadyExists: the user is a member of the organisation already.

    """
    session.add(membership)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists("the user is already a member of this organization") from None


async def remove(session: AsyncSession, membership: Membership) -> None:
    """Delete a membership and its places in teams."""
    await session.execute(
        delete(TeamMember).where(
            TeamMember.organization_id == membership.organization_id, TeamMember.membership_id == membership.id
        )
    )
    await session.delete(membership)
    await session.flush()


MembershipKey = tuple[str, str]


def key(membership: Membership) -> MembershipKey:
    """A membership's primary key: ``(organization_id, id)``."""
    return membership.organization_id, membership.id


async def teams_of(session: AsyncSession, keys: Sequence[MembershipKey]) -> dict[MembershipKey, list[str]]:
    """The ids of the teams each membership is in, in the order they joined them."""
    result: dict[MembershipKey, list[str]] = {k: [] for k in keys}
    if not keys:
        return result
    rows = await session.execute(
        select(TeamMember.organization_id, TeamMember.membership_id, TeamMember.team_id)
        .where(tuple_(TeamMember.organization_id, TeamMember.membership_id).in_(list(result)))
        .order_by(TeamMember.add_time, TeamMember.team_id)
    )
    for organization_id, membership_id, team_id in rows:
        result[(organization_id, membership_id)].append(team_id)
    return result


def _active(now: datetime.datetime) -> ColumnElement[bool]:
    return or_(Membership.expire_time.is_(None), Membership.expire_time > now)


def _condition(condition: filters.Condition, organization_id: str, now: datetime.datetime) -> ColumnElement[bool]:
    op = condition.op
    if condition.field == "role":
        role = int(filters.role_value(condition.value))
        column = Membership.role
        return {
            "=": column == role,
            "!=": column != role,
            "<": column < role,
            "<=": column <= role,
            ">": column > role,
            ">=": column >= role,
        }[op]
    clause: ColumnElement[bool]
    if condition.field == "state":
        state = filters.enum_value(condition.value, _MEMBERSHIP_STATES, "MEMBERSHIP_STATE_", "state")
        clause = _active(now) if state == "ACTIVE" else not_(_active(now))
    elif condition.field == "user":
        clause = Membership.user == condition.value
    elif condition.field == "email":
        clause = Membership.email == condition.value.lower()
    else:  # teams : "organizations/{organization}/teams/{team}"
        team_organization, team_id = parse_child(condition.value, "teams", "filter")
        # A team of another organisation has no members here, whether or not it exists.
        clause = (
            exists().where(
                TeamMember.organization_id == Membership.organization_id,
                TeamMember.membership_id == Membership.id,
                TeamMember.team_id == team_id,
            )
            if team_organization == organization_id
            else false()
        )
    return not_(clause) if op == "!=" else clause


async def list_page(
    session: AsyncSession,
    organization_id: str,
    *,
    conditions: list[filters.Condition],
    now: datetime.datetime,
    after: list[Any] | None,
    limit: int,
) -> tuple[list[Membership], list[Any] | None]:
    """One page of an organisation's members by display name, and the key to resume after."""
    statement = select(Membership).where(
        Membership.organization_id == organization_id, *(_condition(c, organization_id, now) for c in conditions)
    )
    if after is not None:
        statement = statement.where(
            keyset.seek([Membership.display_name, Membership.id], keyset.string_key(after, 2), descending=False)
        )
    statement = statement.order_by(Membership.display_name, Membership.id).limit(limit + 1)
    rows = (await session.execute(statement)).scalars().all()
    return keyset.split(rows, limit, lambda m: [m.display_name, m.id])


async def list_for_user(
    session: AsyncSession,
    user: str,
    *,
    show_inactive: bool,
    now: datetime.datetime,
    after: list[Any] | None,
    limit: int,
) -> tuple[list[tuple[Membership, Organization]], list[Any] | None]:
    """One page of a user's memberships with their organisations, oldest first."""
    statement = (
        select(Membership, Organization)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(Membership.user == user)
    )
    if not show_inactive:
        statement = statement.where(_active(now), Organization.state == OrganizationState.ACTIVE.value)
    if after is not None:
        joined, membership_id = keyset.string_key(after, 2)
        statement = statement.where(
            keyset.seek(
                [Membership.join_time, Membership.id],
                [keyset.parse_time_key(joined), membership_id],
                descending=False,
            )
        )
    statement = statement.order_by(Membership.join_time, Membership.id).limit(limit + 1)
    rows = [(membership, organization) for membership, organization in (await session.execute(statement))]
    return keyset.split(rows, limit, lambda pair: [keyset.time_key(pair[0].join_time), pair[0].id])


async def users(session: AsyncSession, organization_id: str) -> list[str]:
    """The users of every member of the organisation."""
    rows = await session.scalars(select(Membership.user).where(Membership.organization_id == organization_id))
    return list(rows.all())
