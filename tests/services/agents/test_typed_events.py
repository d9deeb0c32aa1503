"""The events the agents service writes today are exactly its typed event messages.

``services/agents/events.py`` still builds plain JSON payloads; each one must decode into the
message its contract declares (``agents_events.proto``) and encode back to the same JSON, so
the agents outbox rows are already typed events.
"""

from __future__ import annotations

import json

import pytest

from mesh.event_types import default_event_types
from mesh.principal import Principal, PrincipalKind
from services.agents import events as agent_events
from vocelio.agents.v1 import agent_pb2, agents_events_pb2

EVENTS = default_event_types()


def _agent() -> agent_pb2.Agent:
    return agent_pb2.Agent(name="agents/front-desk", organization_id="o1", display_name="Front desk", etag="e1")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda a, p: agent_events.created(a, p), agents_events_pb2.AgentCreatedEvent),
        (lambda a, p: agent_events.updated(a, p, ["draft.prompt"]), agents_events_pb2.AgentUpdatedEvent),
        (
            lambda a, p: agent_events.updated(a, p, ["draft"], restoredFrom="agents/front-desk/versions/2"),
            agents_events_pb2.AgentUpdatedEvent,
        ),
        (
            lambda a, p: agent_events.published(a, agent_pb2.AgentVersion(name="agents/front-desk/versions/1"), p),
            agents_events_pb2.AgentPublishedEvent,
        ),
        (lambda a, p: agent_events.archived(a, p), agents_events_pb2.AgentArchivedEvent),
        (lambda a, p: agent_events.deleted(a, p), agents_events_pb2.AgentDeletedEvent),
    ],
)
def test_the_agents_service_payloads_of_today_are_their_typed_messages(build, expected):
    principal = Principal(
        subject="users/u1", kind=PrincipalKind.USER, organization_id="o1", role="ADMIN", permissions=frozenset()
    )
    written = build(_agent(), principal)
    decoded = EVENTS.decode(written.event_type, "", json.dumps(written.data))
    assert type(decoded) is expected
    assert EVENTS.encode(decoded).data == written.data
