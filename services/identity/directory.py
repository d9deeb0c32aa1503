"""What identity asks other services: memberships and organisations (team_hub), API keys (developer_api).

Identity makes these calls on its own behalf, with a service token it signs itself: they
are internal methods that a user's propagated credential could not call, and a token
grant has no caller to propagate anyway. Failures become product errors here, so the
use cases never see gRPC.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc

from mesh.access import Role
from mesh.errors import InvalidArgument, Unavailable
from mesh.kit.client_errors import domain_error
from mesh.restrictions import NO_RESTRICTIONS, KeyRestrictions
from runtime.clients import MeshClients
from services.identity.domain import Membership
from vocelio.developer_api.v1 import developer_api_service_pb2, developer_api_service_pb2_grpc
from vocelio.team_hub.v1 import member_pb2, organization_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

TokenSource = Callable[[], Awaitable[str]]

_TIMEOUT = 10.0
_MAX_PAGES = 10
# developer_api answers these for a key that does not work; anything else is an outage.
_KEY_REJECTED = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
)
# team_hub answers these when the request itself is wrong (bad invitation, bad name).
_REQUEST_REJECTED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
)


_INACTIVE = (organization_pb2.ORGANIZATION_STATE_SUSPENDED, organization_pb2.ORGANIZATION_STATE_CLOSED)


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKeyGrant:
    """A verified API key.

    Attributes:
        api_key: ``organizations/…/api_keys/…``, the principal.
        organization_id: its organisation.
        scopes: its permissions.
        expire_time: when it expires, if ever.
        display_name: its name, for the audit log.
        restrictions: its IP ranges, origins and agents, which tokens minted from it carry.

    """

    api_key: str
    organization_id: str
    scopes: tuple[str, ...]
    expire_time: dt.datetime | None
    display_name: str
    restrictions: KeyRestrictions = NO_RESTRICTIONS


class Directory(Protocol):
    """The questions identity asks team_hub and developer_api."""

    async def memberships(self, user: str) -> list[Membership]:
        """The user's active memberships, oldest first."""

    async def provision_organization(
        self, *, user: str, email: str, display_name: str, organization_display_name: str, request_id: str
    ) -> Membership:
        """Create an organisation whose first ADMIN is the user."""

    async def redeem_invitation(
        self, *, token: str, user: str, email: str, display_name: str, validate_only: bool = False
    ) -> Membership:
        """Make the user a member through an invitation (or, ``validate_only``, say what membership it would be)."""

    async def verify_api_key(self, secret: str, client_address: str) -> ApiKeyGrant | None:
        """The key behind a secret, or ``None`` when the secret does not work."""


def _role_name(value: int) -> str | None:
    try:
        return Role(value).name
    except ValueError:
        return None


def _membership(
    membership: member_pb2.Membership | None,
    organization: organization_pb2.Organization | None = None,
) -> Membership | None:
    if membership is None:
        return None
    if organization is not None and organization.state in _INACTIVE:
        return None  # team_hub lists only ACTIVE organisations; never issue a token for another, whatever it says
    role = _role_name(int(membership.role))
    if role is None:
        return None
    display_name = organization.display_name if organization is not None else ""
    return Membership(membership.organization_id, role, membership.name, display_name)


class MeshDirectory:
    """The directory over gRPC stubs from ``context.clients``."""

    def __init__(self, clients: MeshClients, token: TokenSource) -> None:
        self._clients = clients
        self._token = token

    def _team_hub(self) -> team_hub_service_pb2_grpc.TeamHubServiceStub:
        return self._clients.stub("team_hub", team_hub_service_pb2_grpc.TeamHubServiceStub)

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {await self._token()}"),)

    async def memberships(self, user: str) -> list[Membership]:
        """The user's active memberships, oldest first.

        Raises:
            Unavailable: team_hub did not answer.

        """
        found: list[Membership] = []
        page_token = ""
        for _ in range(_MAX_PAGES):
            request = team_hub_service_pb2.ListUserMembershipsRequest(user=user, page_size=100, page_token=page_token)
            try:
                reply = await self._team_hub().ListUserMemberships(
                    request, timeout=_TIMEOUT, metadata=await self._metadata()
                )
            except grpc.aio.AioRpcError as error:
                # Any failure here is team_hub's or ours, not the caller's: the caller falls back to the cache.
                raise _unavailable("team_hub", "list the user's memberships", error) from None
            for entry in reply.user_memberships:
                membership = _membership(entry.membership, entry.organization)
                if membership is not None:
                    found.append(membership)
            page_token = reply.next_page_token
            if not page_token:
                break
        return found

    async def provision_organization(
        self, *, user: str, email: str, display_name: str, organization_display_name: str, request_id: str
    ) -> Membership:
        """Create an organisation whose first ADMIN is the user.

        Raises:
            InvalidArgument: team_hub refused the organisation.
            Unavailable: team_hub did not answer.

        """
        request = team_hub_service_pb2.ProvisionOrganizationRequest(
            organization=organization_pb2.Organization(display_name=organization_display_name),
            admin_user=user,
            admin_email=email,
            admin_display_name=display_name,
            request_id=request_id,
        )
        try:
            reply = await self._team_hub().ProvisionOrganization(
                request, timeout=_TIMEOUT, metadata=await self._metadata()
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _REQUEST_REJECTED:
                raise InvalidArgument(
                    f"the organisation cannot be created: {error.details()}",
                    {"organization_display_name": error.details() or "refused"},
                ) from None
            raise _unavailable("team_hub", "create the organisation", error) from None
        membership = _membership(reply.membership if reply.HasField("membership") else None, reply.organization)
        if membership is None:
            raise Unavailable("team_hub created the organisation without a membership; try again")
        return membership

    async def redeem_invitation(
        self, *, token: str, user: str, email: str, display_name: str, validate_only: bool = False
    ) -> Membership:
        """Make the user a member through an invitation (or, ``validate_only``, say what membership it would be).

        Raises:
            InvalidArgument: the invitation is unknown, expired, used, revoked or for another address.
            Unavailable: team_hub did not answer.

        """
        request = team_hub_service_pb2.RedeemInvitationRequest(
            invitation_token=token, user=user, email=email, display_name=display_name, validate_only=validate_only
        )
        try:
            reply = await self._team_hub().RedeemInvitation(request, timeout=_TIMEOUT, metadata=await self._metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() in _REQUEST_REJECTED:
                raise InvalidArgument(
                    f"the invitation cannot be used: {error.details()}",
                    {"invitation_token": error.details() or "not valid"},
                ) from None
            raise _unavailable("team_hub", "redeem the invitation", error) from None
        membership = _membership(reply.membership if reply.HasField("membership") else None)
        if membership is None:
            raise Unavailable("team_hub redeemed the invitation without a membership; try again")
        return membership

    async def verify_api_key(self, secret: str, client_address: str) -> ApiKeyGrant | None:
        """The key behind a secret, or ``None`` when the secret does not work.

        Raises:
            Unavailable: developer_api did not answer.

        """
        stub = self._clients.stub("developer_api", developer_api_service_pb2_grpc.DeveloperApiServiceStub)
        request = developer_api_service_pb2.VerifyApiKeyRequest(secret=secret, client_address=client_address)
        try:
            reply = await stub.VerifyApiKey(request, timeout=_TIMEOUT, metadata=await self._metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() in _KEY_REJECTED:
                return None
            raise _unavailable("developer_api", "verify the API key", error) from None
        expire = reply.expire_time.ToDatetime(tzinfo=dt.UTC) if reply.HasField("expire_time") else None
        restrictions = KeyRestrictions.of(
            ip_ranges=reply.restrictions.allowed_ip_ranges,
            origins=reply.restrictions.allowed_origins,
            agents=reply.restrictions.allowed_agents,
        )
        return ApiKeyGrant(
            reply.api_key, reply.organization_id, tuple(reply.scopes), expire, reply.display_name, restrictions
        )


def _unavailable(service: str, what: str, error: grpc.aio.AioRpcError) -> Unavailable:
    """UNAVAILABLE whatever the other side answered (the kit's message for outages, the answer logged)."""
    failure = domain_error(error, service, what)
    return failure if isinstance(failure, Unavailable) else Unavailable(f"{service} could not {what} right now")
