"""The overview projection: agents by state and the activity feed, per organisation.

Fed by ``agent.*`` (agents) and ``api_key.*`` (developer_api) events — the producers that
exist today. Calls, campaigns, billing and alert incidents have no events yet, so the
figures made from them stay zero (README). Applying is written so that any event applied
twice would change nothing even without the runner's event-id record (upserts keyed by
agent, activity keyed by event id); the runner guarantees it anyway.
"""

from __future__ import annotations

import dataclasses

from google.protobuf import message
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

_AGENT_SNAPSHOTS = (
    agents_events_pb2.AgentCreatedEvent,
    agents_events_pb2.AgentUpdatedEvent,
    agents_events_pb2.AgentPublishedEvent,
    agents_events_pb2.AgentArchivedEvent,
)
_API_KEY_EVENTS = (developer_api_events_pb2.ApiKeyCreatedEvent, developer_api_events_pb2.ApiKeyRevokedEvent)


@dataclasses.dataclass(frozen=True, slots=True)
class Activity:
    """The feed item an event makes: ``title`` names the subject's display name as ``{name}``.

    ``untitled`` is the title when the display name is unknown (an agent deleted before it was seen).
    """

    kind: int
    severity: int
    title: str
    untitled: str = ""

    def title_for(self, display_name: str | None) -> str:
        """The item's title for a subject of that display name."""
        return self.title.format(name=display_name) if display_name is not None else self.untitled


ACTIVITY: dict[type[message.Message], Activity] = {
    agents_events_pb2.AgentCreatedEvent: Activity(
        Kind.ACTIVITY_KIND_AGENT_CREATED, Severity.ACTIVITY_SEVERITY_INFO, "Agent “{name}” created"
    ),
    agents_events_pb2.AgentPublishedEvent: Activity(
        Kind.ACTIVITY_KIND_AGENT_PUBLISHED, Severity.ACTIVITY_SEVERITY_SUCCESS, "Agent “{name}” published"
    ),
    agents_events_pb2.AgentArchivedEvent: Activity(
        Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_INFO, "Agent “{name}” archived"
    ),
    agents_events_pb2.AgentDeletedEvent: Activity(
        Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_INFO, "Agent “{name}” deleted", "Agent deleted"
    ),
    developer_api_events_pb2.ApiKeyCreatedEvent: Activity(
        Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_INFO, "API key “{name}” created"
    ),
    developer_api_events_pb2.ApiKeyRevokedEvent: Activity(
        Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_WARNING, "API key “{name}” revoked"
    ),
}
"""Which events make a feed item, and what it says (``agent.updated`` makes none)."""


class OverviewProjection:
    """The read model behind GetOverview and ListRecentActivity."""

    name = "overview"
    description = "Agents by state and the recent activity feed of every organisation."
    event_type_prefixes = ("agent.", "api_key.")
    schema_version = 1

    async def apply(self, session: AsyncSession, event: ProjectedEvent, generation: int) -> None:
        """Update the agent summary and add the event's activity item, if it makes one."""
        payload = event.payload
        description = ""
        display_name: str | None
        if isinstance(payload, _AGENT_SNAPSHOTS):
            await self._put_agent(session, generation, event.organization_id, payload.agent)
            resource, display_name = payload.agent.name, payload.agent.display_name
            if isinstance(payload, agents_events_pb2.AgentPublishedEvent):
                description = f"version {payload.agent_version.version}"
        elif isinstance(payload, agents_events_pb2.AgentDeletedEvent):
            resource = payload.name
            display_name = await self._drop_agent(session, generation, event.organization_id, payload.name)
        elif isinstance(payload, _API_KEY_EVENTS):
            resource, display_name = payload.api_key.name, payload.api_key.display_name
        else:
            return
        activity = ACTIVITY.get(type(payload))
        if activity is not None:
            await self._activity(
                session, generation, event, activity, activity.title_for(display_name), description, resource
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
    async def _drop_agent(session: AsyncSession, generation: int, organization_id: str, name: str) -> str | None:
        """Delete the agent's summary; its display name, if it was known."""
        row = await session.get(AgentSummaryRow, (generation, organization_id, name.rsplit("/", 1)[-1]))
        if row is None:
            return None
        await session.delete(row)
        return row.display_name

    @staticmethod
    async def _activity(
        session: AsyncSession,
        generation: int,
        event: ProjectedEvent,
        activity: Activity,
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
                kind=activity.kind,
                severity=activity.severity,
                title=title[:300],
                description=description,
                resource=resource[:300],
                actor=event.actor[:300],
                occur_time=event.occur_time,
            )
        )
