"""What a batch of queued appends writes: the pure half of group commit.

The appender (:mod:`services.events.appender`) takes the log's lock once for every append
that queued while the previous transaction ran, loads the streams and the already-stored
ids they touch, and hands them here. :func:`plan` decides each append in arrival order,
exactly as if they had run one after another: each is checked against its stream as the
earlier appends of the same batch left it (so two appends to one stream in one batch still
see each other's versions), and a refused append (another organisation's stream, a reused
id, a wrong expected version) is refused alone — its error goes to its own caller and the
others are written. Positions are handed out consecutively from the head in the same order,
so they stay in commit order (see :mod:`services.events.store`).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from mesh.errors import FailedPrecondition, VocelioError
from services.events.domain import appends, names
from services.events.models import StreamState
from vocelio.events.v1 import events_errors_pb2, events_service_pb2

pb = events_service_pb2


@dataclasses.dataclass(slots=True)
class StreamRecord:
    """One ``event_streams`` row as the batch sees it (mutated as the batch's appends land).

    Attributes:
        values: the row's columns by name.
        new: the stream is first written by this batch (inserted, not updated).
        touched: this batch appended to it.

    """

    values: dict[str, Any]
    new: bool = False
    touched: bool = False

    def view(self) -> appends.StreamView:
        """What the expected-version rules need."""
        return appends.StreamView(
            exists=True, active=self.values["state"] is StreamState.ACTIVE, last_version=self.values["last_version"]
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Queued:
    """One append waiting for the writer, already checked on its own (``proposed_event_violations``).

    Attributes:
        request: the request.
        scoped: its stream in its organisation.
        name: the stream's resource name (for errors).
        subject: the caller, recorded as the stream's creator or last modifier.

    """

    request: pb.AppendToStreamRequest
    scoped: names.Scoped
    name: str
    subject: str
    encoded: tuple[Encoded, ...]
    """Each event's stored bytes, made by :func:`queued` in the caller's handler, outside the writer's turn."""


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """What an event stores that does not depend on where it lands: payload and metadata bytes, occur time."""

    data: bytes
    metadata: bytes
    occur_time: datetime.datetime | None


def queued(request: pb.AppendToStreamRequest, scoped: names.Scoped, name: str, subject: str) -> Queued:
    """A checked append ready for the writer, its events already serialised."""
    encoded = tuple(
        Encoded(
            event.data.SerializeToString(deterministic=True),
            event.metadata.SerializeToString(deterministic=True),
            event.occur_time.ToDatetime(datetime.UTC) if event.HasField("occur_time") else None,
        )
        for event in request.events
    )
    return Queued(request, scoped, name, subject, encoded)


Outcome = pb.AppendToStreamResponse | VocelioError
"""What one queued append comes to: its response, or the error its caller gets."""


@dataclasses.dataclass(slots=True)
class Plan:
    """The writes of a batch and each append's outcome (in the batch's order).

    Attributes:
        outcomes: per queued append, its response or its error.
        events: the ``events`` rows to insert, in position order (values in :data:`EVENT_COLUMNS` order).
        head: the log's head after the batch (unchanged when nothing is written).
        streams: every stream record the batch loaded or created.

    """

    outcomes: list[Outcome]
    events: list[tuple[Any, ...]]
    head: int
    streams: dict[str, StreamRecord]

    def inserted_streams(self) -> list[dict[str, Any]]:
        """Rows of the streams this batch creates."""
        return [record.values for record in self.streams.values() if record.new and record.touched]

    def updated_streams(self) -> list[dict[str, Any]]:
        """Rows of the existing streams this batch appended to."""
        return [record.values for record in self.streams.values() if not record.new and record.touched]


def plan(
    batch: Sequence[Queued],
    streams: Mapping[str, dict[str, Any]],
    stored: Sequence[appends.StoredId],
    *,
    head: int,
    now: datetime.datetime,
) -> Plan:
    """Decide every append of ``batch`` in order.

    Args:
        batch: the queued appends, in arrival order.
        streams: the ``event_streams`` rows of the streams they name (missing: never written).
        stored: the events already stored under any of their event ids.
        head: the log's committed head, read under the lock.
        now: the record time of every event of the batch.

    """
    records = {stream_id: StreamRecord(dict(values)) for stream_id, values in streams.items()}
    known = {item.event_id: item for item in stored}
    result = Plan(outcomes=[], events=[], head=head, streams=records)
    for queued in batch:
        try:
            result.outcomes.append(_decide(queued, result, known, now))
        except VocelioError as error:
            result.outcomes.append(error)
    return result


def _decide(
    queued: Queued, result: Plan, known: dict[str, appends.StoredId], now: datetime.datetime
) -> pb.AppendToStreamResponse:
    request, scoped = queued.request, queued.scoped
    record = result.streams.get(scoped.id)
    if record is not None and record.values["organization_id"] != scoped.organization_id:
        raise FailedPrecondition(
            f"stream {scoped.id} belongs to another organisation; its owner is fixed by its first append"
        ).with_reason(appends.REASONS, events_errors_pb2.ERROR_REASON_STREAM_OWNED_ELSEWHERE)
    event_ids = [event.event_id for event in request.events]
    overlap = [known[event_id] for event_id in event_ids if event_id in known]
    retry = appends.classify_retry(event_ids, scoped.id, overlap)
    if retry is not None:
        return pb.AppendToStreamResponse(
            current_version=retry.stream_version, global_position=retry.global_position, already_appended=True
        )
    appends.check_expected(request, appends.NEVER_WRITTEN if record is None else record.view(), queued.name)
    if record is None:
        record = StreamRecord(new_stream(scoped, queued.subject, now), new=True)
        result.streams[scoped.id] = record
    values = record.values
    if values["state"] is StreamState.DELETED:
        # A later append revives a deleted stream; its old events stay hidden.
        values["state"] = StreamState.ACTIVE
        values["delete_time"] = None
    version, position = values["last_version"], result.head
    for proposed, stored in zip(request.events, queued.encoded, strict=True):
        version, position = version + 1, position + 1
        result.events.append(event_row(proposed, stored, scoped, version=version, position=position, now=now))
        known[proposed.event_id] = appends.StoredId(proposed.event_id, scoped.id, version, position)
    last = request.events[-1]
    values.update(
        last_version=version,
        last_position=position,
        last_event_type=last.type,
        last_event_time=now,
        last_modifier=queued.subject,
        update_time=now,
    )
    record.touched = True
    result.head = position
    return pb.AppendToStreamResponse(current_version=version, global_position=position)


def new_stream(scoped: names.Scoped, subject: str, now: datetime.datetime) -> dict[str, Any]:
    """The ``event_streams`` row of a stream's first append."""
    return {
        "stream_id": scoped.id,
        "organization_id": scoped.organization_id,
        "category": names.category(scoped.id),
        "state": StreamState.ACTIVE,
        "last_version": -1,
        "first_readable_version": 0,
        "archived_version": 0,
        "last_position": 0,
        "last_event_type": "",
        "last_event_time": None,
        "delete_time": None,
        "creator": subject,
        "last_modifier": subject,
        "create_time": now,
        "update_time": now,
    }


EVENT_COLUMNS = (
    "global_position",
    "event_id",
    "stream_id",
    "stream_version",
    "organization_id",
    "type",
    "data",
    "data_schema",
    "metadata",
    "occur_time",
    "record_time",
    "hidden",
)
"""The ``events`` columns in the order of :func:`event_row`'s values (``metadata`` is ``EventRow.event_metadata``)."""


def event_row(
    proposed: pb.ProposedEvent,
    stored: Encoded,
    scoped: names.Scoped,
    *,
    version: int,
    position: int,
    now: datetime.datetime,
) -> tuple[Any, ...]:
    """The ``events`` row of one proposed event, its values in :data:`EVENT_COLUMNS` order (what COPY sends)."""
    return (
        position,
        proposed.event_id,
        scoped.id,
        version,
        scoped.organization_id,
        proposed.type,
        stored.data,
        proposed.data_schema,
        stored.metadata,
        stored.occur_time or now,
        now,
        False,
    )
