"""Rows to protos and back: the only place that knows both shapes."""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf import timestamp_pb2

from mesh.kit.caller import CallerInfo
from mesh.kit.clock import utc_now
from services.identity import audit
from services.identity.domain import UserState
from services.identity.models import AuditEvent, Revocation, Session, SigningKey, User
from vocelio.identity.v1 import audit_event_pb2, revocation_pb2, signing_key_pb2, user_pb2

_JWK_FIELDS = ("kty", "crv", "x", "y", "kid", "use", "alg")
_ALGORITHMS = {"ES256": signing_key_pb2.SIGNING_ALGORITHM_ES256, "EdDSA": signing_key_pb2.SIGNING_ALGORITHM_EDDSA}


def timestamp(moment: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp (``None`` stays unset)."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def algorithm_name(value: int) -> str:
    """``ES256`` / ``EdDSA`` for a SigningAlgorithm value; ``""`` for UNSPECIFIED."""
    for name, number in _ALGORITHMS.items():
        if number == value:
            return name
    return ""


def user(row: User, *, now: dt.datetime | None = None) -> user_pb2.User:
    """The User resource; a lock whose time has passed shows as ACTIVE."""
    moment = now or utc_now()
    state, locked_until, failed = row.state, row.locked_until, row.failed_sign_in_count
    if state == UserState.LOCKED and (locked_until is None or locked_until <= moment):
        state, locked_until, failed = UserState.ACTIVE.value, None, 0
    return user_pb2.User(
        name=f"users/{row.id}",
        organization_id=row.home_organization_id,
        email=row.email,
        email_verified=row.email_verified,
        display_name=row.display_name,
        avatar_uri=row.avatar_uri,
        locale=row.locale,
        time_zone=row.time_zone,
        state=f"USER_STATE_{state}",
        locked_until=timestamp(locked_until) if state == UserState.LOCKED else None,
        failed_sign_in_count=failed,
        disabled_reason=row.disabled_reason if state == UserState.DISABLED else "",
        platform_admin=row.platform_admin,
        last_sign_in_time=timestamp(row.last_sign_in_time),
        password_update_time=timestamp(row.password_update_time),
        audit=row.audit_info(),
        etag=user_etag(row),
    )


def user_etag(row: User) -> str:
    """The user's etag: the kit's opaque hash of its name, creation time and revision."""
    return row.etag_for(f"users/{row.id}")


def session(row: Session, current_session: str) -> user_pb2.Session:
    """The Session resource."""
    return user_pb2.Session(
        name=f"sessions/{row.id}",
        organization_id=row.organization_id,
        user=f"users/{row.user_id}",
        grant_type=row.grant_type,
        user_agent=row.user_agent,
        client_address=row.client_address,
        create_time=timestamp(row.create_time),
        last_refresh_time=timestamp(row.last_refresh_time),
        expire_time=timestamp(row.expire_time),
        current=current_session == f"sessions/{row.id}",
    )


def jwk(entry: dict[str, str]) -> signing_key_pb2.JsonWebKey:
    """A JsonWebKey message from a JWK dict.

    Members the key does not have stay unset: an Ed25519 (OKP) key has no ``y``, and
    ``y`` has presence, so it is left out of the JSON rather than sent as ``""`` (RFC 8037 §2).
    """
    return signing_key_pb2.JsonWebKey(**{name: entry[name] for name in _JWK_FIELDS if name in entry})


def signing_key(row: SigningKey) -> signing_key_pb2.SigningKey:
    """The SigningKey resource: public half only."""
    return signing_key_pb2.SigningKey(
        name=f"signing_keys/{row.kid}",
        algorithm=_ALGORITHMS.get(row.algorithm, signing_key_pb2.SIGNING_ALGORITHM_UNSPECIFIED),
        state=f"SIGNING_KEY_STATE_{row.state}",
        public_key=jwk(json.loads(row.public_jwk)),
        create_time=timestamp(row.create_time),
        activate_time=timestamp(row.activate_time),
        deactivate_time=timestamp(row.deactivate_time),
        retire_time=timestamp(row.retire_time),
        creator=row.creator,
    )


def audit_event_name(row: AuditEvent) -> str:
    """``organizations/{organization}/audit_events/{id}``; platform events have no organisation segment."""
    if row.organization_id:
        return f"organizations/{row.organization_id}/audit_events/{row.id}"
    return f"audit_events/{row.id}"


def audit_event(row: AuditEvent) -> audit_event_pb2.AuditEvent:
    """The AuditEvent resource."""
    return audit_event_pb2.AuditEvent(
        name=audit_event_name(row),
        organization_id=row.organization_id,
        event_time=timestamp(row.event_time),
        actor=audit_event_pb2.Actor(
            principal=row.actor_principal,
            kind=f"PRINCIPAL_KIND_{row.actor_kind}",
            display_name=row.actor_display_name,
            role=row.actor_role,
            session=row.actor_session,
        ),
        action=f"AUDIT_ACTION_{row.action}",
        outcome=f"AUDIT_OUTCOME_{row.outcome}",
        target=row.target,
        client_address=row.client_address,
        user_agent=row.user_agent,
        request_id=row.request_id,
        trace_id=row.trace_id,
        source_service=row.source_service,
        details=json.loads(row.details or "{}"),
    )


def _enum_name(enum: type, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)  # type: ignore[attr-defined]
    except ValueError:
        return ""


def audit_row(message: audit_event_pb2.AuditEvent, organization_id: str, now: dt.datetime) -> AuditEvent:
    """An audit row from a RecordAuditEvent request (id, source and idempotency key are set by the caller)."""
    actor = message.actor
    kind = _enum_name(audit_event_pb2.PrincipalKind, actor.kind, "PRINCIPAL_KIND_")
    event_time = message.event_time.ToDatetime(tzinfo=dt.UTC) if message.HasField("event_time") else now
    return audit.event(
        action=_enum_name(audit_event_pb2.AuditAction, message.action, "AUDIT_ACTION_"),
        outcome=_enum_name(audit_event_pb2.AuditOutcome, message.outcome, "AUDIT_OUTCOME_"),
        actor=audit.Actor(
            actor.principal,
            kind if kind not in ("", "UNSPECIFIED") else "ANONYMOUS",
            actor.display_name,
            actor.role,
            actor.session,
        ),
        request=CallerInfo(message.client_address, message.user_agent, message.request_id, message.trace_id),
        now=event_time,
        organization_id=organization_id,
        target=message.target,
        details=dict(message.details),
        source_service="",
    )


def revocation(row: Revocation) -> revocation_pb2.Revocation:
    """The Revocation message."""
    return revocation_pb2.Revocation(
        sequence=row.sequence,
        kind=f"REVOCATION_KIND_{row.kind}",
        token_id=row.token_id,
        session=row.session,
        principal=row.principal,
        organization_id=row.organization_id,
        issued_before=timestamp(row.issued_before),
        revoke_time=timestamp(row.revoke_time),
        expire_time=timestamp(row.expire_time),
        reason=row.reason,
    )
