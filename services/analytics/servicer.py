"""AnalyticsService's Projection operational resource over the kit's projection runner.

GetProjection, ListProjections and RebuildProjection (platform administrators, by the
contract's permissions). Every other method answers UNIMPLEMENTED (``service.py``).
RebuildProjection claims its ``request_id`` (AIP-155) in the transaction that marks the
rebuild, so a retry answers the first response instead of FAILED_PRECONDITION.
"""

from __future__ import annotations

import datetime
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.kit import paging
from mesh.kit.clock import Clock
from mesh.kit.idempotency import IdempotencyStore
from mesh.kit.names import ResourceName
from mesh.kit.projections import Projections, ProjectionStatus
from mesh.kit.sql import timestamp
from mesh.principal import current
from vocelio.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc, projection_pb2

PROJECTIONS = ResourceName.for_message(projection_pb2.Projection)
_STATES = {
    "LIVE": projection_pb2.PROJECTION_STATE_LIVE,
    "REBUILDING": projection_pb2.PROJECTION_STATE_REBUILDING,
    "FAILED": projection_pb2.PROJECTION_STATE_FAILED,
}

Context = grpc.aio.ServicerContext[Any, Any]


class AnalyticsServicer(analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """The projections' operational side."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        projections: Projections,
        page_tokens: paging.PageTokens,
        idempotency: IdempotencyStore,
        clock: Clock,
    ) -> None:
        """Serve the status of ``projections``; rebuilds claim their request_id in ``sessions``."""
        self._sessions = sessions
        self._idempotency = idempotency
        self._projections = projections
        self._page_tokens = page_tokens
        self._clock = clock

    async def GetProjection(
        self, request: analytics_service_pb2.GetProjectionRequest, context: Context
    ) -> analytics_service_pb2.GetProjectionResponse:
        """One projection's state, checkpoint and lag."""
        name = self._name(request.name)
        head = await self._projections.head_position()
        status = await self._projections.status(name)
        return analytics_service_pb2.GetProjectionResponse(projection=self._to_proto(status, head))

    async def ListProjections(
        self, request: analytics_service_pb2.ListProjectionsRequest, context: Context
    ) -> analytics_service_pb2.ListProjectionsResponse:
        """Every projection, by name."""
        size = paging.page_size(request.page_size, default=50, maximum=100)
        binding = paging.query_binding(request)
        after = self._page_tokens.decode_optional(request.page_token, binding)
        names = self._projections.names
        if after is not None:
            (last,) = paging.position_shape(after, str)
            names = [n for n in names if n > last]
        page, more = names[:size], len(names) > size
        head = await self._projections.head_position()
        return analytics_service_pb2.ListProjectionsResponse(
            projections=[self._to_proto(await self._projections.status(n), head) for n in page],
            next_page_token=self._page_tokens.encode([page[-1]], binding) if more else "",
        )

    async def RebuildProjection(
        self, request: analytics_service_pb2.RebuildProjectionRequest, context: Context
    ) -> analytics_service_pb2.RebuildProjectionResponse:
        """Start a blue/green rebuild; FAILED_PRECONDITION while one runs."""
        name = self._name(request.name)
        principal = current()
        head = await self._projections.head_position()
        async with self._sessions.begin() as session:
            claim = await self._idempotency.claim(
                session,
                method="RebuildProjection",
                organization_id=principal.organization_id,
                principal=principal.subject,
                request=request,
                response_type=analytics_service_pb2.RebuildProjectionResponse,
            )
            if claim.replay is not None:
                return claim.replay
            await self._projections.begin_rebuild(session, name)
            status = await self._projections.status(name, session)
            response = analytics_service_pb2.RebuildProjectionResponse(projection=self._to_proto(status, head))
            await claim.complete(session, response)
        self._projections.resume_rebuild(name)
        return response

    def _name(self, name: str) -> str:
        projection_id = PROJECTIONS.parse(name)["analytics_projection"]
        self._projections.projection(projection_id)  # NOT_FOUND for an unknown one
        return projection_id

    def _to_proto(self, status: ProjectionStatus, head: int | None) -> projection_pb2.Projection:
        message = projection_pb2.Projection(
            name=PROJECTIONS.format(analytics_projection=status.name),
            description=status.description,
            event_type_prefixes=list(status.event_type_prefixes),
            state=_STATES[status.state],
            schema_version=status.schema_version,
            checkpoint_position=status.position,
            head_position=head if head is not None else status.position,
            rebuild_position=status.rebuild_position,
            error_message=status.error_message,
        )
        if status.last_event_time is not None:
            message.last_event_time.CopyFrom(timestamp(status.last_event_time))
            behind = head is not None and head > status.position
            lag = self._clock.now() - status.last_event_time if behind else datetime.timedelta(0)
            message.lag.FromTimedelta(max(lag, datetime.timedelta(0)))
        if status.rebuild_start_time is not None:
            message.rebuild_start_time.CopyFrom(timestamp(status.rebuild_start_time))
        if status.rebuild_complete_time is not None:
            message.rebuild_complete_time.CopyFrom(timestamp(status.rebuild_complete_time))
        return message
