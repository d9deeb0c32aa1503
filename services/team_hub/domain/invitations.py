"""Invitations: their tokens, their checks and their state machine.

    PENDING ──accept──► ACCEPTED
    PENDING ──revoke──► REVOKED
    PENDING ──expire_time passes──► EXPIRED

ACCEPTED, REVOKED and EXPIRED are terminal. A token is 32 random bytes in base64url
(43 characters), shown once; only its SHA-256 is stored. For an idempotent create (a
``request_id``), the token is instead derived with a key from configuration from a
random salt that is stored, so a retry can answer with the same token; the database
alone still does not reveal it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import hashlib
import hmac
import re
import secrets

from mesh.access import Role
from mesh.errors import ErrorReasons, FailedPrecondition, InvalidArgument, PermissionDenied, ResourceExhausted
from services.team_hub.domain import common, roles
from services.team_hub.names import TEAMS
from vocelio.team_hub.v1 import team_hub_errors_pb2

REASONS = ErrorReasons(team_hub_errors_pb2.ErrorReason)

DEFAULT_LIFETIME = datetime.timedelta(days=7)
MIN_LIFETIME = datetime.timedelta(hours=1)
MAX_LIFETIME = datetime.timedelta(days=30)
MAX_MESSAGE = 500
MAX_TEAMS = 50
MAX_PENDING = 100

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_KEY_PURPOSE = b"vocelio team_hub invitation token v1"


class InvitationState(enum.StrEnum):
    """Lifecycle state (``InvitationState`` without its prefix)."""

    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


@dataclasses.dataclass(frozen=True, slots=True)
class InvitationSpec:
    """A new invitation's caller-chosen part, validated."""

    email: str
    role: Role
    teams: tuple[str, ...]
    member_expire_time: datetime.datetime | None
    message: str
    expire_time: datetime.datetime


def new_token() -> str:
    """A fresh invitation token: 32 random bytes, base64url without padding."""
    return _b64(secrets.token_bytes(32))


def token_key(secret: str) -> bytes:
    """The key that derives tokens of idempotent invitations, from a configured secret."""
    return hmac.new(secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()


def derived_token(key: bytes, salt: str) -> str:
    """The token of an idempotent invitation: HMAC-SHA256(key, salt), base64url."""
    return _b64(hmac.new(key, salt.encode(), hashlib.sha256).digest())


def new_salt() -> str:
    """A random salt for :func:`derived_token`."""
    return secrets.token_hex(32)


def token_hash(token: str) -> str:
    """What is stored for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed_token(token: str) -> bool:
    """Whether a string has the shape of an invitation token (43 base64url characters)."""
    return bool(_TOKEN.match(token))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def effective_state(stored: InvitationState, expire_time: datetime.datetime, now: datetime.datetime) -> InvitationState:
    """The state a reader sees: a PENDING invitation past its expire_time is EXPIRED."""
    if stored is InvitationState.PENDING and expire_time <= now:
        return InvitationState.EXPIRED
    return stored


def unknown_team(name: str) -> InvalidArgument:
    """The one error for a team that is missing or in another organisation."""
    return InvalidArgument("unknown team", {"invitation.teams": f"no team {name}"})


def validate_new(
    actor: roles.Actor,
    *,
    organization_id: str,
    email: str,
    role: int,
    teams: list[str],
    member_expire_time: datetime.datetime | None,
    message: str,
    expire_time: datetime.datetime | None,
    now: datetime.datetime,
) -> InvitationSpec:
    """Check a CreateInvitation request for an invitation to ``organization_id``.

    Raises:
        InvalidArgument: a malformed field (named in the violations).
        PermissionDenied: the role is above the inviter's own.

    """
    address = common.email(email, "invitation.email")
    invited_role = roles.membership_role(role, "invitation.role")
    roles.check_grant(actor, invited_role)
    if expire_time is None:
        expire_time = now + DEFAULT_LIFETIME
    elif not now + MIN_LIFETIME <= expire_time <= now + MAX_LIFETIME:
        raise InvalidArgument(
            "invitation expiry out of range", {"invitation.expire_time": "between 1 hour and 30 days ahead"}
        )
    if invited_role is Role.GUEST and member_expire_time is not None and member_expire_time <= expire_time:
        # Otherwise the guest's access could end before they can accept.
        raise InvalidArgument(
            "guest access would end before the invitation expires",
            {"invitation.member_expire_time": "after the invitation's expire_time"},
        )
    roles.guest_expiry(invited_role, member_expire_time, now, "invitation.member_expire_time")
    text = message.strip()
    if len(text) > MAX_MESSAGE:
        raise InvalidArgument("message too long", {"invitation.message": f"at most {MAX_MESSAGE} characters"})
    if len(teams) > MAX_TEAMS:
        raise InvalidArgument("too many teams", {"invitation.teams": f"at most {MAX_TEAMS}"})
    team_ids: dict[str, None] = {}
    for team in teams:
        parsed = TEAMS.parse(team, field="invitation.teams")
        if parsed.organization != organization_id:
            raise unknown_team(team)
        team_ids[parsed["team"]] = None
    return InvitationSpec(address, invited_role, tuple(team_ids), member_expire_time, text, expire_time)


def check_capacity(*, max_members: int, members: int, pending: int) -> None:
    """Raise when another invitation would exceed the seats or the pending limit.

    Raises:
        ResourceExhausted: ``max_members`` seats (members plus pending invitations) are taken,
            or 100 invitations are pending.

    """
    if pending >= MAX_PENDING:
        raise ResourceExhausted(f"the organisation already has {MAX_PENDING} pending invitations")
    if max_members and members + pending >= max_members:
        raise ResourceExhausted(
            f"every seat is taken ({max_members} members and pending invitations); revoke one or raise max_members"
        )


def check_revoke(state: InvitationState) -> bool:
    """Whether revoking changes anything (``False``: already REVOKED).

    Raises:
        FailedPrecondition: ACCEPTED or EXPIRED.

    """
    if state is InvitationState.REVOKED:
        return False
    if state is not InvitationState.PENDING:
        raise FailedPrecondition(f"an {state.name} invitation cannot be revoked")
    return True


def check_redeem(state: InvitationState, *, accepted_by: str, user: str, invited_email: str, user_email: str) -> bool:
    """Check a redemption of an invitation by ``user`` (identity's sign-up).

    Returns:
        ``True`` to create the membership; ``False`` when this user redeemed it already
        (the same membership is answered again).

    Raises:
        FailedPrecondition: used by someone else, revoked or expired.
        PermissionDenied: the e-mail address is not the invited one.

    """
    if state is InvitationState.ACCEPTED:
        if accepted_by == user:
            return False
        raise FailedPrecondition("invitation already used")
    if state is InvitationState.EXPIRED:
        raise FailedPrecondition("invitation expired")
    if state is InvitationState.REVOKED:
        raise FailedPrecondition("invitation revoked")
    if user_email.strip().lower() != invited_email:
        raise PermissionDenied("the invitation was sent to another e-mail address")
    return True


def check_acceptor(*, invited_email: str, user_email: str, email_verified: bool) -> None:
    """Check that the signed-in caller may accept an invitation sent to ``invited_email``.

    Raises:
        PermissionDenied: the caller's e-mail address is another one.
        FailedPrecondition: it is the invited address but not verified (reason EMAIL_NOT_VERIFIED):
            holding the token proves nothing about the mailbox, since the inviter got the token.

    """
    if user_email.strip().lower() != invited_email:
        raise PermissionDenied("this invitation was sent to another e-mail address than your account's")
    if not email_verified:
        raise FailedPrecondition(
            "verify your account's e-mail address before accepting an invitation sent to it"
        ).with_reason(REASONS, team_hub_errors_pb2.ERROR_REASON_EMAIL_NOT_VERIFIED)


def acceptable(state: InvitationState, *, accepted_by: str, user: str) -> bool | None:
    """AcceptInvitation's view: ``True`` to accept, ``False`` already accepted by this user.

    ``None`` means the token must answer NOT_FOUND (revoked, expired, or accepted by
    someone else), so that it tells nothing about the invitation.
    """
    if state is InvitationState.PENDING:
        return True
    if state is InvitationState.ACCEPTED and accepted_by == user:
        return False
    return None


def guest_access_end(
    role: Role, member_expire_time: datetime.datetime | None, now: datetime.datetime
) -> datetime.datetime | None:
    """The expire_time of a membership created now from an invitation.

    Raises:
        FailedPrecondition: the guest access the invitation grants has already ended.

    """
    if role is not Role.GUEST:
        return None
    if member_expire_time is None or member_expire_time <= now:
        raise FailedPrecondition("the guest access this invitation grants has already ended")
    return min(member_expire_time, now + roles.GUEST_MAX_ACCESS)
