"""Issue #11's read models end to end: agents → outbox → relay → events → overview and analytics, as real processes.

Three ``python -m runtime serve`` processes (identity with events, agents, overview with analytics), each
backend. An organisation admin creates three agents through the agents service and publishes one; the
outbox relay appends their events to the event store, and the overview's projection, following
``SubscribeToAll``, makes them visible: GetOverview counts them by state and ListRecentActivity lists the
``agent.created`` items with the outbox rows' event ids — within a bounded wait. A second organisation,
which created one agent of its own, sees only that one, and is refused the first one's dashboard. Then
analytics' ``event_counts`` is rebuilt from position 0 (RebuildProjection) and the swapped-in copy holds
exactly the counts the incremental run had made. Every process is stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import psycopg
import pytest

from mesh.config import Settings
from tests.e2e.test_outbox_relay import ISSUER, _address, _environment, _outbox, _start, _stop
from tests.support.grpc_helpers import SERVING, wait_for_status
from tests.support.processes import free_port_offset
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc
from vocelio.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc, projection_pb2
from vocelio.overview.v1 import overview_pb2, overview_service_pb2, overview_service_pb2_grpc

WITHIN = 30.0
"""Bound on each wait for the read models to reflect what happened (a limit, not a measurement)."""
EVENT_COUNTS = "analytics_projections/event_counts"
READY_DRAFT = agent_pb2.AgentConfig(
    voice="voices/v_aria", language_code="en-US", prompt="You answer the front desk.", first_message="Hello."
)
"""A draft complete enough to publish."""

pytestmark = pytest.mark.timeout(240)

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


def _admin(organization: str) -> Metadata:
    token = ISSUER.mint(subject=f"users/admin-{organization}", org=organization, role="ADMIN")
    return (("authorization", f"Bearer {token}"),)


def _platform_admin() -> Metadata:
    return (("authorization", f"Bearer {ISSUER.mint(subject='users/root', org='', role='SUPER_ADMIN')}"),)


async def _eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    """Call ``probe`` until ``done`` holds for its answer; fail with the last answer after ``WITHIN`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while True:
        answer = await probe()
        if done(answer):
            return answer
        assert loop.time() < deadline, f"{what} not within {WITHIN} s; last: {answer}"
        await asyncio.sleep(0.1)


def _event_counts(settings: Settings, var_dir: pathlib.Path) -> tuple[int, list[tuple[str, str, int]]]:
    """The served copy of analytics' ``event_counts`` (generation, rows), read straight from its database."""
    generation_query = "SELECT served_generation FROM projection_state WHERE name = 'event_counts'"
    rows_query = (
        "SELECT organization_id, event_type, count FROM analytics_event_counts WHERE generation = {}"
        " ORDER BY organization_id, event_type"
    )
    if settings.database_url is None:
        with sqlite3.connect(var_dir / "analytics.sqlite3") as connection:
            (generation,) = connection.execute(generation_query).fetchone()
            return generation, connection.execute(rows_query.format(int(generation))).fetchall()
    dsn = settings.database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        connection.execute(f'SET search_path TO "{settings.schema_prefix}analytics"')
        row = connection.execute(generation_query).fetchone()
        assert row is not None
        generation = int(row[0])
        return generation, [tuple(r) for r in connection.execute(rows_query.format(generation)).fetchall()]


class Mesh:
    """Stubs to the running processes."""

    def __init__(self, channels: dict[str, grpc.aio.Channel]) -> None:
        self.agents = agents_service_pb2_grpc.AgentsServiceStub(channels["agents"])
        self.overview = overview_service_pb2_grpc.OverviewServiceStub(channels["overview"])
        self.analytics = analytics_service_pb2_grpc.AnalyticsServiceStub(channels["analytics"])

    async def create_agent(self, organization: str, display_name: str) -> agent_pb2.Agent:
        reply = await self.agents.CreateAgent(
            agents_service_pb2.CreateAgentRequest(
                parent=f"organizations/{organization}",
                agent=agent_pb2.Agent(display_name=display_name, draft=READY_DRAFT),
            ),
            metadata=_admin(organization),
            timeout=20,
        )
        agent: agent_pb2.Agent = reply.agent
        return agent

    async def overview_of(self, organization: str, caller: str | None = None) -> overview_pb2.Overview:
        reply = await self.overview.GetOverview(
            overview_service_pb2.GetOverviewRequest(parent=f"organizations/{organization}"),
            metadata=_admin(caller or organization),
            timeout=10,
        )
        overview: overview_pb2.Overview = reply.overview
        return overview

    async def activity_of(self, organization: str) -> list[overview_pb2.ActivityItem]:
        reply = await self.overview.ListRecentActivity(
            overview_service_pb2.ListRecentActivityRequest(parent=f"organizations/{organization}", page_size=50),
            metadata=_admin(organization),
            timeout=10,
        )
        return list(reply.activity_items)

    async def event_counts(self) -> projection_pb2.Projection:
        reply = await self.analytics.GetProjection(
            analytics_service_pb2.GetProjectionRequest(name=EVENT_COUNTS), metadata=_platform_admin(), timeout=10
        )
        projection: projection_pb2.Projection = reply.projection
        return projection


async def _scenario(mesh: Mesh, settings: Settings, var_dir: pathlib.Path) -> None:
    made = [await mesh.create_agent("org_a", name) for name in ("Front desk", "Billing", "Night shift")]
    await mesh.agents.PublishAgent(
        agents_service_pb2.PublishAgentRequest(name=made[0].name, change_note="first"),
        metadata=_admin("org_a"),
        timeout=20,
    )
    theirs = await mesh.create_agent("org_b", "Globex line")

    overview = await _eventually(
        lambda: mesh.overview_of("org_a"),
        lambda o: (o.agents.total, o.agents.draft, o.agents.published) == (3, 2, 1),
        "org_a's overview counting 3 agents (2 draft, 1 published)",
    )
    assert overview.agents.archived == 0
    assert overview.event_position > 0
    assert overview.HasField("as_of_time")

    activity = await _eventually(
        lambda: mesh.activity_of("org_a"), lambda items: len(items) == 4, "org_a's 4 activity items"
    )
    created = [item for item in activity if item.kind == overview_pb2.ACTIVITY_KIND_AGENT_CREATED]
    assert sorted(item.resource for item in created) == sorted(agent.name for agent in made)
    assert activity[0].kind == overview_pb2.ACTIVITY_KIND_AGENT_PUBLISHED  # newest first
    assert {item.actor for item in activity} == {"users/admin-org_a"}

    # the second organisation sees its own agent and nothing of the first one's
    other = await mesh.overview_of("org_b")
    assert (other.agents.total, other.agents.draft) == (1, 1)
    (their_item,) = await mesh.activity_of("org_b")
    assert (their_item.kind, their_item.resource) == (overview_pb2.ACTIVITY_KIND_AGENT_CREATED, theirs.name)
    # each item is made from the event its producer committed in its outbox, with the outbox row's id
    outbox_created = {
        event_id for event_id, event_type, _ in _outbox(settings, var_dir) if event_type == "agent.created"
    }
    assert {item.event_id for item in [*created, their_item]} == outbox_created
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await mesh.overview_of("org_a", caller="org_b")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # analytics counted the same events incrementally; a rebuild from position 0 swaps in the same counts
    live = await _eventually(
        mesh.event_counts,
        lambda p: p.state == projection_pb2.PROJECTION_STATE_LIVE and 0 < p.head_position == p.checkpoint_position,
        "event_counts caught up with the log",
    )
    incremental = _event_counts(settings, var_dir)
    assert incremental[1] == [
        ("org_a", "agent.created", 3),
        ("org_a", "agent.published", 1),
        ("org_b", "agent.created", 1),
    ]
    rebuilding = await mesh.analytics.RebuildProjection(
        analytics_service_pb2.RebuildProjectionRequest(name=EVENT_COUNTS, request_id=str(uuid.uuid4())),
        metadata=_platform_admin(),
        timeout=10,
    )
    assert rebuilding.projection.state == projection_pb2.PROJECTION_STATE_REBUILDING
    rebuilt = await _eventually(
        mesh.event_counts,
        lambda p: p.state == projection_pb2.PROJECTION_STATE_LIVE and p.HasField("rebuild_complete_time"),
        "the event_counts rebuild swapped in",
    )
    assert rebuilt.checkpoint_position >= live.checkpoint_position
    generation, counts = _event_counts(settings, var_dir)
    assert generation == incremental[0] + 1
    assert counts == incremental[1]


async def test_agents_reach_the_overview_and_analytics_rebuilds_the_same_counts(
    settings: Settings, tmp_path: pathlib.Path
) -> None:
    offset = free_port_offset()
    var_dir = tmp_path / "var"
    log = tmp_path / "services.log"
    # two multi-service processes would both claim the shared metrics port
    env = _environment(settings, tmp_path, offset, VOCELIO_METRICS_PORT_OFFSET="0")

    def address(name: str) -> str:
        return _address(offset, name)

    processes: list[asyncio.subprocess.Process] = []
    try:
        # identity first: a service that finds it down at start-up waits out its key set's cooldown
        for wave in ([["identity", "events"]], [["agents"], ["overview", "analytics"]]):
            for group in wave:
                processes.append(await _start(group, env, log))
            for name in (name for group in wave for name in group):
                await wait_for_status(address(name), SERVING, limit=90)
        names = ["identity", "events", "agents", "overview", "analytics"]
        channels = {name: grpc.aio.insecure_channel(address(name)) for name in names}
        try:
            await _scenario(Mesh(channels), settings, var_dir)
        finally:
            for channel in channels.values():
                await channel.close(None)
    except BaseException:
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        for process in reversed(processes):
            await _stop(process)
