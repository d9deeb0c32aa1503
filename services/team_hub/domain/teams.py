"""Teams: their fields and their size."""

from __future__ import annotations

from mesh.errors import ResourceExhausted
from services.team_hub.domain import common

MAX_DESCRIPTION = 1000
MAX_TEAM_MEMBERS = 1000


def description(value: str, field: str = "team.description") -> str:
    """A team description, stripped, at most 1,000 characters.

    Raises:
        InvalidArgument: too long, or with control characters other than line breaks.

    """
    return common.text(value, field, limit=MAX_DESCRIPTION, multiline=True)


def check_room(member_count: int) -> None:
    """Raise when a team is full.

    Raises:
        ResourceExhausted: the team has 1,000 members.

    """
    if member_count >= MAX_TEAM_MEMBERS:
        raise ResourceExhausted(f"a team has at most {MAX_TEAM_MEMBERS} members")
