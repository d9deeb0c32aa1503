"""Team rows and their members."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, false, func, not_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import AlreadyExists
from services.team_hub.domain import filters
from services.team_hub.domain.common import parse_child
from services.team_hub.models import Membership, Team, TeamMember
from services.team_hub.store import keyset

FILTERABLE: dict[str, frozenset[str]] = {
    "display_name": filters.EQUALITY,
    "labels.*": filters.EQUALITY,
    "members.member": filters.EQUALITY,
}


async def get(session: AsyncSession, organization_id: str, team_id: str) -> Team | None:
    """The organisation's team with this id, or ``None``."""
    return await session.get(Team, (organization_id, team_id), populate_existing=True)


async def by_request_id(session: AsyncSession, organization_id: str, request_id: str) -> Team | None:
    """The team an earlier CreateTeam with this idempotency key created."""
    result: Team | None = await session.scalar(
        select(Team).where(Team.organization_id == organization_id, Team.request_id == request_id)
    )
    return result


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
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExists("a team with that id or display name already exists") from None


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
            (Membership.organization_id == TeamMember.organization_id) & (Membership.id == TeamMember.membership_id),
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


def _condition(condition: filters.Condition, organization_id: str) -> ColumnElement[bool]:
    clause: ColumnElement[bool]
    if condition.field == "display_name":
        clause = Team.display_name == condition.value
    elif condition.field == "members.member":
        member_organization, membership_id = parse_child(condition.value, "members", "filter")
        # A member of another organisation is in none of these teams, whether or not it exists.
        clause = (
            exists().where(
                TeamMember.organization_id == Team.organization_id,
                TeamMember.team_id == Team.id,
                TeamMember.membership_id == membership_id,
            )
            if member_organization == organization_id
            else false()
        )
    else:
        label = condition.field.split(".", 1)[1]
        clause = Team.labels[label].as_string() == condition.value
    return not_(clause) if condition.op == "!=" else clause


async def list_page(
    session: AsyncSession,
    organization_id: str,
    *,
    conditions: list[filters.Condition],
    after: list[Any] | None,
    limit: int,
) -> tuple[list[Team], list[Any] | None]:
    """One page of an organisation's teams by display name, and the key to resume after."""
    statement = select(Team).where(
        Team.organization_id == organization_id, *(_condition(c, organization_id) for c in conditions)
    )
    if after is not None:
        statement = statement.where(
            keyset.seek([Team.display_name, Team.id], keyset.string_key(after, 2), descending=False)
        )
    statement = statement.order_by(Team.display_name, Team.id).limit(limit + 1)
    rows = (await session.execute(statement)).scalars().all()
    return keyset.split(rows, limit, lambda t: [t.display_name, t.id])
