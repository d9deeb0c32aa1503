"""Team hub's servicer: the RPC groups of ``services.team_hub.rpc`` behind the generated base."""

from __future__ import annotations

from services.team_hub.rpc.invitations import InvitationRpcs
from services.team_hub.rpc.members import MemberRpcs
from services.team_hub.rpc.organizations import OrganizationRpcs
from services.team_hub.rpc.teams import TeamRpcs
from vocelio.team_hub.v1 import team_hub_service_pb2_grpc


class TeamHubServicer(
    OrganizationRpcs,
    MemberRpcs,
    InvitationRpcs,
    TeamRpcs,
    team_hub_service_pb2_grpc.TeamHubServiceServicer,
):
    """Every RPC of ``vocelio.team_hub.v1.TeamHubService``."""
