"""Platform security: signing-key rotation, the audit log, and reading the revocation log (paged and live)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from mesh.kit.caller import CallerInfo
from mesh.principal import Principal
from services.identity import audit, signing, store_keys, store_log
from services.identity.app import Identity
from services.identity.domain import check_request_id
from services.identity.filters import (
    EQUALITY,
    ORDERING,
    decode_page_token,
    encode_page_token,
    page_size,
    parse_filter,
    token_int,
    token_text,
    token_time,
)
from services.identity.models import AuditEvent, Revocation, SigningKey
from services.identity.parents import organization_scope

_AUDIT_FILTERS = {
    "action": EQUALITY,
    "outcome": EQUALITY,
    "actor.principal": EQUALITY,
    "target": EQUALITY,
    "source_service": EQUALITY,
    "event_time": ORDERING,
    "organization_id": EQUALITY,
}
_CATCH_UP_PAGE = 500


def _platform_only(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise PermissionDenied("only SUPER_ADMIN may manage the platform's signing keys")


async def rotate_signing_key(
    app: Identity, principal: Principal, algorithm: str, request_id: str, info: CallerInfo
) -> tuple[SigningKey, SigningKey | None]:
    """Make a new ACTIVE key and demote the current one to PREVIOUS (it keeps verifying until its tokens expire).

    Raises:
        FailedPrecondition: the signing key comes from a configured key file.

    """
    _platform_only(principal)
    request_id = check_request_id(request_id)
    if app.keyring.file_key is not None:
        raise FailedPrecondition(
            "the signing key comes from VOCELIO_JWT_SIGNING_KEY_FILE; rotate by replacing the file and restarting"
        )
    await app.ready()
    async with app.transaction() as session:
        if request_id:
            earlier = await store_keys.key_by_rotation_request(session, request_id)
            if earlier is not None:
                replaced = None
                if earlier.activate_time is not None:
                    replaced = await store_keys.key_deactivated_at(session, earlier.activate_time)
                return earlier, replaced
        now = app.clock()
        await store_keys.retire_due(session, now)
        current = await store_keys.active_key(session)
        chosen = algorithm or (current.algorithm if current is not None else signing.ES256)
        if current is not None:
            await store_keys.demote(session, current, now, app.key_retire_after)
        fresh = await store_keys.add_key(
            session,
            app.keyring.new_row(
                signing.generate(chosen), now, creator=principal.subject, request_id=request_id or None
            ),
        )
        await app.record(
            session,
            action="SIGNING_KEY_ROTATED",
            actor=audit.actor_of(principal),
            request=info,
            target=f"signing_keys/{fresh.kid}",
            details={"algorithm": chosen, "previous": f"signing_keys/{current.kid}" if current else ""},
        )
    await app.reload_keys()
    return fresh, current


async def list_signing_keys(
    app: Identity, principal: Principal, *, size: int, token: str, show_retired: bool
) -> tuple[list[SigningKey], str]:
    """Signing keys, newest first, public halves only."""
    _platform_only(principal)
    await app.ready()
    limit = page_size(size, default=50, maximum=100)
    position = decode_page_token(token, {"t": token_time, "k": token_text})
    after = (position["t"], position["k"]) if position else None
    async with app.transaction() as session:
        await store_keys.retire_due(session, app.clock())
        rows = await store_keys.list_keys(session, show_retired=show_retired, after=after, limit=limit + 1)
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, encode_page_token({"t": rows[-1].create_time.isoformat(), "k": rows[-1].kid})


async def list_audit_events(
    app: Identity, principal: Principal, *, size: int, token: str, filter_text: str, parent: str
) -> tuple[list[AuditEvent], str]:
    """The audit log newest first: an organisation's, or (platform principals, ``-``) every event."""
    scope = organization_scope(principal, parent)
    conditions = parse_filter(filter_text, _AUDIT_FILTERS)
    limit = page_size(size, default=50, maximum=200)
    position = decode_page_token(token, {"t": token_time, "i": token_text})
    after = (position["t"], position["i"]) if position else None
    async with app.transaction() as session:
        rows = await store_log.list_audit_events(
            session, organization_id=scope, conditions=conditions, after=after, limit=limit + 1
        )
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, encode_page_token({"t": rows[-1].event_time.isoformat(), "i": rows[-1].id})


def _same_event(earlier: AuditEvent, row: AuditEvent) -> bool:
    """Whether a retried RecordAuditEvent asks for the event that was stored (AIP-155's "same request")."""
    facts = ("action", "outcome", "target", "actor_principal", "actor_kind", "request_id", "details")
    return all(getattr(earlier, fact) == getattr(row, fact) for fact in facts)


async def record_audit_event(app: Identity, principal: Principal, row: AuditEvent, request_id: str) -> AuditEvent:
    """Append another service's audit event; a retry with the same request_id returns the first one.

    ``row`` is the event as sent; its source service and idempotency key are set here.
    The key is the calling principal and request_id, unique per organisation.

    Raises:
        InvalidArgument: no action or outcome, a request_id that is not a UUID4, or one
            used before in this organisation for a different event.

    """
    request_id = check_request_id(request_id)
    if row.action in ("", "UNSPECIFIED") or row.outcome in ("", "UNSPECIFIED"):
        raise InvalidArgument(
            "audit_event.action and audit_event.outcome are required",
            {"audit_event.action": "required", "audit_event.outcome": "required"},
        )
    row.source_service = principal.subject.removeprefix("services/") if principal.is_service else ""
    if not request_id:
        async with app.transaction() as session:
            return await store_log.add_audit_event(session, row)
    key = f"{principal.subject}|{request_id}"
    async with app.transaction() as session:
        earlier = await store_log.audit_event_by_key(session, row.organization_id, key)
        if earlier is not None:
            if not _same_event(earlier, row):
                raise InvalidArgument(
                    "request_id was already used for a different audit event",
                    {"request_id": "already used with a different request"},
                )
            return earlier
        row.idempotency_key = key
        return await store_log.add_audit_event(session, row)


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationPage:
    """One page of the revocation log."""

    revocations: list[Revocation]
    next_page_token: str
    head_sequence: int


async def list_revocations(app: Identity, after_sequence: int, size: int, token: str) -> RevocationPage:
    """Unexpired revocations after a sequence, oldest first."""
    await app.ready()
    limit = page_size(size, default=500, maximum=1000)
    position = decode_page_token(token, {"s": token_int})
    after = max(after_sequence, position["s"]) if position else after_sequence
    async with app.transaction() as session:
        head = await store_log.head_sequence(session)
        rows = await store_log.revocations_after(session, after, app.clock(), limit + 1)
    if len(rows) <= limit:
        return RevocationPage(rows, "", head)
    rows = rows[:limit]
    return RevocationPage(rows, encode_page_token({"s": rows[-1].sequence}), head)


@dataclasses.dataclass(frozen=True, slots=True)
class FeedItem:
    """One message of StreamRevocations: a revocation, or the caught-up marker."""

    revocation: Revocation | None
    caught_up: bool
    head_sequence: int


async def follow_revocations(app: Identity, after_sequence: int) -> AsyncIterator[FeedItem]:
    """Every unexpired revocation after ``after_sequence``, then the caught-up marker, then live ones, forever."""
    await app.ready()
    last = after_sequence
    caught_up = False
    more = True
    # A ticket is always taken before the read it guards: a commit after it rings it.
    ticket = app.feed.ticket()
    while True:
        if not more:
            await app.feed.wait(ticket)
            ticket = app.feed.ticket()
        async with app.transaction() as session:
            rows = await store_log.revocations_after(session, last, app.clock(), _CATCH_UP_PAGE)
            head = await store_log.head_sequence(session)
        for row in rows:
            last = row.sequence
            yield FeedItem(row, False, max(head, row.sequence))
        more = len(rows) == _CATCH_UP_PAGE
        if not more and not caught_up:
            caught_up = True
            yield FeedItem(None, True, max(head, last))
