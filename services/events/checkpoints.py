"""Consumer checkpoints: Get, List, Save and Delete, and the look-up a subscription starts from.

Checkpoint ids are unique per scope: an organisation's principals read and write their
organisation's checkpoints (``organizations/{org}/consumer_checkpoints/{id}``); mesh
services and platform administrators use the platform scope (``consumer_checkpoints/{id}``,
organisation ``""``) and may read every organisation's. A checkpoint another scope owns
answers exactly what a missing one answers (:func:`mesh.kit.tenancy.not_found`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import InvalidArgument, PermissionDenied
from mesh.kit import etags, paging, tenancy
from mesh.kit.clock import Clock
from mesh.kit.names import WILDCARD
from mesh.kit.sql import flush
from mesh.principal import Principal
from services.events import convert
from services.events.domain import checkpoints as rules
from services.events.domain import names
from services.events.models import ConsumerCheckpointRow
from services.events.store import WriteGate
from vocelio.events.v1 import consumer_checkpoint_pb2, events_service_pb2

pb = events_service_pb2


def _require_writable(principal: Principal, organization_id: str, name: str) -> None:
    """Write only in one's own scope (the platform scope for platform principals)."""
    if not tenancy.may_read(principal, organization_id):
        raise tenancy.not_found(name)
    if organization_id != principal.organization_id:
        raise PermissionDenied("checkpoints are written only in the caller's own scope")


def _position(row: ConsumerCheckpointRow) -> int | None:
    return row.stream_version if row.stream else row.global_position


class Checkpoints:
    """The checkpoint methods of the events service."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gate: WriteGate,
        page_tokens: paging.PageTokens,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._gate = gate
        self._page_tokens = page_tokens
        self._clock = clock

    async def readable(self, principal: Principal, name: str, *, field: str = "name") -> ConsumerCheckpointRow | None:
        """The checkpoint named, ``None`` when it was never saved.

        Raises:
            NotFound: the checkpoint belongs to a scope the caller may not read.

        """
        scoped = names.parse_checkpoint(name, field=field)
        async with self._sessions() as session:
            row = await session.get(ConsumerCheckpointRow, (scoped.organization_id, scoped.id))
        if not tenancy.may_read(principal, scoped.organization_id):
            raise tenancy.not_found(name)
        return row

    async def get(
        self, principal: Principal, request: pb.GetConsumerCheckpointRequest
    ) -> pb.GetConsumerCheckpointResponse:
        """GetConsumerCheckpoint."""
        row = await self.readable(principal, request.name)
        if row is None:
            raise tenancy.not_found(request.name)
        return pb.GetConsumerCheckpointResponse(consumer_checkpoint=convert.checkpoint_to_proto(row))

    async def list(
        self, principal: Principal, request: pb.ListConsumerCheckpointsRequest
    ) -> pb.ListConsumerCheckpointsResponse:
        """ListConsumerCheckpoints: by (organisation, id); ``organizations/-`` spans every scope."""
        parent = names.CHECKPOINTS.parse_parent(request.parent)
        scope = tenancy.list_scope(principal, parent.organization)
        limit = paging.page_size(request.page_size)
        binding = paging.query_binding(request, scope.binding())
        after = self._page_tokens.decode_optional(request.page_token, binding)
        query = select(ConsumerCheckpointRow)
        if not scope.everywhere:
            query = query.where(ConsumerCheckpointRow.organization_id == scope.organization_id)
        keys = None if after is None else paging.position_shape(after, str, str)
        async with self._sessions() as session:
            page: paging.Page[ConsumerCheckpointRow] = await paging.keyset_page(
                session,
                query,
                keys=[ConsumerCheckpointRow.organization_id, ConsumerCheckpointRow.id],
                after=keys,
                limit=limit,
                position_of=lambda r: (r.organization_id, r.id),
                descending=False,
            )
        token = self._page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return pb.ListConsumerCheckpointsResponse(
            consumer_checkpoints=[convert.checkpoint_to_proto(r) for r in page.items], next_page_token=token
        )

    async def save(
        self, principal: Principal, request: pb.SaveConsumerCheckpointRequest
    ) -> pb.SaveConsumerCheckpointResponse:
        """SaveConsumerCheckpoint: create, move forwards, rewind with allow_rewind, or leave as is."""
        scoped = names.parse_checkpoint(request.name)
        if request.stream:
            names.parse_stream(request.stream, field="stream")
        which, value = rules.requested_position(request)
        _require_writable(principal, scoped.organization_id, request.name)
        now = self._clock.now()
        async with self._gate.held(), self._sessions.begin() as session:
            row = await session.get(ConsumerCheckpointRow, (scoped.organization_id, scoped.id), with_for_update=True)
            if row is not None:
                etags.check_etag(request.etag, convert.checkpoint_etag(row), what="the checkpoint")
                if row.stream != request.stream:
                    follows = row.stream or "the global log"
                    problem = f"the checkpoint follows {follows}; the stream is fixed by the first save"
                    raise InvalidArgument(problem, {"stream": problem})
            move = rules.plan_move(None if row is None else _position(row), value, allow_rewind=request.allow_rewind)
            if row is None:
                row = ConsumerCheckpointRow(
                    organization_id=scoped.organization_id,
                    id=scoped.id,
                    stream=request.stream,
                    consumer_state=request.consumer_state,
                    save_count=1,
                    revision=1,
                )
                setattr(row, which, value)
                row.stamp_created(principal.subject, now)
                session.add(row)
                await flush(session, exists=f"{request.name} was created concurrently; retry")
            elif move is not rules.Move.SAME:
                setattr(row, which, value)
                row.consumer_state = request.consumer_state
                row.save_count += 1
                row.stamp_changed(principal.subject, now)
                await flush(session, stale=f"{request.name} was saved concurrently; re-read it")
            checkpoint: consumer_checkpoint_pb2.ConsumerCheckpoint = convert.checkpoint_to_proto(row)
        return pb.SaveConsumerCheckpointResponse(consumer_checkpoint=checkpoint)

    async def delete(
        self, principal: Principal, request: pb.DeleteConsumerCheckpointRequest
    ) -> pb.DeleteConsumerCheckpointResponse:
        """DeleteConsumerCheckpoint (NOT_FOUND when missing; a stale etag is ABORTED)."""
        scoped = names.parse_checkpoint(request.name)
        _require_writable(principal, scoped.organization_id, request.name)
        async with self._gate.held(), self._sessions.begin() as session:
            row = await session.get(ConsumerCheckpointRow, (scoped.organization_id, scoped.id), with_for_update=True)
            if row is None:
                raise tenancy.not_found(request.name)
            etags.check_etag(request.etag, convert.checkpoint_etag(row), what="the checkpoint")
            await session.delete(row)
        return pb.DeleteConsumerCheckpointResponse()


def parent_scope(principal: Principal, parent: str, organization_id: str) -> str | None:
    """The organisation a global read or subscription covers (``None``: every organisation's).

    Non-platform callers read their own organisation's events whatever they pass; platform
    principals may name one with ``organization_id`` or ``organizations/{org}``, and read
    everything (platform events included) with ``organizations/-``.

    Raises:
        PermissionDenied: a parent or organization_id the caller may not read.

    """
    parsed = names.EVENTS.parse_parent(parent)
    scope = tenancy.list_scope(principal, parsed.organization)
    if organization_id:
        if not principal.is_platform_admin and organization_id != principal.organization_id:
            raise PermissionDenied("only platform principals may read another organisation's events")
        if scope.organization_id is not None and scope.organization_id != organization_id:
            raise InvalidArgument(
                "organization_id contradicts parent", {"organization_id": "must match the parent's organisation"}
            )
        return organization_id
    return None if parsed.organization == WILDCARD else scope.organization_id
