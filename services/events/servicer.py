"""``vocelio.events.v1.EventsService``: proto in, proto out, one transaction per call.

Each method reads the caller (``mesh.principal.current()``; the RBAC interceptor has
already checked the permission), checks the request with the domain rules and does its
work in one transaction. Appends are checked here and written by the process's one
:class:`~services.events.appender.Appender` (group commit under the log's lock, see
:mod:`services.events.store`), which wakes subscribers after each commit; reads read the
head first and events up to it.
Subscriptions are :mod:`services.events.subscriptions`; checkpoints
:mod:`services.events.checkpoints`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import InvalidArgument
from mesh.kit import paging, tenancy
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.principal import Principal, current
from services.events import convert, store, streams
from services.events.appender import Appender
from services.events.checkpoints import Checkpoints, parent_scope
from services.events.domain import appends, batches, names, reading
from services.events.notifier import LogNotifier
from services.events.subscriptions import GlobalStart, Subscriptions
from vocelio.events.v1 import event_pb2, events_service_pb2, events_service_pb2_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
pb = events_service_pb2

BACKWARDS = event_pb2.READ_DIRECTION_BACKWARDS


class EventsServicer(events_service_pb2_grpc.EventsServiceServicer):
    """The event store."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        page_tokens: paging.PageTokens,
        *,
        gate: store.WriteGate,
        notifier: LogNotifier,
        appender: Appender,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._appender = appender
        self._checkpoints = Checkpoints(sessions, gate, page_tokens, clock)
        self._streams = streams.Streams(sessions, gate, page_tokens, clock)
        self._subscriptions = Subscriptions(sessions, notifier, clock, poll_interval=poll_interval)

    # Appending

    async def AppendToStream(self, request: pb.AppendToStreamRequest, context: Context) -> pb.AppendToStreamResponse:
        """Appends events atomically, under optimistic concurrency, idempotent by event id."""
        principal = current()
        scoped = names.parse_append_stream(request.stream, request.organization_id)
        appends.proposed_event_violations(request.events).raise_if_any()
        name = names.stream_name(scoped.organization_id, scoped.id)
        return await self._appender.append(batches.queued(request, scoped, name, principal.subject))

    # Reading

    async def GetEvent(self, request: pb.GetEventRequest, context: Context) -> pb.GetEventResponse:
        """Gets one event by name."""
        principal = current()
        scoped = names.parse_event(request.name)
        async with self._sessions() as session:
            found = await store.events_by_id(session, [scoped.id])
        row = found.get(scoped.id)
        if (
            row is None
            or row.organization_id != scoped.organization_id
            or not tenancy.may_read(principal, scoped.organization_id)
        ):
            raise tenancy.not_found(request.name)
        return pb.GetEventResponse(event=convert.event_to_proto(row))

    async def BatchGetEvents(self, request: pb.BatchGetEventsRequest, context: Context) -> pb.BatchGetEventsResponse:
        """Gets up to 100 events of one organisation, in the order named."""
        principal = current()
        parent = names.EVENTS.parse_parent(request.parent, allow_wildcard=False)
        tenancy.list_scope(principal, parent.organization)
        if not request.names or len(request.names) > 100:
            raise InvalidArgument("names must hold 1 to 100 event names", {"names": "1 to 100 names"})
        wanted = []
        for index, name in enumerate(request.names):
            scoped = names.parse_event(name, field=f"names[{index}]")
            if scoped.organization_id != parent.organization:
                problem = "must be an event of the parent organisation"
                raise InvalidArgument(f"names[{index}] {problem}", {f"names[{index}]": problem})
            wanted.append(scoped.id)
        async with self._sessions() as session:
            found = await store.events_by_id(session, wanted)
        events = []
        for name, event_id in zip(request.names, wanted, strict=True):
            row = found.get(event_id)
            if row is None or row.organization_id != parent.organization:
                if request.allow_missing:
                    continue
                raise tenancy.not_found(name)
            events.append(convert.event_to_proto(row))
        return pb.BatchGetEventsResponse(events=events)

    async def ReadStream(self, request: pb.ReadStreamRequest, context: Context) -> pb.ReadStreamResponse:
        """Reads one stream forwards or backwards from a version."""
        principal = current()
        scoped = names.parse_stream(request.stream)
        name = names.stream_name(scoped.organization_id, scoped.id)
        limit = reading.read_count(request.max_count)
        forwards = request.direction != BACKWARDS
        async with self._sessions() as session:
            stream = await self._streams.readable(session, principal, scoped, request.stream)
            lowest = max(stream.first_readable_version, stream.archived_version)
            if forwards:
                start = request.from_version if request.HasField("from_version") else lowest
                reading.check_version(name, start, stream.first_readable_version, stream.archived_version)
                rows = await store.read_stream(
                    session, scoped.id, start=max(start, lowest), forwards=True, limit=limit, lowest=lowest
                )
            else:
                start = request.from_version if request.HasField("from_version") else stream.last_version
                reading.check_version(name, start, stream.first_readable_version, stream.archived_version)
                rows = await store.read_stream(
                    session,
                    scoped.id,
                    start=min(start, stream.last_version),
                    forwards=False,
                    limit=limit,
                    lowest=lowest,
                )
        events = [convert.event_to_proto(row) for row in rows]
        if forwards:
            end = len(rows) < limit or rows[-1].stream_version >= stream.last_version
            next_version = rows[-1].stream_version + 1 if rows else max(start, lowest)
        else:
            end = len(rows) < limit or rows[-1].stream_version <= lowest
            next_version = rows[-1].stream_version - 1 if rows else lowest - 1
            if end and stream.archived_version > stream.first_readable_version:
                end = False  # the next page lies in the archive: it answers EVENTS_ARCHIVED, not silence
                next_version = stream.archived_version - 1
        return pb.ReadStreamResponse(
            events=events, next_version=next_version, end_of_stream=end, last_version=stream.last_version
        )

    async def ReadAll(self, request: pb.ReadAllRequest, context: Context) -> pb.ReadAllResponse:
        """Reads the global log forwards or backwards from a position, filtered."""
        principal = current()
        organization_id = parent_scope(principal, request.parent, request.organization_id)
        filt = reading.parse_filter(request.event_filter)
        limit = reading.read_count(request.max_count)
        forwards = request.direction != BACKWARDS
        explicit = request.HasField("from_position")
        if explicit and request.from_position < 0:
            raise InvalidArgument("from_position must not be negative", {"from_position": "must be 0 or more"})
        async with self._sessions() as session:
            head = await store.head(session)
            if forwards:
                start = request.from_position if explicit else head.archived + 1
                if explicit:
                    reading.check_position(max(start, 1), head.archived)
                rows = await store.read_all(
                    session,
                    start=start,
                    forwards=True,
                    limit=limit,
                    organization_id=organization_id,
                    filt=filt,
                    upto=head.position,
                )
            else:
                start = request.from_position if explicit else head.position
                if explicit:
                    reading.check_position(start, head.archived)
                rows = await store.read_all(
                    session,
                    start=start,
                    forwards=False,
                    limit=limit,
                    organization_id=organization_id,
                    filt=filt,
                    upto=head.position,
                    above=head.archived,
                )
        full = len(rows) == limit
        if forwards:
            # A short page scanned up to the head: the next read starts after it, past skipped events.
            next_position = rows[-1].global_position + 1 if full else max(start, head.position + 1)
            end = not full
        else:
            next_position = rows[-1].global_position - 1 if full else head.archived
            end = not full and head.archived == 0
        return pb.ReadAllResponse(
            events=[convert.event_to_proto(row) for row in rows],
            next_position=next_position,
            end_of_log=end,
            head_position=head.position,
        )

    # Subscribing

    async def SubscribeToStream(
        self, request: pb.SubscribeToStreamRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeToStreamResponse]:
        """Catches up on one stream, then follows it live."""
        principal = current()
        scoped = names.parse_stream(request.stream)
        if not tenancy.may_read(principal, scoped.organization_id):
            raise tenancy.not_found(request.stream)
        which = request.WhichOneof("start")
        if which == "after_version" and request.after_version < -1:
            raise InvalidArgument("after_version must be -1 or more", {"after_version": "must be >= -1"})
        messages = self._subscriptions.to_stream(
            organization_id=scoped.organization_id,
            stream_id=scoped.id,
            after_version=request.after_version if which == "after_version" else None,
            live_only=which == "live_only" and request.live_only,
        )
        async for message in messages:
            yield message

    async def SubscribeToAll(
        self, request: pb.SubscribeToAllRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeToAllResponse]:
        """Catches up on the (filtered) global log, then follows it live."""
        principal = current()
        organization_id = parent_scope(principal, request.parent, request.organization_id)
        filt = reading.parse_filter(request.event_filter)
        if not 0 <= request.checkpoint_interval <= 100_000:
            raise InvalidArgument(
                "checkpoint_interval must be 1 to 100000", {"checkpoint_interval": "1 to 100000 (0 means 1000)"}
            )
        start = await self._global_start(principal, request)
        messages = self._subscriptions.to_all(
            organization_id=organization_id, filt=filt, start=start, checkpoint_interval=request.checkpoint_interval
        )
        async for message in messages:
            yield message

    async def _global_start(self, principal: Principal, request: pb.SubscribeToAllRequest) -> GlobalStart:
        which = request.WhichOneof("start")
        if which == "after_position":
            if request.after_position < 0:
                raise InvalidArgument("after_position must not be negative", {"after_position": "must be 0 or more"})
            return GlobalStart(request.after_position, explicit=True)
        if which == "live_only" and request.live_only:
            return GlobalStart(None, explicit=False)
        if which == "consumer_checkpoint":
            row = await self._checkpoints.readable(principal, request.consumer_checkpoint, field="consumer_checkpoint")
            if row is None:
                return GlobalStart(0, explicit=False)
            if row.stream or row.global_position is None:
                problem = "is a stream consumer's checkpoint; subscribe to its stream instead"
                raise InvalidArgument(f"consumer_checkpoint {problem}", {"consumer_checkpoint": problem})
            return GlobalStart(row.global_position, explicit=True)
        return GlobalStart(0, explicit=False)

    # Streams

    async def GetEventStream(self, request: pb.GetEventStreamRequest, context: Context) -> pb.GetEventStreamResponse:
        """Gets a stream's metadata (deleted streams too)."""
        return await self._streams.get(current(), request)

    async def ListEventStreams(
        self, request: pb.ListEventStreamsRequest, context: Context
    ) -> pb.ListEventStreamsResponse:
        """Lists streams by id."""
        return await self._streams.list(current(), request)

    async def TruncateEventStream(
        self, request: pb.TruncateEventStreamRequest, context: Context
    ) -> pb.TruncateEventStreamResponse:
        """Hides a stream's events below a version."""
        return await self._streams.truncate(current(), request)

    async def DeleteEventStream(
        self, request: pb.DeleteEventStreamRequest, context: Context
    ) -> pb.DeleteEventStreamResponse:
        """Soft-deletes a stream."""
        return await self._streams.delete(current(), request)

    # Consumer checkpoints

    async def GetConsumerCheckpoint(
        self, request: pb.GetConsumerCheckpointRequest, context: Context
    ) -> pb.GetConsumerCheckpointResponse:
        """Gets a checkpoint."""
        return await self._checkpoints.get(current(), request)

    async def ListConsumerCheckpoints(
        self, request: pb.ListConsumerCheckpointsRequest, context: Context
    ) -> pb.ListConsumerCheckpointsResponse:
        """Lists checkpoints."""
        return await self._checkpoints.list(current(), request)

    async def SaveConsumerCheckpoint(
        self, request: pb.SaveConsumerCheckpointRequest, context: Context
    ) -> pb.SaveConsumerCheckpointResponse:
        """Saves a checkpoint."""
        return await self._checkpoints.save(current(), request)

    async def DeleteConsumerCheckpoint(
        self, request: pb.DeleteConsumerCheckpointRequest, context: Context
    ) -> pb.DeleteConsumerCheckpointResponse:
        """Deletes a checkpoint."""
        return await self._checkpoints.delete(current(), request)
