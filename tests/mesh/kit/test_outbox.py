from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select

from mesh import event_types, samples
from mesh.db import ServiceDatabase
from mesh.errors import InvalidArgument
from mesh.kit import outbox
from mesh.kit.clock import FixedClock
from mesh.kit.tables import OutboxRow
from vocelio.agents.v1 import agent_pb2

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)


async def test_every_event_type_round_trips_through_the_outbox_table(kit_database: ServiceDatabase):
    registry = event_types.default_event_types()
    assert len(registry) > 0
    sent = {}
    async with kit_database.sessions.begin() as session:
        for declared in registry:
            payload = samples.example(declared.message_class)
            row = await outbox.append(
                session, payload, stream=f"test-{declared.type}", occurred_at=NOW, metadata={"actor": "users/u1"}
            )
            sent[row.event_id] = (declared, payload)
    async with kit_database.sessions.begin() as session:
        rows = list((await session.execute(select(OutboxRow))).scalars())
    assert len(rows) == len(sent)
    for row in rows:
        declared, payload = sent[row.event_id]
        assert (row.event_type, row.data_schema) == (declared.type, declared.data_schema)
        assert row.occurred_at == NOW
        assert row.relayed_at is None
        assert outbox.decode(row) == payload


async def test_the_outbox_stamps_events_with_the_service_clock(kit_database: ServiceDatabase):
    clock = FixedClock(NOW)
    payload = _some_event()
    async with kit_database.sessions.begin() as session:
        row = await outbox.Outbox(clock).append(session, payload, stream="s")
    assert row.occurred_at == NOW
    assert row.metadata_ == "{}"


async def test_the_outbox_keeps_the_calls_request_id_and_orders_appends(kit_database: ServiceDatabase):
    import json

    from mesh import request_id

    async with kit_database.sessions.begin() as session:
        with request_id.bound("req-42"):
            first = await outbox.Outbox(FixedClock(NOW)).append(session, _some_event(), stream="s", metadata={"a": "b"})
        second = await outbox.Outbox(FixedClock(NOW)).append(
            session, _some_event(), stream="s", metadata={"requestId": "given"}
        )
    assert json.loads(first.metadata_) == {"a": "b", "requestId": "req-42"}
    assert json.loads(second.metadata_) == {"requestId": "given"}  # what the service sets wins
    assert first.occurred_at == second.occurred_at and first.seq < second.seq


async def test_untyped_payloads_are_refused(kit_database: ServiceDatabase):
    async with kit_database.sessions.begin() as session:
        with pytest.raises(InvalidArgument, match="not an event payload"):
            await outbox.append(session, agent_pb2.Agent(), stream="s", occurred_at=NOW)


def test_a_row_with_a_mismatched_schema_does_not_decode():
    row = outbox.event_row(_some_event(), stream="s", occurred_at=NOW, metadata={})
    row.data_schema = "vocelio.other.v1.Thing"
    with pytest.raises(InvalidArgument, match="does not match"):
        outbox.decode(row)


def _some_event():
    return samples.example(next(iter(event_types.default_event_types())).message_class)
