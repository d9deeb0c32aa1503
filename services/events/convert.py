"""Rows ↔ protobuf messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from mesh.kit import etags
from mesh.kit.sql import timestamp
from services.events.domain import names
from services.events.models import ConsumerCheckpointRow, EventRow, EventStreamRow, StreamState
from vocelio.common.v1 import audit_pb2
from vocelio.events.v1 import consumer_checkpoint_pb2, event_pb2, event_stream_pb2

_STATES = {
    StreamState.ACTIVE: event_stream_pb2.EVENT_STREAM_STATE_ACTIVE,
    StreamState.DELETED: event_stream_pb2.EVENT_STREAM_STATE_DELETED,
}


def event_to_proto(row: EventRow | Any) -> event_pb2.Event:
    """The ``Event`` of a row (an :class:`EventRow`, or a result row with its attributes: ``store.read_after``)."""
    return event_pb2.Event(
        name=names.event_name(row.organization_id, row.event_id),
        event_id=row.event_id,
        organization_id=row.organization_id,
        stream=names.stream_name(row.organization_id, row.stream_id),
        stream_version=row.stream_version,
        global_position=row.global_position,
        type=row.type,
        data=struct_pb2.Struct.FromString(row.data),
        data_schema=row.data_schema,
        metadata=event_pb2.EventMetadata.FromString(row.event_metadata),
        occur_time=timestamp(row.occur_time),
        record_time=timestamp(row.record_time),
    )


def stream_to_proto(row: EventStreamRow) -> event_stream_pb2.EventStream:
    """The ``EventStream`` of a row."""
    deleted = row.state is StreamState.DELETED
    result = event_stream_pb2.EventStream(
        name=names.stream_name(row.organization_id, row.stream_id),
        organization_id=row.organization_id,
        category=row.category,
        state=_STATES[row.state],
        last_version=row.last_version,
        first_readable_version=row.first_readable_version,
        event_count=0 if deleted else max(0, row.last_version + 1 - row.first_readable_version),
        last_global_position=row.last_position,
        last_event_type=row.last_event_type,
        audit=audit_pb2.AuditInfo(
            create_time=timestamp(row.create_time),
            update_time=timestamp(row.update_time),
            creator=row.creator,
            last_modifier=row.last_modifier,
        ),
    )
    if row.last_event_time is not None:
        result.last_event_time.CopyFrom(timestamp(row.last_event_time))
    if row.delete_time is not None and deleted:
        result.delete_time.CopyFrom(timestamp(row.delete_time))
    return result


def checkpoint_etag(row: ConsumerCheckpointRow) -> str:
    """The checkpoint's etag."""
    return etags.etag(names.checkpoint_name(row.organization_id, row.id), row.create_time, row.revision)


def checkpoint_to_proto(row: ConsumerCheckpointRow) -> consumer_checkpoint_pb2.ConsumerCheckpoint:
    """The ``ConsumerCheckpoint`` of a row."""
    result = consumer_checkpoint_pb2.ConsumerCheckpoint(
        name=names.checkpoint_name(row.organization_id, row.id),
        organization_id=row.organization_id,
        stream=row.stream,
        consumer_state=row.consumer_state,
        save_count=row.save_count,
        audit=row.audit_info(),
        etag=checkpoint_etag(row),
    )
    if row.stream_version is not None:
        result.stream_version = row.stream_version
    elif row.global_position is not None:
        result.global_position = row.global_position
    return result
