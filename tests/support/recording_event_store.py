"""A recording event store on port 0, for the outbox relay's tests.

:class:`FakeEventStore` serves ``EventsService.AppendToStream`` over a
:class:`~tests.support.fake_events.FakeLog` (the projection tests' log, so what the relay
appends can also be followed with ``SubscribeToAll``'s shape), with the contract's
idempotency rules (every event id already stored consecutively in the stream →
``already_appended``; a partial overlap, or an id used in another stream → ALREADY_EXISTS),
and identity's ``IssueToken`` (so the real ``MeshClients`` can fetch the service token).
It can be ``down`` (UNAVAILABLE), refuse chosen event ids (INVALID_ARGUMENT) and hold each
append for ``delay`` seconds; it notes when two appends carried one event at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tests.support.fake_events import FakeLog
from vocelio.events.v1 import event_pb2, events_service_pb2, events_service_pb2_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

SERVICE_TOKEN = "relay-test-service-token"


class FakeEventStore(events_service_pb2_grpc.EventsServiceServicer):
    """AppendToStream into a :class:`FakeLog`, recording every request and its credential."""

    def __init__(self, log: FakeLog | None = None) -> None:
        self.log = log or FakeLog()
        self.requests: list[events_service_pb2.AppendToStreamRequest] = []
        self.credentials: list[str] = []
        self.down = False
        self.refused: set[str] = set()
        self.delay = 0.0
        self.attempts = 0
        self.sending: set[str] = set()
        self.overlaps: list[str] = []
        self.appended = asyncio.Event()

    def stored_ids(self, stream: str) -> list[str]:
        """The event ids a stream holds, in version order."""
        return [event.event_id for event in self.log.events if event.stream == stream]

    def all_ids(self) -> list[str]:
        """Every stored event id, stream by stream (in the order the streams were first written)."""
        streams = dict.fromkeys(event.stream for event in self.log.events)
        return [event_id for stream in streams for event_id in self.stored_ids(stream)]

    async def AppendToStream(self, request: Any, context: Any) -> Any:
        """Append (or recognise) the request's events."""
        self.attempts += 1
        metadata = dict(context.invocation_metadata())
        self.credentials.append(metadata.get("authorization", ""))
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the event store is down")
        ids = [event.event_id for event in request.events]
        self.overlaps.extend(i for i in ids if i in self.sending)
        self.sending.update(ids)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.requests.append(request)
            if refused := [i for i in ids if i in self.refused]:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"event {refused[0]} is malformed")
            stored_ids = self.stored_ids(request.stream)
            stream_of = {event.event_id: event.stream for event in self.log.events}
            known = [i for i in ids if i in stream_of]
            if known and len(known) == len(ids) and all(stream_of[i] == request.stream for i in ids):
                start = stored_ids.index(ids[0])
                if stored_ids[start : start + len(ids)] == ids:
                    return events_service_pb2.AppendToStreamResponse(
                        current_version=start + len(ids) - 1, already_appended=True
                    )
            if known:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"event {known[0]} is already stored")
            for version, proposed in enumerate(request.events, start=len(stored_ids)):
                await self.log.record(_stored(request, proposed, version))
            self.appended.set()
            return events_service_pb2.AppendToStreamResponse(
                current_version=len(stored_ids) + len(ids) - 1, global_position=self.log.head
            )
        finally:
            self.sending.difference_update(ids)


def _stored(
    request: events_service_pb2.AppendToStreamRequest, proposed: events_service_pb2.ProposedEvent, version: int
) -> event_pb2.Event:
    """The log's event for one proposed event (the organisation from the stream's name, as the store does)."""
    organization = request.stream.split("/")[1] if request.stream.startswith("organizations/") else ""
    event = event_pb2.Event(
        event_id=proposed.event_id,
        stream=request.stream,
        stream_version=version,
        organization_id=request.organization_id or organization,
        type=proposed.type,
        data_schema=proposed.data_schema,
        metadata=proposed.metadata,
    )
    event.data.CopyFrom(proposed.data)
    event.occur_time.CopyFrom(proposed.occur_time)
    return event


class TokenIssuer(identity_service_pb2_grpc.IdentityServiceServicer):
    """Identity's IssueToken, answering every client_credentials grant with one fixed token."""

    async def IssueToken(self, request: Any, context: Any) -> Any:
        """A token for the service."""
        return identity_service_pb2.IssueTokenResponse(access_token=SERVICE_TOKEN, token_type="Bearer", expires_in=900)


@dataclasses.dataclass(frozen=True, slots=True)
class RunningStore:
    """The fake store and the port it (and the token issuer) listen on."""

    store: FakeEventStore
    port: int

    @property
    def ports(self) -> dict[str, int]:
        """``MeshClients`` ports: events and identity are both here."""
        return {"events": self.port, "identity": self.port}


@contextlib.asynccontextmanager
async def fake_event_store() -> AsyncIterator[RunningStore]:
    """Serve a :class:`FakeEventStore` and a :class:`TokenIssuer` on port 0; stopped afterwards."""
    store = FakeEventStore()
    server = grpc.aio.server()
    events_service_pb2_grpc.add_EventsServiceServicer_to_server(store, server)
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(TokenIssuer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield RunningStore(store, port)
    finally:
        await server.stop(None)
