"""Every event the agents service writes is the typed message its contract declares, and round-trips."""

from __future__ import annotations

import pytest

from mesh.event_types import default_event_types
from services.agents import events as agent_events
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

EVENTS = default_event_types()
NAME = "organizations/o1/agents/front-desk"


def _agent() -> agent_pb2.Agent:
    return agent_pb2.Agent(name=NAME, organization_id="o1", display_name="Front desk", etag="e1")


@pytest.mark.parametrize(
    ("build", "expected", "event_type"),
    [
        (lambda a: agent_events.created(a), agents_events_pb2.AgentCreatedEvent, "agent.created"),
        (lambda a: agent_events.updated(a, ["draft.prompt"]), agents_events_pb2.AgentUpdatedEvent, "agent.updated"),
        (
            lambda a: agent_events.updated(a, ["draft"], restored_from=f"{NAME}/versions/2"),
            agents_events_pb2.AgentUpdatedEvent,
            "agent.updated",
        ),
        (
            lambda a: agent_events.published(a, agent_pb2.AgentVersion(name=f"{NAME}/versions/1")),
            agents_events_pb2.AgentPublishedEvent,
            "agent.published",
        ),
        (lambda a: agent_events.archived(a), agents_events_pb2.AgentArchivedEvent, "agent.archived"),
        (lambda a: agent_events.deleted(a), agents_events_pb2.AgentDeletedEvent, "agent.deleted"),
    ],
)
def test_every_agents_payload_is_its_typed_message(build, expected, event_type):
    payload = build(_agent())
    assert type(payload) is expected
    encoded = EVENTS.encode(payload)
    assert (encoded.type, encoded.data_schema) == (event_type, expected.DESCRIPTOR.full_name)
    assert EVENTS.decode(*encoded) == payload


def test_every_declared_agents_event_type_is_built_here():
    declared = {event.type for event in EVENTS.by_service("agents")}
    assert declared == {"agent.created", "agent.updated", "agent.published", "agent.archived", "agent.deleted"}
