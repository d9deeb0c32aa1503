"""The typed events the agents service records, one stream per agent.

Each change is written to the outbox (:mod:`mesh.kit.outbox`) in the transaction that
makes it, as the typed message its contract declares (``agents_events.proto``); the
relay forwards it to the events service.

=============== =======================
agent.created   ``AgentCreatedEvent``
agent.updated   ``AgentUpdatedEvent``
agent.published ``AgentPublishedEvent``
agent.archived  ``AgentArchivedEvent``
agent.deleted   ``AgentDeletedEvent``
=============== =======================
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit.outbox import Outbox
from mesh.principal import Principal
from services.agents.domain import names
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

Payload = (
    agents_events_pb2.AgentCreatedEvent
    | agents_events_pb2.AgentUpdatedEvent
    | agents_events_pb2.AgentPublishedEvent
    | agents_events_pb2.AgentArchivedEvent
    | agents_events_pb2.AgentDeletedEvent
)


def created(agent: agent_pb2.Agent) -> agents_events_pb2.AgentCreatedEvent:
    """An agent was created."""
    return agents_events_pb2.AgentCreatedEvent(agent=agent)


def updated(
    agent: agent_pb2.Agent, changed: Sequence[str], *, restored_from: str = ""
) -> agents_events_pb2.AgentUpdatedEvent:
    """An agent's fields changed (``changed`` names them: ``draft.prompt``, ``pinned_version``, ``state`` …)."""
    return agents_events_pb2.AgentUpdatedEvent(agent=agent, changed=list(changed), restored_from=restored_from)


def published(agent: agent_pb2.Agent, version: agent_pb2.AgentVersion) -> agents_events_pb2.AgentPublishedEvent:
    """A new version was published."""
    return agents_events_pb2.AgentPublishedEvent(agent=agent, agent_version=version)


def archived(agent: agent_pb2.Agent) -> agents_events_pb2.AgentArchivedEvent:
    """An agent was archived."""
    return agents_events_pb2.AgentArchivedEvent(agent=agent)


def deleted(agent: agent_pb2.Agent) -> agents_events_pb2.AgentDeletedEvent:
    """An agent and its versions were deleted."""
    return agents_events_pb2.AgentDeletedEvent(name=agent.name)


def stream_of(agent_name: str) -> str:
    """The event stream of one agent (``agents-{organization}-{agent}``)."""
    organization_id, agent_id = names.parse_agent_name(agent_name)
    return f"agents-{organization_id}-{agent_id}"


async def record(outbox: Outbox, session: AsyncSession, agent_name: str, payload: Payload, actor: Principal) -> None:
    """Write an event about one agent to the outbox, in the running transaction."""
    organization_id, _ = names.parse_agent_name(agent_name)
    metadata = {"organizationId": organization_id, "actor": actor.subject}
    await outbox.append(session, payload, stream=stream_of(agent_name), metadata=metadata)
