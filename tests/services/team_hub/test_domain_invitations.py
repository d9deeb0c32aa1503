"""Invitations: tokens, checks, the state machine and expiry."""

from __future__ import annotations

import datetime

import pytest

from mesh.access import Role
from mesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied, ResourceExhausted
from services.team_hub.domain import invitations, roles
from services.team_hub.domain.invitations import InvitationState

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
ADMIN = roles.Actor("users/u_admin", Role.ADMIN)
MANAGER = roles.Actor("users/u_manager", Role.MANAGER)


def new(actor: roles.Actor = ADMIN, **overrides: object) -> invitations.InvitationSpec:
    values: dict[str, object] = {
        "email": "Bob@Example.com",
        "role": int(Role.AGENT),
        "organization_id": "acme",
        "teams": [],
        "member_expire_time": None,
        "message": "",
        "expire_time": None,
        "now": NOW,
    }
    values.update(overrides)
    return invitations.validate_new(actor, **values)  # type: ignore[arg-type]


def test_tokens_are_random_43_characters_and_stored_hashed() -> None:
    token = invitations.new_token()
    assert len(token) == 43
    assert invitations.well_formed_token(token)
    assert token != invitations.new_token()
    digest = invitations.token_hash(token)
    assert len(digest) == 64
    assert token not in digest
    assert not invitations.well_formed_token(token + "x")
    assert not invitations.well_formed_token("a" * 42 + "=")


def test_derived_tokens_repeat_only_with_the_same_key_and_salt() -> None:
    key = invitations.token_key("secret")
    salt = invitations.new_salt()
    token = invitations.derived_token(key, salt)
    assert invitations.well_formed_token(token)
    assert token == invitations.derived_token(key, salt)
    assert token != invitations.derived_token(invitations.token_key("other"), salt)
    assert token != invitations.derived_token(key, invitations.new_salt())


def test_defaults_lower_case_address_and_seven_days() -> None:
    spec = new()
    assert spec.email == "bob@example.com"
    assert spec.role is Role.AGENT
    assert spec.expire_time == NOW + datetime.timedelta(days=7)


def test_invitation_expiry_bounds() -> None:
    assert new(expire_time=NOW + datetime.timedelta(hours=1)).expire_time == NOW + datetime.timedelta(hours=1)
    assert new(expire_time=NOW + datetime.timedelta(days=30)).expire_time == NOW + datetime.timedelta(days=30)
    for bad in (NOW + datetime.timedelta(minutes=59), NOW + datetime.timedelta(days=31), NOW):
        with pytest.raises(InvalidArgument, match="expiry"):
            new(expire_time=bad)


def test_cannot_invite_above_own_role_nor_as_super_admin() -> None:
    new(MANAGER, role=int(Role.MANAGER))
    with pytest.raises(PermissionDenied, match="above your own role"):
        new(MANAGER, role=int(Role.ADMIN))
    with pytest.raises(InvalidArgument, match="SUPER_ADMIN"):
        new(roles.Actor("services/identity", Role.SUPER_ADMIN), role=int(Role.SUPER_ADMIN))


def test_guest_invitations_need_an_access_end() -> None:
    end = NOW + datetime.timedelta(days=20)
    assert new(role=int(Role.GUEST), member_expire_time=end).member_expire_time == end
    with pytest.raises(InvalidArgument, match="GUEST access needs an end"):
        new(role=int(Role.GUEST))
    with pytest.raises(InvalidArgument, match="before the invitation expires"):
        new(role=int(Role.GUEST), member_expire_time=NOW + datetime.timedelta(days=2))
    with pytest.raises(InvalidArgument, match="only GUEST"):
        new(member_expire_time=end)


def test_other_fields() -> None:
    assert new(teams=["organizations/acme/teams/a1b2", "organizations/acme/teams/a1b2"]).teams == ("a1b2",)
    with pytest.raises(InvalidArgument):
        new(teams=["organizations/acme/members/x"])
    with pytest.raises(InvalidArgument):
        new(teams=["teams/a1b2"])
    # Another organisation's team is unknown, in the words a missing team gets.
    with pytest.raises(InvalidArgument, match="unknown team") as foreign:
        new(teams=["organizations/globex/teams/a1b2"])
    assert (
        foreign.value.field_violations == invitations.unknown_team("organizations/globex/teams/a1b2").field_violations
    )
    with pytest.raises(InvalidArgument, match="message"):
        new(message="x" * 501)
    with pytest.raises(InvalidArgument):
        new(email="")


def test_capacity() -> None:
    invitations.check_capacity(max_members=0, members=500, pending=99)
    invitations.check_capacity(max_members=5, members=3, pending=1)
    with pytest.raises(ResourceExhausted, match="seat"):
        invitations.check_capacity(max_members=5, members=3, pending=2)
    with pytest.raises(ResourceExhausted, match="100 pending"):
        invitations.check_capacity(max_members=0, members=0, pending=100)


@pytest.mark.parametrize(
    ("stored", "expires_in", "seen"),
    [
        (InvitationState.PENDING, datetime.timedelta(seconds=1), InvitationState.PENDING),
        (InvitationState.PENDING, datetime.timedelta(0), InvitationState.EXPIRED),
        (InvitationState.PENDING, -datetime.timedelta(days=1), InvitationState.EXPIRED),
        (InvitationState.ACCEPTED, -datetime.timedelta(days=1), InvitationState.ACCEPTED),
        (InvitationState.REVOKED, -datetime.timedelta(days=1), InvitationState.REVOKED),
        (InvitationState.EXPIRED, datetime.timedelta(days=1), InvitationState.EXPIRED),
    ],
)
def test_expiry_follows_the_clock(
    stored: InvitationState, expires_in: datetime.timedelta, seen: InvitationState
) -> None:
    assert invitations.effective_state(stored, NOW + expires_in, NOW) is seen


def test_revoke_transitions() -> None:
    assert invitations.check_revoke(InvitationState.PENDING) is True
    assert invitations.check_revoke(InvitationState.REVOKED) is False
    for state in (InvitationState.ACCEPTED, InvitationState.EXPIRED):
        with pytest.raises(FailedPrecondition, match="cannot be revoked"):
            invitations.check_revoke(state)


def redeem(
    state: InvitationState, *, accepted_by: str = "", user: str = "users/u_new", email: str = "bob@x.io"
) -> bool:
    return invitations.check_redeem(
        state, accepted_by=accepted_by, user=user, invited_email="bob@x.io", user_email=email
    )


def test_redeem_is_single_use() -> None:
    assert redeem(InvitationState.PENDING, email=" BOB@x.io") is True
    assert redeem(InvitationState.ACCEPTED, accepted_by="users/u_new") is False
    with pytest.raises(FailedPrecondition, match="invitation already used"):
        redeem(InvitationState.ACCEPTED, accepted_by="users/u_other")
    with pytest.raises(FailedPrecondition, match="invitation expired"):
        redeem(InvitationState.EXPIRED)
    with pytest.raises(FailedPrecondition, match="revoked"):
        redeem(InvitationState.REVOKED)
    with pytest.raises(PermissionDenied, match="another e-mail"):
        redeem(InvitationState.PENDING, email="eve@x.io")


def test_accept_tells_nothing_about_unusable_tokens() -> None:
    assert invitations.acceptable(InvitationState.PENDING, accepted_by="", user="users/u1") is True
    assert invitations.acceptable(InvitationState.ACCEPTED, accepted_by="users/u1", user="users/u1") is False
    for state in (InvitationState.ACCEPTED, InvitationState.REVOKED, InvitationState.EXPIRED):
        assert invitations.acceptable(state, accepted_by="users/u2", user="users/u1") is None


def test_guest_access_end_on_acceptance() -> None:
    assert invitations.guest_access_end(Role.AGENT, None, NOW) is None
    end = NOW + datetime.timedelta(days=10)
    assert invitations.guest_access_end(Role.GUEST, end, NOW) == end
    far = NOW + datetime.timedelta(days=120)
    assert invitations.guest_access_end(Role.GUEST, far, NOW) == NOW + datetime.timedelta(days=90)
    with pytest.raises(FailedPrecondition, match="already ended"):
        invitations.guest_access_end(Role.GUEST, NOW, NOW)
