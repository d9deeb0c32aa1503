"""What team hub asks of developer_api: revoke the API keys of a member it removed.

API keys die with their owner's membership unless an ADMIN transferred them first
(developer_api's TransferApiKey). RemoveMember asks right after the removal is committed
and identity has revoked the member's tokens; if developer_api cannot be reached the
request fails with UNAVAILABLE, the removal stays done, and a retry of RemoveMember (which
finds the removal in its identity calls) asks again. The call is idempotent.
"""

from __future__ import annotations

from mesh.kit.client_errors import translated
from runtime.clients import MeshClients
from vocelio.developer_api.v1 import developer_api_service_pb2, developer_api_service_pb2_grpc

CALL_TIMEOUT = 10.0


class DeveloperApiLink:
    """Team hub's one request to developer_api, made with team hub's own service credential."""

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    async def revoke_keys_of(self, user: str, organization_id: str) -> list[str]:
        """Revoke the ACTIVE keys ``user`` owns in the organisation; the names of those revoked.

        Raises:
            Unavailable: developer_api did not answer (retry the removal).

        """
        stub = self._clients.stub("developer_api", developer_api_service_pb2_grpc.DeveloperApiServiceStub)
        metadata = (("authorization", f"Bearer {await self._clients.credential.token()}"),)
        request = developer_api_service_pb2.RevokeOwnerApiKeysRequest(
            organization_id=organization_id, owner=user, reason="owner_removed"
        )
        with translated("developer_api", "revoke the removed member's API keys"):
            reply = await stub.RevokeOwnerApiKeys(request, timeout=CALL_TIMEOUT, metadata=metadata)
        return list(reply.revoked_api_keys)
