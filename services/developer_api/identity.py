"""Calls to identity: the security audit log and the revocation of a key's tokens.

Both are internal identity methods, so they go out with this service's own credential
(never the caller's, which does not hold internal permissions). Audit requests carry a
request id derived from the event (a UUID4-shaped digest, AIP-155), so a retried operation
never logs an event twice. Details never contain a secret.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import grpc

from mesh.errors import Unavailable
from mesh.principal import Principal, PrincipalKind, acting_as
from runtime.clients import MeshClients
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2, identity_service_pb2_grpc

log = logging.getLogger(__name__)

_TIMEOUT = 5.0
_KINDS = {
    PrincipalKind.USER: audit_event_pb2.PRINCIPAL_KIND_USER,
    PrincipalKind.API_KEY: audit_event_pb2.PRINCIPAL_KIND_API_KEY,
    PrincipalKind.SERVICE: audit_event_pb2.PRINCIPAL_KIND_SERVICE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class RequestInfo:
    """Where a request came from, as the edge reported it, for audit events."""

    client_address: str = ""
    user_agent: str = ""
    request_id: str = ""
    trace_id: str = ""

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], peer: str) -> RequestInfo:
        """Read ``x-forwarded-for``, ``user-agent``, ``x-request-id`` and ``traceparent``."""
        forwarded = metadata.get("x-forwarded-for", "").split(",", 1)[0].strip()
        traceparent = metadata.get("traceparent", "").split("-")
        return cls(
            client_address=(forwarded or peer)[:64],
            user_agent=metadata.get("user-agent", "")[:512],
            request_id=metadata.get("x-request-id", "")[:128],
            trace_id=traceparent[1] if len(traceparent) == 4 and len(traceparent[1]) == 32 else "",
        )


def event_request_id(event_key: str) -> str:
    """The request_id of an audit event: the same UUID4-form id for every retry of one event."""
    digest = hashlib.sha256(b"developer_api audit event\0" + event_key.encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


class Identity:
    """What developer_api asks of identity."""

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    def _stub(self) -> Any:
        return self._clients.stub("identity", identity_service_pb2_grpc.IdentityServiceStub)

    async def record(
        self,
        *,
        action: int,
        actor: Principal,
        organization_id: str,
        target: str,
        event_key: str,
        event_time: datetime.datetime,
        details: Mapping[str, str],
        request: RequestInfo,
    ) -> None:
        """Append an event to the organisation's security audit log.

        Raises:
            Unavailable: identity did not take the event.

        """
        event = audit_event_pb2.AuditEvent(
            actor=audit_event_pb2.Actor(
                principal=actor.subject,
                kind=_KINDS[actor.kind],
                role=actor.role,
                session=f"sessions/{actor.session_id}" if actor.session_id else "",
            ),
            action=action,  # type: ignore[arg-type]
            outcome=audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
            target=target,
            client_address=request.client_address,
            user_agent=request.user_agent,
            request_id=request.request_id,
            trace_id=request.trace_id,
            details=dict(details),
        )
        event.event_time.FromDatetime(event_time)
        message = identity_service_pb2.RecordAuditEventRequest(
            audit_event=event, organization_id=organization_id, request_id=event_request_id(event_key)
        )
        await self._call("RecordAuditEvent", message, "the security audit log is unavailable")

    async def revoke_tokens(self, principal: str, organization_id: str) -> None:
        """Revoke every token issued to a key so far.

        Raises:
            Unavailable: identity did not take the revocation.

        """
        message = identity_service_pb2.RevokePrincipalTokensRequest(
            principal=principal, organization_id=organization_id, reason="api_key_revoked"
        )
        await self._call("RevokePrincipalTokens", message, "identity could not revoke the key's tokens")

    async def _call(self, method: str, message: Any, failure: str) -> None:
        # The calls are this service's own work: act as no caller so the service token goes out.
        with acting_as(None):
            try:
                await getattr(self._stub(), method)(message, timeout=_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                log.warning("identity %s failed: %s %s", method, error.code().name, error.details())
                raise Unavailable(f"{failure}; retry the request") from None
