"""What an append may contain and when it may happen: proposed events, expected versions, retries.

Pure rules, no database: the store hands in what it found (the stream's state, the stored
events sharing the request's ids) and these functions decide.

- **Proposed events**: ``event_id`` a canonical lower-case UUID, unique in the request;
  ``type`` ``<resource>.<past-tense verb>`` in lower_snake segments (3 to 100 characters);
  ``data`` at most 1 MiB serialised, the request at most 4 MiB. When ``data_schema`` is set
  it must be the message the contracts declare for ``type`` and ``data`` must parse as that
  message (:mod:`mesh.event_types`); an empty schema is accepted as an event recorded before
  payloads were typed, and stored as is.
- **Expected versions** (EventStoreDB's): ``ANY``; ``NO_STREAM`` (never written, or
  deleted); ``STREAM_EXISTS`` (ACTIVE); or an exact revision equal to ``last_version``
  (``-1`` for a stream never written). A mismatch is ABORTED ``WRONG_EXPECTED_VERSION`` with
  ``stream``, ``expected`` and ``actual``.
- **Retries**: when every event id is already stored in this stream at consecutive versions
  in request order, the append is a retry and answers the first result; any other overlap
  (an id used in another stream, a partial or reordered overlap) is ALREADY_EXISTS.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from mesh import event_types
from mesh.errors import Aborted, AlreadyExists, ErrorReasons, InvalidArgument
from mesh.kit.validation import Violations
from vocelio.events.v1 import events_errors_pb2, events_service_pb2

REASONS = ErrorReasons(events_errors_pb2.ErrorReason)

EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
MAX_DATA_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_EVENTS = 500
MAX_LABELS = 32
LABEL_KEY = re.compile(r"[a-z0-9_.-]{1,63}")

Expected = events_service_pb2.ExpectedStreamState
ANY = events_service_pb2.EXPECTED_STREAM_STATE_ANY
NO_STREAM = events_service_pb2.EXPECTED_STREAM_STATE_NO_STREAM
STREAM_EXISTS = events_service_pb2.EXPECTED_STREAM_STATE_STREAM_EXISTS


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in its canonical lower-case form (``str(uuid.UUID(value)) == value``)."""
    return _CANONICAL_UUID.fullmatch(value) is not None


def proposed_event_violations(events: Sequence[events_service_pb2.ProposedEvent]) -> Violations:
    """Every problem of the proposed events, each under its field path."""
    violations = Violations()
    if not events:
        violations.add("events", "at least one event is required")
    if len(events) > MAX_EVENTS:
        violations.add("events", f"at most {MAX_EVENTS} events per append")
    seen: set[str] = set()
    total = 0
    for index, event in enumerate(events):
        path = f"events[{index}]"
        if not canonical_uuid(event.event_id):
            violations.add(f"{path}.event_id", "must be a UUID in canonical lower-case form")
        elif event.event_id in seen:
            violations.add(f"{path}.event_id", "appears twice in the request")
        seen.add(event.event_id)
        if not (3 <= len(event.type) <= 100 and EVENT_TYPE.fullmatch(event.type)):
            violations.add(f"{path}.type", "must be <resource>.<past-tense verb> in lower_snake segments, 3-100 chars")
        size = event.data.ByteSize()
        total += event.ByteSize()
        if size > MAX_DATA_BYTES:
            violations.add(f"{path}.data", "must be at most 1 MiB serialised")
        labels = event.metadata.labels
        if len(labels) > MAX_LABELS:
            violations.add(f"{path}.metadata.labels", f"at most {MAX_LABELS} entries")
        for key, value in labels.items():
            if not LABEL_KEY.fullmatch(key) or len(value) > 256:
                violations.add(f"{path}.metadata.labels", f"{key!r}: keys 1-63 of [a-z0-9_.-], values at most 256")
        if len(event.metadata.correlation_id) > 128:
            violations.add(f"{path}.metadata.correlation_id", "at most 128 characters")
        if event.data_schema and EVENT_TYPE.fullmatch(event.type):
            problem = _payload_problem(event)
            if problem is not None:
                field, text = problem
                violations.add(f"{path}.{field}", text)
    if total > MAX_REQUEST_BYTES:
        violations.add("events", "must be at most 4 MiB together")
    return violations


def _payload_problem(event: events_service_pb2.ProposedEvent) -> tuple[str, str] | None:
    """Why a typed payload does not fit its declaration, or ``None``."""
    types = event_types.default_event_types()
    if event.type not in types:
        return "type", f"no contract declares {event.type!r}, so data_schema cannot be set"
    declared = types.get(event.type)
    if event.data_schema != declared.data_schema:
        return "data_schema", f"{event.type} carries {declared.data_schema}"
    problem = types.check(event.type, event.data_schema, event.data)
    if problem is not None:
        return "data", f"is not the ProtoJSON form of {declared.data_schema}: {problem}"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class StreamView:
    """What an append needs to know about its stream (``None`` fields for a stream never written).

    Attributes:
        exists: the stream has had an append.
        active: it is ACTIVE (not soft-deleted).
        last_version: its last version, ``-1`` when never written.

    """

    exists: bool
    active: bool
    last_version: int


NEVER_WRITTEN = StreamView(exists=False, active=False, last_version=-1)


def check_expected(request: events_service_pb2.AppendToStreamRequest, stream: StreamView, name: str) -> None:
    """Refuse the append when the stream is not in the expected state.

    Raises:
        Aborted: ``WRONG_EXPECTED_VERSION`` with ``stream``, ``expected`` and ``actual``.
        InvalidArgument: an expected revision below -1.

    """
    which = request.WhichOneof("expected_version")
    if which == "expected_revision":
        expected = request.expected_revision
        if expected < -1:
            raise InvalidArgument("expected_revision must be -1 or more", {"expected_revision": "must be >= -1"})
        if stream.last_version == expected:
            return
        expected_text = str(expected)
    else:
        state = request.expected_state if which == "expected_state" else ANY
        if state in (ANY, events_service_pb2.EXPECTED_STREAM_STATE_UNSPECIFIED):
            return
        if state == NO_STREAM and not stream.active:
            return
        if state == STREAM_EXISTS and stream.active:
            return
        if state not in (NO_STREAM, STREAM_EXISTS):
            raise InvalidArgument("expected_state is not a known state", {"expected_state": "unknown value"})
        expected_text = Expected.Name(state).removeprefix("EXPECTED_STREAM_STATE_")
    raise wrong_expected_version(name, expected_text, stream.last_version)


def wrong_expected_version(name: str, expected: str, actual: int) -> Aborted:
    """The ABORTED of an optimistic-concurrency conflict, carrying the stream's current version."""
    return Aborted(f"{name} is at version {actual}, not {expected}: re-read the stream and decide again").with_reason(
        REASONS,
        events_errors_pb2.ERROR_REASON_WRONG_EXPECTED_VERSION,
        {"stream": name, "expected": expected, "actual": str(actual)},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class StoredId:
    """An event already stored under one of the request's ids."""

    event_id: str
    stream_id: str
    stream_version: int
    global_position: int


def classify_retry(event_ids: Sequence[str], stream_id: str, stored: Sequence[StoredId]) -> StoredId | None:
    """Whether the request repeats an earlier append: its last stored event, or ``None`` when nothing overlaps.

    Raises:
        AlreadyExists: some ids are stored, but not as this exact append to this stream.

    """
    if not stored:
        return None
    by_id = {item.event_id: item for item in stored}
    found = [by_id.get(event_id) for event_id in event_ids]
    complete = all(item is not None for item in found)
    if complete:
        items = [item for item in found if item is not None]
        first = items[0].stream_version
        if all(item.stream_id == stream_id and item.stream_version == first + i for i, item in enumerate(items)):
            return items[-1]
    elsewhere = sorted(item.event_id for item in stored if item.stream_id != stream_id)
    detail = (
        f"event_id {elsewhere[0]} is already stored in another stream"
        if elsewhere
        else ("the request overlaps events already stored only partly")
    )
    raise AlreadyExists(detail).with_reason(REASONS, events_errors_pb2.ERROR_REASON_EVENT_ID_REUSED)
