"""Team hub's calls to identity: token revocation, audit events, and users' e-mail addresses.

A change that owes identity a call (revoke a removed member's tokens, record "role
changed") writes the call into the identity outbox in the change's own transaction.
Right after the commit, :meth:`IdentityLink.deliver` sends the organisation's pending
calls. A token revocation that cannot be delivered fails the request with UNAVAILABLE —
the change is saved and the request is safe to retry, and the retry (or any later change
in the organisation) delivers it; an audit event that cannot be delivered only waits for
that next delivery, since the change it records did happen.

Revocations and audit events are internal methods of identity, which only mesh services
may call: they go out with team hub's own token, never the caller's.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Collection, Mapping

import grpc
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mesh.errors import NotFound, Unavailable
from mesh.principal import Principal, PrincipalKind
from runtime.clients import MeshClients
from services.team_hub.store import outbox
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2, identity_service_pb2_grpc

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

_KINDS = {
    PrincipalKind.USER: audit_event_pb2.PRINCIPAL_KIND_USER,
    PrincipalKind.API_KEY: audit_event_pb2.PRINCIPAL_KIND_API_KEY,
    PrincipalKind.SERVICE: audit_event_pb2.PRINCIPAL_KIND_SERVICE,
}


class RequestInfo:
    """Where a request came from, for the audit log (from the call's metadata)."""

    def __init__(self, metadata: Mapping[str, str], peer: str) -> None:
        forwarded = metadata.get("x-forwarded-for", "")
        self.client_address = forwarded.split(",", 1)[0].strip() if forwarded else peer
        self.user_agent = metadata.get("user-agent", "")[:512]
        self.request_id = metadata.get("x-request-id", "")[:128]
        parts = metadata.get("traceparent", "").split("-")
        self.trace_id = parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext[object, object]) -> RequestInfo:
        """The request information of a running call."""
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        return cls(metadata, str(context.peer() or ""))


def revocation(user: str, organization_id: str, *, reason: str, end_sessions: bool) -> bytes:
    """A RevokePrincipalTokens request for a user's tokens in one organisation."""
    return identity_service_pb2.RevokePrincipalTokensRequest(
        principal=user, organization_id=organization_id, reason=reason, end_sessions=end_sessions
    ).SerializeToString()


def audit_event(
    principal: Principal,
    request: RequestInfo,
    *,
    organization_id: str,
    action: audit_event_pb2.AuditAction,
    target: str,
    now: datetime.datetime,
    actor_label: str = "",
    details: Mapping[str, str] | None = None,
) -> bytes:
    """A RecordAuditEvent request (never a secret in ``details``)."""
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
        outcome=audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
        target=target,
        client_address=request.client_address,
        user_agent=request.user_agent,
        request_id=request.request_id,
        trace_id=request.trace_id,
        details=dict(details or {}),
    )
    event.event_time.FromDatetime(now)
    return identity_service_pb2.RecordAuditEventRequest(
        audit_event=event, organization_id=organization_id, request_id=str(uuid.uuid4())
    ).SerializeToString()


class IdentityLink:
    """Team hub's side of the conversation with identity."""

    def __init__(
        self,
        clients: MeshClients,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._clients = clients
        self._sessions = sessions
        self._clock = clock

    def _stub(self) -> identity_service_pb2_grpc.IdentityServiceStub:
        return self._clients.stub("identity", identity_service_pb2_grpc.IdentityServiceStub)

    async def user_email(self, user: str) -> tuple[str, str]:
        """A user's e-mail address and display name, read with the caller's own credential.

        Raises:
            NotFound: identity does not know the user (or does not show them to the caller).
            Unavailable: identity cannot be reached.

        """
        try:
            reply = await self._stub().GetUser(identity_service_pb2.GetUserRequest(name=user), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                raise NotFound("user not found") from None
            log.warning("identity GetUser failed: %s", error.code().name)
            raise Unavailable("identity is unreachable; retry the request") from None
        return reply.user.email, reply.user.display_name

    async def _service_metadata(self) -> tuple[tuple[str, str], ...]:
        token = await self._clients.credential.token()
        return (("authorization", f"Bearer {token}"),)

    async def deliver(self, organization_id: str, *, required: Collection[str] = (), failure: str = "") -> None:
        """Send the organisation's pending identity calls, oldest first.

        Args:
            organization_id: whose calls to send.
            required: ids of calls the current request cannot succeed without.
            failure: the message of the UNAVAILABLE raised when one of those fails.

        Raises:
            Unavailable: a required call could not be delivered (it stays pending).

        """
        async with self._sessions.begin() as session:
            calls = [(c.id, c.kind, c.payload) for c in await outbox.pending(session, organization_id)]
        if not calls:
            return
        done: list[str] = []
        failed: dict[str, str] = {}
        try:
            metadata = await self._service_metadata()
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            reason = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "timeout"
            failed = {call_id: f"no service token: {reason}" for call_id, _, _ in calls}
        else:
            for index, (call_id, kind, payload) in enumerate(calls):
                try:
                    await self._send(kind, payload, metadata)
                except grpc.aio.AioRpcError as error:
                    failed[call_id] = f"{error.code().name}: {error.details() or ''}"
                    if error.code() in _UNREACHABLE:
                        # Identity is down or slow: do not wait once per remaining call.
                        failed.update(
                            {later: "not attempted: identity unreachable" for later, _, _ in calls[index + 1 :]}
                        )
                        break
                else:
                    done.append(call_id)
        async with self._sessions.begin() as session:
            now = self._clock()
            await outbox.mark_done(session, done, now)
            await outbox.prune(session, organization_id, now - outbox.RETENTION)
            for call_id, error_text in failed.items():
                await outbox.mark_failed(session, call_id, error_text)
        if failed:
            log.warning(
                "%d identity call(s) for %s not delivered (%s); they stay pending",
                len(failed),
                organization_id,
                next(iter(failed.values())),
            )
        if any(call_id in failed for call_id in required):
            raise Unavailable(failure or "identity is unreachable; the change is saved, retry the request")

    async def _send(self, kind: str, payload: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
        stub = self._stub()
        request: Message
        if kind == outbox.REVOKE:
            request = identity_service_pb2.RevokePrincipalTokensRequest.FromString(payload)
            await stub.RevokePrincipalTokens(request, metadata=metadata, timeout=CALL_TIMEOUT)
        elif kind == outbox.AUDIT:
            request = identity_service_pb2.RecordAuditEventRequest.FromString(payload)
            await stub.RecordAuditEvent(request, metadata=metadata, timeout=CALL_TIMEOUT)
        else:  # pragma: no cover - only this module writes kinds
            raise ValueError(f"unknown identity call kind {kind!r}")
