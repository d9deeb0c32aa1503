"""``vocelio.agents.v1.AgentsService``: proto in, proto out, one transaction per call.

Each method reads the caller (``mesh.principal.current()``; the RBAC interceptor has
already checked the method's permission), checks the request with the domain rules,
and does its work in one transaction: the change and its outbox event commit together
or not at all. Errors are ``mesh.errors`` exceptions; the errors interceptor maps them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import FailedPrecondition, InvalidArgument, NotFound
from mesh.principal import Principal, current
from services.agents import convert, events, store
from services.agents.domain import etags, filtering, masks, names, paging, tenancy, validation
from services.agents.domain.lifecycle import Action, next_state, plan_publish
from services.agents.models import AgentRow, AgentVersionRow, CreateRequestRow
from services.agents.usage import AgentUsage
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Clock = Callable[[], datetime.datetime]

IDEMPOTENCY_WINDOW = datetime.timedelta(hours=24)


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


class AgentsServicer(agents_service_pb2_grpc.AgentsServiceServicer):
    """Agents, their drafts and their published versions."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        page_tokens: paging.PageTokens,
        usage: AgentUsage,
        *,
        reads: store.PointReads,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._reads = reads
        self._page_tokens = page_tokens
        self._usage = usage
        self._clock = clock

    # Reading

    async def GetAgent(
        self, request: agents_service_pb2.GetAgentRequest, context: Context
    ) -> agents_service_pb2.GetAgentResponse:
        """Gets one agent."""
        principal = current()
        agent_id = names.parse_agent_name(request.name)
        row = await store.read_agent(self._reads, agent_id, tenancy.reading_scope(principal))
        return agents_service_pb2.GetAgentResponse(agent=convert.agent_to_proto(row))

    async def ListAgents(
        self, request: agents_service_pb2.ListAgentsRequest, context: Context
    ) -> agents_service_pb2.ListAgentsResponse:
        """Lists the organisation's agents, newest first."""
        principal = current()
        limit = paging.page_size(request.page_size)
        agent_filter = filtering.parse_filter(request.filter)
        scope = tenancy.listing_scope(principal)
        query = f"ListAgents|{scope}|{request.filter}|{request.show_archived}"
        after = self._page_tokens.decode(request.page_token, query) if request.page_token else None
        async with self._sessions.begin() as session:
            page = await store.list_agents(
                session, scope, agent_filter, show_archived=request.show_archived, after=after, limit=limit
            )
            agents = [convert.agent_to_proto(row) for row in page.items]
        next_token = self._page_tokens.encode(page.next_after, query) if page.next_after else ""
        return agents_service_pb2.ListAgentsResponse(agents=agents, next_page_token=next_token)

    async def GetAgentVersion(
        self, request: agents_service_pb2.GetAgentVersionRequest, context: Context
    ) -> agents_service_pb2.GetAgentVersionResponse:
        """Gets one published version."""
        principal = current()
        agent_id, number = names.parse_version_name(request.name)
        async with self._sessions.begin() as session:
            version = await self._version(session, agent_id, number, tenancy.reading_scope(principal))
            return agents_service_pb2.GetAgentVersionResponse(agent_version=convert.version_to_proto(version))

    async def ListAgentVersions(
        self, request: agents_service_pb2.ListAgentVersionsRequest, context: Context
    ) -> agents_service_pb2.ListAgentVersionsResponse:
        """Lists an agent's published versions, newest first."""
        principal = current()
        agent_id = names.parse_agent_name(request.parent, field="parent")
        limit = paging.page_size(request.page_size)
        query = f"ListAgentVersions|{agent_id}"
        after = self._page_tokens.decode(request.page_token, query) if request.page_token else None
        async with self._sessions.begin() as session:
            await store.get_agent(session, agent_id, tenancy.reading_scope(principal))
            page = await store.list_versions(session, agent_id, after=after, limit=limit)
            versions = [convert.version_to_proto(row) for row in page.items]
        next_token = self._page_tokens.encode(page.next_after, query) if page.next_after else ""
        return agents_service_pb2.ListAgentVersionsResponse(agent_versions=versions, next_page_token=next_token)

    # Creating, changing, deleting

    async def CreateAgent(
        self, request: agents_service_pb2.CreateAgentRequest, context: Context
    ) -> agents_service_pb2.CreateAgentResponse:
        """Creates an agent in the DRAFT state (once per request_id within 24 hours)."""
        principal = current()
        organization_id = tenancy.owning_organization(principal)
        validation.require_valid(validation.create_violations(request), prefix="")
        now = self._clock()
        agent_id = request.agent_id or names.new_agent_id()
        async with self._sessions.begin() as session:
            if request.request_id:
                earlier = await self._claim_request_id(session, request, organization_id, agent_id, now)
                if earlier is not None:
                    return agents_service_pb2.CreateAgentResponse(agent=earlier)
            draft = validation.with_defaults(request.agent.draft)
            row = convert.new_agent_row(agent_id, organization_id, request.agent, draft, principal.subject, now)
            await store.add_agent(session, row)
            agent = convert.agent_to_proto(row)
            await store.append_event(session, events.created(agent, principal), now)
        return agents_service_pb2.CreateAgentResponse(agent=agent)

    async def UpdateAgent(
        self, request: agents_service_pb2.UpdateAgentRequest, context: Context
    ) -> agents_service_pb2.UpdateAgentResponse:
        """Changes the fields named in update_mask."""
        principal = current()
        agent_id = names.parse_agent_name(request.agent.name, field="agent.name")
        paths = masks.resolve_update_mask(request.update_mask.paths, request.agent)
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, agent_id, principal, request.agent.etag)
            next_state(row.state, Action.EDIT, has_versions=row.latest_version > 0)
            changed = masks.apply_update_mask(convert.agent_to_proto(row), request.agent, paths)
            changed.draft.CopyFrom(validation.with_defaults(changed.draft))
            validation.require_valid(validation.agent_violations(changed))
            convert.copy_mutable_fields(changed, row)
            agent = await self._save(session, row, principal, now)
            await store.append_event(session, events.updated(agent, principal, paths), now)
        return agents_service_pb2.UpdateAgentResponse(agent=agent)

    async def DeleteAgent(
        self, request: agents_service_pb2.DeleteAgentRequest, context: Context
    ) -> agents_service_pb2.DeleteAgentResponse:
        """Deletes an agent and its versions, unless a campaign or phone number uses it."""
        principal = current()
        agent_id = names.parse_agent_name(request.name)
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, agent_id, principal, request.etag)
            users = await self._usage.users_of(request.name)
            if users:
                raise FailedPrecondition(f"{request.name} is still used by {', '.join(sorted(users))}")
            agent = convert.agent_to_proto(row)
            await store.delete_agent(session, row)
            await store.append_event(session, events.deleted(agent, principal), now)
        return agents_service_pb2.DeleteAgentResponse()

    # Versions

    async def PublishAgent(
        self, request: agents_service_pb2.PublishAgentRequest, context: Context
    ) -> agents_service_pb2.PublishAgentResponse:
        """Freezes the draft as the next version; the agent becomes PUBLISHED."""
        principal = current()
        agent_id = names.parse_agent_name(request.name)
        validation.require_valid(validation.change_note_violations(request.change_note), prefix="")
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, agent_id, principal, request.etag)
            draft = convert.config_from_json(row.draft)
            latest = await store.find_version(session, row.id, row.latest_version) if row.latest_version else None
            latest_config = convert.config_from_json(latest.config) if latest else None
            number = plan_publish(row.state, draft, row.latest_version, latest_config)
            version_row = AgentVersionRow(
                agent_id=row.id,
                version=number,
                config=row.draft,
                change_note=request.change_note,
                creator=principal.subject,
                create_time=now,
            )
            await store.add_version(session, version_row)
            row.state = next_state(row.state, Action.PUBLISH, has_versions=True)
            row.latest_version = number
            agent = await self._save(session, row, principal, now)
            version = convert.version_to_proto(version_row)
            await store.append_event(session, events.published(agent, version, principal), now)
        return agents_service_pb2.PublishAgentResponse(agent=agent, agent_version=version)

    async def PinAgentVersion(
        self, request: agents_service_pb2.PinAgentVersionRequest, context: Context
    ) -> agents_service_pb2.PinAgentVersionResponse:
        """Pins the version new calls use; 0 unpins."""
        principal = current()
        agent_id = names.parse_agent_name(request.name)
        if request.version < 0:
            raise InvalidArgument("version must not be negative", {"version": "must be a published version, or 0"})
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, agent_id, principal)
            next_state(row.state, Action.PIN, has_versions=row.latest_version > 0)
            if request.version:
                await self._version(session, agent_id, request.version, row.organization_id)
            if row.pinned_version == request.version:
                return agents_service_pb2.PinAgentVersionResponse(agent=convert.agent_to_proto(row))
            row.pinned_version = request.version
            agent = await self._save(session, row, principal, now)
            await store.append_event(session, events.updated(agent, principal, ["pinned_version"]), now)
        return agents_service_pb2.PinAgentVersionResponse(agent=agent)

    async def RestoreAgentVersion(
        self, request: agents_service_pb2.RestoreAgentVersionRequest, context: Context
    ) -> agents_service_pb2.RestoreAgentVersionResponse:
        """Copies a published version's configuration into the draft."""
        principal = current()
        agent_id, number = names.parse_version_name(request.name)
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, agent_id, principal)
            version = await self._version(session, agent_id, number, row.organization_id)
            next_state(row.state, Action.EDIT, has_versions=True)
            row.draft = version.config
            agent = await self._save(session, row, principal, now)
            event = events.updated(agent, principal, ["draft"], restoredFrom=request.name)
            await store.append_event(session, event, now)
        return agents_service_pb2.RestoreAgentVersionResponse(agent=agent)

    # Archiving

    async def ArchiveAgent(
        self, request: agents_service_pb2.ArchiveAgentRequest, context: Context
    ) -> agents_service_pb2.ArchiveAgentResponse:
        """Archives an agent (archiving an archived agent changes nothing)."""
        agent = await self._move(request.name, Action.ARCHIVE, events.archived)
        return agents_service_pb2.ArchiveAgentResponse(agent=agent)

    async def UnarchiveAgent(
        self, request: agents_service_pb2.UnarchiveAgentRequest, context: Context
    ) -> agents_service_pb2.UnarchiveAgentResponse:
        """Brings an archived agent back: PUBLISHED if it has versions, else DRAFT."""
        agent = await self._move(request.name, Action.UNARCHIVE, lambda a, p: events.updated(a, p, ["state"]))
        return agents_service_pb2.UnarchiveAgentResponse(agent=agent)

    # Shared steps

    async def _move(
        self, name: str, action: Action, event: Callable[[agent_pb2.Agent, Principal], events.AgentEvent]
    ) -> agent_pb2.Agent:
        """Apply a lifecycle action; a move that changes nothing writes nothing and emits no event."""
        principal = current()
        agent_id = names.parse_agent_name(name)
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, agent_id, principal)
            state = next_state(row.state, action, has_versions=row.latest_version > 0)
            if state == row.state:
                return convert.agent_to_proto(row)
            row.state = state
            agent = await self._save(session, row, principal, now)
            await store.append_event(session, event(agent, principal), now)
        return agent

    async def _changeable_agent(
        self, session: AsyncSession, agent_id: str, principal: Principal, etag: str = ""
    ) -> AgentRow:
        """The agent a change applies to: visible to the caller, in the caller's organisation, etag current."""
        row = await store.get_agent(session, agent_id, tenancy.reading_scope(principal))
        tenancy.require_writable(principal, row.organization_id)
        etags.check_etag(etag, etags.etag(row.id, row.create_time, row.revision))
        return row

    async def _version(
        self, session: AsyncSession, agent_id: str, number: int, organization_id: str | None
    ) -> AgentVersionRow:
        """A version of an agent in the scope; one message for a missing agent and a missing version."""
        agent = await store.find_agent(session, agent_id, organization_id)
        version = await store.find_version(session, agent_id, number) if agent is not None else None
        if version is None:
            raise NotFound(f"{names.version_name(agent_id, number)} not found")
        return version

    async def _save(
        self, session: AsyncSession, row: AgentRow, principal: Principal, now: datetime.datetime
    ) -> agent_pb2.Agent:
        """Record who changed the agent and when, write it, and return the resource."""
        row.last_modifier = principal.subject
        row.update_time = now
        await store.save_agent(session, row)
        return convert.agent_to_proto(row)

    async def _claim_request_id(
        self,
        session: AsyncSession,
        request: agents_service_pb2.CreateAgentRequest,
        organization_id: str,
        agent_id: str,
        now: datetime.datetime,
    ) -> agent_pb2.Agent | None:
        """The agent an earlier request with this request_id created; else record this request and return ``None``."""
        window_start = now - IDEMPOTENCY_WINDOW
        fingerprint = convert.create_fingerprint(request)
        earlier = await store.find_create_request(session, organization_id, request.request_id, not_before=window_start)
        if earlier is None:
            record = CreateRequestRow(
                organization_id=organization_id,
                request_id=request.request_id,
                agent_id=agent_id,
                fingerprint=fingerprint,
                create_time=now,
            )
            await store.remember_create_request(session, record, not_before=window_start)
            return None
        if earlier.fingerprint != fingerprint:
            raise InvalidArgument(
                "request_id was already used for a different request",
                {"request_id": "was used in the last 24 hours with another body; use a new request_id"},
            )
        row = await store.find_agent(session, earlier.agent_id, organization_id)
        if row is None:
            raise FailedPrecondition(
                f"request_id already created {names.agent_name(earlier.agent_id)}, which has since been deleted"
            )
        return convert.agent_to_proto(row)
