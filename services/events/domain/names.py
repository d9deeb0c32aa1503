"""Names of streams, events and checkpoints, in their organisation and platform forms.

Every resource of the events service has two patterns: ``organizations/{organization}/…``
for an organisation's and a bare ``event_streams/{id}`` (``events/…``,
``consumer_checkpoints/…``) for the platform's, whose organisation is ``""``.
AppendToStream also takes a bare stream id with ``organization_id`` beside it, which is
what an outbox relay has at hand.
"""

from __future__ import annotations

import dataclasses
import re

from mesh.errors import InvalidArgument
from mesh.kit.names import ResourceName
from vocelio.events.v1 import consumer_checkpoint_pb2, event_pb2, event_stream_pb2

STREAM_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
CHECKPOINT_ID = re.compile(r"[a-z0-9._-]{3,63}")

STREAMS = ResourceName.for_message(event_stream_pb2.EventStream)
PLATFORM_STREAMS = ResourceName.for_message(event_stream_pb2.EventStream, 1)
EVENTS = ResourceName.for_message(event_pb2.Event)
PLATFORM_EVENTS = ResourceName.for_message(event_pb2.Event, 1)
CHECKPOINTS = ResourceName.for_message(consumer_checkpoint_pb2.ConsumerCheckpoint)
PLATFORM_CHECKPOINTS = ResourceName.for_message(consumer_checkpoint_pb2.ConsumerCheckpoint, 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Scoped:
    """A resource id in its scope.

    Attributes:
        organization_id: the owning organisation, ``""`` for the platform.
        id: the resource's own id (stream id, event id, checkpoint id).

    """

    organization_id: str
    id: str


def _split(name: str, prefix: str, field: str, shape: str) -> Scoped:
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == "organizations" and parts[2] == prefix and parts[1] and parts[3]:
        return Scoped(parts[1], parts[3])
    if len(parts) == 2 and parts[0] == prefix and parts[1]:
        return Scoped("", parts[1])
    problem = "is required" if not name else f"must look like organizations/{{organization}}/{prefix}/{shape}"
    raise InvalidArgument(f"{field} {problem}", {field: problem})


def parse_stream(name: str, *, field: str = "stream") -> Scoped:
    """The organisation and id of a stream name (either form).

    Raises:
        InvalidArgument: another shape, or an id that is not 1 to 200 of ``[A-Za-z0-9._-]``.

    """
    scoped = _split(name, "event_streams", field, "{event_stream}")
    if not STREAM_ID.fullmatch(scoped.id):
        problem = "the stream id must be 1 to 200 characters of [A-Za-z0-9._-]"
        raise InvalidArgument(f"{field}: {problem}", {field: problem})
    return scoped


def parse_append_stream(stream: str, organization_id: str) -> Scoped:
    """The stream an append names: a full name, or a bare id with ``organization_id``.

    Raises:
        InvalidArgument: a bad name or id, or an ``organization_id`` that contradicts the name.

    """
    if "/" not in stream and stream:
        if not STREAM_ID.fullmatch(stream):
            problem = "the stream id must be 1 to 200 characters of [A-Za-z0-9._-]"
            raise InvalidArgument(f"stream: {problem}", {"stream": problem})
        return Scoped(organization_id, stream)
    scoped = parse_stream(stream)
    if organization_id and organization_id != scoped.organization_id:
        problem = "does not match the organisation in stream"
        raise InvalidArgument(f"organization_id {problem}", {"organization_id": problem})
    return scoped


def stream_name(organization_id: str, stream_id: str) -> str:
    """The resource name of a stream."""
    if organization_id:
        return f"organizations/{organization_id}/event_streams/{stream_id}"
    return f"event_streams/{stream_id}"


def parse_event(name: str, *, field: str = "name") -> Scoped:
    """The organisation and event id of an event name (either form)."""
    return _split(name, "events", field, "{event}")


def event_name(organization_id: str, event_id: str) -> str:
    """The resource name of an event."""
    return f"organizations/{organization_id}/events/{event_id}" if organization_id else f"events/{event_id}"


def parse_checkpoint(name: str, *, field: str = "name") -> Scoped:
    """The scope and id of a checkpoint name (either form).

    Raises:
        InvalidArgument: another shape, or an id that is not 3 to 63 of ``[a-z0-9._-]``.

    """
    scoped = _split(name, "consumer_checkpoints", field, "{consumer_checkpoint}")
    if not CHECKPOINT_ID.fullmatch(scoped.id):
        problem = "the checkpoint id must be 3 to 63 characters of [a-z0-9._-]"
        raise InvalidArgument(f"{field}: {problem}", {field: problem})
    return scoped


def checkpoint_name(organization_id: str, checkpoint_id: str) -> str:
    """The resource name of a consumer checkpoint."""
    if organization_id:
        return f"organizations/{organization_id}/consumer_checkpoints/{checkpoint_id}"
    return f"consumer_checkpoints/{checkpoint_id}"


def category(stream_id: str) -> str:
    """The stream's category: its id up to the first ``-`` (the whole id without one)."""
    return stream_id.split("-", 1)[0]
