"""Across organisations: the same ids in two organisations, and no answer that tells "exists elsewhere"."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from tests.services.team_hub.conftest import AGENT, Caller, Harness, pb

Code = grpc.StatusCode


async def two_organizations(h: Harness) -> tuple[Caller, Caller]:
    await h.provision("acme", "users/alice")
    await h.provision("globex", "users/gina")
    return h.as_user("users/alice", "acme", "ADMIN"), h.as_user("users/gina", "globex", "ADMIN")


async def refusal(call: Callable[[Any], Awaitable[Any]], request: Any, *asked: str) -> tuple[Any, ...]:
    """Everything a client can see of a failed call: status, message and trailing metadata.

    The names the caller sent (``asked``) are echoed in messages ("… not found"); they are
    replaced by ``<name>`` so that two answers compare on what they reveal, not on what was asked.
    """
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    error = raised.value
    trailers = tuple(sorted(str(item) for item in (error.trailing_metadata() or ())))
    details = error.details() or ""
    for name in asked:
        details = details.replace(name, "<name>")
    return error.code(), details, trailers


async def test_two_organizations_use_the_same_team_id_and_request_id(any_backend: Harness):
    alice, gina = await two_organizations(any_backend)
    key = str(uuid.uuid4())
    theirs = await alice.CreateTeam(
        pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Support"}, team_id="support", request_id=key)
    )
    ours = await gina.CreateTeam(
        pb.CreateTeamRequest(parent=gina.parent, team={"display_name": "Support"}, team_id="support", request_id=key)
    )
    assert theirs.team.name == "organizations/acme/teams/support"
    assert ours.team.name == "organizations/globex/teams/support"
    assert ours.team.etag != theirs.team.etag
    gil = await any_backend.join(gina, "users/gil", "gil@globex.example", AGENT, teams=[ours.team.name])
    assert list(gil.teams) == [ours.team.name]
    for caller, name in ((alice, theirs.team.name), (gina, ours.team.name)):
        listed = await caller.ListTeams(pb.ListTeamsRequest(parent=caller.parent))
        assert [t.name for t in listed.teams] == [name]
        got = (await caller.GetTeam(pb.GetTeamRequest(name=name))).team
        assert got.organization_id == caller.organization
    # Each team keeps its own members; deleting one leaves the other.
    assert [m.user for m in (await gina.GetTeam(pb.GetTeamRequest(name=ours.team.name))).team.members] == ["users/gil"]
    assert list((await alice.GetTeam(pb.GetTeamRequest(name=theirs.team.name))).team.members) == []
    await alice.DeleteTeam(pb.DeleteTeamRequest(name=theirs.team.name))
    assert (await gina.GetTeam(pb.GetTeamRequest(name=ours.team.name))).team.member_count == 1


async def test_another_organizations_ids_answer_exactly_like_missing_ones(any_backend: Harness):
    alice, gina = await two_organizations(any_backend)
    team = (
        await alice.CreateTeam(
            pb.CreateTeamRequest(parent=alice.parent, team={"display_name": "Ops"}, team_id="ops-team")
        )
    ).team
    bob = await any_backend.join(alice, "users/bob", "bob@acme.example", AGENT)
    invitation = (
        await alice.CreateInvitation(
            pb.CreateInvitationRequest(parent=alice.parent, invitation={"email": "z@acme.example", "role": AGENT})
        )
    ).invitation
    gina_team = (await gina.CreateTeam(pb.CreateTeamRequest(parent=gina.parent, team={"display_name": "Ops"}))).team

    def probes(member: str, team_name: str, invitation_name: str) -> list[tuple[Any, Any]]:
        return [
            (gina.GetMember, pb.GetMemberRequest(name=member)),
            (gina.ChangeMemberRole, pb.ChangeMemberRoleRequest(name=member, role=AGENT)),
            (gina.RemoveMember, pb.RemoveMemberRequest(name=member)),
            (gina.GetTeam, pb.GetTeamRequest(name=team_name)),
            (gina.DeleteTeam, pb.DeleteTeamRequest(name=team_name)),
            (gina.AddTeamMember, pb.AddTeamMemberRequest(name=team_name, member=member)),
            (gina.GetInvitation, pb.GetInvitationRequest(name=invitation_name)),
            (gina.RevokeInvitation, pb.RevokeInvitationRequest(name=invitation_name)),
            # A foreign member put into one's own team is a missing member.
            (gina.AddTeamMember, pb.AddTeamMemberRequest(name=gina_team.name, member=member)),
        ]

    existing_names = (bob.name, team.name, invitation.name)
    missing_names = (
        "organizations/acme/members/mem_nobody",
        "organizations/acme/teams/nothing",
        "organizations/acme/invitations/inv_nothing",
    )
    own_missing_names = (
        "organizations/globex/members/mem_nobody",
        "organizations/globex/teams/nothing",
        "organizations/globex/invitations/inv_nothing",
    )
    for (call, request), (_, absent), (_, own_absent) in zip(
        probes(*existing_names), probes(*missing_names), probes(*own_missing_names), strict=True
    ):
        seen = await refusal(call, request, *existing_names)
        assert seen[0] == Code.NOT_FOUND, request
        assert seen == await refusal(call, absent, *missing_names), request
        assert seen == await refusal(call, own_absent, *own_missing_names), request
    # A list or a create in another organisation: one refusal whether or not it exists.
    lists: list[tuple[Any, Any]] = [
        (gina.ListTeams, pb.ListTeamsRequest(parent="organizations/acme")),
        (gina.ListMembers, pb.ListMembersRequest(parent="organizations/acme")),
        (gina.ListInvitations, pb.ListInvitationsRequest(parent="organizations/acme")),
        (gina.CreateTeam, pb.CreateTeamRequest(parent="organizations/acme", team={"display_name": "X"})),
    ]
    for call, request in lists:
        seen = await refusal(call, request)
        assert seen[0] == Code.PERMISSION_DENIED
        request.parent = "organizations/nowhere"
        assert seen == await refusal(call, request)
        request.parent = "organizations/-"
        assert seen == await refusal(call, request)
    # Inviting into another organisation's team is inviting into a missing team.
    foreign_team = await refusal(
        gina.CreateInvitation,
        pb.CreateInvitationRequest(
            parent=gina.parent, invitation={"email": "q@globex.example", "role": AGENT, "teams": [team.name]}
        ),
    )
    absent_team = await refusal(
        gina.CreateInvitation,
        pb.CreateInvitationRequest(
            parent=gina.parent,
            invitation={"email": "q@globex.example", "role": AGENT, "teams": ["organizations/globex/teams/ops-team"]},
        ),
    )
    assert foreign_team[0] == absent_team[0] == Code.INVALID_ARGUMENT
    assert foreign_team[1] == absent_team[1] == "unknown team"
    # Nothing of acme changed, and gina still sees only globex.
    assert (await alice.GetTeam(pb.GetTeamRequest(name=team.name))).team.name == team.name
    assert (await alice.GetMember(pb.GetMemberRequest(name=bob.name))).membership.role == AGENT
    assert [m.user for m in (await gina.ListMembers(pb.ListMembersRequest(parent=gina.parent))).members] == [
        "users/gina"
    ]
