"""What team hub asks of identity: users' e-mail addresses, and token revocations.

A change that owes identity a revocation (a removed member's tokens) writes it into the
kit's ``identity_calls`` in the change's own transaction (:class:`mesh.kit.audit.IdentityCalls`),
next to its audit entries; right after the commit the organisation's pending calls are
delivered. A revocation that cannot be delivered fails the request with UNAVAILABLE — the
change is saved and the request is safe to retry, and the retry (or any later delivery in
the organisation) sends it.
"""

from __future__ import annotations

from typing import NamedTuple

import grpc

from mesh.errors import NotFound
from mesh.kit.client_errors import translated
from runtime.clients import MeshClients
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc

CALL_TIMEOUT = 5.0


def revocation(
    user: str, organization_id: str, *, reason: str, end_sessions: bool
) -> identity_service_pb2.RevokePrincipalTokensRequest:
    """A RevokePrincipalTokens request for a user's tokens in one organisation."""
    return identity_service_pb2.RevokePrincipalTokensRequest(
        principal=user, organization_id=organization_id, reason=reason, end_sessions=end_sessions
    )


def organization_revocation(
    organization_id: str, *, reason: str, end_sessions: bool
) -> identity_service_pb2.RevokePrincipalTokensRequest:
    """A RevokePrincipalTokens request for every credential of an organisation (suspension, closing)."""
    return identity_service_pb2.RevokePrincipalTokensRequest(
        principal=f"organizations/{organization_id}",
        organization_id=organization_id,
        reason=reason,
        end_sessions=end_sessions,
    )


class UserContact(NamedTuple):
    """What team hub reads of a user from identity."""

    email: str
    display_name: str
    email_verified: bool


class IdentityLink:
    """Team hub's questions to identity."""

    def __init__(self, clients: MeshClients) -> None:
        self._clients = clients

    async def user_email(self, user: str) -> UserContact:
        """A user's e-mail address, whether it is verified, and display name, read with the caller's own credential.

        Raises:
            NotFound: identity does not know the user (or does not show them to the caller).
            Unavailable: identity cannot be reached.

        """
        stub = self._clients.stub("identity", identity_service_pb2_grpc.IdentityServiceStub)
        hidden = NotFound("user not found")  # a user the caller may not see is one it cannot find
        overrides = {grpc.StatusCode.NOT_FOUND: hidden, grpc.StatusCode.PERMISSION_DENIED: hidden}
        with translated("identity", "read the user's e-mail address", overrides):
            reply = await stub.GetUser(identity_service_pb2.GetUserRequest(name=user), timeout=CALL_TIMEOUT)
        return UserContact(reply.user.email, reply.user.display_name, reply.user.email_verified)
