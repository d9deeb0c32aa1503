"""OverviewService: GetOverview and ListRecentActivity, read from the projection's served copy.

GetCallVolumeSeries and WatchOverview answer UNIMPLEMENTED (calls have no events yet, and a
dashboard stream is built on that series), like every method of a service not built yet.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import grpc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import InvalidArgument
from mesh.kit import paging, tenancy
from mesh.kit.clock import Clock
from mesh.kit.names import ResourceName
from mesh.kit.projections import Projections
from mesh.kit.sql import timestamp
from mesh.principal import current
from services.overview.models import ActivityRow, AgentSummaryRow
from services.overview.projection import OverviewProjection
from vocelio.overview.v1 import overview_pb2, overview_service_pb2, overview_service_pb2_grpc
from vocelio.team_hub.v1 import organization_pb2

ORGANIZATIONS = ResourceName.for_message(organization_pb2.Organization)
_MAX_RANGE = datetime.timedelta(days=400)
_ACTIVITY_PAGE = 20
_ACTIVITY_PAGE_MAX = 100

Context = grpc.aio.ServicerContext[Any, Any]


class OverviewServicer(overview_service_pb2_grpc.OverviewServiceServicer):
    """The dashboard's read side."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        projections: Projections,
        page_tokens: paging.PageTokens,
        clock: Clock,
    ) -> None:
        """Read through ``sessions``; ``projections`` says which copy is served."""
        self._sessions = sessions
        self._projections = projections
        self._page_tokens = page_tokens
        self._clock = clock

    async def GetOverview(
        self, request: overview_service_pb2.GetOverviewRequest, context: Context
    ) -> overview_service_pb2.GetOverviewResponse:
        """The dashboard; only figures whose events exist today are non-zero (agents)."""
        organization = _readable_organization(request.parent)
        zone_name = request.time_zone or "UTC"
        zone = _zone(zone_name)
        now = self._clock.now()
        start, end = _interval(request, now, zone)
        async with self._sessions() as session:
            generation, position, as_of = await self._projections.served_generation(session, OverviewProjection.name)
            rows = await session.execute(
                select(AgentSummaryRow.state, func.count())
                .where(AgentSummaryRow.generation == generation, AgentSummaryRow.organization_id == organization)
                .group_by(AgentSummaryRow.state)
            )
            counts: dict[str, int] = {state: count for state, count in rows.all()}
        overview = overview_pb2.Overview(
            organization_id=organization,
            time_zone=zone_name,
            calls=overview_pb2.CallMetrics(by_status=overview_pb2.CallStatusCounts()),
            concurrency=overview_pb2.ConcurrencyMetrics(),
            campaigns=overview_pb2.CampaignMetrics(),
            event_position=position,
            agents=overview_pb2.AgentMetrics(
                total=sum(counts.values()),
                draft=counts.get("DRAFT", 0),
                published=counts.get("PUBLISHED", 0),
                archived=counts.get("ARCHIVED", 0),
            ),
        )
        overview.interval.start_time.CopyFrom(timestamp(start))
        overview.interval.end_time.CopyFrom(timestamp(end))
        if as_of is not None:
            overview.as_of_time.CopyFrom(timestamp(as_of))
        return overview_service_pb2.GetOverviewResponse(overview=overview)

    async def ListRecentActivity(
        self, request: overview_service_pb2.ListRecentActivityRequest, context: Context
    ) -> overview_service_pb2.ListRecentActivityResponse:
        """The activity feed, newest first (by global position), paged by position."""
        organization = _readable_organization(request.parent)
        size = paging.page_size(request.page_size, default=_ACTIVITY_PAGE, maximum=_ACTIVITY_PAGE_MAX)
        binding = paging.query_binding(request, organization)
        after = self._page_tokens.decode_optional(request.page_token, binding)
        async with self._sessions() as session:
            generation, _position, _as_of = await self._projections.served_generation(session, OverviewProjection.name)
            query = select(ActivityRow).where(
                ActivityRow.generation == generation, ActivityRow.organization_id == organization
            )
            if after is not None:
                (before,) = paging.position_shape(after, int)
                query = query.where(ActivityRow.position < before)
            if request.kinds:
                query = query.where(ActivityRow.kind.in_([int(kind) for kind in request.kinds]))
            if request.min_severity > overview_pb2.ACTIVITY_SEVERITY_INFO:
                query = query.where(ActivityRow.severity >= int(request.min_severity))
            rows = list((await session.scalars(query.order_by(ActivityRow.position.desc()).limit(size + 1))).all())
        more = len(rows) > size
        rows = rows[:size]
        token = self._page_tokens.encode([rows[-1].position], binding) if more else ""
        return overview_service_pb2.ListRecentActivityResponse(
            activity_items=[_item(row) for row in rows], next_page_token=token
        )


def _readable_organization(parent: str) -> str:
    organization = ORGANIZATIONS.parse(parent, field="parent").organization
    return tenancy.list_scope(current(), organization).organization_id or organization


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown time zone {name!r}", {"time_zone": "must be an IANA time zone"}) from None


def _interval(
    request: overview_service_pb2.GetOverviewRequest, now: datetime.datetime, zone: zoneinfo.ZoneInfo
) -> tuple[datetime.datetime, datetime.datetime]:
    if not request.HasField("interval"):
        local = now.astimezone(zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight.astimezone(datetime.UTC), now
    start = request.interval.start_time.ToDatetime(tzinfo=datetime.UTC)
    end = request.interval.end_time.ToDatetime(tzinfo=datetime.UTC) if request.interval.HasField("end_time") else now
    if end <= start:
        raise InvalidArgument("the interval must end after it starts", {"interval": "end_time must follow start_time"})
    if end - start > _MAX_RANGE:
        raise InvalidArgument("the interval is longer than 400 days", {"interval": "at most 400 days"})
    return start, end


def _item(row: ActivityRow) -> overview_pb2.ActivityItem:
    item = overview_pb2.ActivityItem(
        id=row.event_id,
        kind=row.kind,  # type: ignore[arg-type]
        severity=row.severity,  # type: ignore[arg-type]
        title=row.title,
        description=row.description,
        resource=row.resource,
        actor=row.actor,
        event_id=row.event_id,
    )
    item.occur_time.CopyFrom(timestamp(row.occur_time))
    return item
