"""An in-memory global log with SubscribeToAll's shape, for projection (and, behind it, relay) tests.

``FakeLog.subscribe`` behaves like ``EventsService.SubscribeToAll``: the stored events after
the position (filtered by type prefix), a caught-up marker, then live events as they are
appended. ``outage`` makes subscriptions fail with UNAVAILABLE (the events service down);
``rewind`` starts every new subscription that many positions before the one asked for, so
events already applied come again at their own positions (at-least-once delivery);
``archived`` makes a subscription that starts inside the first positions OUT_OF_RANGE (retention).
``tests/support/recording_event_store.py`` serves AppendToStream over the same log.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import uuid
from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf import message

from mesh import event_types
from vocelio.events.v1 import event_pb2, events_service_pb2


def unavailable() -> grpc.aio.AioRpcError:
    """The error a subscription to a stopped events service fails with."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "events is down", None
    )


class FakeLog:
    """The global log, in memory."""

    def __init__(self) -> None:
        self.events: list[event_pb2.Event] = []
        self.outage = False
        self.subscriptions = 0
        # Seconds to wait before delivering each event (to stop a consumer mid-stream).
        self.delay = 0.0
        # Positions re-sent before the one a subscription asks to start after.
        self.rewind = 0
        # Positions up to this one are archived: a subscription starting inside them is OUT_OF_RANGE.
        self.archived = 0
        self._appended = asyncio.Condition()

    async def append(
        self, organization_id: str, payload: message.Message, *, event_id: str | None = None, actor: str = "users/u1"
    ) -> event_pb2.Event:
        """Store an event at the next position (an existing ``event_id`` makes a duplicate at a new one)."""
        event_type, schema, data = event_types.encode(payload)
        event = event_pb2.Event(
            event_id=event_id or str(uuid.uuid4()),
            organization_id=organization_id,
            stream=f"organizations/{organization_id}/event_streams/test-1",
            type=event_type,
            data_schema=schema,
            metadata=event_pb2.EventMetadata(actor=actor),
        )
        event.data.update(data)
        event.occur_time.FromDatetime(
            datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC) + datetime.timedelta(seconds=len(self.events))
        )
        return await self.record(event)

    async def record(self, event: event_pb2.Event) -> event_pb2.Event:
        """Store ``event`` at the next global position and wake subscribers (record time: its occur time if unset)."""
        event.global_position = len(self.events) + 1
        if not event.HasField("record_time"):
            event.record_time.CopyFrom(event.occur_time)
        self.events.append(event)
        async with self._appended:
            self._appended.notify_all()
        return event

    @property
    def head(self) -> int:
        """The newest position."""
        return len(self.events)

    async def head_position(self) -> int:
        """:class:`mesh.kit.projections.EventSource`'s head."""
        if self.outage:
            raise unavailable()
        return self.head

    async def subscribe(
        self, *, after_position: int, event_type_prefixes: Sequence[str]
    ) -> AsyncIterator[events_service_pb2.SubscribeToAllResponse]:
        """Catch-up, the marker, then live, like SubscribeToAll."""
        self.subscriptions += 1
        if self.outage:
            raise unavailable()
        if after_position < self.archived:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.OUT_OF_RANGE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                f"events up to global position {self.archived} are archived (retention)",
                None,
            )
        position = max(after_position - self.rewind, 0)
        caught_up = False
        while True:
            while position < len(self.events):
                event = self.events[position]
                position += 1
                if self.outage:
                    raise unavailable()
                if event_type_prefixes and not any(event.type.startswith(p) for p in event_type_prefixes):
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield events_service_pb2.SubscribeToAllResponse(event=event)
            if not caught_up:
                caught_up = True
                yield events_service_pb2.SubscribeToAllResponse(
                    caught_up=event_pb2.SubscriptionCaughtUp(global_position=position)
                )
            async with self._appended:
                await self._appended.wait_for(functools.partial(self._moved_past, position))
            if self.outage:
                raise unavailable()

    def _moved_past(self, position: int) -> bool:
        return position < len(self.events) or self.outage

    async def fail(self) -> None:
        """Start an outage: open subscriptions fail, new ones are refused."""
        self.outage = True
        async with self._appended:
            self._appended.notify_all()
