"""SignUp: a new user with a new organisation (or joining one through an invitation).

The user row is committed first, then team_hub creates the organisation and the ADMIN
membership (or redeems the invitation). If team_hub fails — or the call is cancelled —
the user is deleted again, so no account without an organisation is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy.exc import IntegrityError

from mesh.errors import AlreadyExists, InvalidArgument
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

_TAKEN = "an account with this e-mail address exists already; sign in instead"


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

    Raises:
        InvalidArgument: a bad field, or team_hub refused the organisation or invitation.
        AlreadyExists: the e-mail address has an account.
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
        if request_id:
            earlier = await store.get_user_by_signup_request(session, request_id)
            if earlier is not None and earlier.email == email:
                rows = await store.user_organizations(session, earlier.id)
                role = next((r.role for r in rows if r.organization_id == earlier.home_organization_id), "")
                return SignUpResult(earlier, earlier.home_organization_id, role)
            if earlier is not None:
                raise InvalidArgument(
                    "request_id was already used for another sign-up",
                    {"request_id": "already used with a different request"},
                )
        if await store.get_user_by_email(session, email) is not None:
            raise AlreadyExists(_TAKEN)
    password_hash = await app.passwords.hash(form.password)
    now = app.clock()
    user_id = new_id("u")
    user = User(
        id=user_id,
        email=email,
        password_hash=password_hash,
        display_name=display_name,
        email_verified=False,
        state=UserState.ACTIVE.value,
        password_update_time=now,
        signup_request_id=request_id or None,
        create_time=now,
        update_time=now,
        creator=f"users/{user_id}",
        last_modifier=f"users/{user_id}",
    )
    try:
        async with app.transaction() as session:
            await store.add_user(session, user)
    except IntegrityError:
        raise AlreadyExists(_TAKEN) from None
    try:
        membership = await _join(app, form, user, organization_name)
    except BaseException:
        await asyncio.shield(_undo(app, user_id))
        raise
    return await _finish(app, user_id, membership, bool(form.invitation_token), info)


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
