"""Queries of the agents service. Every function takes the session of the running transaction.

Tenancy is part of the query: a lookup scoped to an organisation never returns another
organisation's agent, and "not there" and "not yours" are the same ``NotFound``.
Changes are flushed at once, so conflicts surface here as domain errors (``Aborted``,
``AlreadyExists``) rather than at commit.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import bindparam, delete, inspect, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from mesh.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from mesh.reads import AnySelect
from services.agents.domain import names
from services.agents.domain.filtering import AgentFilter
from services.agents.domain.lifecycle import AgentState
from services.agents.domain.paging import Position
from services.agents.events import AgentEvent
from services.agents.models import AgentRow, AgentVersionRow, CreateRequestRow, OutboxRow

RowT = TypeVar("RowT")

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    """One page of a listing.

    Attributes:
        items: the rows, in listing order.
        next_after: the position to resume after, or ``None`` on the last page.

    """

    items: Sequence[RowT]
    next_after: Position | None


# Agents


class PointReads(Protocol):
    """Single-row reads outside a session (``mesh.db.ServiceDatabase.point_read``)."""

    async def point_read(self, statement: AnySelect, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """One row of ``statement``, or ``None``."""


_AGENT_FIELDS = tuple((attribute.key, attribute.columns[0]) for attribute in inspect(AgentRow).column_attrs)
_AGENT_BY_ID = select(*(column for _key, column in _AGENT_FIELDS)).where(AgentRow.id == bindparam("agent_id"))
_AGENT_BY_ID_IN_ORGANIZATION = _AGENT_BY_ID.where(AgentRow.organization_id == bindparam("organization_id"))


async def read_agent(database: PointReads, agent_id: str, organization_id: str | None) -> AgentRow:
    """:func:`get_agent` for a read-only caller, as one point read without a session (the hot path).

    The row is detached: read it, do not change it.

    Raises:
        NotFound: no such agent in the scope (same message as :func:`get_agent`).

    """
    if organization_id is None:
        values = await database.point_read(_AGENT_BY_ID, {"agent_id": agent_id})
    else:
        params = {"agent_id": agent_id, "organization_id": organization_id}
        values = await database.point_read(_AGENT_BY_ID_IN_ORGANIZATION, params)
    if values is None:
        raise NotFound(f"{names.agent_name(agent_id)} not found")
    return AgentRow(**{key: value for (key, _column), value in zip(_AGENT_FIELDS, values, strict=True)})


async def find_agent(session: AsyncSession, agent_id: str, organization_id: str | None) -> AgentRow | None:
    """The agent with this id in this organisation (any organisation when ``None``), or ``None``."""
    query = select(AgentRow).where(AgentRow.id == agent_id)
    if organization_id is not None:
        query = query.where(AgentRow.organization_id == organization_id)
    return (await session.execute(query)).scalar_one_or_none()


async def get_agent(session: AsyncSession, agent_id: str, organization_id: str | None) -> AgentRow:
    """Like :func:`find_agent`, but a missing agent is an error.

    Raises:
        NotFound: no such agent in the scope (the message is the same whether it is
            missing or belongs to another organisation).

    """
    row = await find_agent(session, agent_id, organization_id)
    if row is None:
        raise NotFound(f"{names.agent_name(agent_id)} not found")
    return row


async def add_agent(session: AsyncSession, row: AgentRow) -> None:
    """Insert a new agent.

    Raises:
        AlreadyExists: an agent with this id exists (in any organisation: ids are global).

    """
    if await session.get(AgentRow, row.id) is not None:
        raise AlreadyExists(f"{names.agent_name(row.id)} already exists")
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent create won the race for the id
        raise AlreadyExists(f"{names.agent_name(row.id)} already exists") from None


async def save_agent(session: AsyncSession, row: AgentRow) -> None:
    """Write an agent's changes, bumping its revision.

    Raises:
        Aborted: another transaction changed the agent since this one read it.

    """
    try:
        await session.flush()
    except StaleDataError:
        raise Aborted("the agent was changed concurrently; read it again and retry") from None


async def delete_agent(session: AsyncSession, row: AgentRow) -> None:
    """Delete an agent and all its versions."""
    await session.execute(delete(AgentVersionRow).where(AgentVersionRow.agent_id == row.id))
    await session.delete(row)
    try:
        await session.flush()
    except StaleDataError:
        raise Aborted("the agent was changed concurrently; read it again and retry") from None


async def list_agents(
    session: AsyncSession,
    organization_id: str | None,
    agent_filter: AgentFilter,
    *,
    show_archived: bool,
    after: Position | None,
    limit: int,
) -> Page[AgentRow]:
    """Agents newest first (``create_time``, then ``id``, descending), ``limit`` at a time.

    Args:
        session: the transaction.
        organization_id: whose agents; ``None`` lists every organisation.
        agent_filter: state and label conditions.
        show_archived: include archived agents when the filter names no state.
        after: the position of the previous page's last agent (``(create_time µs, id)``).
        limit: the page size.

    """
    query = select(AgentRow)
    if organization_id is not None:
        query = query.where(AgentRow.organization_id == organization_id)
    if agent_filter.state is not None:
        query = query.where(AgentRow.state == agent_filter.state)
    elif not show_archived:
        query = query.where(AgentRow.state != AgentState.ARCHIVED)
    for key, value in sorted(agent_filter.labels.items()):
        query = query.where(AgentRow.labels[key].as_string() == value)
    if after is not None:
        created, agent_id = _agent_position(after)
        query = query.where(tuple_(AgentRow.create_time, AgentRow.id) < tuple_(created, agent_id))
    query = query.order_by(AgentRow.create_time.desc(), AgentRow.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], ((last.create_time - _EPOCH) // _MICROSECOND, last.id))


def _agent_position(position: Position) -> tuple[datetime.datetime, str]:
    match position:
        case (int() as micros, str() as agent_id):
            return _EPOCH + micros * _MICROSECOND, agent_id
    raise InvalidArgument("page_token is not a page token from this listing", {"page_token": "has the wrong shape"})


# Versions


async def add_version(session: AsyncSession, row: AgentVersionRow) -> None:
    """Insert a published version.

    Raises:
        Aborted: a concurrent publish took the same version number.

    """
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Aborted("the agent was published concurrently; read it again and retry") from None


async def find_version(session: AsyncSession, agent_id: str, version: int) -> AgentVersionRow | None:
    """One version of an agent, or ``None``. The caller has already checked access to the agent."""
    return await session.get(AgentVersionRow, (agent_id, version))


async def list_versions(
    session: AsyncSession, agent_id: str, *, after: Position | None, limit: int
) -> Page[AgentVersionRow]:
    """An agent's versions, newest first, ``limit`` at a time (``after``: the previous page's last version)."""
    query = select(AgentVersionRow).where(AgentVersionRow.agent_id == agent_id)
    if after is not None:
        match after:
            case (int() as version,):
                query = query.where(AgentVersionRow.version < version)
            case _:
                raise InvalidArgument(
                    "page_token is not a page token from this listing", {"page_token": "has the wrong shape"}
                )
    query = query.order_by(AgentVersionRow.version.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    if len(rows) <= limit:
        return Page(rows, None)
    return Page(rows[:limit], (rows[limit - 1].version,))


# Idempotency keys of CreateAgent


async def find_create_request(
    session: AsyncSession, organization_id: str, request_id: str, *, not_before: datetime.datetime
) -> CreateRequestRow | None:
    """The create request with this id in this organisation, if it arrived at or after ``not_before``."""
    row = await session.get(CreateRequestRow, (organization_id, request_id))
    if row is None or row.create_time < not_before:
        return None
    return row


async def remember_create_request(
    session: AsyncSession, row: CreateRequestRow, *, not_before: datetime.datetime
) -> None:
    """Record a create request, replacing a record of the same key older than ``not_before``.

    Raises:
        Aborted: a concurrent request with the same request_id is being handled; retrying
            returns its result.

    """
    await session.execute(
        delete(CreateRequestRow).where(
            CreateRequestRow.organization_id == row.organization_id,
            CreateRequestRow.request_id == row.request_id,
            CreateRequestRow.create_time < not_before,
        )
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Aborted("a request with this request_id is in progress; retry to get its result") from None


# Outbox


async def append_event(session: AsyncSession, event: AgentEvent, occurred_at: datetime.datetime) -> OutboxRow:
    """Add an event to the outbox, in the caller's transaction."""
    row = OutboxRow(
        event_id=str(uuid.uuid4()),
        stream=event.stream,
        event_type=event.event_type,
        data=json.dumps(event.data, separators=(",", ":"), sort_keys=True),
        metadata_=json.dumps(event.metadata, separators=(",", ":"), sort_keys=True),
        occurred_at=occurred_at,
        relayed_at=None,
        attempts=0,
    )
    session.add(row)
    await session.flush()
    return row
