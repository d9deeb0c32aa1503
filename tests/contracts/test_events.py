"""Every service declares the domain events it emits, as typed, marked, resolvable messages.

The rules of docs/CONTRACTS.md "Events": one ``<service>_events.proto`` per service, each
message in it carries ``(vocelio.api.v1.event)`` with a unique ``<resource>.<past_tense_verb>``
type whose resource segment names a declared resource type of the same package, and every
``data_schema`` of the registry resolves to its message.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.api import resource_pb2
from google.protobuf import descriptor_pb2

from mesh.event_catalog import webhook_event_types
from mesh.event_types import EventTypes, default_event_types
from mesh.registry import default_descriptor_set, default_registry
from vocelio.api.v1 import event_pb2

EVENT_OPTION: Any = event_pb2.event

REGISTRY = default_registry()
EVENTS = default_event_types()
FILES = list(descriptor_pb2.FileDescriptorSet.FromString(default_descriptor_set().read_bytes()).file)
SERVICES = [service.name for service in REGISTRY]
# Pure read models own no resource and record no fact of their own (reviewed: overview is
# the dashboard's projection of other services' events).
READ_MODELS = {"overview"}
SEGMENT = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"
EVENT_TYPE = re.compile(rf"^({SEGMENT})\.({SEGMENT})$")
IRREGULAR_PAST = {"sent", "paid", "rebuilt", "frozen", "withdrawn"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _resource_types(package: str) -> set[str]:
    types = set()
    for file in FILES:
        if file.package != package:
            continue
        for message in file.message_type:
            if message.options.HasExtension(resource_pb2.resource):
                types.add(message.options.Extensions[resource_pb2.resource].type)
    return types


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_an_events_file(service: str):
    names = {file.name for file in FILES}
    assert f"vocelio/{service}/v1/{service}_events.proto" in names
    if service not in READ_MODELS:
        assert EVENTS.by_service(service), f"{service} declares no event type"


def test_every_message_of_an_events_file_is_an_event_and_every_event_lives_in_one():
    offenders = []
    for file in FILES:
        in_events_file = file.name.endswith("_events.proto") and file.package.startswith("vocelio.")
        for message in file.message_type:
            marked = message.options.HasExtension(EVENT_OPTION)
            # CallUsage is a part of call.completed, not an event: parts end otherwise than "Event".
            if in_events_file and message.name.endswith("Event") and not marked:
                offenders.append(f"{file.name}: {message.name} lacks (vocelio.api.v1.event)")
            if marked and not (in_events_file and message.name.endswith("Event")):
                offenders.append(f"{file.name}: {message.name} is an event outside <service>_events.proto")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("event", list(EVENTS), ids=lambda e: e.type)
def test_event_type_names_its_resource_and_a_past_tense_verb(event):
    match = EVENT_TYPE.match(event.type)
    assert match, f"{event.type!r} is not <resource>.<past_tense_verb> in lower_snake segments"
    resource, verb = match.groups()
    package = event.data_schema.rsplit(".", 1)[0]
    assert event.resource_type in _resource_types(package), f"{event.resource_type} is not a resource of {package}"
    assert resource == _snake(event.resource_type.split("/", 1)[1])
    assert any(word.endswith("ed") or word in IRREGULAR_PAST for word in verb.split("_")), verb
    assert event.description.startswith(event.data_schema.rsplit(".", 1)[1]), "the message comment says what it is"


def test_event_types_are_unique_and_every_data_schema_resolves():
    assert len({e.type for e in EVENTS}) == len(EVENTS)
    pool = REGISTRY.pool
    for event in EVENTS:
        found = pool.FindMessageTypeByName(event.data_schema)
        assert found.GetOptions().Extensions[EVENT_OPTION].type == event.type
        assert event.service in SERVICES


def test_a_type_declared_twice_is_refused():
    twin = descriptor_pb2.FileDescriptorProto()
    for file in FILES:
        if file.name == "vocelio/agents/v1/agents_events.proto":
            twin.CopyFrom(file)
    twin.name = "vocelio/agents/v1/agents_events_twin.proto"
    for message in twin.message_type:
        message.name += "Twin"
    with pytest.raises(ValueError, match="declared twice"):
        EventTypes([*FILES, twin])


def test_the_webhook_catalogue_covers_every_event_type():
    catalogue = webhook_event_types(EVENTS)
    assert [entry.event_type for entry in catalogue] == sorted(e.type for e in EVENTS)
    for entry, event in zip(catalogue, EVENTS, strict=True):
        assert entry.name == f"webhook_event_types/{event.type}"
        assert entry.data_schema == event.data_schema
        assert entry.group == event.type.split(".")[0]
        assert entry.description and entry.json_schema["title"] == event.data_schema
        assert entry.example_data, event.type


def test_call_completed_carries_duration_end_reason_and_usage():
    completed = EVENTS.get("call.completed").descriptor
    assert {"call", "status", "end_reason", "duration", "usage"} <= set(completed.fields_by_name)
    usage = completed.fields_by_name["usage"].message_type
    assert {"billable_seconds", "rounding", "cost"} <= set(usage.fields_by_name)
