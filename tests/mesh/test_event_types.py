"""The event registry: typed payloads to their stored form and back, for every event type."""

from __future__ import annotations

import json

import pytest
from google.protobuf import struct_pb2

from mesh import event_types
from mesh.errors import InvalidArgument
from mesh.event_types import UnknownEventType, default_event_types
from mesh.samples import example
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.call_center.v1 import call_center_events_pb2, call_pb2

EVENTS = default_event_types()


@pytest.mark.parametrize("event", list(EVENTS), ids=lambda e: e.type)
def test_every_event_type_round_trips_through_its_stored_form(event):
    sample = example(event.message_class)
    encoded = EVENTS.encode(sample)
    assert (encoded.type, encoded.data_schema) == (event.type, event.data_schema)
    stored = json.dumps(encoded.data)  # the outbox keeps JSON text; Event.data is a Struct
    assert EVENTS.decode(encoded.type, encoded.data_schema, stored) == sample
    as_struct = struct_pb2.Struct()
    as_struct.update(encoded.data)
    assert EVENTS.decode(event.type, event.data_schema, as_struct) == sample
    assert EVENTS.check(event.type, event.data_schema, as_struct) is None
    assert sample.ListFields(), f"the sample of {event.type} is empty"


def test_the_outbox_api_unpacks_to_type_schema_and_payload():
    payload = call_center_events_pb2.CallCompletedEvent(
        status=call_pb2.CALL_STATUS_COMPLETED,
        end_reason=call_pb2.CALL_END_REASON_CUSTOMER_HANGUP,
        usage=call_center_events_pb2.CallUsage(billable_seconds=120),
    )
    event_type, data_schema, data = event_types.encode(payload)
    assert (event_type, data_schema) == ("call.completed", "vocelio.call_center.v1.CallCompletedEvent")
    assert data["usage"] == {"billableSeconds": "120"}  # int64 as a decimal string (ProtoJSON)
    assert event_types.decode(event_type, data_schema, data) == payload


def test_the_registry_knows_each_type_producer_and_resource():
    created = EVENTS.get("agent.created")
    assert created.message_class is agents_events_pb2.AgentCreatedEvent
    assert (created.service, created.resource_type, created.group) == ("agents", "vocelio.com/Agent", "agent")
    assert EVENTS.of_message(agents_events_pb2.AgentCreatedEvent) is created
    assert "agent.created" in EVENTS and "agent.exploded" not in EVENTS
    assert {e.type for e in EVENTS.by_service("agents")} == {
        "agent.created",
        "agent.updated",
        "agent.published",
        "agent.archived",
        "agent.deleted",
    }


def test_unknown_types_and_foreign_messages_are_refused_clearly():
    with pytest.raises(UnknownEventType) as unknown:
        EVENTS.decode("agent.exploded", "", {})
    assert unknown.value.field_violations == {"type": "unknown event type 'agent.exploded': no contract declares it"}
    with pytest.raises(UnknownEventType, match="not an event payload"):
        EVENTS.encode(agent_pb2.Agent())
    with pytest.raises(InvalidArgument, match="does not match") as mismatch:
        EVENTS.decode("agent.created", "vocelio.agents.v1.AgentDeletedEvent", {})
    assert mismatch.value.field_violations == {
        "data_schema": "agent.created carries vocelio.agents.v1.AgentCreatedEvent"
    }
    with pytest.raises(InvalidArgument, match=r"is not a vocelio\.agents\.v1\.AgentDeletedEvent"):
        EVENTS.decode("agent.deleted", "", {"name": "agents/a1", "agent": {}})
    with pytest.raises(InvalidArgument, match="not JSON"):
        EVENTS.decode("agent.deleted", "", "{nope")
    with pytest.raises(InvalidArgument, match="JSON object"):
        EVENTS.decode("agent.deleted", "", "[]")


def test_check_gives_decodes_verdict_without_building_the_message():
    def struct_of(data):
        result = struct_pb2.Struct()
        result.update(data)
        return result

    good = struct_of({"name": "agents/a1"})
    assert EVENTS.check("agent.deleted", "", good) is None
    assert EVENTS.check("agent.deleted", "vocelio.agents.v1.AgentDeletedEvent", good) is None
    bad = struct_of({"name": "agents/a1", "agent": {}})
    assert EVENTS.check("agent.deleted", "", bad) == "agent: vocelio.agents.v1.AgentDeletedEvent has no such field"
    with pytest.raises(InvalidArgument):
        EVENTS.decode("agent.deleted", "", bad)
    with pytest.raises(UnknownEventType):
        EVENTS.check("agent.exploded", "", good)
    with pytest.raises(InvalidArgument, match="does not match"):
        EVENTS.check("agent.deleted", "vocelio.agents.v1.AgentCreatedEvent", good)
