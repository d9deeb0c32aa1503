"""A real identity server on port 0 (its own tokens, its own JWKS, its own revocation stream),
next to fake team_hub and developer_api servers that record what identity asks them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mesh import registry as registry_module
from mesh import service_credentials
from mesh.config import Settings
from mesh.jwks import StaticKeys
from mesh.registry import default_registry
from mesh.tokens import Claims, TokenVerifier
from runtime.revocations import RevocationWatcher
from runtime.security import SecurityOptions
from runtime.server import ServiceHost
from vocelio.developer_api.v1 import developer_api_service_pb2, developer_api_service_pb2_grpc
from vocelio.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from vocelio.team_hub.v1 import member_pb2, organization_pb2, team_hub_service_pb2, team_hub_service_pb2_grpc

pb = identity_service_pb2
SERVICE_SECRET = "test-mesh-service-secret-0123456789"
ADMIN_EMAIL = "root@vocelio.example"
ADMIN_PASSWORD = "bootstrap-password-42"
PASSWORD = "correct horse battery staple"


def service_secret(name: str) -> str:
    """The credential of ``services/<name>`` under the harness's master secret."""
    return service_credentials.derive(SERVICE_SECRET, name)


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def header_of(token: str) -> dict[str, Any]:
    """The (unverified) header of a JWT."""
    part = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return header


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details on the error"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo detail")


def oauth_error(error: grpc.aio.AioRpcError) -> str:
    """The RFC 6749 error code of a failed grant, checking the ErrorInfo that carries it.

    ErrorInfo.reason is identity's ErrorReason value (``INVALID_GRANT``), the RFC code rides in
    ``metadata["oauth_error"]`` (``invalid_grant``).
    """
    info = error_info(error)
    assert info.domain == "identity.vocelio.com"
    code = str(info.metadata["oauth_error"])
    assert info.reason == code.upper(), (info.reason, code)
    return code


def retry_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo:
    """The RetryInfo detail of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no RetryInfo detail")


@dataclasses.dataclass
class Recorded:
    request: Any
    metadata: dict[str, str]


class FakeTeamHub(team_hub_service_pb2_grpc.TeamHubServiceServicer):
    """Organisations and memberships in memory; records identity's calls."""

    def __init__(self) -> None:
        self.memberships: dict[str, list[tuple[str, int]]] = {}
        self.invitations: dict[str, tuple[str, int, str]] = {}
        self.calls: list[Recorded] = []
        self.fail_provision = False
        self.down = False
        self._organizations = 0

    def _record(self, request: Any, context: Any) -> None:
        self.calls.append(Recorded(request, dict(context.invocation_metadata())))

    def add(self, user: str, organization_id: str, role: int) -> None:
        self.memberships.setdefault(user, []).append((organization_id, role))

    def set_role(self, user: str, organization_id: str, role: int) -> None:
        self.memberships[user] = [(o, role if o == organization_id else r) for o, r in self.memberships[user]]

    def remove(self, user: str, organization_id: str) -> None:
        self.memberships[user] = [(o, r) for o, r in self.memberships[user] if o != organization_id]

    @staticmethod
    def _membership(user: str, organization_id: str, role: int) -> member_pb2.Membership:
        return member_pb2.Membership(
            name=f"organizations/{organization_id}/members/m-{user.split('/')[-1]}",
            organization_id=organization_id,
            user=user,
            role=member_pb2.Role.Name(role),
        )

    async def ListUserMemberships(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "team_hub is down")
        return team_hub_service_pb2.ListUserMembershipsResponse(
            user_memberships=[
                team_hub_service_pb2.UserMembership(
                    membership=self._membership(request.user, org, role),
                    organization=organization_pb2.Organization(organization_id=org, display_name=f"{org} Inc"),
                )
                for org, role in self.memberships.get(request.user, [])
            ]
        )

    async def ProvisionOrganization(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        if self.fail_provision:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "team_hub is down")
        self._organizations += 1
        org = f"org_{self._organizations}"
        self.add(request.admin_user, org, member_pb2.ROLE_ADMIN)
        return team_hub_service_pb2.ProvisionOrganizationResponse(
            organization=organization_pb2.Organization(
                name=f"organizations/{org}", organization_id=org, display_name=request.organization.display_name
            ),
            membership=self._membership(request.admin_user, org, member_pb2.ROLE_ADMIN),
        )

    async def RedeemInvitation(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        invitation = self.invitations.get(request.invitation_token)
        if invitation is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "the invitation does not exist or has expired")
        org, role, email = invitation  # type: ignore[misc]
        if email != request.email:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the invitation is for another address")
        if request.validate_only:
            preview = self._membership(request.user, org, role)
            preview.name = ""
            return team_hub_service_pb2.RedeemInvitationResponse(membership=preview)
        self.add(request.user, org, role)
        return team_hub_service_pb2.RedeemInvitationResponse(membership=self._membership(request.user, org, role))


class FakeDeveloperApi(developer_api_service_pb2_grpc.DeveloperApiServiceServicer):
    """API keys by secret; records identity's calls."""

    def __init__(self) -> None:
        self.keys: dict[str, developer_api_service_pb2.VerifyApiKeyResponse] = {}
        self.calls: list[Recorded] = []

    async def VerifyApiKey(self, request: Any, context: Any) -> Any:
        self.calls.append(Recorded(request, dict(context.invocation_metadata())))
        key = self.keys.get(request.secret)
        if key is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        return key


class Client:
    """The IdentityService stub, optionally calling with a bearer token."""

    def __init__(self, stub: identity_service_pb2_grpc.IdentityServiceStub, token: str = "") -> None:
        self._stub = stub
        self.token = token

    def __getattr__(self, method: str) -> Callable[..., Any]:
        rpc = getattr(self._stub, method)
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()

        def call(request: Any, **kwargs: Any) -> Any:
            extra = tuple(kwargs.pop("metadata", ()))
            return rpc(request, metadata=metadata + extra, timeout=kwargs.pop("timeout", 20), **kwargs)

        return call


@dataclasses.dataclass
class Harness:
    host: ServiceHost
    team_hub: FakeTeamHub
    developer_api: FakeDeveloperApi
    stub: identity_service_pb2_grpc.IdentityServiceStub
    settings: Settings

    @property
    def anonymous(self) -> Client:
        return Client(self.stub)

    def with_token(self, token: str) -> Client:
        return Client(self.stub, token)

    async def jwks(self) -> dict[str, Any]:
        reply = await self.stub.GetJwks(pb.GetJwksRequest(), timeout=10)
        document: dict[str, Any] = json_format.MessageToDict(reply, preserving_proto_field_name=True)
        return document

    async def verify(self, token: str) -> Claims:
        """Verify a token as any other service would: mesh.tokens + the published JWKS."""
        verifier = TokenVerifier(
            issuer=self.settings.jwt_issuer, audience=self.settings.jwt_audience, keys=StaticKeys(await self.jwks())
        )
        return await verifier.verify(token)

    async def sign_up(self, email: str, *, organization: str = "Acme", **fields: Any) -> Any:
        request = pb.SignUpRequest(
            email=email,
            password=fields.pop("password", PASSWORD),
            display_name=fields.pop("display_name", email.split("@")[0].title()),
            organization_display_name=organization,
            terms_accepted=True,
            **fields,
        )
        return await self.anonymous.SignUp(request)

    async def password_grant(self, email: str, password: str = PASSWORD, **fields: Any) -> Any:
        return await self.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="password", username=email, password=password, **fields)
        )

    async def refresh(self, refresh_token: str, **fields: Any) -> Any:
        return await self.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="refresh_token", refresh_token=refresh_token, **fields)
        )

    async def service_token(self, name: str = "team_hub") -> str:
        reply = await self.anonymous.IssueToken(
            pb.IssueTokenRequest(
                grant_type="client_credentials", client_id=f"services/{name}", client_secret=service_secret(name)
            )
        )
        token: str = reply.access_token
        return token

    async def via_edge(self, address: str) -> tuple[tuple[str, str], ...]:
        """Metadata of a call the REST edge forwards for a client at ``address`` (with the edge's token)."""
        token = await self.service_token("edge")
        return (("x-forwarded-for", address), ("x-vocelio-proxy-authorization", f"Bearer {token}"))

    async def admin(self) -> Client:
        """The bootstrap SUPER_ADMIN."""
        reply = await self.password_grant(ADMIN_EMAIL, ADMIN_PASSWORD)
        return self.with_token(reply.access_token)

    async def user(self, email: str, organization: str = "Acme") -> tuple[Any, Any, Client]:
        """Sign up and sign in: the SignUp reply, the token reply and a client with the access token."""
        signed_up = await self.sign_up(email, organization=organization)
        tokens = await self.password_grant(email)
        return signed_up, tokens, self.with_token(tokens.access_token)


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    """Poll until ``check`` holds; fail after ``limit`` seconds (a bound, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def identity_settings(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(
        settings,
        service_secret=SERVICE_SECRET,
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        **changes,
    )


class _StreamAuth(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Puts a service token on server-streaming calls."""

    def __init__(self, token: Callable[[], Awaitable[str]]) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {await self._token()}")]
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
        )
        return await continuation(details, request)


class _WatcherClients:
    """What RevocationWatcher needs of MeshClients, with the credential on streaming calls.

    grpc.aio files a client interceptor under the first call kind it implements only, so
    the mesh's shared auth interceptor (unary-unary first) never sees streaming calls;
    until that is fixed in runtime/, the identity host's own watcher is started here.
    """

    def __init__(self, address: str, token: Callable[[], Awaitable[str]]) -> None:
        interceptors: list[Any] = [_StreamAuth(token)]
        self.channel = grpc.aio.insecure_channel(address, interceptors=interceptors)

    def stub(self, _name: str, stub_class: Any) -> Any:
        return stub_class(self.channel)


async def start_harness(settings: Settings) -> AsyncIterator[Harness]:
    team_hub, developer_api = FakeTeamHub(), FakeDeveloperApi()
    fakes = grpc.aio.server()
    team_hub_service_pb2_grpc.add_TeamHubServiceServicer_to_server(team_hub, fakes)
    developer_api_service_pb2_grpc.add_DeveloperApiServiceServicer_to_server(developer_api, fakes)
    fake_port = fakes.add_insecure_port("127.0.0.1:0")
    await fakes.start()
    registry = default_registry()
    security = SecurityOptions(api_keys=False, watch_revocations=False)
    host = ServiceHost(registry.service("identity"), settings, registry, port=0, security=security)
    try:
        await host.start()
    except BaseException:
        await fakes.stop(None)
        raise
    host.clients.update_ports({"identity": host.port, "team_hub": fake_port, "developer_api": fake_port})
    watcher_clients = _WatcherClients(f"127.0.0.1:{host.port}", host.clients.credential.token)
    watcher = RevocationWatcher(watcher_clients, host.revocations)  # type: ignore[arg-type]
    watcher.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
    try:
        yield Harness(host, team_hub, developer_api, stub, settings)
    finally:
        await watcher.stop()
        await watcher_clients.channel.close(None)
        await channel.close(None)
        await host.shutdown()
        await fakes.stop(None)


@pytest.fixture
def services_list_revocations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every service token ListRevokedTokens' permission.

    No service lists revocations (the runtime streams them), so no real token may; the
    tests that read the list as a service declare the call for the test's duration.
    """
    extended = (*registry_module.RUNTIME_CALLS, "/vocelio.identity.v1.IdentityService/ListRevokedTokens")
    monkeypatch.setattr(registry_module, "RUNTIME_CALLS", extended)


@pytest.fixture
async def harness(sqlite_settings: Settings) -> AsyncIterator[Harness]:
    async for running in start_harness(identity_settings(sqlite_settings)):
        yield running


@pytest.fixture
async def any_backend(settings: Settings) -> AsyncIterator[Harness]:
    async for running in start_harness(identity_settings(settings)):
        yield running
