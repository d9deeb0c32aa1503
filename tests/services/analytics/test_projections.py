"""Analytics' Projection resource over a real host and database, fed by a fake log."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sqlalchemy import select

from mesh.config import Settings
from runtime.server import ServiceHost
from services.analytics.models import EventCountRow
from tests.support.fake_events import FakeLog
from tests.support.kit import ISSUER
from tests.support.projection_service import caught_up, projecting_service, projections_of
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc, projection_pb2

NAME = "analytics_projections/event_counts"


def as_platform_admin() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ISSUER.mint(subject='users/root', org='', role='SUPER_ADMIN')}"),)


async def counts(host: ServiceHost) -> list[tuple[str, str, int]]:
    projections = projections_of(host)
    async with host.database.sessions() as session:
        generation, _, _ = await projections.served_generation(session, "event_counts")
        rows = await session.execute(
            select(EventCountRow.organization_id, EventCountRow.event_type, EventCountRow.count)
            .where(EventCountRow.generation == generation)
            .order_by(EventCountRow.organization_id, EventCountRow.event_type)
        )
        return [(org, kind, count) for org, kind, count in rows.all()]


async def test_a_rebuild_swaps_in_the_same_counts(settings: Settings):
    log = FakeLog()
    for index in range(6):
        org = "org-a" if index % 3 else "org-b"
        made = agent_pb2.Agent(name=f"organizations/{org}/agents/a{index}", display_name="A")
        await log.append(org, agents_events_pb2.AgentCreatedEvent(agent=made))
    duplicate = log.events[0]
    await log.append(duplicate.organization_id, agents_events_pb2.AgentCreatedEvent(), event_id=duplicate.event_id)
    async with projecting_service(settings, "analytics", log) as (host, channel):
        await caught_up(host, log)
        before = await counts(host)
        assert before == [("org-a", "agent.created", 4), ("org-b", "agent.created", 2)]  # the duplicate not counted
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        got = await stub.GetProjection(
            analytics_service_pb2.GetProjectionRequest(name=NAME), metadata=as_platform_admin()
        )
        assert got.projection.state == projection_pb2.PROJECTION_STATE_LIVE
        assert got.projection.checkpoint_position == got.projection.head_position == log.head
        request = analytics_service_pb2.RebuildProjectionRequest(name=NAME, request_id=str(uuid.uuid4()))
        rebuilt = await stub.RebuildProjection(request, metadata=as_platform_admin())
        retried = await stub.RebuildProjection(request, metadata=as_platform_admin())  # not FAILED_PRECONDITION
        assert retried == rebuilt
        assert rebuilt.projection.state in (
            projection_pb2.PROJECTION_STATE_REBUILDING,
            projection_pb2.PROJECTION_STATE_LIVE,
        )
        while True:
            listed = await stub.ListProjections(
                analytics_service_pb2.ListProjectionsRequest(), metadata=as_platform_admin()
            )
            (projection,) = listed.projections
            if projection.state == projection_pb2.PROJECTION_STATE_LIVE and projection.HasField(
                "rebuild_complete_time"
            ):
                break
            await asyncio.sleep(0.02)
        assert await counts(host) == before


async def test_unknown_projections_and_unbuilt_methods(settings: Settings):
    async with projecting_service(settings, "analytics", FakeLog()) as (_host, channel):
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetProjection(
                analytics_service_pb2.GetProjectionRequest(name="analytics_projections/calls"),
                metadata=as_platform_admin(),
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as unbuilt:
            await stub.GetReport(
                analytics_service_pb2.GetReportRequest(name="organizations/o/reports/r"), metadata=as_platform_admin()
            )
        assert unbuilt.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_an_organisation_admin_may_not_see_or_rebuild_projections(settings: Settings):
    admin = (("authorization", f"Bearer {ISSUER.mint(subject='users/ada', org='org-a', role='ADMIN')}"),)
    async with projecting_service(settings, "analytics", FakeLog()) as (_host, channel):
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        calls = [
            stub.GetProjection(analytics_service_pb2.GetProjectionRequest(name=NAME), metadata=admin),
            stub.ListProjections(analytics_service_pb2.ListProjectionsRequest(), metadata=admin),
            stub.RebuildProjection(
                analytics_service_pb2.RebuildProjectionRequest(name=NAME, request_id=str(uuid.uuid4())),
                metadata=admin,
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
