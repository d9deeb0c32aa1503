from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import select

from mesh.db import ServiceDatabase
from mesh.errors import Unavailable
from mesh.kit import audit
from mesh.kit.caller import CallerInfo
from mesh.kit.clock import FixedClock
from mesh.kit.tables import IdentityCallRow
from mesh.principal import Principal, PrincipalKind
from tests.support.kit import RecordingIdentity, fake_identity
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2, identity_service_pb2_grpc

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
ADMIN = Principal("users/u1", PrincipalKind.USER, "acme", "ADMIN", frozenset({"*"}), session_id="s1")


@pytest.fixture
async def identity() -> AsyncIterator[tuple[RecordingIdentity, grpc.aio.Channel]]:
    async with fake_identity() as fake:
        yield fake.servicer, fake.channel


def _calls(database: ServiceDatabase, channel: grpc.aio.Channel, clock: FixedClock) -> audit.IdentityCalls:
    return audit.IdentityCalls(database.sessions, lambda: identity_service_pb2_grpc.IdentityServiceStub(channel), clock)


async def _pending(database: ServiceDatabase) -> list[IdentityCallRow]:
    async with database.sessions.begin() as session:
        return list(
            (await session.execute(select(IdentityCallRow).where(IdentityCallRow.done_time.is_(None)))).scalars()
        )


async def test_entries_are_written_with_the_change_and_delivered_after_it(kit_database, identity):
    servicer, channel = identity
    clock = FixedClock(NOW)
    port = audit.IdentityAudit(_calls(kit_database, channel, clock), clock)
    caller = CallerInfo(client_address="203.0.113.9", user_agent="ua", request_id="r1")
    async with kit_database.sessions.begin() as session:
        await port.record(
            session,
            principal=ADMIN,
            caller=caller,
            organization_id="acme",
            action=audit_event_pb2.AUDIT_ACTION_ROLE_CHANGED,
            target="organizations/acme/members/m1",
            details={"role": "ADMIN"},
        )
    with pytest.raises(RuntimeError):  # a rolled-back change leaves no entry
        await _record_then_fail(kit_database, port, caller)
    assert len(await _pending(kit_database)) == 1
    await port.deliver("acme")
    assert await _pending(kit_database) == []
    [sent] = servicer.audit
    assert sent.organization_id == "acme"
    assert sent.audit_event.actor.principal == "users/u1"
    assert sent.audit_event.actor.session == "sessions/s1"
    assert sent.audit_event.client_address == "203.0.113.9"
    assert sent.audit_event.target == "organizations/acme/members/m1"
    assert sent.audit_event.event_time.ToDatetime(tzinfo=datetime.UTC) == NOW
    assert uuid.UUID(sent.request_id).version == 4  # identity's idempotency key (AIP-155)


async def _record_then_fail(database: ServiceDatabase, port: audit.IdentityAudit, caller: CallerInfo) -> None:
    async with database.sessions.begin() as session:
        await port.record(
            session,
            principal=ADMIN,
            caller=caller,
            organization_id="acme",
            action=audit_event_pb2.AUDIT_ACTION_SETTINGS_CHANGED,
            target="x",
        )
        raise RuntimeError("the change failed")


async def test_undelivered_calls_wait_and_required_ones_fail_the_request(kit_database, identity):
    servicer, channel = identity
    clock = FixedClock(NOW)
    calls = _calls(kit_database, channel, clock)
    port = audit.IdentityAudit(calls, clock)
    async with kit_database.sessions.begin() as session:
        await port.record(
            session,
            principal=ADMIN,
            caller=CallerInfo(),
            organization_id="acme",
            action=audit_event_pb2.AUDIT_ACTION_SETTINGS_CHANGED,
            target="t",
        )
        revoke = await calls.enqueue(
            session,
            organization_id="acme",
            target="organizations/acme/members/m1",
            kind=audit.REVOKE,
            request=identity_service_pb2.RevokePrincipalTokensRequest(principal="users/u2", organization_id="acme"),
        )
    servicer.down = True
    await port.deliver("acme")  # an audit entry that cannot go out now only waits
    with pytest.raises(Unavailable, match="could not revoke"):
        await calls.deliver("acme", required=[revoke], failure="could not revoke; retry")
    pending = await _pending(kit_database)
    assert len(pending) == 2
    assert all(row.attempts == 2 for row in pending)
    servicer.down = False
    await calls.deliver("acme", required=[revoke])
    assert await _pending(kit_database) == []
    assert [r.principal for r in servicer.revoked] == ["users/u2"]
    assert len(servicer.audit) == 1
    with pytest.raises(ValueError, match="unknown identity call kind"):
        async with kit_database.sessions.begin() as session:
            await calls.enqueue(session, organization_id="acme", target="t", kind="mail", request=servicer.audit[0])
