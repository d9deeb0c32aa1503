"""The events the agents service records, one stream per agent (``agents-{id}``).

Each change is written to the outbox in the transaction that makes it; the relay
forwards it to the events service. Payloads use the proto3 JSON mapping, as the REST
API does, so subscribers read the same shapes developers see.

============== ==========================================================
agent.created  ``{"agent": Agent}``
agent.updated  ``{"agent": Agent, "changed": [field paths], …}``
agent.published ``{"agent": Agent, "agentVersion": AgentVersion}``
agent.archived ``{"agent": Agent}``
agent.deleted  ``{"name": "agents/…"}``
============== ==========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mesh.principal import Principal
from services.agents.convert import to_json_dict
from services.agents.domain import names
from vocelio.agents.v1 import agent_pb2

CREATED = "agent.created"
UPDATED = "agent.updated"
PUBLISHED = "agent.published"
ARCHIVED = "agent.archived"
DELETED = "agent.deleted"


@dataclasses.dataclass(frozen=True, slots=True)
class AgentEvent:
    """One fact about one agent, ready for the outbox.

    Attributes:
        stream: ``agents-{id}``.
        event_type: ``agent.created`` …
        data: the payload (JSON-serialisable).
        metadata: who did it, in which organisation.

    """

    stream: str
    event_type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]


def created(agent: agent_pb2.Agent, actor: Principal) -> AgentEvent:
    """An agent was created."""
    return _event(CREATED, agent, actor, {"agent": to_json_dict(agent)})


def updated(agent: agent_pb2.Agent, actor: Principal, changed: Sequence[str], **details: Any) -> AgentEvent:
    """An agent's fields changed (``changed`` names them: ``draft.prompt``, ``pinned_version``, ``state`` …)."""
    return _event(UPDATED, agent, actor, {"agent": to_json_dict(agent), "changed": list(changed), **details})


def published(agent: agent_pb2.Agent, version: agent_pb2.AgentVersion, actor: Principal) -> AgentEvent:
    """A new version was published."""
    return _event(PUBLISHED, agent, actor, {"agent": to_json_dict(agent), "agentVersion": to_json_dict(version)})


def archived(agent: agent_pb2.Agent, actor: Principal) -> AgentEvent:
    """An agent was archived."""
    return _event(ARCHIVED, agent, actor, {"agent": to_json_dict(agent)})


def deleted(agent: agent_pb2.Agent, actor: Principal) -> AgentEvent:
    """An agent and its versions were deleted."""
    return _event(DELETED, agent, actor, {"name": agent.name})


def stream_of(agent_id: str) -> str:
    """The event stream of one agent."""
    return f"{names.COLLECTION}-{agent_id}"


def _event(event_type: str, agent: agent_pb2.Agent, actor: Principal, data: Mapping[str, Any]) -> AgentEvent:
    agent_id = names.parse_agent_name(agent.name)
    metadata = {"organizationId": agent.organization_id, "actor": actor.subject}
    return AgentEvent(stream=stream_of(agent_id), event_type=event_type, data=data, metadata=metadata)
