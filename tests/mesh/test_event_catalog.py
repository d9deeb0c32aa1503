"""The webhook event catalogue is derived from the registry: one entry per event type."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from mesh.event_catalog import webhook_event_type, webhook_event_types
from mesh.event_types import default_event_types
from mesh.json_schema import message_schema

EVENTS = default_event_types()


def test_the_catalogue_has_one_entry_per_event_type_in_order():
    catalogue = webhook_event_types(EVENTS)
    assert [entry.event_type for entry in catalogue] == [event.type for event in EVENTS]
    assert len(catalogue) == len(EVENTS) > 200


def test_an_entry_describes_the_payload_and_shows_an_example_that_decodes():
    entry = webhook_event_type(EVENTS.get("call.completed"))
    assert (entry.name, entry.group) == ("webhook_event_types/call.completed", "call")
    assert entry.data_schema == "vocelio.call_center.v1.CallCompletedEvent"
    assert entry.description.startswith('CallCompletedEvent is the payload of "call.completed"')
    example = json_format.MessageToDict(entry.example_data)
    decoded: Any = EVENTS.decode(entry.event_type, entry.data_schema, example)
    assert decoded.usage.billable_seconds == 42
    schema = json_format.MessageToDict(entry.json_schema)
    assert schema["properties"]["usage"] == {"$ref": "#/$defs/vocelio.call_center.v1.CallUsage"}
    usage = schema["$defs"]["vocelio.call_center.v1.CallUsage"]["properties"]
    assert usage["billableSeconds"] == {"type": "string", "pattern": "^-?[0-9]+$"}
    assert usage["rounding"]["enum"][1] == "RATING_ROUNDING_PER_SECOND"
    assert schema["properties"]["duration"]["type"] == "string"


def test_json_schemas_of_recursive_messages_are_finite():
    schema = message_schema(EVENTS.get("call.completed").descriptor)
    assert schema["$defs"]["vocelio.call_center.v1.Call"]["type"] == "object"
