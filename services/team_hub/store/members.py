"""Membership rows: lookup, counting, listing (per organisation and per user)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, delete, exists, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.kit import paging
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.sql import flush
from mesh.kit.tenancy import ReadScope
from services.team_hub.domain.organizations import OrganizationState
from services.team_hub.models import Membership, Organization, TeamMember
from services.team_hub.names import TEAMS

MembershipKey = tuple[str, str]
ROLES = {role.name: int(role) for role in Role}


def key(membership: Membership) -> MembershipKey:
    """A membership's primary key: ``(organization_id, id)``."""
    return membership.organization_id, membership.id


def _active(now: datetime.datetime) -> ColumnElement[bool]:
    return or_(Membership.expire_time.is_(None), Membership.expire_time > now)


def _in_team(team: str) -> ColumnElement[bool]:
    """Members of the team ``organizations/{organization}/teams/{team}`` (a foreign team has none)."""
    parsed = TEAMS.parse(team, field="filter")
    return exists().where(
        TeamMember.organization_id == parsed.organization,
        TeamMember.organization_id == Membership.organization_id,
        TeamMember.membership_id == Membership.id,
        TeamMember.team_id == parsed["team"],
    )


def filters(now: datetime.datetime) -> FilterSchema:
    """ListMembers' filterable fields; ``state`` follows the clock (a GUEST's access ends)."""
    state = case((_active(now), "ACTIVE"), else_="EXPIRED")
    return {
        "role": FilterField.enum(Membership.role, ROLES, "ROLE_", ordered=True),
        "state": FilterField.enum(state, {"ACTIVE": "ACTIVE", "EXPIRED": "EXPIRED"}, "MEMBERSHIP_STATE_"),
        "user": FilterField(Kind.STRING, Membership.user),
        "email": FilterField(Kind.STRING, Membership.email),
        "teams": FilterField.has(_in_team),
    }


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
    await flush(session, exists="the user is already a member of this organization")


async def remove(session: AsyncSession, membership: Membership) -> None:
    """Delete a membership and its places in teams."""
    await session.execute(
        delete(TeamMember).where(
            TeamMember.organization_id == membership.organization_id, TeamMember.membership_id == membership.id
        )
    )
    await session.delete(membership)
    await session.flush()


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


async def list_page(
    session: AsyncSession,
    scope: ReadScope,
    *,
    filter_text: str,
    now: datetime.datetime,
    after: paging.Position | None,
    limit: int,
) -> paging.Page[Membership]:
    """One page of members by display name (one organisation's, or every one's).

    Raises:
        InvalidArgument: a bad filter, or a page token of another shape.

    """
    statement = select(Membership)
    if not scope.everywhere:
        statement = statement.where(Membership.organization_id == scope.organization_id)
    if (clause := compile_filter(filter_text, filters(now))) is not None:
        statement = statement.where(clause)
    return await paging.keyset_page(
        session,
        statement,
        keys=[Membership.display_name, Membership.organization_id, Membership.id],
        after=None if after is None else paging.position_shape(after, str, str, str),
        limit=limit,
        position_of=lambda row: (row.display_name, row.organization_id, row.id),
        descending=False,
    )


async def list_for_user(
    session: AsyncSession,
    user: str,
    *,
    show_inactive: bool,
    now: datetime.datetime,
    after: paging.Position | None,
    limit: int,
) -> tuple[list[tuple[Membership, Organization]], paging.Position | None]:
    """One page of a user's memberships with their organisations, oldest first."""
    statement = select(Membership).where(Membership.user == user)
    if not show_inactive:
        statement = statement.where(
            _active(now),
            exists().where(
                Organization.id == Membership.organization_id, Organization.state == OrganizationState.ACTIVE.value
            ),
        )
    keys = None if after is None else paging.position_shape(after, int, str, str)
    page: paging.Page[Membership] = await paging.keyset_page(
        session,
        statement,
        keys=[Membership.join_time, Membership.organization_id, Membership.id],
        after=None if keys is None else (paging.from_time_key(keys[0]), keys[1], keys[2]),
        limit=limit,
        position_of=lambda row: (paging.time_key(row.join_time), row.organization_id, row.id),
        descending=False,
    )
    organizations = {
        row.id: row
        for row in await session.scalars(
            select(Organization).where(Organization.id.in_({m.organization_id for m in page.items}))
        )
    }
    return [(m, organizations[m.organization_id]) for m in page.items], page.next_after


async def users(session: AsyncSession, organization_id: str) -> list[str]:
    """The users of every member of the organisation."""
    rows = await session.scalars(select(Membership.user).where(Membership.organization_id == organization_id))
    return list(rows.all())
