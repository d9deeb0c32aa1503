"""Ending things: sessions, single access tokens and everything a principal holds (RFC 7009, Logout, removal)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.errors import InvalidArgument
from mesh.kit import paging, tenancy
from mesh.kit.caller import CallerInfo
from mesh.principal import Principal, PrincipalKind
from mesh.tokens import InvalidToken
from services.identity import audit, store, store_log
from services.identity.app import Identity
from services.identity.domain import principal_cutoff, principal_kind
from services.identity.models import Revocation, Session
from vocelio.identity.v1 import identity_service_pb2


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_id_of(name: str) -> str:
    """The id in ``sessions/{id}`` (also accepts a bare id)."""
    return name.removeprefix("sessions/")


async def revoke_session(app: Identity, session: AsyncSession, row: Session, reason: str) -> Revocation | None:
    """End a session: no refresh token of its family works again, nor any access token issued from it.

    Returns the revocation entry, or ``None`` when the session had already ended.
    """
    if row.revoke_time is not None:
        return None
    now = app.clock()
    row.revoke_time = now
    row.revoke_reason = reason[:64]
    return await store_log.append_revocation(
        session,
        kind=store_log.SESSION,
        now=now,
        expire_time=now + app.revocation_lifetime,
        reason=reason,
        session_name=f"sessions/{row.id}",
    )


async def revoke_access_token(
    app: Identity, session: AsyncSession, token_id: str, expires_at: dt.datetime | None, reason: str
) -> Revocation:
    """Revoke one access token by its ``jti`` until it expires."""
    now = app.clock()
    latest = now + app.revocation_lifetime
    expire_time = min(latest, expires_at + dt.timedelta(seconds=30)) if expires_at is not None else latest
    return await store_log.append_revocation(
        session, kind=store_log.TOKEN, now=now, expire_time=expire_time, reason=reason, token_id=token_id
    )


def _rank(principal: Principal) -> int:
    try:
        return int(Role.parse(principal.role))
    except ValueError:
        return 0


def is_admin_of(principal: Principal, organization_id: str) -> bool:
    """Whether the caller administers the organisation (ADMIN there, or a platform administrator)."""
    if principal.is_platform_admin:
        return True
    return (
        principal.kind is PrincipalKind.USER
        and bool(organization_id)
        and principal.organization_id == organization_id
        and _rank(principal) >= Role.ADMIN
    )


async def logout(app: Identity, principal: Principal, all_sessions: bool, info: CallerInfo) -> int:
    """End the caller's session (and, if asked, all their sessions) and revoke the token used for the call."""
    ended = 0
    async with app.transaction() as session:
        if principal.token_id:
            await revoke_access_token(app, session, principal.token_id, None, "logout")
        user_id = principal.subject.removeprefix("users/") if principal.kind is PrincipalKind.USER else ""
        rows: list[Session] = []
        if user_id and all_sessions:
            rows = await store.open_sessions(session, user_id=user_id, now=app.clock())
        elif user_id and principal.session_id:
            row = await store.get_session(session, session_id_of(principal.session_id))
            rows = [row] if row is not None and row.user_id == user_id else []
        for row in rows:
            if await revoke_session(app, session, row, "logout") is not None:
                ended += 1
        await app.record(
            session,
            action="SIGNED_OUT",
            actor=audit.actor_of(principal),
            request=info,
            organization_id=principal.organization_id,
            target=principal.session_id or principal.subject,
            details={"all_sessions": str(all_sessions).lower(), "sessions_ended": str(ended)},
        )
    return ended


async def revoke_token(app: Identity, token: str, hint: str, info: CallerInfo) -> None:
    """RFC 7009: revoke a refresh token (its whole session) or an access token; unknown tokens are ignored.

    ``hint`` (``token_type_hint``) is advisory (RFC 7009 §2.1): both kinds are tried, the
    cheap refresh-token lookup first.
    """
    await app.ready()
    if not token:
        raise InvalidArgument("token is required", {"token": "required"})
    async with app.transaction() as session:
        found = await store.find_refresh_token(session, _hash(token))
        if found is not None:
            family = found[1]
            if await revoke_session(app, session, family, "token_revoked") is not None:
                await app.record(
                    session,
                    action="TOKEN_REVOKED",
                    actor=audit.Actor(f"users/{family.user_id}", "USER", session=f"sessions/{family.id}"),
                    request=info,
                    organization_id=family.organization_id,
                    target=f"sessions/{family.id}",
                    details={"token_type": "refresh_token"},
                )
            return
    try:
        claims = await app.verifier.verify(token)
    except InvalidToken:
        return  # RFC 7009 §2.2: an invalid token is not an error
    async with app.transaction() as session:
        expires_at = dt.datetime.fromtimestamp(claims.expires_at, dt.UTC)
        await revoke_access_token(app, session, claims.token_id, expires_at, "token_revoked")
        await app.record(
            session,
            action="TOKEN_REVOKED",
            actor=audit.Actor(
                claims.subject, principal_kind(claims.subject), role=claims.role, session=claims.session_id
            ),
            request=info,
            organization_id=claims.organization_id,
            target=claims.session_id or claims.subject,
            details={"token_type": "access_token", "jti": claims.token_id},
        )


async def list_sessions(
    app: Identity, principal: Principal, request: identity_service_pb2.ListSessionsRequest
) -> tuple[list[Session], str]:
    """Open sessions of the caller, or of a member of the caller's organisation (admins)."""
    own = principal.subject if principal.kind is PrincipalKind.USER else ""
    target = request.user or own
    if not target.startswith("users/"):
        raise InvalidArgument("user must be a user resource name", {"user": "users/{user}"})
    binding = paging.query_binding(request, principal.subject, principal.organization_id)
    after = app.page_tokens.decode_optional(request.page_token, binding)
    user_id = target.removeprefix("users/")
    async with app.transaction() as session:
        organization: str | None = None
        if target != own and not principal.is_platform_admin:
            admin = is_admin_of(principal, principal.organization_id)
            if not admin or not await store.is_member(session, user_id, principal.organization_id):
                raise tenancy.not_found(target)
            organization = principal.organization_id
        keys = None if after is None else paging.position_shape(after, int, str)
        page: paging.Page[Session] = await paging.keyset_page(
            session,
            store.open_sessions_query(user_id=user_id, now=app.clock(), organization_id=organization),
            keys=[Session.last_refresh_time, Session.id],
            after=None if keys is None else (paging.from_time_key(keys[0]), keys[1]),
            limit=paging.page_size(request.page_size),
            position_of=lambda row: (paging.time_key(row.last_refresh_time), row.id),
        )
    return list(page.items), "" if page.next_after is None else app.page_tokens.encode(page.next_after, binding)


async def delete_session(app: Identity, principal: Principal, name: str, info: CallerInfo) -> None:
    """End a session: the caller's own, or (admins) a member's in the caller's organisation."""
    async with app.transaction() as session:
        row = await store.get_session(session, session_id_of(name))
        mine = row is not None and principal.subject == f"users/{row.user_id}"
        if row is None or not (mine or is_admin_of(principal, row.organization_id)):
            raise tenancy.not_found(name)
        if await revoke_session(app, session, row, "session_deleted") is not None:
            await app.record(
                session,
                action="TOKEN_REVOKED",
                actor=audit.actor_of(principal),
                request=info,
                organization_id=row.organization_id,
                target=f"sessions/{row.id}",
                details={"user": f"users/{row.user_id}"},
            )


@dataclasses.dataclass(frozen=True, slots=True)
class PrincipalRevocation:
    """What RevokePrincipalTokens did."""

    revocation: Revocation
    ended_sessions: int


async def revoke_principal_tokens(
    app: Identity, principal: str, organization_id: str, reason: str, end_sessions: bool
) -> PrincipalRevocation:
    """Revoke every token of a principal issued before now (optionally in one organisation).

    ``organizations/{organization}`` revokes every credential of the organisation (an
    ORGANIZATION entry; with ``end_sessions``, its sessions end too).
    """
    organization = _ORGANIZATION.match(principal)
    if principal_kind(principal) == "ANONYMOUS" and organization is None:
        raise InvalidArgument(
            "principal must be users/{user}, organizations/{organization}/api_keys/{api_key}, services/{service} "
            "or organizations/{organization}",
            {"principal": "not a principal"},
        )
    if organization is not None and organization_id not in ("", organization["id"]):
        raise InvalidArgument(
            "organization_id must be empty or the organisation the principal names",
            {"organization_id": "the organisation of principal"},
        )
    if not reason:
        raise InvalidArgument("reason is required", {"reason": "required"})
    now = app.clock()
    ended = 0
    async with app.transaction() as session:
        revocation = await store_log.append_revocation(
            session,
            kind=store_log.PRINCIPAL if organization is None else store_log.ORGANIZATION,
            now=now,
            expire_time=now + app.revocation_lifetime,
            reason=reason,
            principal=principal,
            organization_id=organization_id if organization is None else organization["id"],
            issued_before=principal_cutoff(now),
        )
        if organization is not None and end_sessions:
            for row in await store.organization_sessions(session, organization["id"], now):
                if await revoke_session(app, session, row, reason) is not None:
                    ended += 1
        if principal.startswith("users/"):
            user_id = principal.removeprefix("users/")
            if end_sessions:
                scope = organization_id or None
                for row in await store.open_sessions(session, user_id=user_id, now=now, organization_id=scope):
                    if await revoke_session(app, session, row, reason) is not None:
                        ended += 1
                if organization_id:
                    await store.forget_membership(session, user_id, organization_id)
    return PrincipalRevocation(revocation, ended)


_ORGANIZATION = re.compile(r"^organizations/(?P<id>[A-Za-z0-9_-]{1,64})$")
