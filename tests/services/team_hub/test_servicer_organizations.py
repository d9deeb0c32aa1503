"""Organisations over a real server: tenancy, updates, and the lifecycle."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from tests.services.team_hub.conftest import AGENT, Harness, pb
from vocelio.identity.v1 import audit_event_pb2
from vocelio.team_hub.v1 import organization_pb2

Code = grpc.StatusCode


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def two_tenants(h: Harness):
    await h.provision("acme", "users/alice")
    await h.provision("globex", "users/gina")
    return h.as_user("users/alice", "acme", "ADMIN"), h.as_user("users/gina", "globex", "ADMIN")


async def expect(code: grpc.StatusCode, call, request, contains: str = "") -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == code, raised.value.details()
    assert contains in (raised.value.details() or "")


async def test_members_see_their_own_organization_only(harness: Harness):
    alice, gina = await two_tenants(harness)
    own = await alice.GetOrganization(pb.GetOrganizationRequest(name="organizations/acme"))
    assert own.organization.display_name == "Acme Inc"
    assert own.organization.organization_id == "acme"
    assert own.organization.audit.creator == "services/identity"
    await expect(Code.NOT_FOUND, gina.GetOrganization, pb.GetOrganizationRequest(name="organizations/acme"))
    await expect(Code.NOT_FOUND, gina.GetOrganization, pb.GetOrganizationRequest(name="organizations/nope"))
    root = harness.as_user("users/root", "", "SUPER_ADMIN")
    assert (await root.GetOrganization(pb.GetOrganizationRequest(name="organizations/acme"))).organization.name


async def test_only_platform_operators_list_organizations(harness: Harness):
    alice, _ = await two_tenants(harness)
    root = harness.as_user("users/root", "", "SUPER_ADMIN")
    page = await root.ListOrganizations(pb.ListOrganizationsRequest(page_size=1))
    rest = await root.ListOrganizations(pb.ListOrganizationsRequest(page_size=1, page_token=page.next_page_token))
    assert [o.organization_id for o in [*page.organizations, *rest.organizations]] == ["globex", "acme"]
    await expect(Code.PERMISSION_DENIED, alice.ListOrganizations, pb.ListOrganizationsRequest())


async def test_admin_updates_the_masked_fields_and_not_the_plan(harness: Harness):
    alice, gina = await two_tenants(harness)
    current = (await alice.GetOrganization(pb.GetOrganizationRequest(name="organizations/acme"))).organization
    changed = await alice.UpdateOrganization(
        pb.UpdateOrganizationRequest(
            organization=organization_pb2.Organization(
                name="organizations/acme", display_name="Acme Corp", billing_email="AP@acme.example", etag=current.etag
            ),
            update_mask=mask("display_name", "billing_email"),
        )
    )
    assert changed.organization.display_name == "Acme Corp"
    assert changed.organization.billing_email == "ap@acme.example"
    assert changed.organization.audit.last_modifier == "users/alice"
    stale = pb.UpdateOrganizationRequest(
        organization=organization_pb2.Organization(name="organizations/acme", display_name="X", etag=current.etag),
        update_mask=mask("display_name"),
    )
    await expect(Code.ABORTED, alice.UpdateOrganization, stale)
    plan = pb.UpdateOrganizationRequest(
        organization=organization_pb2.Organization(
            name="organizations/acme", plan=organization_pb2.ORGANIZATION_PLAN_ENTERPRISE
        ),
        update_mask=mask("plan"),
    )
    await expect(Code.PERMISSION_DENIED, alice.UpdateOrganization, plan, "plan")
    root = harness.as_user("users/root", "", "SUPER_ADMIN")
    assert (await root.UpdateOrganization(plan)).organization.plan == organization_pb2.ORGANIZATION_PLAN_ENTERPRISE
    other = pb.UpdateOrganizationRequest(
        organization=organization_pb2.Organization(name="organizations/acme", display_name="Mine"),
        update_mask=mask("display_name"),
    )
    await expect(Code.NOT_FOUND, gina.UpdateOrganization, other)
    bad = pb.UpdateOrganizationRequest(
        organization=organization_pb2.Organization(name="organizations/acme", country_code="USA"),
        update_mask=mask("country_code"),
    )
    await expect(Code.INVALID_ARGUMENT, alice.UpdateOrganization, bad)


async def test_suspend_reactivate_close(harness: Harness):
    alice, _ = await two_tenants(harness)
    bob = await harness.join(alice, "users/bob", "bob@acme.example", AGENT)
    root = harness.as_user("users/root", "", "SUPER_ADMIN")
    name = "organizations/acme"
    await expect(
        Code.PERMISSION_DENIED, alice.SuspendOrganization, pb.SuspendOrganizationRequest(name=name, reason="x")
    )
    await expect(Code.INVALID_ARGUMENT, root.SuspendOrganization, pb.SuspendOrganizationRequest(name=name))
    suspended = await root.SuspendOrganization(pb.SuspendOrganizationRequest(name=name, reason="payment failed"))
    assert suspended.organization.state == organization_pb2.ORGANIZATION_STATE_SUSPENDED
    assert suspended.organization.state_reason == "payment failed"
    assert suspended.organization.HasField("suspend_time")
    again = await root.SuspendOrganization(pb.SuspendOrganizationRequest(name=name, reason="payment failed"))
    assert again.organization.etag == suspended.organization.etag  # a retry changes nothing
    # Suspended: members read, nobody changes anything.
    assert (await alice.GetMember(pb.GetMemberRequest(name=bob.name))).membership.user == "users/bob"
    await expect(
        Code.FAILED_PRECONDITION,
        alice.ChangeMemberRole,
        pb.ChangeMemberRoleRequest(name=bob.name, role=AGENT),
        "suspended",
    )
    await expect(
        Code.FAILED_PRECONDITION,
        alice.CreateInvitation,
        pb.CreateInvitationRequest(parent=alice.parent, invitation={"email": "x@acme.example", "role": AGENT}),
    )
    active = await root.ReactivateOrganization(pb.ReactivateOrganizationRequest(name=name))
    assert active.organization.state == organization_pb2.ORGANIZATION_STATE_ACTIVE
    assert not active.organization.HasField("suspend_time")
    wrong = pb.CloseOrganizationRequest(name=name, confirm_display_name="Globex Inc")
    await expect(Code.INVALID_ARGUMENT, root.CloseOrganization, wrong, "confirm_display_name")
    closed = await root.CloseOrganization(pb.CloseOrganizationRequest(name=name, confirm_display_name="Acme Inc"))
    assert closed.organization.state == organization_pb2.ORGANIZATION_STATE_CLOSED
    revoked = {(r.request.principal, r.request.reason, r.request.end_sessions) for r in harness.identity.revocations}
    assert revoked == {
        # suspension and closing revoke every credential of the organisation (API keys included) ...
        ("organizations/acme", "organization_suspended", False),
        ("organizations/acme", "organization_closed", True),
        # ... and closing ends each member's sessions there too
        ("users/alice", "organization_closed", True),
        ("users/bob", "organization_closed", True),
    }
    await expect(Code.FAILED_PRECONDITION, root.ReactivateOrganization, pb.ReactivateOrganizationRequest(name=name))
    actions = harness.identity.actions()
    for action in (
        audit_event_pb2.AUDIT_ACTION_ORGANIZATION_SUSPENDED,
        audit_event_pb2.AUDIT_ACTION_ORGANIZATION_REACTIVATED,
        audit_event_pb2.AUDIT_ACTION_ORGANIZATION_CLOSED,
    ):
        assert actions.count(action) == 1
    # A closed organisation gives no token any more.
    listed = await harness.service.ListUserMemberships(pb.ListUserMembershipsRequest(user="users/alice"))
    assert list(listed.user_memberships) == []
    everything = await harness.service.ListUserMemberships(
        pb.ListUserMembershipsRequest(user="users/alice", show_inactive=True)
    )
    assert [m.organization.state for m in everything.user_memberships] == [organization_pb2.ORGANIZATION_STATE_CLOSED]


async def test_lists_name_their_organization(harness: Harness):
    alice, _ = await two_tenants(harness)
    root = harness.as_user("users/root", "", "SUPER_ADMIN")
    # A platform operator names the organisation it works in.
    listed = await root.ListMembers(pb.ListMembersRequest(parent="organizations/globex"))
    assert [m.user for m in listed.members] == ["users/gina"]
    await expect(Code.INVALID_ARGUMENT, root.ListMembers, pb.ListMembersRequest(), "parent is required")
    # organizations/- (AIP-159): every organisation's, each under its full name.
    everyone = await root.ListMembers(pb.ListMembersRequest(parent="organizations/-"))
    assert [m.name.split("/")[1] for m in everyone.members] == ["acme", "globex"]
    await expect(Code.PERMISSION_DENIED, alice.ListMembers, pb.ListMembersRequest(parent="organizations/-"))
    # A create names one organisation.
    await expect(
        Code.INVALID_ARGUMENT,
        root.CreateTeam,
        pb.CreateTeamRequest(parent="organizations/-", team={"display_name": "X"}),
        "names one organization",
    )
    await expect(Code.INVALID_ARGUMENT, alice.ListTeams, pb.ListTeamsRequest(parent="teams"), "organizations/")
