"""``vocelio.agents.v1.AgentsService``: proto in, proto out, one transaction per call.

Each method reads the caller (``mesh.principal.current()``; the RBAC interceptor has
already checked the method's permission), checks the request with the domain rules,
and does its work in one transaction: the change, its outbox event and its request_id
commit together or not at all. Names, paging, masks, etags, tenancy and idempotency are
the service kit's (:mod:`mesh.kit`). Errors are ``mesh.errors`` exceptions; the errors
interceptor maps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import FailedPrecondition, InvalidArgument
from mesh.kit import allow_lists, etags, paging, tenancy
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.idempotency import IdempotencyStore
from mesh.kit.masks import UpdateMask
from mesh.kit.outbox import Outbox
from mesh.kit.validation import require_valid
from mesh.principal import Principal, current
from services.agents import convert, events, store
from services.agents.domain import names, validation
from services.agents.domain.lifecycle import REASONS, Action, next_state, plan_publish
from services.agents.models import AgentRow, AgentVersionRow
from services.agents.usage import AgentUsage
from vocelio.agents.v1 import agent_pb2, agents_errors_pb2, agents_service_pb2, agents_service_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

MASK = UpdateMask.for_message(agent_pb2.Agent)


class AgentsServicer(agents_service_pb2_grpc.AgentsServiceServicer):
    """Agents, their drafts and their published versions."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        page_tokens: paging.PageTokens,
        usage: AgentUsage,
        *,
        clock: Clock = SYSTEM_CLOCK,
        idempotency: IdempotencyStore | None = None,
        outbox: Outbox | None = None,
        reads: store.PointReads,
    ) -> None:
        self._sessions = sessions
        self._reads = reads
        self._page_tokens = page_tokens
        self._usage = usage
        self._clock = clock
        self._idempotency = idempotency or IdempotencyStore(clock)
        self._outbox = outbox or Outbox(clock)

    # Reading

    async def GetAgent(
        self, request: agents_service_pb2.GetAgentRequest, context: Context
    ) -> agents_service_pb2.GetAgentResponse:
        """Gets one agent."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(request.name)
        # The hot read: one point read outside any session, with the same visibility rule.
        row = await store.read_agent(self._reads, organization_id, agent_id)
        return agents_service_pb2.GetAgentResponse(
            agent=convert.agent_to_proto(_visible(row, principal, organization_id, agent_id))
        )

    async def ListAgents(
        self, request: agents_service_pb2.ListAgentsRequest, context: Context
    ) -> agents_service_pb2.ListAgentsResponse:
        """Lists an organisation's agents (every organisation's for ``organizations/-``), newest first."""
        principal = current()
        parent = names.AGENTS.parse_parent(request.parent)
        scope = tenancy.list_scope(principal, parent.organization)
        limit = paging.page_size(request.page_size)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        async with self._sessions.begin() as session:
            page = await store.list_agents(
                session,
                scope.organization_id,
                request.filter,
                show_archived=request.show_archived,
                after=after,
                limit=limit,
                only_ids=allow_lists.allowed_ids(principal, scope.organization_id or principal.organization_id),
            )
            agents = [convert.agent_to_proto(row) for row in page.items]
        next_token = self._page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return agents_service_pb2.ListAgentsResponse(agents=agents, next_page_token=next_token)

    async def GetAgentVersion(
        self, request: agents_service_pb2.GetAgentVersionRequest, context: Context
    ) -> agents_service_pb2.GetAgentVersionResponse:
        """Gets one published version."""
        principal = current()
        organization_id, agent_id, number = names.parse_version_name(request.name)
        async with self._sessions.begin() as session:
            version = await self._version(session, principal, organization_id, agent_id, number)
            return agents_service_pb2.GetAgentVersionResponse(agent_version=convert.version_to_proto(version))

    async def ListAgentVersions(
        self, request: agents_service_pb2.ListAgentVersionsRequest, context: Context
    ) -> agents_service_pb2.ListAgentVersionsResponse:
        """Lists an agent's published versions, newest first."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(request.parent, field="parent")
        limit = paging.page_size(request.page_size)
        binding = paging.query_binding(request)
        after = self._page_tokens.decode_optional(request.page_token, binding)
        async with self._sessions.begin() as session:
            await self._readable_agent(session, principal, organization_id, agent_id)
            page = await store.list_versions(session, organization_id, agent_id, after=after, limit=limit)
            versions = [convert.version_to_proto(row) for row in page.items]
        next_token = self._page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return agents_service_pb2.ListAgentVersionsResponse(agent_versions=versions, next_page_token=next_token)

    # Creating, changing, deleting

    async def CreateAgent(
        self, request: agents_service_pb2.CreateAgentRequest, context: Context
    ) -> agents_service_pb2.CreateAgentResponse:
        """Creates an agent in the DRAFT state (once per request_id within 24 hours)."""
        principal = current()
        parent = names.AGENTS.parse_parent(request.parent, allow_wildcard=False)
        organization_id = tenancy.write_organization(principal, parent.organization)
        require_valid(validation.create_violations(request, organization_id))
        now = self._clock.now()
        agent_id = request.agent_id or names.new_agent_id()
        # A key limited to some agents creates only those it names (a generated id is never among them).
        allow_lists.require_allowed_new(principal, names.agent_name(organization_id, agent_id))
        async with self._sessions.begin() as session:
            claim = await self._idempotency.claim(
                session,
                method="CreateAgent",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=agents_service_pb2.CreateAgentResponse,
            )
            if claim.replay is not None:
                return claim.replay
            draft = validation.with_defaults(request.agent.draft)
            row = convert.new_agent_row(agent_id, organization_id, request.agent, draft, principal.subject, now)
            await store.add_agent(session, row)
            agent = convert.agent_to_proto(row)
            await events.record(self._outbox, session, agent.name, events.created(agent), principal)
            response = agents_service_pb2.CreateAgentResponse(agent=agent)
            await claim.complete(session, response)
        return response

    async def UpdateAgent(
        self, request: agents_service_pb2.UpdateAgentRequest, context: Context
    ) -> agents_service_pb2.UpdateAgentResponse:
        """Changes the fields named in update_mask."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(request.agent.name, field="agent.name")
        paths = MASK.resolve(request.update_mask.paths, request.agent)
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, principal, organization_id, agent_id, request.agent.etag)
            next_state(row.state, Action.EDIT, has_versions=row.latest_version > 0)
            changed = MASK.apply(convert.agent_to_proto(row), request.agent, paths)
            changed.draft.CopyFrom(validation.with_defaults(changed.draft))
            validation.require_valid_agent(validation.agent_violations(changed, organization_id))
            convert.copy_mutable_fields(changed, row)
            agent = await self._save(session, row, principal)
            await events.record(self._outbox, session, agent.name, events.updated(agent, paths), principal)
        return agents_service_pb2.UpdateAgentResponse(agent=agent)

    async def DeleteAgent(
        self, request: agents_service_pb2.DeleteAgentRequest, context: Context
    ) -> agents_service_pb2.DeleteAgentResponse:
        """Deletes an agent and its versions, unless a campaign or phone number uses it."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(request.name)
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, principal, organization_id, agent_id, request.etag)
            users = await self._usage.users_of(request.name)
            if users:
                raise FailedPrecondition(f"{request.name} is still used by {', '.join(sorted(users))}").with_reason(
                    REASONS, agents_errors_pb2.ERROR_REASON_AGENT_IN_USE
                )
            agent = convert.agent_to_proto(row)
            await store.delete_agent(session, row)
            await events.record(self._outbox, session, agent.name, events.deleted(agent), principal)
        return agents_service_pb2.DeleteAgentResponse()

    # Versions

    async def PublishAgent(
        self, request: agents_service_pb2.PublishAgentRequest, context: Context
    ) -> agents_service_pb2.PublishAgentResponse:
        """Freezes the draft as the next version; the agent becomes PUBLISHED (once per request_id)."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(request.name)
        require_valid(validation.publish_violations(request))
        now = self._clock.now()
        async with self._sessions.begin() as session:
            # Tenancy first, so a request_id is only ever looked up in the caller's organisation;
            # the etag after the claim, so a retry of a publish that succeeded gets its answer.
            row = await self._changeable_agent(session, principal, organization_id, agent_id)
            claim = await self._idempotency.claim(
                session,
                method="PublishAgent",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=agents_service_pb2.PublishAgentResponse,
            )
            if claim.replay is not None:
                return claim.replay
            etags.check_etag(request.etag, row.etag_for(request.name), what="the agent")
            draft = convert.config_from_json(row.draft)
            latest = (
                await store.find_version(session, organization_id, agent_id, row.latest_version)
                if row.latest_version
                else None
            )
            latest_config = convert.config_from_json(latest.config) if latest else None
            number = plan_publish(row.state, draft, organization_id, row.latest_version, latest_config)
            version_row = AgentVersionRow(
                organization_id=organization_id,
                agent_id=agent_id,
                version=number,
                config=row.draft,
                change_note=request.change_note,
                creator=principal.subject,
                create_time=now,
            )
            await store.add_version(session, version_row)
            row.state = next_state(row.state, Action.PUBLISH, has_versions=True)
            row.latest_version = number
            agent = await self._save(session, row, principal)
            version = convert.version_to_proto(version_row)
            await events.record(self._outbox, session, agent.name, events.published(agent, version), principal)
            response = agents_service_pb2.PublishAgentResponse(agent=agent, agent_version=version)
            await claim.complete(session, response)
        return response

    async def PinAgentVersion(
        self, request: agents_service_pb2.PinAgentVersionRequest, context: Context
    ) -> agents_service_pb2.PinAgentVersionResponse:
        """Pins the version new calls use; 0 unpins."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(request.name)
        if request.version < 0:
            raise InvalidArgument("version must not be negative", {"version": "must be a published version, or 0"})
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, principal, organization_id, agent_id)
            next_state(row.state, Action.PIN, has_versions=row.latest_version > 0)
            if request.version:
                await self._version(session, principal, organization_id, agent_id, request.version)
            if row.pinned_version == request.version:
                return agents_service_pb2.PinAgentVersionResponse(agent=convert.agent_to_proto(row))
            row.pinned_version = request.version
            agent = await self._save(session, row, principal)
            event = events.updated(agent, ["pinned_version"])
            await events.record(self._outbox, session, agent.name, event, principal)
        return agents_service_pb2.PinAgentVersionResponse(agent=agent)

    async def RestoreAgentVersion(
        self, request: agents_service_pb2.RestoreAgentVersionRequest, context: Context
    ) -> agents_service_pb2.RestoreAgentVersionResponse:
        """Copies a published version's configuration into the draft."""
        principal = current()
        organization_id, agent_id, number = names.parse_version_name(request.name)
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, principal, organization_id, agent_id)
            version = await self._version(session, principal, organization_id, agent_id, number)
            next_state(row.state, Action.EDIT, has_versions=True)
            row.draft = version.config
            agent = await self._save(session, row, principal)
            event = events.updated(agent, ["draft"], restored_from=request.name)
            await events.record(self._outbox, session, agent.name, event, principal)
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
        agent = await self._move(request.name, Action.UNARCHIVE, lambda a: events.updated(a, ["state"]))
        return agents_service_pb2.UnarchiveAgentResponse(agent=agent)

    # Shared steps

    async def _move(
        self, name: str, action: Action, event: Callable[[agent_pb2.Agent], events.Payload]
    ) -> agent_pb2.Agent:
        """Apply a lifecycle action; a move that changes nothing writes nothing and emits no event."""
        principal = current()
        organization_id, agent_id = names.parse_agent_name(name)
        async with self._sessions.begin() as session:
            row = await self._changeable_agent(session, principal, organization_id, agent_id)
            state = next_state(row.state, action, has_versions=row.latest_version > 0)
            if state == row.state:
                return convert.agent_to_proto(row)
            row.state = state
            agent = await self._save(session, row, principal)
            await events.record(self._outbox, session, agent.name, event(agent), principal)
        return agent

    async def _readable_agent(
        self, session: AsyncSession, principal: Principal, organization_id: str, agent_id: str
    ) -> AgentRow:
        """The agent, if the caller may read it; otherwise the one NOT_FOUND of a missing agent.

        The lookup runs either way, so the answer for another organisation's agent is the
        missing one's in status, message and work done.
        """
        return _visible(
            await store.find_agent(session, organization_id, agent_id), principal, organization_id, agent_id
        )

    async def _changeable_agent(
        self, session: AsyncSession, principal: Principal, organization_id: str, agent_id: str, etag: str = ""
    ) -> AgentRow:
        """The agent a change applies to: visible to the caller, in the caller's organisation, etag current."""
        row = await self._readable_agent(session, principal, organization_id, agent_id)
        name = names.agent_name(organization_id, agent_id)
        tenancy.require_writable(principal, organization_id, name)
        etags.check_etag(etag, row.etag_for(name), what="the agent")
        return row

    async def _version(
        self, session: AsyncSession, principal: Principal, organization_id: str, agent_id: str, number: int
    ) -> AgentVersionRow:
        """A version of an agent the caller may read; one NOT_FOUND for a missing agent and a missing version."""
        agent = await store.find_agent(session, organization_id, agent_id)
        readable = (
            agent is not None
            and tenancy.may_read(principal, organization_id)
            and allow_lists.allowed(principal, names.agent_name(organization_id, agent_id))
        )
        version = await store.find_version(session, organization_id, agent_id, number) if readable else None
        if version is None:
            raise tenancy.not_found(names.version_name(organization_id, agent_id, number))
        return version

    async def _save(self, session: AsyncSession, row: AgentRow, principal: Principal) -> agent_pb2.Agent:
        """Record who changed the agent and when, write it, and return the resource."""
        row.stamp_changed(principal.subject, self._clock.now())
        await store.save_agent(session, row)
        return convert.agent_to_proto(row)


def _visible(row: AgentRow | None, principal: Principal, organization_id: str, agent_id: str) -> AgentRow:
    """The row if it exists and the caller may read it; otherwise the one NOT_FOUND of a missing agent.

    An agent an API key's ``allowed_agents`` leaves out is, to that key, a missing agent.
    """
    name = names.agent_name(organization_id, agent_id)
    if row is None or not tenancy.may_read(principal, organization_id) or not allow_lists.allowed(principal, name):
        raise tenancy.not_found(name)
    return row
