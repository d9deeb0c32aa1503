"""Memberships and roles over a real server: the ladder's rules, revocation and the audit log."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.services.team_hub.conftest import ADMIN, AGENT, GUEST, MANAGER, VIEWER, Harness, claims_of, pb
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import member_pb2

Code = grpc.StatusCode


async def acme(h: Harness):
    """Organisation "acme": alice (ADMIN, its creator), bob (AGENT) and carol (MANAGER)."""
    await h.provision("acme", "users/alice")
    alice = h.as_user("users/alice", "acme", "ADMIN")
    bob = await h.join(alice, "users/bob", "bob@acme.example", AGENT)
    carol = await h.join(alice, "users/carol", "carol@acme.example", MANAGER)
    h.identity.audit.clear()
    return alice, bob, carol


async def test_provisioning_creates_the_organization_and_its_first_admin(harness: Harness):
    first = await harness.provision("acme", "users/alice")
    again = await harness.provision("acme", "users/alice")  # identity retried its sign-up
    assert first.organization.name == "organizations/acme"
    assert first.organization.state == 1  # ACTIVE
    assert first.organization.member_count == 1
    assert first.membership.role == ADMIN
    assert first.membership.user == "users/alice"
    assert first.membership.email == "alice@acme.example"
    assert again.membership.name == first.membership.name
    listed = await harness.service.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/alice"))
    assert [(m.organization.organization_id, m.membership.role) for m in listed.user_memberships] == [("acme", ADMIN)]


async def test_provisioning_is_internal_and_needs_a_user(harness: Harness):
    alice = harness.as_user("users/alice", "acme", "ADMIN")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await alice.ProvisionOrganization(
            pb.ProvisionOrganizationRequest(
                admin_user="users/alice", admin_email="a@b.io", request_id=str(uuid.uuid4())
            )
        )
    assert denied.value.code() == Code.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as later:
        await harness.service.ProvisionOrganization(
            pb.ProvisionOrganizationRequest(
                organization={"display_name": "Sub"}, admin_email="owner@sub.example", request_id=str(uuid.uuid4())
            )
        )
    assert later.value.code() == Code.UNIMPLEMENTED
    assert "e-mail delivery" in (later.value.details() or "")


async def test_admin_changes_a_role_and_the_old_tokens_are_revoked(harness: Harness):
    alice, bob, _ = await acme(harness)
    changed = await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=bob.name, role=MANAGER, etag=bob.etag))
    assert changed.membership.role == MANAGER
    assert changed.membership.etag != bob.etag
    [revoked] = harness.identity.revocations
    assert (revoked.request.principal, revoked.request.organization_id) == ("users/bob", "acme")
    assert revoked.request.reason == "role_changed"
    assert not revoked.request.end_sessions
    # Internal identity methods are called with team_hub's own token, never the caller's.
    assert claims_of(revoked.metadata)["sub"] == "services/team_hub"
    [event] = [
        e for e in harness.identity.audit if e.request.audit_event.action == audit_event_pb2.AUDIT_ACTION_ROLE_CHANGED
    ]
    assert event.request.organization_id == "acme"
    assert uuid.UUID(event.request.request_id).version == 4  # AIP-155: internal callers send UUID4s
    assert event.request.audit_event.actor.principal == "users/alice"
    assert event.request.audit_event.actor.display_name == "alice@acme.example"
    assert event.request.audit_event.target == bob.name
    assert dict(event.request.audit_event.details) == {"old_role": "AGENT", "new_role": "MANAGER", "user": "users/bob"}


async def test_role_rules_over_the_wire(harness: Harness):
    alice, bob, carol = await acme(harness)
    root = harness.as_user("users/root", "", "SUPER_ADMIN")
    # A MANAGER's API key allowed to change members still cannot grant above MANAGER.
    key = harness.as_key("k_ops", "acme", "MANAGER", "members.update members.get")
    manager = harness.as_user("users/carol", "acme", "MANAGER")
    cases = [
        (key, pb.ChangeMemberRoleRequest(name=bob.name, role=ADMIN), Code.PERMISSION_DENIED, "above your own role"),
        (key, pb.ChangeMemberRoleRequest(name=bob.name, role=MANAGER), None, ""),
        (
            alice,
            pb.ChangeMemberRoleRequest(name=bob.name, role=member_pb2.ROLE_SUPER_ADMIN),
            Code.INVALID_ARGUMENT,
            "SUPER_ADMIN",
        ),
        (alice, pb.ChangeMemberRoleRequest(name=bob.name, role=GUEST), Code.INVALID_ARGUMENT, "GUEST"),
        # MANAGER tokens lack members.update: the contract's permission stops them first.
        (manager, pb.ChangeMemberRoleRequest(name=bob.name, role=AGENT), Code.PERMISSION_DENIED, "members.update"),
    ]
    for caller, request, code, message in cases:
        if code is None:
            await caller.ChangeMemberRole(request)
            continue
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await caller.ChangeMemberRole(request)
        assert raised.value.code() == code, request
        assert message in (raised.value.details() or "")
    # The last ADMIN: not even a platform operator demotes them.
    [alice_membership] = (
        await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, filter="role = ADMIN"))
    ).members
    with pytest.raises(grpc.aio.AioRpcError) as last:
        await root.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=alice_membership.name, role=VIEWER))
    assert last.value.code() == Code.FAILED_PRECONDITION
    assert "last ADMIN" in (last.value.details() or "")
    # With a second ADMIN, the first may be demoted by the other.
    await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=carol.name, role=ADMIN))
    carol_admin = harness.as_user("users/carol", "acme", "ADMIN")
    demoted = await carol_admin.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=alice_membership.name, role=VIEWER))
    assert demoted.membership.role == VIEWER


async def test_nobody_changes_their_own_role(harness: Harness):
    alice, _, _ = await acme(harness)
    own = (await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, filter='user = "users/alice"'))).members[
        0
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=own.name, role=AGENT))
    assert raised.value.code() == Code.PERMISSION_DENIED
    assert "your own role" in (raised.value.details() or "")


async def test_guests_get_a_time_box(harness: Harness):
    alice, bob, _ = await acme(harness)
    end = Timestamp()
    end.FromDatetime(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10))
    guest = await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=bob.name, role=GUEST, expire_time=end))
    assert guest.membership.role == GUEST
    assert guest.membership.expire_time == end
    assert guest.membership.state == member_pb2.MEMBERSHIP_STATE_ACTIVE


async def test_stale_etag_aborts(harness: Harness):
    alice, bob, _ = await acme(harness)
    await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=bob.name, role=VIEWER))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=bob.name, role=MANAGER, etag=bob.etag))
    assert raised.value.code() == Code.ABORTED


async def test_removal_revokes_tokens_and_sessions(harness: Harness):
    alice, bob, _ = await acme(harness)
    team = (await alice.CreateTeam(pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Sales"}))).team
    await alice.AddTeamMember(pb.AddTeamMemberRequest(name=team.name, member=bob.name))
    await alice.RemoveMember(pb.RemoveMemberRequest(name=bob.name))
    [revoked] = harness.identity.revocations
    assert revoked.request.principal == "users/bob"
    assert revoked.request.reason == "member_removed"
    assert revoked.request.end_sessions
    assert harness.identity.actions()[-1] == audit_event_pb2.AUDIT_ACTION_MEMBER_REMOVED
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await alice.GetMember(pb.GetMemberRequest(name=bob.name))
    assert gone.value.code() == Code.NOT_FOUND
    assert (await alice.GetTeam(pb.GetTeamRequest(name=team.name))).team.member_count == 0
    listed = await harness.service.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/bob"))
    assert list(listed.user_memberships) == []


async def test_the_last_admin_cannot_be_removed(harness: Harness):
    alice, _, _ = await acme(harness)
    [own] = (await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, filter="role = ADMIN"))).members
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await alice.RemoveMember(pb.RemoveMemberRequest(name=own.name))
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert "last ADMIN" in (raised.value.details() or "")


async def test_identity_down_means_unavailable_and_a_retry_finishes_the_job(harness: Harness):
    alice, bob, carol = await acme(harness)
    harness.identity.unavailable = True
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=bob.name, role=VIEWER))
    assert raised.value.code() == Code.UNAVAILABLE
    assert "retry" in (raised.value.details() or "")
    # The change is saved (not half-done silently: the caller was told to retry) ...
    assert (await alice.GetMember(pb.GetMemberRequest(name=bob.name))).membership.role == VIEWER
    with pytest.raises(grpc.aio.AioRpcError) as removal:
        await alice.RemoveMember(pb.RemoveMemberRequest(name=carol.name))
    assert removal.value.code() == Code.UNAVAILABLE
    assert harness.identity.revocations == []
    harness.identity.unavailable = False
    # ... and the retries deliver what is owed, once.
    await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=bob.name, role=VIEWER))
    await alice.RemoveMember(pb.RemoveMemberRequest(name=carol.name))
    assert [(r.request.principal, r.request.reason) for r in harness.identity.revocations] == [
        ("users/bob", "role_changed"),
        ("users/carol", "member_removed"),
    ]
    assert harness.identity.actions() == [
        audit_event_pb2.AUDIT_ACTION_INVITATION_ACCEPTED,  # carol's sign-up, queued until the next delivery
        audit_event_pb2.AUDIT_ACTION_ROLE_CHANGED,
        audit_event_pb2.AUDIT_ACTION_MEMBER_REMOVED,
    ]
    # Removing again is still a success (the removal is remembered), and owes nothing more.
    await alice.RemoveMember(pb.RemoveMemberRequest(name=carol.name))
    assert len(harness.identity.revocations) == 2
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await alice.RemoveMember(pb.RemoveMemberRequest(name="organizations/acme/members/mem_never"))
    assert unknown.value.code() == Code.NOT_FOUND


async def test_members_list_and_filter(harness: Harness):
    alice, _, _ = await acme(harness)
    first = await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, page_size=2))
    rest = await alice.ListMembers(
        pb.ListMembersRequest(parent=alice.parent, page_size=2, page_token=first.next_page_token)
    )
    assert [m.display_name for m in first.members] == ["Alice", "bob"]
    assert [m.display_name for m in rest.members] == ["carol"]
    assert rest.next_page_token == ""
    managers = await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, filter="role >= MANAGER"))
    assert sorted(m.user for m in managers.members) == ["users/alice", "users/carol"]
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, filter="colour = red"))
    assert bad.value.code() == Code.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as replayed:
        await alice.ListMembers(
            pb.ListMembersRequest(parent=alice.parent, filter="role >= AGENT", page_token=first.next_page_token)
        )
    assert replayed.value.code() == Code.INVALID_ARGUMENT


async def test_roles_ladder_with_permissions_and_what_the_caller_may_grant(harness: Harness):
    alice, _, _ = await acme(harness)
    everything = await alice.ListRoles(pb.ListRolesRequest())
    assert [r.name for r in everything.roles] == [
        "roles/guest",
        "roles/viewer",
        "roles/agent",
        "roles/manager",
        "roles/admin",
        "roles/super_admin",
    ]
    assert [r.grantable for r in everything.roles] == [True, True, True, True, True, False]
    admin = everything.roles[4]
    assert admin.display_name == "Admin"
    assert "members.update" in admin.permissions
    assert list(admin.permissions) == sorted(admin.permissions)
    viewer = harness.as_user("users/vic", "acme", "VIEWER")
    page = await viewer.ListRoles(pb.ListRolesRequest(page_size=2))
    more = await viewer.ListRoles(pb.ListRolesRequest(page_size=10, page_token=page.next_page_token))
    assert [r.grantable for r in page.roles] == [True, True]
    assert [r.grantable for r in more.roles] == [False, False, False, False]
    assert more.next_page_token == ""


async def test_user_memberships_are_internal(harness: Harness):
    alice, _, _ = await acme(harness)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await alice.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/bob"))
    assert raised.value.code() == Code.PERMISSION_DENIED


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(any_backend: Harness):
    alice, _, carol = await acme(any_backend)
    await alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=carol.name, role=ADMIN))
    [alice_membership] = (
        await alice.ListMembers(pb.ListMembersRequest(parent=alice.parent, filter='user = "users/alice"'))
    ).members
    carol_admin = any_backend.as_user("users/carol", "acme", "ADMIN")
    outcomes = await asyncio.gather(
        alice.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=carol.name, role=VIEWER)),
        carol_admin.ChangeMemberRole(pb.ChangeMemberRoleRequest(name=alice_membership.name, role=VIEWER)),
        return_exceptions=True,
    )
    failures = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(failures) == 1
    assert failures[0].code() == Code.FAILED_PRECONDITION
    admins = await any_backend.as_user("users/root", "acme", "SUPER_ADMIN").ListMembers(
        pb.ListMembersRequest(parent="organizations/acme", filter="role = ADMIN")
    )
    assert len(admins.members) == 1
