"""Team hub's resource names, read from the contract's ``google.api.resource`` patterns."""

from __future__ import annotations

from mesh.kit.names import ResourceName
from vocelio.team_hub.v1 import invitation_pb2, member_pb2, organization_pb2, team_pb2

ORGANIZATIONS = ResourceName.for_message(organization_pb2.Organization)  # organizations/{organization}
MEMBERS = ResourceName.for_message(member_pb2.Membership)  # organizations/{organization}/members/{member}
INVITATIONS = ResourceName.for_message(invitation_pb2.Invitation)  # …/invitations/{invitation}
TEAMS = ResourceName.for_message(team_pb2.Team)  # …/teams/{team}
# identity's users, named in requests (the pattern is identity's; team hub never imports its package).
USERS = ResourceName.from_pattern("users/{user}", "vocelio.com/User")


def organization_name(organization_id: str) -> str:
    """``organizations/{organization}``."""
    return ORGANIZATIONS.format(organization=organization_id)


def member_name(organization_id: str, membership_id: str) -> str:
    """``organizations/{organization}/members/{member}``."""
    return MEMBERS.format(organization=organization_id, member=membership_id)


def invitation_name(organization_id: str, invitation_id: str) -> str:
    """``organizations/{organization}/invitations/{invitation}``."""
    return INVITATIONS.format(organization=organization_id, invitation=invitation_id)


def team_name(organization_id: str, team_id: str) -> str:
    """``organizations/{organization}/teams/{team}``."""
    return TEAMS.format(organization=organization_id, team=team_id)
