from __future__ import annotations

import datetime
import uuid

import pytest
from sqlalchemy import func, select

from mesh.db import ServiceDatabase
from mesh.errors import Aborted, InvalidArgument
from mesh.kit.clock import FixedClock
from mesh.kit.idempotency import IdempotencyStore, fingerprint, request_id_problem
from mesh.kit.tables import IdempotencyKeyRow
from vocelio.agents.v1 import agent_pb2
from vocelio.agents.v1 import agents_service_pb2 as pb


def _request(request_id: str, display_name: str = "Support") -> pb.CreateAgentRequest:
    return pb.CreateAgentRequest(agent=agent_pb2.Agent(display_name=display_name), request_id=request_id)


async def _create(
    store: IdempotencyStore, database: ServiceDatabase, request: pb.CreateAgentRequest, org: str = "acme"
):
    async with database.sessions.begin() as session:
        claim = await store.claim(
            session,
            method="CreateAgent",
            organization_id=org,
            principal="users/u1",
            request=request,
            response_type=agent_pb2.Agent,
        )
        if claim.replay is not None:
            return claim.replay, True
        response = agent_pb2.Agent(name=f"organizations/{org}/agents/{uuid.uuid4().hex[:8]}", etag="secret-ish")
        await claim.complete(session, response, redact=lambda agent: agent_pb2.Agent(name=agent.name))
        return response, False


async def test_same_id_same_request_answers_the_first_response(kit_database: ServiceDatabase):
    store = IdempotencyStore(FixedClock())
    request_id = str(uuid.uuid4())
    first, replayed = await _create(store, kit_database, _request(request_id))
    assert not replayed
    again, replayed = await _create(store, kit_database, _request(request_id.upper()))
    assert replayed
    assert again.name == first.name
    assert again.etag == ""  # the redactor ran before storing
    other_org, replayed = await _create(store, kit_database, _request(request_id), org="globex")
    assert not replayed and other_org.name.startswith("organizations/globex/")


async def test_same_id_other_request_is_invalid_argument(kit_database: ServiceDatabase):
    store = IdempotencyStore(FixedClock())
    request_id = str(uuid.uuid4())
    await _create(store, kit_database, _request(request_id))
    with pytest.raises(InvalidArgument) as raised:
        await _create(store, kit_database, _request(request_id, display_name="Other"))
    assert list(raised.value.field_violations) == ["request_id"]


async def test_no_request_id_means_no_deduplication_and_bad_ids_are_refused(kit_database: ServiceDatabase):
    store = IdempotencyStore(FixedClock())
    first, _ = await _create(store, kit_database, _request(""))
    second, replayed = await _create(store, kit_database, _request(""))
    assert not replayed and first.name != second.name
    with pytest.raises(InvalidArgument) as raised:
        await _create(store, kit_database, _request("not-a-uuid"))
    assert "UUID4" in raised.value.field_violations["request_id"]
    assert request_id_problem(str(uuid.uuid1())) is not None
    async with kit_database.sessions.begin() as session:
        assert await session.scalar(select(func.count()).select_from(IdempotencyKeyRow)) == 0


async def test_a_request_in_flight_is_aborted_and_keys_expire(kit_database: ServiceDatabase):
    clock = FixedClock()
    store = IdempotencyStore(clock)
    request_id = str(uuid.uuid4())
    async with kit_database.sessions.begin() as session:
        # A claim left uncompleted in a committed transaction: the first request is still running.
        await store.claim(
            session,
            method="CreateAgent",
            organization_id="acme",
            principal="users/u1",
            request=_request(request_id),
            response_type=agent_pb2.Agent,
        )
    with pytest.raises(Aborted, match="in progress"):
        await _create(store, kit_database, _request(request_id))
    clock.advance(datetime.timedelta(hours=25))
    _, replayed = await _create(store, kit_database, _request(request_id, display_name="Fresh"))
    assert not replayed
    clock.advance(datetime.timedelta(hours=25))
    async with kit_database.sessions.begin() as session:
        assert await store.prune(session) == 1


def test_the_fingerprint_ignores_only_the_request_id():
    assert fingerprint("M", _request("a")) == fingerprint("M", _request("b"))
    assert fingerprint("M", _request("a")) != fingerprint("N", _request("a"))
    assert fingerprint("M", _request("a")) != fingerprint("M", _request("a", "Other"))
