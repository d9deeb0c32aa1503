"""The webhook event catalogue, derived from the event registry.

The webhooks service lists the event types an endpoint can subscribe to
(``ListWebhookEventTypes``); this is that list, built from :mod:`mesh.event_types` and
nothing else, so a new event declared in a contract appears in the catalogue without
another edit.
"""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from mesh.event_types import EventType, EventTypes
from mesh.json_schema import message_schema
from mesh.samples import example
from vocelio.webhooks.v1 import webhook_event_type_pb2

COLLECTION = "webhook_event_types"


def webhook_event_type(event: EventType) -> webhook_event_type_pb2.WebhookEventType:
    """The catalogue entry of one event type: description, JSON Schema and an example of its data."""
    schema = struct_pb2.Struct()
    schema.update(message_schema(event.descriptor))
    example_data = struct_pb2.Struct()
    example_data.update(json_format.MessageToDict(example(event.message_class)))
    return webhook_event_type_pb2.WebhookEventType(
        name=f"{COLLECTION}/{event.type}",
        event_type=event.type,
        group=event.group,
        description=event.description,
        json_schema=schema,
        example_data=example_data,
        data_schema=event.data_schema,
        deprecated=False,
    )


def webhook_event_types(event_types: EventTypes) -> list[webhook_event_type_pb2.WebhookEventType]:
    """Every catalogue entry, ordered by event type."""
    return [webhook_event_type(event) for event in event_types]
