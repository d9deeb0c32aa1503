"""Users: reading and listing them, profile changes, passwords, and the DISABLED / LOCKED states.

Who may see whom: a user sees themselves and the users who share their organisation
(as identity learnt it from team_hub, see ``store.remember_memberships``); SUPER_ADMIN and
services see everyone. Anyone else is NOT_FOUND, like a user that does not exist.
"""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from mesh.kit import etags, paging, tenancy
from mesh.kit.caller import CallerInfo
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.idempotency import Claim
from mesh.kit.names import ResourceName
from mesh.principal import Principal, PrincipalKind
from services.identity import audit, convert, oauth, store
from services.identity.app import Identity
from services.identity.domain import (
    Membership,
    UserState,
    check_display_name,
    check_password_policy,
    normalise_password,
    principal_cutoff,
)
from services.identity.grants import apply_lockout, check_account_delay, lockout_of, record_wrong_password
from services.identity.models import User
from services.identity.sessions import is_admin_of, revoke_session
from services.identity.store_log import PRINCIPAL, append_revocation
from vocelio.identity.v1 import identity_service_pb2

ClaimOf = Callable[[AsyncSession], Awaitable[Claim[identity_service_pb2.ChangePasswordResponse]]]
PROFILE_FIELDS = ("display_name", "avatar_uri", "locale", "time_zone")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
# Users are platform-global; a list of them is of the members of one organisation, named as its parent.
MEMBERS_OF = ResourceName.from_pattern("organizations/{organization}/users/{user}", "vocelio.com/User")
USER_FILTERS: FilterSchema = {
    "state": FilterField.enum(User.state, {state.value: state.value for state in UserState}, prefix="USER_STATE_"),
    "email": FilterField(Kind.STRING, User.email, contains=True),
    "email_verified": FilterField(Kind.BOOLEAN, User.email_verified),
}


def user_id_of(principal: Principal, name: str) -> str:
    """The user id a name refers to (``users/me`` is the caller).

    Raises:
        InvalidArgument: not a user name.
        PermissionDenied: ``users/me`` from a caller that is not a user.

    """
    if name == "users/me":
        if principal.kind is not PrincipalKind.USER:
            raise PermissionDenied("users/me is only for users; API keys and services have no user")
        return principal.subject.removeprefix("users/")
    user_id = name.removeprefix("users/")
    if not name.startswith("users/") or not user_id or "/" in user_id:
        raise InvalidArgument("name must be users/{user} or users/me", {"name": "users/{user} or users/me"})
    return user_id


async def can_see(session: AsyncSession, principal: Principal, user_id: str) -> bool:
    """Whether the caller may know that this user exists."""
    if principal.subject == f"users/{user_id}" or principal.is_platform_admin:
        return True
    return bool(principal.organization_id) and await store.is_member(session, user_id, principal.organization_id)


async def can_manage(session: AsyncSession, principal: Principal, user_id: str) -> bool:
    """Whether the caller may change this user: themselves, an ADMIN of a shared organisation, SUPER_ADMIN."""
    if principal.subject == f"users/{user_id}" or principal.is_platform_admin:
        return True
    return is_admin_of(principal, principal.organization_id) and await store.is_member(
        session, user_id, principal.organization_id
    )


async def visible_user(session: AsyncSession, principal: Principal, name: str, *, for_update: bool = False) -> User:
    """The user a name refers to, if the caller may see it.

    Raises:
        NotFound: no such user, or one the caller may not see.

    """
    user_id = user_id_of(principal, name)
    user = await store.get_user(session, user_id, for_update=for_update)
    if user is None or not await can_see(session, principal, user_id):
        raise tenancy.not_found(f"users/{user_id}")
    return user


async def get_user(app: Identity, principal: Principal, name: str) -> User:
    """One user."""
    async with app.transaction() as session:
        return await visible_user(session, principal, name)


@dataclasses.dataclass(frozen=True, slots=True)
class CurrentUser:
    """The calling user with their memberships."""

    user: User
    memberships: Sequence[Membership]


async def current_user(app: Identity, principal: Principal) -> CurrentUser:
    """The calling user and every organisation they are an active member of.

    The memberships come from team_hub; while it does not answer, from what identity
    learnt last.
    """
    user_id = user_id_of(principal, "users/me")
    async with app.transaction() as session:
        user = await store.get_user(session, user_id)
    if user is None:
        raise tenancy.not_found(f"users/{user_id}")
    try:
        memberships = await app.directory.memberships(principal.subject)
    except Unavailable:
        async with app.transaction() as session:
            rows = await store.user_organizations(session, user_id)
        return CurrentUser(user, [Membership(r.organization_id, r.role, r.member) for r in rows])
    async with app.transaction() as session:
        await store.remember_memberships(session, user_id, memberships, app.clock(), complete=True)
    return CurrentUser(user, memberships)


async def list_users(
    app: Identity, principal: Principal, request: identity_service_pb2.ListUsersRequest
) -> tuple[list[User], str]:
    """Members of an organisation by display name (platform principals: of any, or every user with ``-``)."""
    scope = tenancy.list_scope(principal, MEMBERS_OF.parse_parent(request.parent).organization)
    condition = compile_filter(request.filter, USER_FILTERS)
    binding = paging.query_binding(request, scope.binding())
    after = app.page_tokens.decode_optional(request.page_token, binding)
    async with app.transaction() as session:
        page: paging.Page[User] = await paging.keyset_page(
            session,
            store.users_query(organization_id=scope.organization_id, condition=condition),
            keys=[User.display_name, User.id],
            after=None if after is None else paging.position_shape(after, str, str),
            limit=paging.page_size(request.page_size),
            position_of=lambda row: (row.display_name, row.id),
            descending=False,
        )
    token = "" if page.next_after is None else app.page_tokens.encode(page.next_after, binding)
    return list(page.items), token


@dataclasses.dataclass(frozen=True, slots=True)
class ProfileChange:
    """An UpdateUser request: the new values and which of them to apply."""

    name: str
    values: dict[str, str]
    mask: tuple[str, ...]
    etag: str = ""


def _check_profile(field: str, value: str) -> str:
    if field == "display_name":
        return check_display_name(value)
    if field == "avatar_uri" and value and not (value.startswith("https://") and len(value) <= 2048):
        raise InvalidArgument("avatar_uri must be an https URL", {"avatar_uri": "https://… up to 2048 characters"})
    if field == "locale" and value and not _LOCALE.match(value):
        raise InvalidArgument("locale must be a BCP-47 tag such as en-US", {"locale": "a BCP-47 tag"})
    if field == "time_zone" and value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(
                "time_zone must be an IANA zone such as Europe/Paris", {"time_zone": "IANA"}
            ) from None
    return value


async def update_user(app: Identity, principal: Principal, change: ProfileChange) -> User:
    """Change profile fields of the caller or (ADMIN) of a member of their organisation."""
    mask: tuple[str, ...]
    if change.mask == ("*",):
        mask = PROFILE_FIELDS
    elif not change.mask:  # AIP-134: no mask means the fields that were given
        mask = tuple(f for f in PROFILE_FIELDS if change.values.get(f))
    else:
        mask = change.mask
    unknown = [f for f in mask if f not in PROFILE_FIELDS]
    if unknown:
        raise InvalidArgument(
            f"update_mask names fields that cannot be changed: {', '.join(unknown)}",
            {"update_mask": f"only {', '.join(PROFILE_FIELDS)}"},
        )
    values = {field: _check_profile(field, change.values.get(field, "")) for field in mask}
    async with app.transaction() as session:
        user = await visible_user(session, principal, change.name, for_update=True)
        if not await can_manage(session, principal, user.id):
            raise PermissionDenied("only the user or an ADMIN of their organisation may change the user")
        etags.check_etag(change.etag, convert.user_etag(user), what="the user")
        for field, value in values.items():
            setattr(user, field, value)
        if values:
            user.stamp_changed(principal.subject, app.clock())
        return user


async def _replayed_password_change(
    app: Identity, claim_of: ClaimOf
) -> identity_service_pb2.ChangePasswordResponse | None:
    """The first answer to a retried ChangePassword, looked up before its (now stale) current password is checked."""
    async with app.database.sessions() as session:
        claim = await claim_of(session)
        await session.rollback()  # a look only: the request is claimed in the transaction that makes the change
    return claim.replay


async def change_password(
    app: Identity, principal: Principal, request: identity_service_pb2.ChangePasswordRequest, info: CallerInfo
) -> identity_service_pb2.ChangePasswordResponse:
    """Set a new password after checking the current one; ends the caller's other sessions.

    A retry with the same request_id answers the first result: its current password no
    longer works, so the replay is looked up first. The request is fingerprinted without
    its passwords, so no hash of a password is kept outside the user row.
    """
    user_id = user_id_of(principal, "users/me")
    current, new = request.current_password, request.new_password
    if not current:
        raise InvalidArgument("current_password is required", {"current_password": "required"})
    fingerprinted = identity_service_pb2.ChangePasswordRequest(request_id=request.request_id)

    async def claim_of(session: AsyncSession) -> Claim[identity_service_pb2.ChangePasswordResponse]:
        return await app.idempotency.claim(
            session,
            method="ChangePassword",
            organization_id=principal.organization_id,
            principal=principal.subject,
            request=fingerprinted,
            response_type=identity_service_pb2.ChangePasswordResponse,
        )

    if request.request_id and (replay := await _replayed_password_change(app, claim_of)) is not None:
        return replay
    async with app.transaction() as session:
        user = await store.get_user(session, user_id)
    if user is None:
        raise tenancy.not_found(f"users/{user_id}")
    check_password_policy(new, user.email, field="new_password")
    await check_account_delay(app, user.id, user.email, info)
    if not await app.passwords.verify(user.password_hash, current):
        await record_wrong_password(app, user_id, user.email, info, via="change_password")
        raise oauth.OAuthError(oauth.INVALID_GRANT, "the current password is wrong")
    if normalise_password(new) == normalise_password(current):
        raise InvalidArgument("the new password must differ from the current one", {"new_password": "unchanged"})
    new_hash = await app.passwords.hash(new)
    ended = 0
    async with app.transaction() as session:
        claim = await claim_of(session)
        if claim.replay is not None:  # the same request finished while this one checked the password
            return claim.replay
        row = await store.get_user(session, user_id, for_update=True)
        assert row is not None
        now = app.clock()
        row.password_hash, row.password_update_time = new_hash, now
        row.stamp_changed(principal.subject, now)
        keep = principal.session_id.removeprefix("sessions/")
        for other in await store.open_sessions(session, user_id=user_id, now=now):
            if other.id != keep and await revoke_session(app, session, other, "password_changed") is not None:
                ended += 1
        await app.record(
            session,
            action="PASSWORD_CHANGED",
            actor=audit.actor_of(principal, row.email),
            request=info,
            organization_id=principal.organization_id,
            target=f"users/{user_id}",
            details={"sessions_ended": str(ended)},
        )
        response = identity_service_pb2.ChangePasswordResponse(revoked_session_count=ended)
        await claim.complete(session, response)
    return response


async def _platform_user(session: AsyncSession, principal: Principal, name: str) -> User:
    user = await visible_user(session, principal, name, for_update=True)
    if not principal.is_platform_admin:
        raise PermissionDenied(
            "only SUPER_ADMIN may disable or enable users; organisation admins remove members in team_hub"
        )
    return user


async def disable_user(app: Identity, principal: Principal, name: str, reason: str, info: CallerInfo) -> User:
    """DISABLE a user platform-wide: every grant fails, every session and token is revoked."""
    async with app.transaction() as session:
        user = await _platform_user(session, principal, name)
        if principal.subject == f"users/{user.id}":
            raise FailedPrecondition("you cannot disable yourself")
        if user.state == UserState.DISABLED:
            return user
        now = app.clock()
        user.state, user.disabled_reason = UserState.DISABLED.value, reason[:500]
        user.locked_until = None
        user.stamp_changed(principal.subject, now)
        for row in await store.open_sessions(session, user_id=user.id, now=now):
            await revoke_session(app, session, row, "user_disabled")
        await append_revocation(
            session,
            kind=PRINCIPAL,
            now=now,
            expire_time=now + app.revocation_lifetime,
            reason="user_disabled",
            principal=f"users/{user.id}",
            issued_before=principal_cutoff(now),
        )
        await _audit_state(app, session, principal, user, "USER_DISABLED", info, {"reason": reason[:500]})
        return user


async def enable_user(app: Identity, principal: Principal, name: str, info: CallerInfo) -> User:
    """Return a DISABLED user to ACTIVE (a user in another state is returned unchanged)."""
    async with app.transaction() as session:
        user = await _platform_user(session, principal, name)
        if user.state != UserState.DISABLED:
            return user
        user.state, user.disabled_reason, user.failed_sign_in_count, user.lock_count = "ACTIVE", "", 0, 0
        user.stamp_changed(principal.subject, app.clock())
        await _audit_state(app, session, principal, user, "USER_ENABLED", info)
        return user


async def unlock_user(app: Identity, principal: Principal, name: str, info: CallerInfo) -> User:
    """Lift a sign-in delay early (ADMIN of a shared organisation, or SUPER_ADMIN).

    The delay is kept per identity process (``ratelimit.SignInThrottle``): with several
    processes, the unlock clears it in the process that answers.
    """
    async with app.transaction() as session:
        user = await visible_user(session, principal, name, for_update=True)
        if not await can_manage(session, principal, user.id) or principal.subject == f"users/{user.id}":
            raise PermissionDenied("only an ADMIN of the user's organisation or SUPER_ADMIN may unlock a user")
        delayed = app.sign_in_throttle.clear(user.email)
        if not delayed and not lockout_of(user).is_locked(app.clock()):
            raise FailedPrecondition("the user is not locked: no sign-in delay is in force")
        apply_lockout(user, lockout_of(user).unlocked())
        user.stamp_changed(principal.subject, app.clock())
        await _audit_state(app, session, principal, user, "ACCOUNT_UNLOCKED", info)
        return user


async def _audit_state(
    app: Identity,
    session: AsyncSession,
    principal: Principal,
    user: User,
    action: str,
    info: CallerInfo,
    details: dict[str, str] | None = None,
) -> None:
    await app.record(
        session,
        action=action,
        actor=audit.actor_of(principal),
        request=info,
        organization_id=principal.organization_id or user.home_organization_id,
        target=f"users/{user.id}",
        details=details,
    )
