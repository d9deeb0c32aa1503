"""What developer_api asks team_hub: whether a user is a member of an organisation, and as what.

TransferApiKey hands a key only to an active member who holds the key's scopes. The
question is team_hub's internal ``ListUserMemberships``, asked with developer_api's own
service credential (a user's propagated credential could not call an internal method).
"""

from __future__ import annotations

from typing import Protocol

from mesh.access import Role
from mesh.kit.client_errors import translated
from runtime.clients import MeshClients
from vocelio.team_hub.v1 import member_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

_TIMEOUT = 5.0


class MemberRoles(Protocol):
    """The role a user holds in an organisation."""

    async def role_in(self, user: str, organization_id: str) -> Role | None:
        """The user's role as an active member of the organisation, or ``None`` if not a member."""


class TeamHubMembers:
    """:class:`MemberRoles` over team_hub, with developer_api's own credential."""

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    async def role_in(self, user: str, organization_id: str) -> Role | None:
        """The user's role as an active member of the organisation, or ``None`` if not a member.

        Raises:
            Unavailable: team_hub did not answer.

        """
        stub = self._clients.stub("team_hub", team_hub_service_pb2_grpc.TeamHubServiceStub)
        metadata = (("authorization", f"Bearer {await self._clients.credential.token()}"),)
        request = team_hub_service_pb2.ListUserMembershipsRequest(user=user, page_size=100)
        with translated("team_hub", "look up the new owner's membership"):
            reply = await stub.ListUserMemberships(request, timeout=_TIMEOUT, metadata=metadata)
        for entry in reply.user_memberships:
            membership = entry.membership
            if membership.organization_id == organization_id and membership.state == member_pb2.MEMBERSHIP_STATE_ACTIVE:
                try:
                    return Role(int(membership.role))
                except ValueError:
                    return None
        return None
