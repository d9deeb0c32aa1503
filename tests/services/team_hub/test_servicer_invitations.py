"""Invitations over a real server: tokens shown once, single use, expiry, acceptance and sign-up."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.team_hub.models import Invitation
from tests.services.team_hub.conftest import ADMIN, AGENT, MANAGER, VIEWER, Harness, claims_of, pb
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import invitation_pb2

Code = grpc.StatusCode


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(info)
    return info


async def acme(h: Harness):
    await h.provision("acme", "users/alice")
    return h.as_user("users/alice", "acme", "ADMIN")


def invite(
    email: str, role: int = AGENT, request_id: str = "", parent: str = "organizations/acme", **fields
) -> pb.CreateInvitationRequest:
    return pb.CreateInvitationRequest(
        parent=parent, invitation={"email": email, "role": role, **fields}, request_id=request_id
    )


def redeem(token: str, user: str, email: str) -> pb.RedeemInvitationRequest:
    return pb.RedeemInvitationRequest(invitation_token=token, user=user, email=email, display_name="New Person")


async def expect(code: grpc.StatusCode, call, request, contains: str = "") -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == code, raised.value.details()
    assert contains in (raised.value.details() or "")


async def expire(h: Harness, invitation_name: str) -> None:
    _, organization_id, _, invitation_id = invitation_name.split("/")
    async with h.host.database.sessions.begin() as session:
        await session.execute(
            sa.update(Invitation)
            .where(Invitation.organization_id == organization_id, Invitation.id == invitation_id)
            .values(expire_time=datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1))
        )


async def test_the_token_is_shown_once_and_stored_hashed(any_backend: Harness):
    alice = await acme(any_backend)
    created = await alice.CreateInvitation(invite("Bob@Acme.example", message="Welcome!"))
    token = created.invitation_token
    assert len(token) == 43
    invitation = created.invitation
    assert invitation.name.startswith("organizations/acme/invitations/inv_")
    assert invitation.email == "bob@acme.example"
    assert invitation.state == invitation_pb2.INVITATION_STATE_PENDING
    assert invitation.inviter == "users/alice"
    lifetime = invitation.expire_time.ToDatetime() - invitation.audit.create_time.ToDatetime()
    assert lifetime == datetime.timedelta(days=7)
    fetched = await alice.GetInvitation(pb.GetInvitationRequest(name=invitation.name))
    listed = await alice.ListInvitations(pb.ListInvitationsRequest(parent=alice.parent))
    assert token not in str(fetched) + str(listed)
    async with any_backend.host.database.engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM invitations"))).all()
    assert token not in repr(rows)
    [event] = [e for e in any_backend.identity.audit if e.request.audit_event.target == invitation.name]
    assert event.request.audit_event.action == audit_event_pb2.AUDIT_ACTION_INVITATION_CREATED
    assert dict(event.request.audit_event.details) == {"email": "bob@acme.example", "role": "AGENT"}
    assert token not in str(event.request)


async def test_sign_up_redeems_an_invitation_once(any_backend: Harness):
    alice = await acme(any_backend)
    created = await alice.CreateInvitation(invite("bob@acme.example", MANAGER))
    token = created.invitation_token
    first = await any_backend.service.RedeemInvitation(redeem(token, "users/bob", "BOB@acme.example"))
    assert first.membership.role == MANAGER
    assert first.membership.user == "users/bob"
    assert first.membership.invitation == created.invitation.name
    assert first.invitation.state == invitation_pb2.INVITATION_STATE_ACCEPTED
    assert first.invitation.accepted_by == "users/bob"
    assert first.invitation.membership == first.membership.name
    again = await any_backend.service.RedeemInvitation(redeem(token, "users/bob", "bob@acme.example"))
    assert again.membership.name == first.membership.name  # identity retried its sign-up
    await expect(
        Code.FAILED_PRECONDITION,
        any_backend.service.RedeemInvitation,
        redeem(token, "users/eve", "bob@acme.example"),
        "invitation already used",
    )
    memberships = await any_backend.service.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/bob"))
    assert [(m.organization.organization_id, m.membership.role) for m in memberships.user_memberships] == [
        ("acme", MANAGER)
    ]


async def test_validate_only_checks_a_redemption_without_making_it(any_backend: Harness):
    alice = await acme(any_backend)
    created = await alice.CreateInvitation(invite("bob@acme.example", MANAGER))
    check = redeem(created.invitation_token, "users/bob", "bob@acme.example")
    check.validate_only = True
    preview = await any_backend.service.RedeemInvitation(check)
    assert (preview.membership.organization_id, preview.membership.role, preview.membership.name) == (
        "acme",
        MANAGER,
        "",
    )
    assert preview.invitation.state == invitation_pb2.INVITATION_STATE_PENDING
    memberships = await any_backend.service.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/bob"))
    assert list(memberships.user_memberships) == []
    # Checked like a redemption: another address is refused the same way.
    wrong = redeem(created.invitation_token, "users/eve", "eve@evil.example")
    wrong.validate_only = True
    await expect(Code.PERMISSION_DENIED, any_backend.service.RedeemInvitation, wrong)
    # ... and the token still works afterwards.
    first = await any_backend.service.RedeemInvitation(
        redeem(created.invitation_token, "users/bob", "bob@acme.example")
    )
    assert first.invitation.state == invitation_pb2.INVITATION_STATE_ACCEPTED


async def test_expired_revoked_and_mismatched_invitations_are_refused(harness: Harness):
    alice = await acme(harness)
    expired = await alice.CreateInvitation(invite("late@acme.example"))
    await expire(harness, expired.invitation.name)
    await expect(
        Code.FAILED_PRECONDITION,
        harness.service.RedeemInvitation,
        redeem(expired.invitation_token, "users/late", "late@acme.example"),
        "invitation expired",
    )
    seen = await alice.GetInvitation(pb.GetInvitationRequest(name=expired.invitation.name))
    assert seen.invitation.state == invitation_pb2.INVITATION_STATE_EXPIRED
    # The address may be invited again once the old invitation has expired.
    await alice.CreateInvitation(invite("late@acme.example"))
    revoked = await alice.CreateInvitation(invite("gone@acme.example"))
    result = await alice.RevokeInvitation(pb.RevokeInvitationRequest(name=revoked.invitation.name))
    assert result.invitation.state == invitation_pb2.INVITATION_STATE_REVOKED
    assert result.invitation.HasField("revoke_time")
    await alice.RevokeInvitation(pb.RevokeInvitationRequest(name=revoked.invitation.name))  # a retry
    await expect(
        Code.FAILED_PRECONDITION,
        harness.service.RedeemInvitation,
        redeem(revoked.invitation_token, "users/gone", "gone@acme.example"),
        "revoked",
    )
    await expect(
        Code.FAILED_PRECONDITION, alice.RevokeInvitation, pb.RevokeInvitationRequest(name=expired.invitation.name)
    )
    other = await alice.CreateInvitation(invite("carol@acme.example"))
    await expect(
        Code.PERMISSION_DENIED,
        harness.service.RedeemInvitation,
        redeem(other.invitation_token, "users/eve", "eve@evil.example"),
    )
    await expect(Code.NOT_FOUND, harness.service.RedeemInvitation, redeem("A" * 43, "users/eve", "eve@evil.example"))
    assert audit_event_pb2.AUDIT_ACTION_INVITATION_REVOKED in harness.identity.actions()


async def test_a_signed_in_user_accepts_with_their_own_email(harness: Harness):
    alice = await acme(harness)
    await harness.provision("globex", "users/dan")
    harness.identity.users["users/dan"] = ("Dan@globex.example", "Dan")
    harness.identity.users["users/eve"] = ("eve@evil.example", "Eve")
    created = await alice.CreateInvitation(invite("dan@globex.example", VIEWER))
    dan = harness.as_user("users/dan", "globex", "ADMIN")
    eve = harness.as_user("users/eve", "evil", "ADMIN")
    request = pb.AcceptInvitationRequest(invitation_token=created.invitation_token)
    await expect(Code.PERMISSION_DENIED, eve.AcceptInvitation, request, "another e-mail address")
    accepted = await dan.AcceptInvitation(request)
    assert accepted.membership.organization_id == "acme"
    assert accepted.membership.role == VIEWER
    assert accepted.membership.email == "dan@globex.example"
    assert accepted.invitation.state == invitation_pb2.INVITATION_STATE_ACCEPTED
    # The e-mail was read with dan's own credential.
    assert claims_of(harness.identity.user_reads[-1].metadata)["sub"] == "users/dan"
    again = await dan.AcceptInvitation(request)
    assert again.membership.name == accepted.membership.name
    # Used by someone else, unknown, revoked or expired: all the same NOT_FOUND.
    await expect(Code.NOT_FOUND, eve.AcceptInvitation, request)
    await expect(Code.NOT_FOUND, eve.AcceptInvitation, pb.AcceptInvitationRequest(invitation_token="nope"))
    actions = harness.identity.actions()
    assert audit_event_pb2.AUDIT_ACTION_INVITATION_ACCEPTED in actions
    service = harness.as_key("k1", "acme", "ADMIN", "invitations.accept")
    await expect(Code.PERMISSION_DENIED, service.AcceptInvitation, request, "signed-in user")
    memberships = await harness.service.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/dan"))
    assert [m.organization.organization_id for m in memberships.user_memberships] == ["globex", "acme"]


async def test_accepting_needs_the_invited_address_verified(harness: Harness):
    alice = await acme(harness)
    await harness.provision("globex", "users/dan")
    harness.identity.users["users/dan"] = ("dan@globex.example", "Dan")
    harness.identity.unverified.add("users/dan")
    created = await alice.CreateInvitation(invite("dan@globex.example", VIEWER))
    dan = harness.as_user("users/dan", "globex", "ADMIN")
    request = pb.AcceptInvitationRequest(invitation_token=created.invitation_token)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dan.AcceptInvitation(request)
    assert refused.value.code() == Code.FAILED_PRECONDITION
    info = error_info(refused.value)
    assert (info.reason, info.domain) == ("EMAIL_NOT_VERIFIED", "team_hub.vocelio.com")
    # Nothing was used up: once the address is verified, the same token works.
    harness.identity.unverified.clear()
    accepted = await dan.AcceptInvitation(request)
    assert accepted.invitation.state == invitation_pb2.INVITATION_STATE_ACCEPTED


@pytest.mark.parametrize("role", ["GUEST", "VIEWER", "AGENT", "MANAGER", "ADMIN"])
async def test_every_role_may_accept_its_own_invitation(harness: Harness, role: str):
    alice = await acme(harness)
    await harness.provision("globex", "users/dan")
    harness.identity.users["users/dan"] = ("dan@globex.example", "Dan")
    created = await alice.CreateInvitation(invite("dan@globex.example", VIEWER))
    dan = harness.as_user("users/dan", "globex", role)  # dan's role where he is now
    accepted = await dan.AcceptInvitation(pb.AcceptInvitationRequest(invitation_token=created.invitation_token))
    assert (accepted.membership.organization_id, accepted.membership.role) == ("acme", VIEWER)


async def test_invitation_rules(harness: Harness):
    alice = await acme(harness)
    await alice.CreateInvitation(invite("bob@acme.example"))
    await expect(Code.ALREADY_EXISTS, alice.CreateInvitation, invite("BOB@acme.example"), "pending invitation")
    await expect(Code.ALREADY_EXISTS, alice.CreateInvitation, invite("alice@acme.example"), "already a member")
    await expect(Code.INVALID_ARGUMENT, alice.CreateInvitation, invite("x@acme.example", 60), "SUPER_ADMIN")
    await expect(
        Code.INVALID_ARGUMENT, alice.CreateInvitation, invite("x@acme.example", teams=["organizations/acme/teams/nope"])
    )
    key = harness.as_key("k_mgr", "acme", "MANAGER", "invitations.create")
    await expect(Code.PERMISSION_DENIED, key.CreateInvitation, invite("x@acme.example", ADMIN), "above your own role")
    assert (await key.CreateInvitation(invite("x@acme.example", MANAGER))).invitation.role == MANAGER
    manager = harness.as_user("users/mo", "acme", "MANAGER")
    await expect(Code.PERMISSION_DENIED, manager.CreateInvitation, invite("y@acme.example"), "invitations.create")


async def test_a_retried_create_returns_the_same_token(harness: Harness):
    alice = await acme(harness)
    key = str(uuid.uuid4())
    first = await alice.CreateInvitation(invite("bob@acme.example", request_id=key))
    second = await alice.CreateInvitation(invite("bob@acme.example", request_id=key))
    assert second.invitation.name == first.invitation.name
    assert second.invitation_token == first.invitation_token
    await expect(
        Code.INVALID_ARGUMENT, alice.CreateInvitation, invite("carl@acme.example", request_id=key), "already used"
    )
    # Not a UUID4: the contract's rule refuses it before team hub sees it.
    await expect(Code.INVALID_ARGUMENT, alice.CreateInvitation, invite("dee@acme.example", request_id="retry-1"))
    redeemed = await harness.service.RedeemInvitation(redeem(second.invitation_token, "users/bob", "bob@acme.example"))
    assert redeemed.invitation.name == first.invitation.name


async def test_seats_include_pending_invitations(harness: Harness):
    await harness.provision("tiny", "users/tia", max_members=2)
    tia = harness.as_user("users/tia", "tiny", "ADMIN")
    await tia.CreateInvitation(invite("one@tiny.example", parent=tia.parent))
    await expect(Code.RESOURCE_EXHAUSTED, tia.CreateInvitation, invite("two@tiny.example", parent=tia.parent), "seat")


async def test_invited_teams_are_joined_on_acceptance(harness: Harness):
    alice = await acme(harness)
    team = (await alice.CreateTeam(pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Support"}))).team
    member = await harness.join(alice, "users/bob", "bob@acme.example", AGENT, teams=[team.name])
    assert list(member.teams) == [team.name]
    assert [m.user for m in (await alice.GetTeam(pb.GetTeamRequest(name=team.name))).team.members] == ["users/bob"]


async def test_guest_invitations_carry_their_access_end(harness: Harness):
    alice = await acme(harness)
    end = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=14)
    member = await harness.join(alice, "users/gus", "gus@acme.example", 10, member_expire_time=end)
    assert member.expire_time.ToDatetime(tzinfo=datetime.UTC) == end
    await expect(Code.INVALID_ARGUMENT, alice.CreateInvitation, invite("g2@acme.example", 10), "GUEST")


async def test_list_invitations_by_state(harness: Harness):
    alice = await acme(harness)
    kept = await alice.CreateInvitation(invite("a@acme.example"))
    dropped = await alice.CreateInvitation(invite("b@acme.example"))
    await alice.RevokeInvitation(pb.RevokeInvitationRequest(name=dropped.invitation.name))
    pending = await alice.ListInvitations(pb.ListInvitationsRequest(parent=alice.parent, filter="state = PENDING"))
    assert [i.name for i in pending.invitations] == [kept.invitation.name]
    everything = await alice.ListInvitations(pb.ListInvitationsRequest(parent=alice.parent, page_size=1))
    assert everything.invitations[0].name == dropped.invitation.name  # newest first
    assert everything.next_page_token
