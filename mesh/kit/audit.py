"""One audit port, and the one way audit entries reach identity's security log.

Delivery strategy (every service, the one team hub proved): an audit entry is a
``RecordAuditEventRequest`` written to the ``identity_calls`` table **in the transaction
of the change it records**, so a committed change always has its entry and a rolled-back
one never does. Right after the commit the service calls :meth:`IdentityCalls.deliver`,
which sends the organisation's pending calls, oldest first, with the service's own
credential. An entry identity cannot take now stays pending for the next delivery in that
organisation (the change did happen; the request does not fail). Token revocations use the
same table (``kind="revoke"``) and may be *required*: their failure fails the request with
UNAVAILABLE, the change saved and the request safe to retry.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

import grpc
from google.protobuf import message
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import Unavailable
from mesh.kit.caller import CallerInfo
from mesh.kit.clock import SYSTEM_CLOCK, Clock
from mesh.kit.ids import new_id
from mesh.kit.sql import timestamp
from mesh.kit.tables import IdentityCallRow
from mesh.principal import Principal, PrincipalKind, acting_as
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2

log = logging.getLogger(__name__)

AUDIT = "audit"
REVOKE = "revoke"
CALL_TIMEOUT = 5.0
MAX_ERROR = 500
BATCH = 50
# Delivered calls are kept this long: they tell a retried request that its effect happened.
RETENTION = datetime.timedelta(days=7)

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_KINDS = {
    PrincipalKind.USER: audit_event_pb2.PRINCIPAL_KIND_USER,
    PrincipalKind.API_KEY: audit_event_pb2.PRINCIPAL_KIND_API_KEY,
    PrincipalKind.SERVICE: audit_event_pb2.PRINCIPAL_KIND_SERVICE,
}


class AuditPort(Protocol):
    """Where a service records audit entries."""

    async def record(
        self,
        session: AsyncSession,
        *,
        principal: Principal,
        caller: CallerInfo,
        organization_id: str,
        action: audit_event_pb2.AuditAction,
        target: str,
        outcome: audit_event_pb2.AuditOutcome = audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
        details: Mapping[str, str] | None = None,
        actor_label: str = "",
    ) -> str:
        """Record an entry in the transaction of the change; returns its call id."""

    async def deliver(self, organization_id: str) -> None:
        """Send the organisation's pending entries (after the commit)."""


def audit_request(
    *,
    principal: Principal,
    caller: CallerInfo,
    organization_id: str,
    action: audit_event_pb2.AuditAction,
    target: str,
    now: datetime.datetime,
    outcome: audit_event_pb2.AuditOutcome = audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
    details: Mapping[str, str] | None = None,
    actor_label: str = "",
    request_id: str = "",
) -> identity_service_pb2.RecordAuditEventRequest:
    """The ``RecordAuditEventRequest`` of one entry (``details`` must never hold a secret)."""
    label = actor_label or (principal.subject.removeprefix("services/") if principal.is_service else "")
    event = audit_event_pb2.AuditEvent(
        actor=audit_event_pb2.Actor(
            principal=principal.subject,
            kind=_KINDS[principal.kind],
            display_name=label,
            role=principal.role,
            session=f"sessions/{principal.session_id}" if principal.session_id else "",
        ),
        action=action,
        outcome=outcome,
        target=target,
        client_address=caller.client_address,
        user_agent=caller.user_agent,
        request_id=caller.request_id,
        trace_id=caller.trace_id,
        details=dict(details or {}),
        event_time=timestamp(now),
    )
    return identity_service_pb2.RecordAuditEventRequest(
        # AIP-155: identity deduplicates on a UUID4, scoped to the organisation.
        audit_event=event,
        organization_id=organization_id,
        request_id=request_id or str(uuid.uuid4()),
    )


class IdentityCalls:
    """The ``identity_calls`` table and its delivery to identity."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        identity_stub: Callable[[], Any],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """Deliver with ``identity_stub()`` (a fresh ``IdentityServiceStub`` on the mesh's shared channel)."""
        self._sessions = sessions
        self._identity_stub = identity_stub
        self._clock = clock

    async def enqueue(
        self, session: AsyncSession, *, organization_id: str, target: str, kind: str, request: message.Message
    ) -> str:
        """Add a call in the transaction of the change that owes it; its id."""
        if kind not in (AUDIT, REVOKE):
            raise ValueError(f"unknown identity call kind {kind!r}")
        row = IdentityCallRow(
            id=new_id("ic"),
            organization_id=organization_id,
            target=target,
            kind=kind,
            payload=request.SerializeToString(),
            create_time=self._clock.now(),
            attempts=0,
            last_error="",
        )
        session.add(row)
        await session.flush()
        return row.id

    async def deliver(self, organization_id: str, *, required: Collection[str] = (), failure: str = "") -> None:
        """Send the organisation's pending calls, oldest first.

        Args:
            organization_id: whose calls to send.
            required: ids of calls the current request cannot succeed without.
            failure: the message of the UNAVAILABLE raised when one of those fails.

        Raises:
            Unavailable: a required call could not be delivered (it stays pending).

        """
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(IdentityCallRow)
                .where(IdentityCallRow.organization_id == organization_id, IdentityCallRow.done_time.is_(None))
                .order_by(IdentityCallRow.create_time, IdentityCallRow.id)
                .limit(BATCH)
            )
            calls = [(row.id, row.kind, row.payload) for row in rows]
        if not calls:
            return
        done, failed = await self._send_all(calls)
        async with self._sessions.begin() as session:
            now = self._clock.now()
            if done:
                await session.execute(
                    update(IdentityCallRow)
                    .where(IdentityCallRow.id.in_(done))
                    .values(done_time=now, attempts=IdentityCallRow.attempts + 1, last_error="")
                    .execution_options(synchronize_session=False)
                )
            for call_id, error_text in failed.items():
                await session.execute(
                    update(IdentityCallRow)
                    .where(IdentityCallRow.id == call_id)
                    .values(attempts=IdentityCallRow.attempts + 1, last_error=error_text[:MAX_ERROR])
                    .execution_options(synchronize_session=False)
                )
            await session.execute(
                delete(IdentityCallRow)
                .where(
                    IdentityCallRow.organization_id == organization_id,
                    IdentityCallRow.done_time.is_not(None),
                    IdentityCallRow.done_time < now - RETENTION,
                )
                .execution_options(synchronize_session=False)
            )
        if failed:
            log.warning("%d identity call(s) for %s not delivered; they stay pending", len(failed), organization_id)
        if any(call_id in failed for call_id in required):
            raise Unavailable(failure or "identity is unreachable; the change is saved, retry the request")

    async def _send_all(self, calls: list[tuple[str, str, bytes]]) -> tuple[list[str], dict[str, str]]:
        done: list[str] = []
        failed: dict[str, str] = {}
        stub = self._identity_stub()
        # These calls are the service's own work: with no principal, the service's token goes out.
        with acting_as(None):
            for index, (call_id, kind, payload) in enumerate(calls):
                try:
                    await self._send(stub, kind, payload)
                except (grpc.aio.AioRpcError, TimeoutError) as error:
                    code = (
                        error.code() if isinstance(error, grpc.aio.AioRpcError) else grpc.StatusCode.DEADLINE_EXCEEDED
                    )
                    failed[call_id] = code.name
                    if code in _UNREACHABLE:
                        # Identity is down or slow: do not wait once per remaining call.
                        skipped = {later: "not attempted: identity unreachable" for later, _, _ in calls[index + 1 :]}
                        failed.update(skipped)
                        break
                else:
                    done.append(call_id)
        return done, failed

    @staticmethod
    async def _send(stub: Any, kind: str, payload: bytes) -> None:
        if kind == REVOKE:
            revoke = identity_service_pb2.RevokePrincipalTokensRequest.FromString(payload)
            await stub.RevokePrincipalTokens(revoke, timeout=CALL_TIMEOUT)
        else:
            record = identity_service_pb2.RecordAuditEventRequest.FromString(payload)
            await stub.RecordAuditEvent(record, timeout=CALL_TIMEOUT)


class IdentityAudit:
    """The :class:`AuditPort` of every service: entries go through :class:`IdentityCalls`."""

    def __init__(self, calls: IdentityCalls, clock: Clock = SYSTEM_CLOCK) -> None:
        self._calls = calls
        self._clock = clock

    async def record(
        self,
        session: AsyncSession,
        *,
        principal: Principal,
        caller: CallerInfo,
        organization_id: str,
        action: audit_event_pb2.AuditAction,
        target: str,
        outcome: audit_event_pb2.AuditOutcome = audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
        details: Mapping[str, str] | None = None,
        actor_label: str = "",
    ) -> str:
        """Record an entry in the transaction of the change; returns its call id."""
        request = audit_request(
            principal=principal,
            caller=caller,
            organization_id=organization_id,
            action=action,
            target=target,
            now=self._clock.now(),
            outcome=outcome,
            details=details,
            actor_label=actor_label,
        )
        return await self._calls.enqueue(
            session, organization_id=organization_id, target=target, kind=AUDIT, request=request
        )

    async def deliver(self, organization_id: str) -> None:
        """Send the organisation's pending entries; failures wait for the next delivery."""
        with contextlib.suppress(Unavailable):
            await self._calls.deliver(organization_id)
