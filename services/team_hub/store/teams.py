"""Team rows and their members."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit import paging
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.sql import flush as kit_flush
from mesh.kit.tenancy import ReadScope
from services.team_hub.models import Membership, Team, TeamMember
from services.team_hub.names import MEMBERS


def _has_member(member: str) -> ColumnElement[bool]:
    """Teams with the member ``organizations/{organization}/members/{member}`` (a foreign one is in none)."""
    parsed = MEMBERS.parse(member, field="filter")
    return exists().where(
        TeamMember.organization_id == parsed.organization,
        TeamMember.organization_id == Team.organization_id,
        TeamMember.team_id == Team.id,
        TeamMember.membership_id == parsed["member"],
    )


FILTERS: FilterSchema = {
    "display_name": FilterField(Kind.STRING, Team.display_name),
    "labels": FilterField(Kind.LABELS, Team.labels),
    "members.member": FilterField.has(_has_member),
}


async def get(session: AsyncSession, organization_id: str, team_id: str) -> Team | None:
    """The organisation's team with this id, or ``None``."""
    return await session.get(Team, (organization_id, team_id), populate_existing=True)


async def display_name_taken(session: AsyncSession, organization_id: str, name: str, *, other_than: str = "") -> bool:
    """Whether another team of the organisation has this display name."""
    found = await session.scalar(
        select(Team.id)
        .where(Team.organization_id == organization_id, Team.display_name == name, Team.id != other_than)
        .limit(1)
    )
    return found is not None


async def existing_ids(session: AsyncSession, organization_id: str, team_ids: Sequence[str]) -> set[str]:
    """Which of ``team_ids`` are teams of the organisation."""
    if not team_ids:
        return set()
    rows = await session.scalars(select(Team.id).where(Team.organization_id == organization_id, Team.id.in_(team_ids)))
    return set(rows.all())


async def flush(session: AsyncSession, team: Team) -> None:
    """Write a new or changed team.

    Raises:
        AlreadyExists: the id or the display name is taken (a concurrent create).

    """
    session.add(team)
    await kit_flush(
        session,
        exists="a team with that id or display name already exists",
        stale="the team changed while it was being updated; read it again and retry",
    )


async def remove(session: AsyncSession, team: Team) -> None:
    """Delete a team (its members stay in the organisation)."""
    await session.execute(
        delete(TeamMember).where(TeamMember.organization_id == team.organization_id, TeamMember.team_id == team.id)
    )
    await session.delete(team)
    await session.flush()


async def members(
    session: AsyncSession, organization_id: str, team_ids: Sequence[str]
) -> dict[str, list[tuple[TeamMember, Membership]]]:
    """Each of the organisation's teams' members with their memberships, in the order they were added."""
    result: dict[str, list[tuple[TeamMember, Membership]]] = {team_id: [] for team_id in team_ids}
    if not team_ids:
        return result
    rows = await session.execute(
        select(TeamMember, Membership)
        .join(
            Membership,
            and_(Membership.organization_id == TeamMember.organization_id, Membership.id == TeamMember.membership_id),
        )
        .where(TeamMember.organization_id == organization_id, TeamMember.team_id.in_(team_ids))
        .order_by(TeamMember.add_time, TeamMember.membership_id)
    )
    for place, membership in rows:
        result[place.team_id].append((place, membership))
    return result


async def member_count(session: AsyncSession, organization_id: str, team_id: str) -> int:
    """How many members a team has."""
    value = await session.scalar(
        select(func.count())
        .select_from(TeamMember)
        .where(TeamMember.organization_id == organization_id, TeamMember.team_id == team_id)
    )
    return int(value or 0)


async def place(session: AsyncSession, organization_id: str, team_id: str, membership_id: str) -> TeamMember | None:
    """A membership's place in a team of the organisation, or ``None``."""
    return await session.get(TeamMember, (organization_id, team_id, membership_id))


async def add_place(session: AsyncSession, team_member: TeamMember) -> None:
    """Put a membership in a team."""
    session.add(team_member)
    await session.flush()


async def remove_place(session: AsyncSession, team_member: TeamMember) -> None:
    """Take a membership out of a team."""
    await session.delete(team_member)
    await session.flush()


async def list_page(
    session: AsyncSession,
    scope: ReadScope,
    *,
    filter_text: str,
    after: paging.Position | None,
    limit: int,
) -> paging.Page[Team]:
    """One page of teams by display name (one organisation's, or every one's).

    Raises:
        InvalidArgument: a bad filter, or a page token of another shape.

    """
    statement = select(Team)
    if not scope.everywhere:
        statement = statement.where(Team.organization_id == scope.organization_id)
    if (clause := compile_filter(filter_text, FILTERS)) is not None:
        statement = statement.where(clause)
    return await paging.keyset_page(
        session,
        statement,
        keys=[Team.display_name, Team.organization_id, Team.id],
        after=None if after is None else paging.position_shape(after, str, str, str),
        limit=limit,
        position_of=lambda row: (row.display_name, row.organization_id, row.id),
        descending=False,
    )
