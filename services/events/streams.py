"""Stream metadata: Get, List, Truncate and (soft) Delete.

A stream of another organisation answers exactly what a missing one answers. Truncation
and deletion hide events (``events.hidden``) in the same transaction that moves the
stream's ``first_readable_version``; the retention task scavenges hidden events later.
Deletion is truncation to ``last_version + 1`` plus the DELETED state, so a later append
revives the stream with versions continuing and its old events still hidden
(EventStoreDB's soft delete). Both run under the log's row lock, so they never
interleave with an append to the same stream.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import InvalidArgument, PermissionDenied
from mesh.kit import paging, tenancy
from mesh.kit.clock import Clock
from mesh.kit.filtering import FilterField, Kind, compile_filter
from mesh.principal import Principal
from services.events import convert, store
from services.events.domain import appends, names
from services.events.models import EventStreamRow, StreamState
from vocelio.events.v1 import events_errors_pb2, events_service_pb2

pb = events_service_pb2

FILTERS = {
    "category": FilterField(Kind.STRING, EventStreamRow.category),
    "stream_id": FilterField(Kind.STRING, EventStreamRow.stream_id, contains=True),
    "state": FilterField.enum(
        EventStreamRow.state,
        {"ACTIVE": StreamState.ACTIVE, "DELETED": StreamState.DELETED},
        prefix="EVENT_STREAM_STATE_",
    ),
    "last_event_time": FilterField(Kind.TIMESTAMP, EventStreamRow.last_event_time),
    "last_event_type": FilterField(Kind.STRING, EventStreamRow.last_event_type),
}


class Streams:
    """The stream methods of the events service."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gate: store.WriteGate,
        page_tokens: paging.PageTokens,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._gate = gate
        self._page_tokens = page_tokens
        self._clock = clock

    async def visible(
        self, session: AsyncSession, principal: Principal, scoped: names.Scoped, name: str
    ) -> EventStreamRow:
        """The stream, in any state.

        Raises:
            NotFound: missing, or another organisation's.

        """
        row = await store.find_stream(session, scoped.id)
        if (
            row is None
            or row.organization_id != scoped.organization_id
            or not tenancy.may_read(principal, scoped.organization_id)
        ):
            raise tenancy.not_found(name)
        return row

    async def readable(
        self, session: AsyncSession, principal: Principal, scoped: names.Scoped, name: str
    ) -> EventStreamRow:
        """The stream, if its events may be read.

        Raises:
            NotFound: missing, another organisation's, or deleted (reason ``STREAM_DELETED``).

        """
        row = await self.visible(session, principal, scoped, name)
        if row.state is StreamState.DELETED:
            raise tenancy.not_found(name).with_reason(appends.REASONS, events_errors_pb2.ERROR_REASON_STREAM_DELETED)
        return row

    async def get(self, principal: Principal, request: pb.GetEventStreamRequest) -> pb.GetEventStreamResponse:
        """GetEventStream."""
        scoped = names.parse_stream(request.name, field="name")
        async with self._sessions() as session:
            row = await self.visible(session, principal, scoped, request.name)
        return pb.GetEventStreamResponse(event_stream=convert.stream_to_proto(row))

    async def list(self, principal: Principal, request: pb.ListEventStreamsRequest) -> pb.ListEventStreamsResponse:
        """ListEventStreams, by stream id; deleted streams only with show_deleted (or a state filter)."""
        parent = names.STREAMS.parse_parent(request.parent)
        scope = tenancy.list_scope(principal, parent.organization)
        organization_id = scope.organization_id
        if request.organization_id:
            if not principal.is_platform_admin and request.organization_id != principal.organization_id:
                raise PermissionDenied("only platform principals may list another organisation's streams")
            organization_id = request.organization_id
        limit = paging.page_size(request.page_size)
        binding = paging.query_binding(request, organization_id or "-")
        after = self._page_tokens.decode_optional(request.page_token, binding)
        query = select(EventStreamRow)
        if organization_id is not None:
            query = query.where(EventStreamRow.organization_id == organization_id)
        clause = compile_filter(request.filter, FILTERS)
        if clause is not None:
            query = query.where(clause)
        if not request.show_deleted and "state" not in request.filter:
            query = query.where(EventStreamRow.state == StreamState.ACTIVE)
        keys = None if after is None else paging.position_shape(after, str)
        async with self._sessions() as session:
            page: paging.Page[EventStreamRow] = await paging.keyset_page(
                session,
                query,
                keys=[EventStreamRow.stream_id],
                after=keys,
                limit=limit,
                position_of=lambda r: (r.stream_id,),
                descending=False,
            )
        token = self._page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return pb.ListEventStreamsResponse(
            event_streams=[convert.stream_to_proto(r) for r in page.items], next_page_token=token
        )

    async def truncate(
        self, principal: Principal, request: pb.TruncateEventStreamRequest
    ) -> pb.TruncateEventStreamResponse:
        """TruncateEventStream: hide versions below before_version (a lower one than now has no effect)."""
        scoped = names.parse_stream(request.name, field="name")
        if request.before_version < 0:
            raise InvalidArgument("before_version must not be negative", {"before_version": "must be 0 or more"})
        now = self._clock.now()
        async with self._gate.held(), self._sessions.begin() as session:
            await store.lock_log(session)
            row = await self.readable(session, principal, scoped, request.name)
            if request.before_version > row.last_version + 1:
                problem = f"must be at most last_version + 1 ({row.last_version + 1})"
                raise InvalidArgument(f"before_version {problem}", {"before_version": problem})
            if request.before_version > row.first_readable_version:
                row.first_readable_version = request.before_version
                row.last_modifier = principal.subject
                row.update_time = now
                await store.hide_below(session, scoped.id, request.before_version)
            stream = convert.stream_to_proto(row)
        return pb.TruncateEventStreamResponse(event_stream=stream)

    async def delete(self, principal: Principal, request: pb.DeleteEventStreamRequest) -> pb.DeleteEventStreamResponse:
        """DeleteEventStream: soft delete; ABORTED when expected_version is set and stale."""
        scoped = names.parse_stream(request.name, field="name")
        now = self._clock.now()
        async with self._gate.held(), self._sessions.begin() as session:
            await store.lock_log(session)
            row = await self.visible(session, principal, scoped, request.name)
            if request.HasField("expected_version") and request.expected_version != row.last_version:
                raise appends.wrong_expected_version(request.name, str(request.expected_version), row.last_version)
            if row.state is StreamState.DELETED:
                return pb.DeleteEventStreamResponse()
            row.state = StreamState.DELETED
            row.delete_time = now
            row.first_readable_version = row.last_version + 1
            row.last_modifier = principal.subject
            row.update_time = now
            await store.hide_below(session, scoped.id, row.last_version + 1)
        return pb.DeleteEventStreamResponse()
