"""Whether an API key's organisation may use the API: asked of team_hub on every verification.

A key of a SUSPENDED or CLOSED organisation (or of one team_hub does not know) does not
verify; when team_hub cannot answer the verification fails with UNAVAILABLE — never a
pass. There is deliberately no cache here: ``VerifyApiKey`` runs only when a service's
own short API-key cache misses, which an organisation revocation forces
(``runtime.security``), so the answer must be team_hub's current one.
"""

from __future__ import annotations

import logging

import grpc

from mesh.errors import Unavailable
from mesh.principal import acting_as
from runtime.clients import MeshClients
from vocelio.team_hub.v1 import organization_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

log = logging.getLogger(__name__)

CALL_TIMEOUT = 5.0
# team_hub's answers for an organisation that is not there (for the asking service).
_GONE = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


class OrganizationGate:
    """Asks team_hub whether an organisation is ACTIVE."""

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    async def is_active(self, organization_id: str) -> bool:
        """Whether the organisation exists and is ACTIVE.

        Raises:
            Unavailable: team_hub could not be asked.

        """
        stub = self._clients.stub("team_hub", team_hub_service_pb2_grpc.TeamHubServiceStub)
        request = team_hub_service_pb2.GetOrganizationRequest(name=f"organizations/{organization_id}")
        try:
            with acting_as(None):  # developer_api's own question, with its own service token
                reply = await stub.GetOrganization(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() in _GONE:
                return False
            log.warning("team_hub could not say whether %s is active: %s", organization_id, error.code().name)
            raise Unavailable("the API key cannot be checked right now; retry shortly") from None
        return bool(reply.organization.state == organization_pb2.ORGANIZATION_STATE_ACTIVE)
