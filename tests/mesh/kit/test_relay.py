"""The outbox relay against a recording event store, through the real client factory, on each backend."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.protobuf import json_format
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.kit.clock import FixedClock
from mesh.kit.outbox import CommitSignal, Outbox
from mesh.kit.relay import OutboxRelay, RelayPolicy
from mesh.kit.tables import OutboxRow
from mesh.registry import default_registry
from runtime.clients import MeshClients
from tests.support.recording_event_store import SERVICE_TOKEN, RunningStore, fake_event_store
from vocelio.agents.v1 import agent_pb2, agents_events_pb2
from vocelio.events.v1 import events_service_pb2, events_service_pb2_grpc

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
FAST = RelayPolicy(poll_interval=0.05, batch_size=50, initial_backoff=0.05, max_backoff=0.2)


def created(org: str, agent: str) -> agents_events_pb2.AgentCreatedEvent:
    return agents_events_pb2.AgentCreatedEvent(
        agent=agent_pb2.Agent(name=f"organizations/{org}/agents/{agent}", display_name=agent)
    )


@pytest.fixture
async def store() -> AsyncIterator[RunningStore]:
    async with fake_event_store() as running:
        yield running


@pytest.fixture
async def clients(settings: Settings, store: RunningStore) -> AsyncIterator[MeshClients]:
    """The real client factory of a service called agents, pointed at the fake store (short breaker)."""
    quick = dataclasses.replace(settings, client_breaker_open_seconds=0.2, client_retry_initial_backoff=0.02)
    mesh_clients = MeshClients("agents", quick, default_registry(), ports=store.ports)
    yield mesh_clients
    await mesh_clients.close()


def appender(clients: MeshClients) -> Callable[[Any], Any]:
    async def append(request: events_service_pb2.AppendToStreamRequest) -> Any:
        return await clients.stub("events", events_service_pb2_grpc.EventsServiceStub).AppendToStream(request)

    return append


def relay_for(database: ServiceDatabase, clients: MeshClients, **options: Any) -> OutboxRelay:
    options.setdefault("policy", FAST)
    options.setdefault("clock", FixedClock(NOW))
    options.setdefault("rng", random.Random(7))
    return OutboxRelay("agents", database.sessions, appender(clients), dialect=database.kind, **options)


async def write(database: ServiceDatabase, events: list[tuple[str, str]], *, outbox: Outbox | None = None) -> list[str]:
    """One transaction per (org, agent): an agent.created event on the agent's stream; the event ids."""
    outbox = outbox or Outbox(FixedClock(NOW))  # one frozen time: order comes from seq
    ids = []
    for org, agent in events:
        async with database.sessions.begin() as session:
            row = await outbox.append(
                session,
                created(org, agent),
                stream=f"agents-{org}-{agent}",
                metadata={"organizationId": org, "actor": "users/alice", "requestId": f"req-{agent}"},
            )
            ids.append(row.event_id)
    return ids


async def rows(database: ServiceDatabase) -> dict[str, OutboxRow]:
    async with database.sessions() as session:
        return {row.event_id: row for row in (await session.execute(select(OutboxRow))).scalars()}


async def until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait until ``predicate`` holds; fail after ``limit`` seconds (a bound, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.02)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_rows_are_relayed_oldest_first_per_stream_with_their_metadata(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    before = sample("vocelio_outbox_relayed_total", {"service": "agents"})
    ids = await write(kit_database, [("org_a", "ag1"), ("org_a", "ag2"), ("org_b", "ag3")])
    # more events on the first stream, after the others
    async with kit_database.sessions.begin() as session:
        outbox = Outbox(FixedClock(NOW))
        for _ in range(2):
            row = await outbox.append(
                session, created("org_a", "ag1"), stream="agents-org_a-ag1", metadata={"organizationId": "org_a"}
            )
            ids.append(row.event_id)

    result = await relay_for(kit_database, clients).relay_once()

    assert (result.relayed, result.parked, result.failed) == (5, 0, False)
    first_stream = "organizations/org_a/event_streams/agents-org_a-ag1"
    assert store.store.stored_ids(first_stream) == [ids[0], ids[3], ids[4]]
    assert store.store.stored_ids("organizations/org_b/event_streams/agents-org_b-ag3") == [ids[2]]
    # one append per stream, streams by their oldest row
    assert [r.stream for r in store.store.requests] == [
        first_stream,
        "organizations/org_a/event_streams/agents-org_a-ag2",
        "organizations/org_b/event_streams/agents-org_b-ag3",
    ]
    request = store.store.requests[0]
    assert request.organization_id == "org_a"
    assert request.WhichOneof("expected_version") == "expected_state"
    assert request.expected_state == events_service_pb2.EXPECTED_STREAM_STATE_ANY
    event = request.events[0]
    assert (event.type, event.data_schema) == ("agent.created", "vocelio.agents.v1.AgentCreatedEvent")
    assert json_format.MessageToDict(event.data)["agent"]["displayName"] == "ag1"
    assert event.occur_time.ToDatetime(datetime.UTC) == NOW
    assert event.metadata.actor == "users/alice"
    assert event.metadata.source_service == "agents"
    assert (event.metadata.correlation_id, event.metadata.causation_id) == ("req-ag1", "req-ag1")
    assert set(store.store.credentials) == {f"Bearer {SERVICE_TOKEN}"}  # the service's own token
    stored = await rows(kit_database)
    assert all(row.relayed_at == NOW and row.failed_at is None for row in stored.values())
    assert sample("vocelio_outbox_relayed_total", {"service": "agents"}) - before == 5
    assert sample("vocelio_outbox_pending", {"service": "agents"}) == 0
    # nothing left: the next round sends nothing
    assert (await relay_for(kit_database, clients).relay_once()).relayed == 0
    assert len(store.store.requests) == 3


async def test_a_commit_wakes_the_relay_at_once(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    signal = CommitSignal()
    relay = relay_for(kit_database, clients, policy=dataclasses.replace(FAST, poll_interval=60.0), signal=signal)
    relay.start()
    try:
        await asyncio.sleep(0.2)  # the first round found nothing; the next look is a minute away
        ids = await write(kit_database, [("org_a", "ag1")], outbox=Outbox(FixedClock(NOW), signal))
        await until(lambda: store.store.all_ids() == ids, limit=5.0)
    finally:
        await relay.stop()


async def test_a_rolled_back_append_sends_nothing(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    signal = CommitSignal()

    async def failed_change() -> None:
        async with kit_database.sessions.begin() as session:
            await Outbox(FixedClock(NOW), signal).append(session, created("org_a", "ag1"), stream="agents-org_a-ag1")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failed_change()
    assert not await signal.wait(0.05)
    assert (await relay_for(kit_database, clients).relay_once()).relayed == 0
    assert store.store.requests == []


async def test_an_outage_is_retried_with_backoff_and_nothing_is_lost_or_reordered(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    store.store.down = True
    signal = CommitSignal()
    outbox = Outbox(FixedClock(NOW), signal)
    relay = relay_for(kit_database, clients, signal=signal)
    relay.start()
    try:
        ids = await write(kit_database, [("org_a", "ag1")], outbox=outbox)
        async with kit_database.sessions.begin() as session:
            for _ in range(3):
                row = await outbox.append(session, created("org_a", "ag1"), stream="agents-org_a-ag1")
                ids.append(row.event_id)
        await until(lambda: store.store.attempts >= 3)
        # commits while backing off do not cut the wait short: no hot loop while the store is down
        started = store.store.attempts
        for _ in range(20):
            await write(kit_database, [("org_b", "ag9")], outbox=outbox)
        await asyncio.sleep(1.0)
        assert store.store.attempts - started < 60  # a hot loop would make thousands
        failed = await rows(kit_database)
        assert all(row.relayed_at is None for row in failed.values())
        assert failed[ids[0]].attempts >= 1
        assert failed[ids[0]].last_error.startswith("UNAVAILABLE")

        store.store.down = False
        await until(lambda: len(store.store.all_ids()) == 24)
        assert store.store.stored_ids("organizations/org_a/event_streams/agents-org_a-ag1") == ids
        await until(lambda: sample("vocelio_outbox_pending", {"service": "agents"}) == 0)
    finally:
        await relay.stop()
    assert len(set(store.store.all_ids())) == 24


async def test_stopping_a_relay_in_the_middle_of_a_send_is_bounded_and_keeps_the_rows(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    store.store.delay = 60.0  # the store never answers in time
    ids = await write(kit_database, [("org_a", "ag1")])
    relay = relay_for(kit_database, clients)
    relay.start()
    await until(lambda: bool(store.store.sending))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await relay.stop()
    assert loop.time() - started < 5  # cancelled, not waited for (a generous bound)
    assert (await rows(kit_database))[ids[0]].relayed_at is None  # sent again by the next relay


async def test_a_crash_between_the_append_and_the_marking_resends_idempotently(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    ids = await write(kit_database, [("org_a", "ag1"), ("org_a", "ag2")])
    real = appender(clients)

    async def append_then_crash(request: Any) -> Any:
        await real(request)
        raise RuntimeError("the process died before marking the rows")

    relay = OutboxRelay("agents", kit_database.sessions, append_then_crash, dialect=kit_database.kind, policy=FAST)
    with pytest.raises(RuntimeError):
        await relay.relay_once()
    assert store.store.stored_ids("organizations/org_a/event_streams/agents-org_a-ag1") == [ids[0]]
    assert all(row.relayed_at is None for row in (await rows(kit_database)).values())
    # a new event joins the stream whose first event the store already holds (a partial overlap)
    async with kit_database.sessions.begin() as session:
        later = await Outbox(FixedClock(NOW)).append(
            session, created("org_a", "ag1"), stream="agents-org_a-ag1", metadata={"organizationId": "org_a"}
        )

    result = await relay_for(kit_database, clients).relay_once()

    assert (result.relayed, result.failed) == (3, False)
    assert store.store.stored_ids("organizations/org_a/event_streams/agents-org_a-ag1") == [ids[0], later.event_id]
    assert store.store.stored_ids("organizations/org_a/event_streams/agents-org_a-ag2") == [ids[1]]
    assert all(row.relayed_at is not None for row in (await rows(kit_database)).values())


async def test_a_row_the_store_refuses_is_parked_once_and_the_rest_go_on(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore, caplog: pytest.LogCaptureFixture
) -> None:
    before = sample("vocelio_outbox_failed_total", {"service": "agents", "outcome": "parked"})
    outbox = Outbox(FixedClock(NOW))
    async with kit_database.sessions.begin() as session:
        ids = [
            (await outbox.append(session, created("org_a", "ag1"), stream="agents-org_a-ag1")).event_id
            for _ in range(3)
        ]
    store.store.refused = {ids[1]}
    caplog.set_level(logging.ERROR, logger="mesh.kit.relay")

    result = await relay_for(kit_database, clients).relay_once()

    assert (result.relayed, result.parked, result.failed) == (2, 1, False)
    assert store.store.stored_ids("event_streams/agents-org_a-ag1") == [ids[0], ids[2]]
    parked = (await rows(kit_database))[ids[1]]
    assert parked.failed_at == NOW and parked.relayed_at is None
    assert parked.last_error.startswith("INVALID_ARGUMENT")
    assert sample("vocelio_outbox_failed_total", {"service": "agents", "outcome": "parked"}) - before == 1
    lines = [r.getMessage() for r in caplog.records if "parked" in r.getMessage()]
    assert len(lines) == 1 and ids[1] in lines[0] and "displayName" not in lines[0]
    # parked rows are not pending: nothing is sent again
    assert (await relay_for(kit_database, clients).relay_once()).relayed == 0
    assert sample("vocelio_outbox_pending", {"service": "agents"}) == 0


async def test_an_unreadable_row_is_parked_without_being_sent(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    ids = await write(kit_database, [("org_a", "ag1"), ("org_a", "ag2")])
    async with kit_database.sessions.begin() as session:
        await session.execute(update(OutboxRow).where(OutboxRow.event_id == ids[0]).values(data="{not json"))

    result = await relay_for(kit_database, clients).relay_once()

    assert (result.relayed, result.parked) == (1, 1)
    assert store.store.all_ids() == [ids[1]]
    assert (await rows(kit_database))[ids[0]].last_error.startswith("UNREADABLE")


async def test_relayed_rows_are_purged_after_the_retention(
    kit_database: ServiceDatabase, clients: MeshClients, store: RunningStore
) -> None:
    clock = FixedClock(NOW)
    relay = relay_for(kit_database, clients, clock=clock, policy=dataclasses.replace(FAST, retention=3600))
    old = await write(kit_database, [("org_a", "ag1")])
    await relay.relay_once()
    clock.advance(datetime.timedelta(minutes=30))
    recent = await write(kit_database, [("org_a", "ag2")])
    await relay.relay_once()
    pending = await write(kit_database, [("org_a", "ag3")])
    clock.advance(datetime.timedelta(minutes=45))

    assert await relay.purge() == 1

    assert set(await rows(kit_database)) == {*recent, *pending}
    assert old[0] in store.store.all_ids()


@pytest.mark.postgres
async def test_two_relays_on_one_postgresql_database_never_send_one_row_at_once(
    postgres_settings: Settings, clients: MeshClients, store: RunningStore
) -> None:
    first, second = ServiceDatabase(postgres_settings, "agents"), ServiceDatabase(postgres_settings, "agents")
    await asyncio.to_thread(migrations.upgrade, first)
    relays = [relay_for(database, clients, rng=random.Random(n)) for n, database in enumerate((first, second))]
    store.store.delay = 0.05
    try:
        ids = await write(first, [("org_a", f"ag{n % 5}") for n in range(40)])
        async with relays[0]._lease() as held:  # while one relay holds the lock, the other stands by
            assert held
            assert (await relays[1].relay_once()).standby
        assert store.store.requests == []
        for relay in relays:
            relay.start()
        await until(lambda: len(store.store.all_ids()) == 40, limit=30)
        await asyncio.sleep(0.3)  # both relays keep looking: nothing is sent twice
    finally:
        for relay in relays:
            await relay.stop()
        await first.dispose()
        await second.dispose()
    assert store.store.overlaps == []
    sent = [event.event_id for request in store.store.requests for event in request.events]
    assert sorted(sent) == sorted(ids)  # each row sent exactly once
    for n in range(5):
        stream = f"organizations/org_a/event_streams/agents-org_a-ag{n}"
        assert store.store.stored_ids(stream) == [i for k, i in enumerate(ids) if k % 5 == n]


def test_a_row_maps_to_the_contract_event_and_stream() -> None:
    from mesh.kit.relay import proposed_event, stream_name

    metadata = {
        "organizationId": "org_a",
        "actor": "users/u1",
        "traceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "team": "blue",
        "NotALabel": "x",
    }
    event, org = proposed_event(
        event_id="e1",
        event_type="agent.created",
        data_schema="s",
        data='{"a": 1}',
        metadata=json.dumps(metadata),
        occurred_at=NOW,
        source_service="agents",
    )
    assert org == "org_a"
    assert stream_name("agents-org_a-ag1", org) == "organizations/org_a/event_streams/agents-org_a-ag1"
    assert stream_name("platform-x", "") == "event_streams/platform-x"
    assert event.metadata.correlation_id == "0af7651916cd43dd8448eb211c80319c"  # no request id: the trace
    assert event.metadata.trace_parent == metadata["traceParent"]
    assert dict(event.metadata.labels) == {"team": "blue"}
