"""OverviewService over a real host and database, its read model fed by a fake log."""

from __future__ import annotations

import grpc
import pytest

from mesh.config import Settings
from tests.support.fake_events import FakeLog
from tests.support.kit import ISSUER
from tests.support.projection_service import caught_up, projecting_service
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.developer_api.v1 import api_key_pb2, developer_api_events_pb2
from vocelio.overview.v1 import overview_pb2, overview_service_pb2, overview_service_pb2_grpc


def as_user(org: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ISSUER.mint(subject='users/u1', org=org, role='ADMIN')}"),)


def agent(
    org: str, agent_id: str, name: str, state: agent_pb2.AgentState = agent_pb2.AGENT_STATE_DRAFT
) -> agent_pb2.Agent:
    return agent_pb2.Agent(name=f"organizations/{org}/agents/{agent_id}", display_name=name, state=state)


async def history(log: FakeLog) -> None:
    await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "support", "Support")))
    await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "sales", "Sales")))
    await log.append(
        "org-a",
        agents_events_pb2.AgentPublishedEvent(
            agent=agent("org-a", "sales", "Sales", agent_pb2.AGENT_STATE_PUBLISHED),
            agent_version=agent_pb2.AgentVersion(version=1),
        ),
    )
    await log.append("org-a", agents_events_pb2.AgentCreatedEvent(agent=agent("org-a", "old", "Old")))
    await log.append("org-a", agents_events_pb2.AgentDeletedEvent(name="organizations/org-a/agents/old"))
    await log.append("org-b", agents_events_pb2.AgentCreatedEvent(agent=agent("org-b", "other", "Other")))
    await log.append(
        "org-a",
        developer_api_events_pb2.ApiKeyRevokedEvent(
            api_key=api_key_pb2.ApiKey(name="organizations/org-a/api_keys/k1", display_name="CI")
        ),
    )


async def test_the_overview_counts_agents_by_state_from_the_log(settings: Settings):
    log = FakeLog()
    await history(log)
    async with projecting_service(settings, "overview", log) as (host, channel):
        await caught_up(host, log)
        stub = overview_service_pb2_grpc.OverviewServiceStub(channel)
        reply = await stub.GetOverview(
            overview_service_pb2.GetOverviewRequest(parent="organizations/org-a"), metadata=as_user("org-a")
        )
        overview = reply.overview
        assert overview.organization_id == "org-a"
        assert (overview.agents.total, overview.agents.draft, overview.agents.published) == (2, 1, 1)
        assert overview.event_position == log.head
        assert overview.calls.total_calls == 0  # no call events exist yet
        assert overview.time_zone == "UTC"

        other = await stub.GetOverview(
            overview_service_pb2.GetOverviewRequest(parent="organizations/org-b"), metadata=as_user("org-b")
        )
        assert other.overview.agents.total == 1


async def test_the_activity_feed_is_newest_first_paged_and_filtered(settings: Settings):
    log = FakeLog()
    await history(log)
    async with projecting_service(settings, "overview", log) as (host, channel):
        await caught_up(host, log)
        stub = overview_service_pb2_grpc.OverviewServiceStub(channel)
        first = await stub.ListRecentActivity(
            overview_service_pb2.ListRecentActivityRequest(parent="organizations/org-a", page_size=2),
            metadata=as_user("org-a"),
        )
        assert [i.title for i in first.activity_items] == ["API key “CI” revoked", "Agent “Old” deleted"]
        rest = await stub.ListRecentActivity(
            overview_service_pb2.ListRecentActivityRequest(
                parent="organizations/org-a", page_size=2, page_token=first.next_page_token
            ),
            metadata=as_user("org-a"),
        )
        assert [i.kind for i in rest.activity_items] == [
            overview_pb2.ACTIVITY_KIND_AGENT_CREATED,
            overview_pb2.ACTIVITY_KIND_AGENT_PUBLISHED,
        ]
        created = await stub.ListRecentActivity(
            overview_service_pb2.ListRecentActivityRequest(
                parent="organizations/org-a", kinds=[overview_pb2.ACTIVITY_KIND_AGENT_CREATED]
            ),
            metadata=as_user("org-a"),
        )
        assert [i.resource for i in created.activity_items] == [
            "organizations/org-a/agents/old",
            "organizations/org-a/agents/sales",
            "organizations/org-a/agents/support",
        ]
        assert all(i.event_id and i.actor == "users/u1" for i in created.activity_items)


async def test_another_organisation_is_refused_and_unbuilt_methods_say_so(settings: Settings):
    log = FakeLog()
    async with projecting_service(settings, "overview", log) as (_host, channel):
        stub = overview_service_pb2_grpc.OverviewServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetOverview(
                overview_service_pb2.GetOverviewRequest(parent="organizations/org-b"), metadata=as_user("org-a")
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as zone:
            await stub.GetOverview(
                overview_service_pb2.GetOverviewRequest(parent="organizations/org-a", time_zone="Mars/Olympus"),
                metadata=as_user("org-a"),
            )
        assert zone.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as unbuilt:
            await stub.GetCallVolumeSeries(
                overview_service_pb2.GetCallVolumeSeriesRequest(parent="organizations/org-a"),
                metadata=as_user("org-a"),
            )
        assert unbuilt.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "not implemented in this release" in (unbuilt.value.details() or "")
