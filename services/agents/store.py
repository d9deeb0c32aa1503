"""Queries of the agents service. Every function takes the session of the running transaction.

Tenancy is part of the key: an agent is found by ``(organization_id, id)``, so a lookup
in one organisation never returns another organisation's agent, and "not there" and
"not yours" are the same ``NotFound`` (:func:`mesh.kit.tenancy.not_found`). Changes are
flushed at once (:func:`mesh.kit.sql.flush`), so conflicts surface here as domain errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import Aborted
from mesh.kit import paging, tenancy
from mesh.kit.filtering import FilterField, FilterSchema, Kind, parse_filter
from mesh.kit.paging import Page, Position
from mesh.kit.sql import flush
from mesh.reads import AnySelect
from services.agents.domain import names
from services.agents.domain.lifecycle import AgentState
from services.agents.models import AgentRow, AgentVersionRow

_CONCURRENT = "the agent was changed concurrently; read it again and retry"

# The ListAgents filter (AIP-160, see mesh.kit.filtering).
FILTERS: FilterSchema = {
    "state": FilterField.enum(AgentRow.state, {state.value: state for state in AgentState}, prefix="AGENT_STATE_"),
    "display_name": FilterField(Kind.STRING, AgentRow.display_name),
    "create_time": FilterField(Kind.TIMESTAMP, AgentRow.create_time),
    "update_time": FilterField(Kind.TIMESTAMP, AgentRow.update_time),
    "labels": FilterField(Kind.LABELS, AgentRow.labels),
}


# Agents


async def find_agent(session: AsyncSession, organization_id: str, agent_id: str) -> AgentRow | None:
    """The agent with this id in this organisation, or ``None`` (a primary-key point read)."""
    return await session.get(AgentRow, (organization_id, agent_id))


class PointReads(Protocol):
    """Single-row reads outside a session (``mesh.db.ServiceDatabase.point_read``)."""

    async def point_read(self, statement: AnySelect, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """One row of ``statement``, or ``None``."""


_AGENT_FIELDS = tuple((attribute.key, attribute.columns[0]) for attribute in inspect(AgentRow).column_attrs)
_AGENT_BY_KEY = select(*(column for _key, column in _AGENT_FIELDS)).where(
    AgentRow.organization_id == bindparam("organization_id"), AgentRow.id == bindparam("agent_id")
)


async def read_agent(database: PointReads, organization_id: str, agent_id: str) -> AgentRow | None:
    """:func:`find_agent` for a read-only caller: one point read without a session (the hot path).

    The row is detached: read it, do not change it.
    """
    values = await database.point_read(_AGENT_BY_KEY, {"organization_id": organization_id, "agent_id": agent_id})
    if values is None:
        return None
    return AgentRow(**{key: value for (key, _column), value in zip(_AGENT_FIELDS, values, strict=True)})


async def get_agent(session: AsyncSession, organization_id: str, agent_id: str) -> AgentRow:
    """Like :func:`find_agent`, but a missing agent is an error.

    Raises:
        NotFound: no such agent in the organisation.

    """
    row = await find_agent(session, organization_id, agent_id)
    if row is None:
        raise tenancy.not_found(names.agent_name(organization_id, agent_id))
    return row


async def add_agent(session: AsyncSession, row: AgentRow) -> None:
    """Insert a new agent.

    Raises:
        AlreadyExists: the organisation has an agent with this id.

    """
    session.add(row)
    await flush(session, exists=f"{names.agent_name(row.organization_id, row.id)} already exists")


async def save_agent(session: AsyncSession, row: AgentRow) -> None:
    """Write an agent's changes, bumping its revision.

    Raises:
        Aborted: another transaction changed the agent since this one read it.

    """
    await flush(session, stale=_CONCURRENT)


async def delete_agent(session: AsyncSession, row: AgentRow) -> None:
    """Delete an agent and all its versions."""
    await session.execute(
        delete(AgentVersionRow).where(
            AgentVersionRow.organization_id == row.organization_id, AgentVersionRow.agent_id == row.id
        )
    )
    await session.delete(row)
    await flush(session, stale=_CONCURRENT)


async def list_agents(
    session: AsyncSession,
    organization_id: str | None,
    filter_text: str,
    *,
    show_archived: bool,
    after: Position | None,
    limit: int,
    only_ids: frozenset[str] | None = None,
) -> Page[AgentRow]:
    """Agents newest first (``create_time``, then organisation and ``id``, descending), ``limit`` at a time.

    Args:
        session: the transaction.
        organization_id: whose agents; ``None`` lists every organisation.
        filter_text: an AIP-160 filter over :data:`FILTERS`.
        show_archived: include archived agents when the filter names no state (a filter on
            state decides by itself).
        after: the position of the previous page's last agent (``(create_time µs, organisation, id)``).
        limit: the page size.
        only_ids: the caller's allow-list (an API key's ``allowed_agents``); ``None`` for every agent.

    Raises:
        InvalidArgument: the filter or the position is malformed.

    """
    query = select(AgentRow)
    if organization_id is not None:
        query = query.where(AgentRow.organization_id == organization_id)
    if only_ids is not None:
        query = query.where(AgentRow.id.in_(sorted(only_ids)))
    parsed = parse_filter(filter_text, FILTERS)
    if parsed.clause is not None:
        query = query.where(parsed.clause)
    if not show_archived and "state" not in parsed.fields:
        query = query.where(AgentRow.state != AgentState.ARCHIVED)
    keys = None
    if after is not None:
        micros, organization, agent_id = paging.position_shape(after, int, str, str)
        keys = (paging.from_time_key(micros), organization, agent_id)
    return await paging.keyset_page(
        session,
        query,
        keys=[AgentRow.create_time, AgentRow.organization_id, AgentRow.id],
        after=keys,
        limit=limit,
        position_of=lambda row: (paging.time_key(row.create_time), row.organization_id, row.id),
    )


# Versions


async def add_version(session: AsyncSession, row: AgentVersionRow) -> None:
    """Insert a published version.

    Raises:
        Aborted: a concurrent publish took the same version number.

    """
    session.add(row)
    await flush(session, exists=Aborted("the agent was published concurrently; read it again and retry"))


async def find_version(
    session: AsyncSession, organization_id: str, agent_id: str, version: int
) -> AgentVersionRow | None:
    """One version of an agent, or ``None``. The caller has already checked access to the agent."""
    return await session.get(AgentVersionRow, (organization_id, agent_id, version))


async def list_versions(
    session: AsyncSession, organization_id: str, agent_id: str, *, after: Position | None, limit: int
) -> Page[AgentVersionRow]:
    """An agent's versions, newest first, ``limit`` at a time (``after``: the previous page's last version)."""
    query = select(AgentVersionRow).where(
        AgentVersionRow.organization_id == organization_id, AgentVersionRow.agent_id == agent_id
    )
    keys = None if after is None else paging.position_shape(after, int)
    return await paging.keyset_page(
        session,
        query,
        keys=[AgentVersionRow.version],
        after=keys,
        limit=limit,
        position_of=lambda row: (row.version,),
    )
