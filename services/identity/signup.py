"""SignUp: a new user with a new organisation (or joining one through an invitation).

The user row is committed first, then team_hub creates the organisation and the ADMIN
membership (or redeems the invitation). If team_hub fails — or the call is cancelled —
the user is deleted again, so no account without an organisation is left behind.

An address that has an account already is answered as if it were new (a decoy user and
organisation, never created) and its owner gets a notice: SignUp does not tell which
addresses are registered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import InvalidArgument
from mesh.kit.caller import CallerInfo
from mesh.kit.idempotency import request_id_problem
from mesh.kit.ids import new_id
from services.identity import audit, store
from services.identity.app import Identity
from services.identity.domain import (
    Membership,
    UserState,
    check_display_name,
    check_password_policy,
    derived_request_id,
    normalise_email,
)
from services.identity.models import User
from services.identity.oauth import RateLimited


def _request_id_reused() -> InvalidArgument:
    return InvalidArgument(
        "request_id was already used for another sign-up", {"request_id": "already used with a different request"}
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SignUpForm:
    """What SignUp is given."""

    email: str
    password: str = dataclasses.field(repr=False)
    display_name: str
    organization_display_name: str = ""
    invitation_token: str = dataclasses.field(default="", repr=False)
    terms_accepted: bool = False
    request_id: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class SignUpResult:
    """What SignUp answers."""

    user: User
    organization_id: str
    role: str


def _check(form: SignUpForm) -> tuple[str, str, str]:
    email = normalise_email(form.email)
    display_name = check_display_name(form.display_name)
    organization_name = ""
    if not form.invitation_token:
        organization_name = check_display_name(form.organization_display_name, field="organization_display_name")
    check_password_policy(form.password, email)
    if not form.terms_accepted:
        raise InvalidArgument("the terms of service must be accepted", {"terms_accepted": "must be true"})
    if (problem := request_id_problem(form.request_id)) is not None:
        raise InvalidArgument(f"request_id {problem}", {"request_id": problem})
    return email, display_name, organization_name


async def sign_up(app: Identity, form: SignUpForm, info: CallerInfo) -> SignUpResult:
    """Create the user and their organisation (or membership through the invitation).

    An address that has an account already gets the answer a new one would get (see
    :func:`_decoy`), after the same password hashing, so the answer does not tell whether
    the address is registered; the owner gets a notice instead.

    Raises:
        InvalidArgument: a bad field, or team_hub refused the organisation or invitation.
        RateLimited: too many attempts from the client address.
        Unavailable: team_hub could not be asked.

    """
    email, display_name, organization_name = _check(form)
    request_id = form.request_id.lower()
    await app.ready()
    wait = app.address_limiter.take(info.client_address or "unknown")
    if wait:
        raise RateLimited(wait, "per_address")
    async with app.transaction() as session:
        if request_id and (replay := await _replayed(app, session, request_id, email)) is not None:
            return replay
        owner = await store.get_user_by_email(session, email)
    password_hash = await app.passwords.hash(form.password)  # the same work whether or not the address is taken
    if owner is not None:
        return await _decoy(app, form, owner, email, display_name, request_id, info)
    now = app.clock()
    user_id = new_id("u")
    user = _new_user(user_id, email, display_name, password_hash, request_id, now)
    try:
        async with app.transaction() as session:
            await store.add_user(session, user)
    except IntegrityError:
        # Someone signed up with this address (or this request) at the same moment.
        async with app.transaction() as session:
            if request_id and (replay := await _replayed(app, session, request_id, email)) is not None:
                return replay
            owner = await store.get_user_by_email(session, email)
        if owner is None:
            raise
        return await _decoy(app, form, owner, email, display_name, request_id, info)
    try:
        membership = await _join(app, form, user, organization_name)
    except BaseException:
        await asyncio.shield(_undo(app, user_id))
        raise
    return await _finish(app, user_id, membership, bool(form.invitation_token), info)


def _new_user(
    user_id: str, email: str, display_name: str, password_hash: str, request_id: str, now: dt.datetime
) -> User:
    user = User(
        id=user_id,
        email=email,
        password_hash=password_hash,
        display_name=display_name,
        avatar_uri="",
        locale="",
        time_zone="",
        email_verified=False,
        state=UserState.ACTIVE.value,
        failed_sign_in_count=0,
        lock_count=0,
        disabled_reason="",
        platform_admin=False,
        home_organization_id="",
        password_update_time=now,
        signup_request_id=request_id or None,
        revision=1,
    )
    user.stamp_created(f"users/{user_id}", now)
    return user


async def _replayed(app: Identity, session: AsyncSession, request_id: str, email: str) -> SignUpResult | None:
    """The first answer to a retried sign-up (a real one from the database, or a decoy from memory).

    Raises:
        InvalidArgument: the request_id was used for a sign-up with another address.

    """
    earlier = await store.get_user_by_signup_request(session, request_id)
    if earlier is not None:
        if earlier.email != email:
            raise _request_id_reused()
        rows = await store.user_organizations(session, earlier.id)
        role = next((r.role for r in rows if r.organization_id == earlier.home_organization_id), "")
        return SignUpResult(earlier, earlier.home_organization_id, role)
    decoy = app.sign_up_decoys.get(request_id)
    if decoy is not None and decoy.user.email != email:
        raise _request_id_reused()
    return decoy


async def _decoy(
    app: Identity, form: SignUpForm, owner: User, email: str, display_name: str, request_id: str, info: CallerInfo
) -> SignUpResult:
    """The answer for an address that has an account: a user and an organisation that are never created.

    Shaped like a real answer (new ids, ADMIN of a new organisation, or the invited role after
    team_hub checked the invitation exactly as a redemption would), and remembered under
    the request_id so that a retry repeats it. The owner is told through the audit log
    (``SIGN_UP_WITH_EXISTING_EMAIL`` on their user), the notice an e-mail will carry once
    identity sends mail. What stays observable: signing in with the new password fails,
    as it must; only requiring a verified address before the first sign-in would hide that.
    """
    now = app.clock()
    user_id = new_id("u")
    user = _new_user(user_id, email, display_name, "", request_id, now)
    if form.invitation_token:
        membership = await app.directory.redeem_invitation(
            token=form.invitation_token,
            user=f"users/{user_id}",
            email=email,
            display_name=display_name,
            validate_only=True,
        )
    else:
        membership = Membership(new_id("org"), "ADMIN")
    user.home_organization_id = membership.organization_id
    user.revision = 2  # the real answer's row was updated once, after team_hub answered
    async with app.transaction() as session:
        await app.record(
            session,
            action="SIGN_UP_WITH_EXISTING_EMAIL",
            outcome=audit.FAILURE,
            actor=audit.ANONYMOUS,
            request=info,
            organization_id=owner.home_organization_id,
            target=f"users/{owner.id}",
            details={"via": "invitation" if form.invitation_token else "new_organization"},
        )
    result = SignUpResult(user, membership.organization_id, membership.role)
    if request_id:
        app.sign_up_decoys.remember(request_id, result)
    return result


async def _join(app: Identity, form: SignUpForm, user: User, organization_name: str) -> Membership:
    if form.invitation_token:
        return await app.directory.redeem_invitation(
            token=form.invitation_token, user=f"users/{user.id}", email=user.email, display_name=user.display_name
        )
    return await app.directory.provision_organization(
        user=f"users/{user.id}",
        email=user.email,
        display_name=user.display_name,
        organization_display_name=organization_name,
        request_id=derived_request_id("sign_up", user.id),
    )


async def _undo(app: Identity, user_id: str) -> None:
    async with app.transaction() as session:
        await store.delete_user(session, user_id)


async def _finish(app: Identity, user_id: str, membership: Membership, invited: bool, info: CallerInfo) -> SignUpResult:
    async with app.transaction() as session:
        user = await store.get_user(session, user_id, for_update=True)
        assert user is not None
        user.home_organization_id = membership.organization_id
        # An invitation proves nothing about the mailbox: its token went to the inviter, who may
        # have passed it on through any channel. Only a verification mail does.
        user.email_verified = False
        await store.remember_memberships(session, user_id, [membership], app.clock(), complete=False)
        await app.record(
            session,
            action="USER_SIGNED_UP",
            actor=audit.user_actor(user.id, user.email, membership.role),
            request=info,
            organization_id=membership.organization_id,
            target=f"users/{user.id}",
            details={"via": "invitation" if invited else "new_organization", "role": membership.role},
        )
    return SignUpResult(user, membership.organization_id, membership.role)
