"""The overview projection: agents by state and the activity feed, per organisation.

Fed by ``agent.*`` (agents) and ``api_key.*`` (developer_api) events — the producers that
exist today. Calls, campaigns, billing and alert incidents have no events yet, so the
figures made from them stay zero (README). Applying is written so that any event applied
twice would change nothing even without the runner's event-id record (upserts keyed by
agent, activity keyed by event id); the runner guarantees it anyway.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit.projections import ProjectedEvent
from services.overview.models import ActivityRow, AgentSummaryRow
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.developer_api.v1 import developer_api_events_pb2
from vocelio.overview.v1 import overview_pb2

_STATES = {
    agent_pb2.AGENT_STATE_DRAFT: "DRAFT",
    agent_pb2.AGENT_STATE_PUBLISHED: "PUBLISHED",
    agent_pb2.AGENT_STATE_ARCHIVED: "ARCHIVED",
}

Kind = overview_pb2.ActivityKind
Severity = overview_pb2.ActivitySeverity


class OverviewProjection:
    """The read model behind GetOverview and ListRecentActivity."""

    name = "overview"
    description = "Agents by state and the recent activity feed of every organisation."
    event_type_prefixes = ("agent.", "api_key.")
    schema_version = 1

    async def apply(self, session: AsyncSession, event: ProjectedEvent, generation: int) -> None:
        """Update the agent summary and add the event's activity item, if it makes one."""
        payload = event.payload
        if isinstance(
            payload,
            agents_events_pb2.AgentCreatedEvent
            | agents_events_pb2.AgentUpdatedEvent
            | agents_events_pb2.AgentPublishedEvent
            | agents_events_pb2.AgentArchivedEvent,
        ):
            agent = payload.agent
            await self._put_agent(session, generation, event.organization_id, agent)
            if isinstance(payload, agents_events_pb2.AgentCreatedEvent):
                await self._activity(
                    session,
                    generation,
                    event,
                    Kind.ACTIVITY_KIND_AGENT_CREATED,
                    Severity.ACTIVITY_SEVERITY_INFO,
                    f"Agent “{agent.display_name}” created",
                    "",
                    agent.name,
                )
            elif isinstance(payload, agents_events_pb2.AgentPublishedEvent):
                await self._activity(
                    session,
                    generation,
                    event,
                    Kind.ACTIVITY_KIND_AGENT_PUBLISHED,
                    Severity.ACTIVITY_SEVERITY_SUCCESS,
                    f"Agent “{agent.display_name}” published",
                    f"version {payload.agent_version.version}",
                    agent.name,
                )
            elif isinstance(payload, agents_events_pb2.AgentArchivedEvent):
                await self._activity(
                    session,
                    generation,
                    event,
                    Kind.ACTIVITY_KIND_OTHER,
                    Severity.ACTIVITY_SEVERITY_INFO,
                    f"Agent “{agent.display_name}” archived",
                    "",
                    agent.name,
                )
        elif isinstance(payload, agents_events_pb2.AgentDeletedEvent):
            agent_id = payload.name.rsplit("/", 1)[-1]
            row = await session.get(AgentSummaryRow, (generation, event.organization_id, agent_id))
            title = "Agent deleted" if row is None else f"Agent “{row.display_name}” deleted"
            if row is not None:
                await session.delete(row)
            await self._activity(
                session,
                generation,
                event,
                Kind.ACTIVITY_KIND_OTHER,
                Severity.ACTIVITY_SEVERITY_INFO,
                title,
                "",
                payload.name,
            )
        elif isinstance(payload, developer_api_events_pb2.ApiKeyCreatedEvent):
            key = payload.api_key
            await self._activity(
                session,
                generation,
                event,
                Kind.ACTIVITY_KIND_OTHER,
                Severity.ACTIVITY_SEVERITY_INFO,
                f"API key “{key.display_name}” created",
                "",
                key.name,
            )
        elif isinstance(payload, developer_api_events_pb2.ApiKeyRevokedEvent):
            key = payload.api_key
            await self._activity(
                session,
                generation,
                event,
                Kind.ACTIVITY_KIND_OTHER,
                Severity.ACTIVITY_SEVERITY_WARNING,
                f"API key “{key.display_name}” revoked",
                "",
                key.name,
            )

    async def clear(self, session: AsyncSession, generation: int) -> None:
        """Delete one copy of the read model."""
        await session.execute(delete(AgentSummaryRow).where(AgentSummaryRow.generation == generation))
        await session.execute(delete(ActivityRow).where(ActivityRow.generation == generation))

    @staticmethod
    async def _put_agent(session: AsyncSession, generation: int, organization_id: str, agent: agent_pb2.Agent) -> None:
        agent_id = agent.name.rsplit("/", 1)[-1]
        state = _STATES.get(agent.state, "DRAFT")
        row = await session.get(AgentSummaryRow, (generation, organization_id, agent_id))
        if row is None:
            session.add(
                AgentSummaryRow(
                    generation=generation,
                    organization_id=organization_id,
                    agent_id=agent_id,
                    state=state,
                    display_name=agent.display_name[:100],
                )
            )
        else:
            row.state = state
            row.display_name = agent.display_name[:100]

    @staticmethod
    async def _activity(
        session: AsyncSession,
        generation: int,
        event: ProjectedEvent,
        kind: int,
        severity: int,
        title: str,
        description: str,
        resource: str,
    ) -> None:
        if await session.get(ActivityRow, (generation, event.organization_id, event.event_id)) is not None:
            return
        session.add(
            ActivityRow(
                generation=generation,
                organization_id=event.organization_id,
                event_id=event.event_id,
                position=event.position,
                kind=kind,
                severity=severity,
                title=title[:300],
                description=description,
                resource=resource[:300],
                actor=event.actor[:300],
                occur_time=event.occur_time,
            )
        )
