"""The overview projection's event table: what each event does to agents by state and the feed."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import pytest
from google.protobuf import message
from sqlalchemy import select

from mesh import event_types
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.projections import ProjectedEvent
from services.overview.models import ActivityRow, AgentSummaryRow
from services.overview.projection import OverviewProjection
from tests.support.projection_service import migrated_database
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.developer_api.v1 import api_key_pb2, developer_api_events_pb2
from vocelio.overview.v1 import overview_pb2

ORG = "org-a"
Kind = overview_pb2.ActivityKind
Severity = overview_pb2.ActivitySeverity


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[ServiceDatabase]:
    async with migrated_database(settings, "overview") as database:
        yield database


def agent(agent_id: str, name: str, state: agent_pb2.AgentState = agent_pb2.AGENT_STATE_DRAFT) -> agent_pb2.Agent:
    return agent_pb2.Agent(name=f"organizations/{ORG}/agents/{agent_id}", display_name=name, state=state)


async def apply_all(database: ServiceDatabase, payloads: list[message.Message]) -> None:
    projection = OverviewProjection()
    async with database.sessions.begin() as session:
        for position, payload in enumerate(payloads, start=1):
            event_type, _schema, _data = event_types.encode(payload)
            event = ProjectedEvent(
                event_id=f"e{position}",
                position=position,
                type=event_type,
                organization_id=ORG,
                stream=f"organizations/{ORG}/event_streams/test",
                occur_time=datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC),
                actor="users/u1",
                payload=payload,
            )
            await projection.apply(session, event, 1)
            await session.flush()


async def test_each_event_type_makes_its_item_and_moves_its_agent(database: ServiceDatabase):
    key = api_key_pb2.ApiKey(name=f"organizations/{ORG}/api_keys/k1", display_name="CI")
    await apply_all(
        database,
        [
            agents_events_pb2.AgentCreatedEvent(agent=agent("a1", "Support")),
            agents_events_pb2.AgentUpdatedEvent(agent=agent("a1", "Help desk"), changed=["display_name"]),
            agents_events_pb2.AgentPublishedEvent(
                agent=agent("a1", "Help desk", agent_pb2.AGENT_STATE_PUBLISHED),
                agent_version=agent_pb2.AgentVersion(version=3),
            ),
            agents_events_pb2.AgentCreatedEvent(agent=agent("a2", "Sales")),
            agents_events_pb2.AgentArchivedEvent(agent=agent("a2", "Sales", agent_pb2.AGENT_STATE_ARCHIVED)),
            agents_events_pb2.AgentDeletedEvent(name=f"organizations/{ORG}/agents/a2"),
            agents_events_pb2.AgentDeletedEvent(name=f"organizations/{ORG}/agents/never-seen"),
            developer_api_events_pb2.ApiKeyCreatedEvent(api_key=key),
            developer_api_events_pb2.ApiKeyRevokedEvent(api_key=key),
        ],
    )
    async with database.sessions() as session:
        agents = (
            await session.execute(select(AgentSummaryRow.agent_id, AgentSummaryRow.state, AgentSummaryRow.display_name))
        ).all()
        items = (
            await session.execute(
                select(
                    ActivityRow.event_id,
                    ActivityRow.kind,
                    ActivityRow.severity,
                    ActivityRow.title,
                    ActivityRow.description,
                    ActivityRow.resource,
                ).order_by(ActivityRow.position)
            )
        ).all()
    assert [tuple(a) for a in agents] == [("a1", "PUBLISHED", "Help desk")]
    a1, a2 = f"organizations/{ORG}/agents/a1", f"organizations/{ORG}/agents/a2"
    assert [tuple(i) for i in items] == [  # e2, the update, makes no item
        ("e1", Kind.ACTIVITY_KIND_AGENT_CREATED, Severity.ACTIVITY_SEVERITY_INFO, "Agent “Support” created", "", a1),
        (
            "e3",
            Kind.ACTIVITY_KIND_AGENT_PUBLISHED,
            Severity.ACTIVITY_SEVERITY_SUCCESS,
            "Agent “Help desk” published",
            "version 3",
            a1,
        ),
        ("e4", Kind.ACTIVITY_KIND_AGENT_CREATED, Severity.ACTIVITY_SEVERITY_INFO, "Agent “Sales” created", "", a2),
        ("e5", Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_INFO, "Agent “Sales” archived", "", a2),
        ("e6", Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_INFO, "Agent “Sales” deleted", "", a2),
        (
            "e7",
            Kind.ACTIVITY_KIND_OTHER,
            Severity.ACTIVITY_SEVERITY_INFO,
            "Agent deleted",
            "",
            f"organizations/{ORG}/agents/never-seen",
        ),
        ("e8", Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_INFO, "API key “CI” created", "", key.name),
        ("e9", Kind.ACTIVITY_KIND_OTHER, Severity.ACTIVITY_SEVERITY_WARNING, "API key “CI” revoked", "", key.name),
    ]
