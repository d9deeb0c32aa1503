"""Teams over a real server, and tenancy across every kind of resource."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from tests.services.team_hub.conftest import AGENT, Harness, pb
from vocelio.team_hub.v1 import team_pb2

Code = grpc.StatusCode


async def expect(code: grpc.StatusCode, call, request, contains: str = "") -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == code, raised.value.details()
    assert contains in (raised.value.details() or "")


async def setup(h: Harness):
    await h.provision("acme", "users/alice")
    await h.provision("globex", "users/gina")
    alice = h.as_user("users/alice", "acme", "ADMIN")
    gina = h.as_user("users/gina", "globex", "ADMIN")
    bob = await h.join(alice, "users/bob", "bob@acme.example", AGENT)
    gil = await h.join(gina, "users/gil", "gil@globex.example", AGENT)
    return alice, gina, bob, gil


async def test_team_lifecycle(any_backend: Harness):
    alice, _, bob, _ = await setup(any_backend)
    manager = any_backend.as_user("users/mia", "acme", "MANAGER")
    created = await manager.CreateTeam(
        pb.CreateTeamRequest(
            parent=manager.parent,
            team=team_pb2.Team(display_name="Sales EMEA", description="Closers", labels={"region": "emea"}),
            team_id="sales-emea",
        )
    )
    team = created.team
    assert team.name == "organizations/acme/teams/sales-emea"
    assert team.organization_id == "acme"
    await expect(
        Code.ALREADY_EXISTS,
        manager.CreateTeam,
        pb.CreateTeamRequest(parent=manager.parent, team={"display_name": "Sales EMEA"}),
        "Sales EMEA",
    )
    added = await alice.AddTeamMember(pb.AddTeamMemberRequest(name=team.name, member=bob.name, lead=True))
    assert [(m.member, m.user, m.lead) for m in added.team.members] == [(bob.name, "users/bob", True)]
    assert added.team.member_count == 1
    relabelled = await alice.AddTeamMember(pb.AddTeamMemberRequest(name=team.name, member=bob.name, lead=False))
    assert [m.lead for m in relabelled.team.members] == [False]
    assert list((await alice.GetMember(pb.GetMemberRequest(name=bob.name))).membership.teams) == [team.name]
    updated = await alice.UpdateTeam(
        pb.UpdateTeamRequest(
            team=team_pb2.Team(name=team.name, display_name="Sales Europe", etag=relabelled.team.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    assert updated.team.display_name == "Sales Europe"
    assert updated.team.description == "Closers"
    stale = pb.UpdateTeamRequest(
        team=team_pb2.Team(name=team.name, description="x", etag=relabelled.team.etag),
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )
    await expect(Code.ABORTED, alice.UpdateTeam, stale)
    listed = await alice.ListTeams(pb.ListTeamsRequest(parent=alice.parent, filter=f'members.member = "{bob.name}"'))
    assert [t.name for t in listed.teams] == [team.name]
    removed = await alice.RemoveTeamMember(pb.RemoveTeamMemberRequest(name=team.name, member=bob.name))
    assert removed.team.member_count == 0
    await alice.RemoveTeamMember(pb.RemoveTeamMemberRequest(name=team.name, member=bob.name))  # a no-op
    await expect(Code.ABORTED, alice.DeleteTeam, pb.DeleteTeamRequest(name=team.name, etag=updated.team.etag))
    await alice.DeleteTeam(pb.DeleteTeamRequest(name=team.name))
    await expect(Code.NOT_FOUND, alice.GetTeam, pb.GetTeamRequest(name=team.name))
    # The member stays in the organisation.
    assert (await alice.GetMember(pb.GetMemberRequest(name=bob.name))).membership.user == "users/bob"


async def test_a_retried_create_makes_one_team(harness: Harness):
    alice, _, _, _ = await setup(harness)
    key = str(uuid.uuid4())
    request = pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Ops"}, request_id=key)
    first = await alice.CreateTeam(request)
    second = await alice.CreateTeam(request)
    assert first.team.name == second.team.name
    await expect(
        Code.INVALID_ARGUMENT,
        alice.CreateTeam,
        pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Other"}, request_id=key),
        "already used",
    )
    assert len((await alice.ListTeams(pb.ListTeamsRequest(parent=alice.parent))).teams) == 1


async def test_teams_only_take_members_of_their_organization(harness: Harness):
    alice, _, _, gil = await setup(harness)
    team = (await alice.CreateTeam(pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Ops"}))).team
    await expect(Code.NOT_FOUND, alice.AddTeamMember, pb.AddTeamMemberRequest(name=team.name, member=gil.name))
    viewer = harness.as_user("users/vic", "acme", "VIEWER")
    await expect(
        Code.PERMISSION_DENIED,
        viewer.CreateTeam,
        pb.CreateTeamRequest(parent=viewer.parent, team={"display_name": "Mine"}),
    )


async def test_another_organizations_resources_answer_not_found(harness: Harness):
    alice, gina, bob, _ = await setup(harness)
    team = (await alice.CreateTeam(pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Ops"}))).team
    invitation = (
        await alice.CreateInvitation(
            pb.CreateInvitationRequest(parent=alice.parent, invitation={"email": "z@acme.example", "role": AGENT})
        )
    ).invitation
    probes = [
        (gina.GetMember, pb.GetMemberRequest(name=bob.name)),
        (gina.ChangeMemberRole, pb.ChangeMemberRoleRequest(name=bob.name, role=AGENT)),
        (gina.RemoveMember, pb.RemoveMemberRequest(name=bob.name)),
        (gina.GetInvitation, pb.GetInvitationRequest(name=invitation.name)),
        (gina.RevokeInvitation, pb.RevokeInvitationRequest(name=invitation.name)),
        (gina.GetTeam, pb.GetTeamRequest(name=team.name)),
        (gina.DeleteTeam, pb.DeleteTeamRequest(name=team.name)),
        (gina.AddTeamMember, pb.AddTeamMemberRequest(name=team.name, member=bob.name)),
        (gina.RemoveTeamMember, pb.RemoveTeamMemberRequest(name=team.name, member=bob.name)),
        (gina.GetOrganization, pb.GetOrganizationRequest(name="organizations/acme")),
    ]
    for call, request in probes:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request)
        assert raised.value.code() == Code.NOT_FOUND, request
        # The same words as for something that does not exist at all (test_servicer_tenancy.py).
        assert (raised.value.details() or "").endswith("not found")
    assert sorted(m.user for m in (await gina.ListMembers(pb.ListMembersRequest(parent=gina.parent))).members) == [
        "users/gil",
        "users/gina",
    ]
    assert list((await gina.ListTeams(pb.ListTeamsRequest(parent=gina.parent))).teams) == []
    seen = (await gina.ListInvitations(pb.ListInvitationsRequest(parent=gina.parent))).invitations
    assert [i.organization_id for i in seen] == ["globex"]
