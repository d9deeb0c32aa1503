"""Platform security: signing-key rotation, the audit log, and reading the revocation log (paged and live)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from mesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mesh.kit import paging, tenancy
from mesh.kit.caller import CallerInfo
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.names import ResourceName
from mesh.principal import Principal
from services.identity import audit, convert, feed, signing, store_keys, store_log
from services.identity.app import Identity
from services.identity.models import AuditEvent, Revocation, SigningKey
from vocelio.identity.v1 import audit_event_pb2, identity_service_pb2, signing_key_pb2

AUDIT_EVENTS = ResourceName.for_message(audit_event_pb2.AuditEvent)
SIGNING_KEYS = ResourceName.for_message(signing_key_pb2.SigningKey)
# A kid is an RFC 7638 thumbprint (43 base64url characters), which may start with "-" or "_": the kit's id
# rule refuses those, and a key whose kid did (2 in 64) could not be revoked. Its names are read by this.
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def signing_key_id(name: str, *, field: str = "name") -> str:
    """The kid of a ``signing_keys/{signing_key}`` name.

    Raises:
        InvalidArgument: the name is empty or has another shape; the violation names ``field``.

    """
    kid = name.removeprefix("signing_keys/")
    if kid == name or not _KID.fullmatch(kid):
        problem = "is required" if not name else f"must look like {SIGNING_KEYS.pattern}"
        raise InvalidArgument(f"{field} {problem}", {field: problem})
    return kid


def _enum_names(enum: Any, prefix: str) -> dict[str, str]:
    """Enum value names without their prefix, as stored, for a filter field (UNSPECIFIED left out)."""
    names = (name.removeprefix(prefix) for name in enum.keys())  # noqa: SIM118 - an EnumTypeWrapper, not a dict
    return {name: name for name in names if name != "UNSPECIFIED"}


AUDIT_FILTERS: FilterSchema = {
    "action": FilterField.enum(
        AuditEvent.action, _enum_names(audit_event_pb2.AuditAction, "AUDIT_ACTION_"), prefix="AUDIT_ACTION_"
    ),
    "outcome": FilterField.enum(
        AuditEvent.outcome, _enum_names(audit_event_pb2.AuditOutcome, "AUDIT_OUTCOME_"), prefix="AUDIT_OUTCOME_"
    ),
    "actor.principal": FilterField(Kind.STRING, AuditEvent.actor_principal),
    "target": FilterField(Kind.STRING, AuditEvent.target),
    "source_service": FilterField(Kind.STRING, AuditEvent.source_service),
    "organization_id": FilterField(Kind.STRING, AuditEvent.organization_id),
    "event_time": FilterField(Kind.TIMESTAMP, AuditEvent.event_time),
}
_CATCH_UP_PAGE = 500


def _platform_only(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise PermissionDenied("only SUPER_ADMIN may manage the platform's signing keys")


async def rotate_signing_key(
    app: Identity, principal: Principal, request: identity_service_pb2.RotateSigningKeyRequest, info: CallerInfo
) -> identity_service_pb2.RotateSigningKeyResponse:
    """Make a new ACTIVE key and demote the current one to PREVIOUS (it keeps verifying until its tokens expire).

    A retry with the same request_id answers the first rotation (signing keys are platform
    resources, so the request_id's organisation is the platform's, ``""``).

    Raises:
        FailedPrecondition: the signing key comes from a configured key file.
        InvalidArgument: request_id is not a UUID4, or was used for another rotation.

    """
    _platform_only(principal)
    if app.keyring.file_key is not None:
        raise FailedPrecondition(
            "the signing key comes from VOCELIO_JWT_SIGNING_KEY_FILE; rotate by replacing the file and restarting"
        )
    await app.ready()
    async with app.transaction() as session:
        claim = await app.idempotency.claim(
            session,
            method="RotateSigningKey",
            organization_id="",
            principal=principal.subject,
            request=request,
            response_type=identity_service_pb2.RotateSigningKeyResponse,
        )
        if claim.replay is not None:
            return claim.replay
        now = app.clock()
        await store_keys.retire_due(session, now)
        current = await store_keys.active_key(session)
        chosen = convert.algorithm_name(request.algorithm) or (
            current.algorithm if current is not None else signing.ES256
        )
        if current is not None:
            await store_keys.demote(session, current, now, app.key_retire_after)
        fresh = await store_keys.add_key(
            session, app.keyring.new_row(signing.generate(chosen), now, creator=principal.subject)
        )
        await app.record(
            session,
            action="SIGNING_KEY_ROTATED",
            actor=audit.actor_of(principal),
            request=info,
            target=f"signing_keys/{fresh.kid}",
            details={"algorithm": chosen, "previous": f"signing_keys/{current.kid}" if current else ""},
        )
        response = identity_service_pb2.RotateSigningKeyResponse(
            active_key=convert.signing_key(fresh),
            previous_key=convert.signing_key(current) if current is not None else None,
        )
        await claim.complete(session, response)
    await app.reload_keys()
    return response


async def revoke_signing_key(
    app: Identity, principal: Principal, request: identity_service_pb2.RevokeSigningKeyRequest, info: CallerInfo
) -> identity_service_pb2.RevokeSigningKeyResponse:
    """Stop trusting a signing key now: RETIRED, out of the JWKS, and a SIGNING_KEY revocation for every process.

    If it was the ACTIVE key, a new ACTIVE key (same algorithm) replaces it first.

    Raises:
        FailedPrecondition: the key comes from a configured key file.
        InvalidArgument: no reason, or not a signing key name.
        NotFound: no such key.

    """
    _platform_only(principal)
    kid = signing_key_id(request.name)
    reason = request.reason.strip()
    if not reason:
        raise InvalidArgument("reason is required", {"reason": "required"})
    await app.ready()
    if app.keyring.file_key is not None and app.keyring.file_key.kid == kid:
        raise FailedPrecondition(
            "the signing key comes from VOCELIO_JWT_SIGNING_KEY_FILE; replace the file and restart to revoke it"
        )
    async with app.transaction() as session:
        row = await store_keys.get_key(session, kid, for_update=True)
        if row is None:
            raise NotFound(f"signing key {request.name} not found")
        now = app.clock()
        replacement: SigningKey | None = None
        if row.state == store_keys.ACTIVE:
            replacement = await store_keys.add_key_after(
                session, row, app.keyring.new_row(signing.generate(row.algorithm), now, creator=principal.subject)
            )
        if row.state != store_keys.RETIRED:
            store_keys.retire(row, now)
        await store_log.append_revocation(
            session,
            kind=store_log.SIGNING_KEY,
            now=now,
            expire_time=now + app.revocation_lifetime,
            reason=reason,
            token_id=kid,
        )
        await app.record(
            session,
            action="SIGNING_KEY_REVOKED",
            actor=audit.actor_of(principal),
            request=info,
            target=f"signing_keys/{kid}",
            details={"reason": reason[:200], "replacement": f"signing_keys/{replacement.kid}" if replacement else ""},
        )
        active = replacement or await store_keys.active_key(session)
        await session.flush()
        response = identity_service_pb2.RevokeSigningKeyResponse(
            signing_key=convert.signing_key(row), active_key=convert.signing_key(active) if active else None
        )
    await app.reload_keys()
    return response


async def list_signing_keys(
    app: Identity, principal: Principal, request: identity_service_pb2.ListSigningKeysRequest
) -> tuple[list[SigningKey], str]:
    """Signing keys, newest first, public halves only."""
    _platform_only(principal)
    await app.ready()
    binding = paging.query_binding(request)
    after = app.page_tokens.decode_optional(request.page_token, binding)
    async with app.transaction() as session:
        await store_keys.retire_due(session, app.clock())
        page: paging.Page[SigningKey] = await paging.keyset_page(
            session,
            store_keys.keys_query(show_retired=request.show_retired),
            keys=[SigningKey.create_time, SigningKey.kid],
            after=_time_position(after),
            limit=paging.page_size(request.page_size),
            position_of=lambda row: (paging.time_key(row.create_time), row.kid),
        )
    return list(page.items), "" if page.next_after is None else app.page_tokens.encode(page.next_after, binding)


def _time_position(after: paging.Position | None) -> tuple[dt.datetime, str] | None:
    """The (time, id) keyset values of a newest-first listing's page token."""
    if after is None:
        return None
    micros, last_id = paging.position_shape(after, int, str)
    return paging.from_time_key(micros), last_id


async def list_audit_events(
    app: Identity, principal: Principal, request: identity_service_pb2.ListAuditEventsRequest
) -> tuple[list[AuditEvent], str]:
    """The audit log newest first: an organisation's, or (platform principals, ``-``) every event."""
    scope = tenancy.list_scope(principal, AUDIT_EVENTS.parse_parent(request.parent).organization)
    condition = compile_filter(request.filter, AUDIT_FILTERS)
    binding = paging.query_binding(request, scope.binding())
    after = app.page_tokens.decode_optional(request.page_token, binding)
    async with app.transaction() as session:
        page: paging.Page[AuditEvent] = await paging.keyset_page(
            session,
            store_log.audit_events_query(organization_id=scope.organization_id, condition=condition),
            keys=[AuditEvent.event_time, AuditEvent.id],
            after=_time_position(after),
            limit=paging.page_size(request.page_size, maximum=200),
            position_of=lambda row: (paging.time_key(row.event_time), row.id),
        )
    return list(page.items), "" if page.next_after is None else app.page_tokens.encode(page.next_after, binding)


async def record_audit_event(
    app: Identity, principal: Principal, request: identity_service_pb2.RecordAuditEventRequest
) -> identity_service_pb2.RecordAuditEventResponse:
    """Append another service's audit event; a retry with the same request_id returns the first one.

    The request_id is scoped to the event's organisation (``""`` for platform events).

    Raises:
        InvalidArgument: no action or outcome, a request_id that is not a UUID4, or one
            used before in this organisation for a different event.

    """
    row = convert.audit_row(request.audit_event, request.organization_id, app.clock())
    if row.action in ("", "UNSPECIFIED") or row.outcome in ("", "UNSPECIFIED"):
        raise InvalidArgument(
            "audit_event.action and audit_event.outcome are required",
            {"audit_event.action": "required", "audit_event.outcome": "required"},
        )
    row.source_service = principal.subject.removeprefix("services/") if principal.is_service else ""
    async with app.transaction() as session:
        claim = await app.idempotency.claim(
            session,
            method="RecordAuditEvent",
            organization_id=request.organization_id,
            principal=principal.subject,
            request=request,
            response_type=identity_service_pb2.RecordAuditEventResponse,
        )
        if claim.replay is not None:
            return claim.replay
        stored = await store_log.add_audit_event(session, row)
        response = identity_service_pb2.RecordAuditEventResponse(audit_event=convert.audit_event(stored))
        await claim.complete(session, response)
    return response


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationPage:
    """One page of the revocation log."""

    revocations: list[Revocation]
    next_page_token: str
    head_sequence: int


async def list_revocations(app: Identity, request: identity_service_pb2.ListRevokedTokensRequest) -> RevocationPage:
    """Unexpired revocations after a sequence, oldest first."""
    await app.ready()
    binding = paging.query_binding(request)
    after = app.page_tokens.decode_optional(request.page_token, binding)
    async with app.transaction() as session:
        head = await store_log.head_sequence(session)
        page: paging.Page[Revocation] = await paging.keyset_page(
            session,
            store_log.revocations_query(request.after_sequence, app.clock()),
            keys=[Revocation.sequence],
            after=None if after is None else paging.position_shape(after, int),
            limit=paging.page_size(request.page_size, default=500, maximum=1000),
            position_of=lambda row: (row.sequence,),
            descending=False,
        )
    token = "" if page.next_after is None else app.page_tokens.encode(page.next_after, binding)
    return RevocationPage(list(page.items), token, head)


@dataclasses.dataclass(frozen=True, slots=True)
class FeedItem:
    """One message of StreamRevocations: a revocation, the caught-up marker, or a heartbeat."""

    revocation: Revocation | None
    caught_up: bool
    head_sequence: int
    heartbeat: bool = False


async def follow_revocations(
    app: Identity, after_sequence: int, *, heartbeat: float | None = None
) -> AsyncIterator[FeedItem]:
    """Every unexpired revocation after ``after_sequence``, then the caught-up marker, then live ones, forever.

    When nothing was sent for ``heartbeat`` seconds (``VOCELIO_REVOCATION_HEARTBEAT`` by
    default) a heartbeat goes out, so the follower knows the stream is alive.
    """
    await app.ready()
    interval = app.settings.revocation_heartbeat if heartbeat is None else heartbeat
    last = after_sequence
    caught_up = False
    more = True
    sent_at = time.monotonic()
    # A ticket is always taken before the read it guards: a commit after it rings it.
    ticket = app.feed.ticket()
    while True:
        if not more:
            await app.feed.wait(ticket, min(feed.POLL_SECONDS, interval))
            ticket = app.feed.ticket()
        async with app.transaction() as session:
            rows = await store_log.revocations_after(session, last, app.clock(), _CATCH_UP_PAGE)
            head = await store_log.head_sequence(session)
        for row in rows:
            last = row.sequence
            sent_at = time.monotonic()
            yield FeedItem(row, False, max(head, row.sequence))
        more = len(rows) == _CATCH_UP_PAGE
        if not more and not caught_up:
            caught_up = True
            sent_at = time.monotonic()
            yield FeedItem(None, True, max(head, last))
        elif caught_up and not rows and time.monotonic() - sent_at >= interval:
            sent_at = time.monotonic()
            yield FeedItem(None, False, max(head, last), heartbeat=True)
