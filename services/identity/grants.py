"""IssueToken: the password and refresh_token grants (RFC 6749 §4.3, §6); client_credentials is in client_grants.

Failures that change state (a failed password check counts towards the account's delay; a reused
refresh token ends its session) are committed first and raised afterwards, so the
error never rolls the evidence back. No transaction is held open across a call to
another service or an argon2 computation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.access import Role
from mesh.errors import InvalidArgument
from mesh.kit.caller import CallerInfo
from mesh.kit.ids import new_id
from services.identity import audit, oauth, store
from services.identity.app import TRUSTED_ADDRESS_DAYS, Identity
from services.identity.client_grants import client_credentials_grant
from services.identity.domain import (
    Lockout,
    Membership,
    NoMembership,
    RefreshFacts,
    RefreshVerdict,
    UserState,
    choose_membership,
    judge_refresh,
    normalise_email,
)
from services.identity.models import Session, User
from services.identity.oauth import Grant, GrantRequest, OAuthError, RateLimited, TokenSubject
from services.identity.passwords import too_long
from services.identity.sessions import revoke_session


def refresh_token_hash(token: str) -> str:
    """The stored form of a refresh token: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    """A new refresh token: 32 random bytes, base64url."""
    return secrets.token_urlsafe(32)


async def issue_token(app: Identity, request: GrantRequest, info: CallerInfo) -> Grant:
    """Run the grant the request names.

    Raises:
        OAuthError: the grant failed (RFC 6749 §5.2 code as the reason).
        RateLimited: too many attempts.
        Unavailable: team_hub or developer_api could not be asked.

    """
    grant_type = oauth.check_grant_type(request.grant_type)
    await app.ready()
    if grant_type == oauth.GRANT_PASSWORD:
        return await password_grant(app, request, info)
    if grant_type == oauth.GRANT_REFRESH_TOKEN:
        return await refresh_grant(app, request, info)
    return await client_credentials_grant(app, request, info)


def lockout_of(user: User) -> Lockout:
    """The lockout facts stored on a user."""
    return Lockout(UserState(user.state), user.failed_sign_in_count, user.lock_count, user.locked_until)


def apply_lockout(user: User, lockout: Lockout) -> None:
    """Store lockout facts on a user."""
    user.state = lockout.state.value
    user.failed_sign_in_count = lockout.failed_count
    user.lock_count = lockout.lock_count
    user.locked_until = lockout.locked_until


def _check_address_rate(app: Identity, address: str) -> None:
    wait = app.address_limiter.take(address or "unknown")
    if wait:
        raise RateLimited(wait, "per_address")


async def check_account_delay(app: Identity, user_id: str, email: str, info: CallerInfo) -> None:
    """Refuse an attempt while the account's delay runs, unless the address signed in to it recently.

    The delay is kept by e-mail address, so it is the same for an unknown address as for a
    real account; unknown accounts ask the same question with no user (one query either way).

    Raises:
        RateLimited: the delay binds this caller (``per_account``, RetryInfo = time left).

    """
    wait = app.sign_in_throttle.wait_time(email)
    if not wait:
        return
    since = app.clock() - dt.timedelta(days=TRUSTED_ADDRESS_DAYS)
    async with app.transaction() as session:
        trusted = await store.signed_in_from(session, user_id, info.client_address, since)
    if not trusted:
        raise RateLimited(wait, "per_account")


async def password_grant(app: Identity, request: GrantRequest, info: CallerInfo) -> Grant:
    """The resource owner password credentials grant.

    A wrong password and an unknown e-mail address take the same time and leave the same
    trace in the caller's view: the same error, and the same per-account delay after
    repeated failures (see :class:`~services.identity.ratelimit.SignInThrottle`).
    """
    oauth.require(request.username, "username", oauth.GRANT_PASSWORD)
    oauth.require(request.password, "password", oauth.GRANT_PASSWORD)
    try:
        email = normalise_email(request.username, field="username")
    except InvalidArgument:
        raise OAuthError(oauth.INVALID_REQUEST, "username must be the account's e-mail address") from None
    _check_address_rate(app, info.client_address)
    if too_long(request.password):  # no account has such a password: a failed sign-in, never hashed
        raise OAuthError(oauth.INVALID_GRANT, oauth.BAD_CREDENTIALS)
    async with app.transaction() as session:
        user = await store.get_user_by_email(session, email)
    await check_account_delay(app, user.id if user is not None else "", email, info)
    if user is None:
        await _unknown_account(app, email, request.password, info)
    if not await app.passwords.verify(user.password_hash, request.password):
        await _wrong_password(app, user, info)
    if user.state == UserState.DISABLED:
        await _failed(app, user, info, "disabled")
        raise OAuthError(oauth.INVALID_GRANT, "the account is disabled")
    new_hash = await app.passwords.hash(request.password) if app.passwords.needs_rehash(user.password_hash) else None
    membership, memberships = await _membership_for(app, user, request.organization_id, info)
    scopes = _user_scopes(app, membership.role, request.scope, "")
    async with app.transaction() as session:
        row = await store.get_user(session, user.id, for_update=True)
        if row is None or row.state == UserState.DISABLED:  # disabled or deleted while we were checking
            raise OAuthError(oauth.INVALID_GRANT, "the account is disabled")
        apply_lockout(row, lockout_of(row).after_success())
        row.last_sign_in_time = app.clock()
        if new_hash is not None:
            row.password_hash = new_hash
        await _remember(app, session, row, membership, memberships)
        grant = await _open_session(app, session, row, membership, scopes, info)
    app.sign_in_throttle.success(email)
    return grant


async def _unknown_account(app: Identity, email: str, password: str, info: CallerInfo) -> NoReturn:
    await app.passwords.burn(password)
    app.sign_in_throttle.failure(email)
    async with app.transaction() as session:
        await app.record(
            session,
            action="SIGN_IN_FAILED",
            outcome=audit.FAILURE,
            actor=audit.ANONYMOUS,
            request=info,
            details={"failure": "unknown_user", "username": email},
        )
    raise OAuthError(oauth.INVALID_GRANT, oauth.BAD_CREDENTIALS)


async def _failed(app: Identity, user: User, info: CallerInfo, failure: str) -> None:
    async with app.transaction() as session:
        await app.record(
            session,
            action="SIGN_IN_FAILED",
            outcome=audit.FAILURE,
            actor=audit.user_actor(user.id, user.email),
            request=info,
            organization_id=user.home_organization_id,
            target=f"users/{user.id}",
            details={"failure": failure},
        )


async def _wrong_password(app: Identity, user: User, info: CallerInfo) -> NoReturn:
    """Count a failed password check (towards the account's delay), commit, then raise."""
    await record_wrong_password(app, user.id, user.email, info, via=oauth.GRANT_PASSWORD)
    raise OAuthError(oauth.INVALID_GRANT, oauth.BAD_CREDENTIALS)


async def record_wrong_password(app: Identity, user_id: str, email: str, info: CallerInfo, *, via: str) -> float:
    """Count a failed password check towards the account's delay and audit it; committed.

    Returns:
        The delay (seconds) the failure imposes on addresses that have not signed in to the account.

    """
    delay = app.sign_in_throttle.failure(email)
    async with app.transaction() as session:
        user = await store.get_user(session, user_id, for_update=True)
        if user is None:
            return delay
        apply_lockout(user, lockout_of(user).after_failure(app.clock()))
        actor = audit.user_actor(user.id, user.email)
        await app.record(
            session,
            action="SIGN_IN_FAILED",
            outcome=audit.FAILURE,
            actor=actor,
            request=info,
            organization_id=user.home_organization_id,
            target=f"users/{user.id}",
            details={"failure": "bad_password", "via": via},
        )
        if delay and app.sign_in_throttle.failures(email) == app.sign_in_throttle.free_failures + 1:
            await app.record(
                session,
                action="ACCOUNT_LOCKED",
                actor=actor,
                request=info,
                organization_id=user.home_organization_id,
                target=f"users/{user.id}",
                details={"failed_sign_ins": str(user.failed_sign_in_count), "delay_seconds": str(int(delay))},
            )
    return delay


async def _membership_for(
    app: Identity, user: User, requested: str, info: CallerInfo
) -> tuple[Membership, list[Membership]]:
    """The membership to issue the token for, and all of the user's (empty for platform admins)."""
    if user.platform_admin:
        return Membership(requested, Role.SUPER_ADMIN.name), []
    memberships = await app.directory.memberships(f"users/{user.id}")
    try:
        return choose_membership(memberships, requested, user.home_organization_id), memberships
    except NoMembership as error:
        await _failed(app, user, info, "no_membership")
        raise OAuthError(oauth.INVALID_GRANT, str(error)) from None


def _user_scopes(app: Identity, role: str, requested: str, session_scope: str) -> tuple[str, ...]:
    """The ``scope`` of a user token: ``()`` (the role decides), or narrowed at sign-in and kept by the session.

    A session's scope never outgrows the role the user holds now: after a demotion, what
    the new role no longer allows drops out, and if nothing is left the grant fails
    rather than widen to the whole role.
    """
    role_permissions = app.access.permissions(Role.parse(role))
    kept: tuple[str, ...] | None = None
    if session_scope:
        kept = oauth.split_scope(session_scope)
        if "*" not in role_permissions:
            kept = tuple(s for s in kept if s in role_permissions)
        if not kept:
            raise OAuthError(oauth.INVALID_SCOPE, "the role no longer allows the session's scope; sign in again")
    if requested:
        return oauth.narrow_scopes(
            requested, kept if kept is not None else role_permissions, app.access.all_permissions
        )
    return kept or ()


async def _remember(
    app: Identity, session: AsyncSession, user: User, membership: Membership, memberships: list[Membership]
) -> None:
    """Keep identity's copy of the user's organisations in step with what team_hub just said."""
    if user.platform_admin:
        return
    await store.remember_memberships(session, user.id, memberships, app.clock(), complete=True)
    if not user.home_organization_id:
        user.home_organization_id = membership.organization_id


async def _open_session(
    app: Identity,
    session: AsyncSession,
    user: User,
    membership: Membership,
    scopes: tuple[str, ...],
    info: CallerInfo,
) -> Grant:
    now = app.clock()
    row = await store.add_session(
        session,
        Session(
            id=new_id("s"),
            user_id=user.id,
            organization_id=membership.organization_id,
            grant_type=oauth.GRANT_PASSWORD,
            scope=" ".join(scopes),
            user_agent=info.user_agent[:512],
            client_address=info.client_address[:64],
            create_time=now,
            last_refresh_time=now,
            expire_time=now + dt.timedelta(seconds=app.settings.refresh_token_ttl),
        ),
    )
    sid = f"sessions/{row.id}"
    await app.record(
        session,
        action="SIGN_IN_SUCCEEDED",
        actor=audit.user_actor(user.id, user.email, membership.role, sid),
        request=info,
        organization_id=membership.organization_id,
        target=f"users/{user.id}",
        details={"grant_type": oauth.GRANT_PASSWORD},
    )
    return await _tokens(app, session, user, row, membership, scopes, now)


async def _tokens(
    app: Identity,
    session: AsyncSession,
    user: User,
    row: Session,
    membership: Membership,
    scopes: tuple[str, ...],
    now: dt.datetime,
) -> Grant:
    refresh = new_refresh_token()
    await store.add_refresh_token(session, refresh_token_hash(refresh), row.id, now, row.expire_time)
    who = TokenSubject(f"users/{user.id}", membership.organization_id, membership.role, scopes, f"sessions/{row.id}")
    issued = await app.mint(session, who)
    return Grant(
        access_token=issued.token,
        expires_in=issued.expires_in,
        organization_id=membership.organization_id,
        scopes=scopes,
        refresh_token=refresh,
        refresh_expires_in=max(0, int((row.expire_time - now).total_seconds())),
    )


_INVALID_REFRESH = "the refresh token is invalid, expired or revoked"
_REUSED_REFRESH = "the refresh token was already used, so the session has been revoked; sign in again"


async def refresh_grant(app: Identity, request: GrantRequest, info: CallerInfo) -> Grant:
    """The refresh_token grant: rotate the token, re-read role and organisation from team_hub."""
    token_hash = refresh_token_hash(oauth.require(request.refresh_token, "refresh_token", oauth.GRANT_REFRESH_TOKEN))
    user, family = await _presented_family(app, token_hash, info)
    membership, memberships = await _refresh_membership(app, user, family, request.organization_id)
    scopes = _user_scopes(app, membership.role, request.scope, family.scope)
    failure: OAuthError
    async with app.transaction() as session:
        current = await store.get_session(session, family.id)
        if current is None or not await store.spend_refresh_token(session, token_hash, app.clock()):
            # Someone exchanged the same token while team_hub was being asked.
            if current is not None:
                await _reuse_detected(app, session, current, info)
            failure = OAuthError(oauth.INVALID_GRANT, _REUSED_REFRESH)
        elif current.revoke_time is not None:
            failure = OAuthError(oauth.INVALID_GRANT, _INVALID_REFRESH)
        else:
            now = app.clock()
            current.organization_id = membership.organization_id
            current.last_refresh_time = now
            current.client_address = info.client_address[:64]
            await _remember(app, session, await store.get_user(session, user.id) or user, membership, memberships)
            return await _tokens(app, session, user, current, membership, scopes, now)
    raise failure


async def _presented_family(app: Identity, token_hash: str, info: CallerInfo) -> tuple[User, Session]:
    """The user and session of a presented refresh token; a reused token ends the session (committed, then raised)."""
    failure: OAuthError
    async with app.transaction() as session:
        found = await store.find_refresh_token(session, token_hash)
        if found is None:
            raise OAuthError(oauth.INVALID_GRANT, _INVALID_REFRESH)
        token, family = found
        facts = RefreshFacts(
            used=token.used_time is not None,
            token_expires=token.expire_time,
            session_revoked=family.revoke_time is not None,
            session_expires=family.expire_time,
        )
        verdict = judge_refresh(facts, app.clock())
        user = await store.get_user(session, family.user_id)
        if verdict is RefreshVerdict.VALID and user is not None and user.state != UserState.DISABLED:
            return user, family
        if verdict is RefreshVerdict.REUSED:
            await _reuse_detected(app, session, family, info)
            failure = OAuthError(oauth.INVALID_GRANT, _REUSED_REFRESH)
        else:
            failure = OAuthError(oauth.INVALID_GRANT, _INVALID_REFRESH)
    raise failure


async def _refresh_membership(
    app: Identity, user: User, family: Session, requested: str
) -> tuple[Membership, list[Membership]]:
    organization_id = requested or family.organization_id
    if user.platform_admin:
        return Membership(organization_id, Role.SUPER_ADMIN.name), []
    memberships = await app.directory.memberships(f"users/{user.id}")
    try:
        return choose_membership(memberships, organization_id, ""), memberships
    except NoMembership as error:
        if not requested:
            # The membership the session was for has ended: so has the session.
            async with app.transaction() as session:
                row = await store.get_session(session, family.id)
                if row is not None:
                    await revoke_session(app, session, row, "membership_ended")
        raise OAuthError(oauth.INVALID_GRANT, str(error)) from None


async def _reuse_detected(app: Identity, session: AsyncSession, family: Session, info: CallerInfo) -> None:
    await revoke_session(app, session, family, "refresh_token_reuse")
    await app.record(
        session,
        action="REFRESH_TOKEN_REUSE_DETECTED",
        outcome=audit.FAILURE,
        actor=audit.ANONYMOUS,
        request=info,
        organization_id=family.organization_id,
        target=f"sessions/{family.id}",
        details={"user": f"users/{family.user_id}"},
    )
