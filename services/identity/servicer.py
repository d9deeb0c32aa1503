"""IdentityService over gRPC: proto in, use case, proto out.

Grant failures carry a ``google.rpc.ErrorInfo`` (identity's ``ErrorReason`` as reason, the
RFC 6749 error code in ``metadata["oauth_error"]``) and rate limits a ``google.rpc.RetryInfo``:
the errors interceptor only knows BadRequest details, so :func:`rich_errors` sends these
statuses itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from mesh.errors import PermissionDenied, Unimplemented
from mesh.errors import rich_status as mesh_rich_status
from mesh.kit.caller import CallerInfo
from mesh.principal import Principal, current
from services.identity import accounts, convert, grants, oauth, security, sessions, signup
from services.identity.app import Identity
from services.identity.oauth import OAuthError, RateLimited
from vocelio.identity.v1 import identity_service_pb2 as pb
from vocelio.identity.v1 import identity_service_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
Method = Callable[[Any, RequestT, Context], Awaitable[ResponseT]]


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(error: OAuthError | RateLimited) -> status_pb2.Status:
    """The ``google.rpc.Status`` for a grant failure or a rate limit, with its details."""
    status = mesh_rich_status(error)
    if isinstance(error, RateLimited):
        delay = duration_pb2.Duration(seconds=max(1, math.ceil(error.retry_after)))
        retry = _packed(error_details_pb2.RetryInfo(retry_delay=delay))
        return status_pb2.Status(code=status.code, message=status.message, details=[retry, *status.details])
    return status


def rich_errors(method: Method[RequestT, ResponseT]) -> Method[RequestT, ResponseT]:
    """Send grant failures and rate limits with their google.rpc details."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: RequestT, context: Context) -> ResponseT:
        try:
            return await method(self, request, context)
        except (OAuthError, RateLimited) as error:
            await context.abort_with_status(rpc_status.to_status(rich_status(error)))  # type: ignore[attr-defined]
            raise  # pragma: no cover - abort_with_status always raises

    return wrapper


def _internal_caller() -> Principal:
    principal = current()
    if not principal.is_platform_admin:
        raise PermissionDenied("this method is for Vocelio's own services")
    return principal


class IdentityServicer(identity_service_pb2_grpc.IdentityServiceServicer):
    """Every RPC of ``vocelio.identity.v1.IdentityService``."""

    def __init__(self, app: Identity) -> None:
        self.app = app

    @rich_errors
    async def IssueToken(self, request: pb.IssueTokenRequest, context: Context) -> pb.IssueTokenResponse:
        """RFC 6749 token endpoint."""
        grant = await grants.issue_token(
            self.app,
            oauth.GrantRequest(
                grant_type=request.grant_type,
                username=request.username,
                password=request.password,
                refresh_token=request.refresh_token,
                client_id=request.client_id,
                client_secret=request.client_secret,
                scope=request.scope,
                organization_id=request.organization_id,
            ),
            CallerInfo.of(context),
        )
        return pb.IssueTokenResponse(
            access_token=grant.access_token,
            token_type="Bearer",
            expires_in=grant.expires_in,
            refresh_token=grant.refresh_token,
            scope=" ".join(grant.scopes),
            organization_id=grant.organization_id,
            refresh_token_expires_in=grant.refresh_expires_in,
        )

    async def RevokeToken(self, request: pb.RevokeTokenRequest, context: Context) -> pb.RevokeTokenResponse:
        """RFC 7009 revocation endpoint."""
        await sessions.revoke_token(self.app, request.token, request.token_type_hint, CallerInfo.of(context))
        return pb.RevokeTokenResponse()

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        """End the caller's session."""
        await self.app.ready()
        ended = await sessions.logout(self.app, current(), request.all_sessions, CallerInfo.of(context))
        return pb.LogoutResponse(revoked_session_count=ended)

    @rich_errors
    async def SignUp(self, request: pb.SignUpRequest, context: Context) -> pb.SignUpResponse:
        """Create a user and their organisation (or join one by invitation)."""
        result = await signup.sign_up(
            self.app,
            signup.SignUpForm(
                email=request.email,
                password=request.password,
                display_name=request.display_name,
                organization_display_name=request.organization_display_name,
                invitation_token=request.invitation_token,
                terms_accepted=request.terms_accepted,
                request_id=request.request_id,
            ),
            CallerInfo.of(context),
        )
        return pb.SignUpResponse(
            user=convert.user(result.user), organization_id=result.organization_id, role=result.role
        )

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> pb.RequestPasswordResetResponse:
        """Needs e-mail delivery."""
        raise Unimplemented("password reset e-mails arrive with the notifications service's e-mail delivery")

    async def ResetPassword(self, request: pb.ResetPasswordRequest, context: Context) -> pb.ResetPasswordResponse:
        """Needs e-mail delivery."""
        raise Unimplemented("password reset arrives with the notifications service's e-mail delivery")

    async def VerifyEmail(self, request: pb.VerifyEmailRequest, context: Context) -> pb.VerifyEmailResponse:
        """Needs e-mail delivery."""
        raise Unimplemented("e-mail verification arrives with the notifications service's e-mail delivery")

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        """The public keys that verify access tokens."""
        await self.app.ready()
        return pb.GetJwksResponse(keys=[convert.jwk(entry) for entry in self.app.keyring.jwks()])

    async def ListSigningKeys(self, request: pb.ListSigningKeysRequest, context: Context) -> pb.ListSigningKeysResponse:
        """Signing keys, public halves only."""
        rows, token = await security.list_signing_keys(self.app, current(), request)
        return pb.ListSigningKeysResponse(signing_keys=[convert.signing_key(r) for r in rows], next_page_token=token)

    async def RotateSigningKey(
        self, request: pb.RotateSigningKeyRequest, context: Context
    ) -> pb.RotateSigningKeyResponse:
        """New ACTIVE key; the old one becomes PREVIOUS."""
        return await security.rotate_signing_key(self.app, current(), request, CallerInfo.of(context))

    async def RevokeSigningKey(
        self, request: pb.RevokeSigningKeyRequest, context: Context
    ) -> pb.RevokeSigningKeyResponse:
        """Stop trusting a signing key at once."""
        return await security.revoke_signing_key(self.app, current(), request, CallerInfo.of(context))

    async def GetCurrentUser(self, request: pb.GetCurrentUserRequest, context: Context) -> pb.GetCurrentUserResponse:
        """The caller and their memberships."""
        await self.app.ready()
        principal = current()
        found = await accounts.current_user(self.app, principal)
        return pb.GetCurrentUserResponse(
            user=convert.user(found.user),
            organization_id=principal.organization_id,
            role=principal.role,
            memberships=[
                pb.OrganizationMembership(
                    organization_id=m.organization_id,
                    organization_display_name=m.organization_display_name,
                    role=m.role,
                    member=m.member,
                )
                for m in found.memberships
            ],
        )

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        """One user."""
        await self.app.ready()
        return pb.GetUserResponse(user=convert.user(await accounts.get_user(self.app, current(), request.name)))

    async def ListUsers(self, request: pb.ListUsersRequest, context: Context) -> pb.ListUsersResponse:
        """Users of an organisation."""
        await self.app.ready()
        rows, token = await accounts.list_users(self.app, current(), request)
        return pb.ListUsersResponse(users=[convert.user(r) for r in rows], next_page_token=token)

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Context) -> pb.UpdateUserResponse:
        """Profile changes."""
        await self.app.ready()
        message = request.user
        change = accounts.ProfileChange(
            name=message.name,
            values={field: getattr(message, field) for field in accounts.PROFILE_FIELDS},
            mask=tuple(request.update_mask.paths),
            etag=message.etag,
        )
        return pb.UpdateUserResponse(user=convert.user(await accounts.update_user(self.app, current(), change)))

    @rich_errors
    async def ChangePassword(self, request: pb.ChangePasswordRequest, context: Context) -> pb.ChangePasswordResponse:
        """New password after checking the current one."""
        await self.app.ready()
        return await accounts.change_password(self.app, current(), request, CallerInfo.of(context))

    async def DisableUser(self, request: pb.DisableUserRequest, context: Context) -> pb.DisableUserResponse:
        """Disable a user platform-wide."""
        await self.app.ready()
        row = await accounts.disable_user(self.app, current(), request.name, request.reason, CallerInfo.of(context))
        return pb.DisableUserResponse(user=convert.user(row))

    async def EnableUser(self, request: pb.EnableUserRequest, context: Context) -> pb.EnableUserResponse:
        """Enable a disabled user."""
        await self.app.ready()
        row = await accounts.enable_user(self.app, current(), request.name, CallerInfo.of(context))
        return pb.EnableUserResponse(user=convert.user(row))

    async def UnlockUser(self, request: pb.UnlockUserRequest, context: Context) -> pb.UnlockUserResponse:
        """Lift a sign-in lock."""
        await self.app.ready()
        row = await accounts.unlock_user(self.app, current(), request.name, CallerInfo.of(context))
        return pb.UnlockUserResponse(user=convert.user(row))

    async def ListSessions(self, request: pb.ListSessionsRequest, context: Context) -> pb.ListSessionsResponse:
        """Open sessions."""
        await self.app.ready()
        principal = current()
        rows, token = await sessions.list_sessions(self.app, principal, request)
        return pb.ListSessionsResponse(
            sessions=[convert.session(r, principal.session_id) for r in rows], next_page_token=token
        )

    async def DeleteSession(self, request: pb.DeleteSessionRequest, context: Context) -> pb.DeleteSessionResponse:
        """End a session."""
        await self.app.ready()
        await sessions.delete_session(self.app, current(), request.name, CallerInfo.of(context))
        return pb.DeleteSessionResponse()

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Context) -> pb.ListAuditEventsResponse:
        """The security audit log."""
        await self.app.ready()
        rows, token = await security.list_audit_events(self.app, current(), request)
        return pb.ListAuditEventsResponse(audit_events=[convert.audit_event(r) for r in rows], next_page_token=token)

    async def RecordAuditEvent(
        self, request: pb.RecordAuditEventRequest, context: Context
    ) -> pb.RecordAuditEventResponse:
        """Another service's audit event."""
        await self.app.ready()
        return await security.record_audit_event(self.app, _internal_caller(), request)

    async def StreamRevocations(
        self, request: pb.StreamRevocationsRequest, context: Context
    ) -> AsyncIterator[pb.StreamRevocationsResponse]:
        """The revocation log: catch-up, marker, live."""
        _internal_caller()
        async for item in security.follow_revocations(self.app, request.after_sequence):
            yield pb.StreamRevocationsResponse(
                revocation=convert.revocation(item.revocation) if item.revocation is not None else None,
                caught_up=item.caught_up,
                head_sequence=item.head_sequence,
                heartbeat=item.heartbeat,
            )

    async def ListRevokedTokens(
        self, request: pb.ListRevokedTokensRequest, context: Context
    ) -> pb.ListRevokedTokensResponse:
        """The revocation log, paged."""
        _internal_caller()
        page = await security.list_revocations(self.app, request)
        return pb.ListRevokedTokensResponse(
            revocations=[convert.revocation(r) for r in page.revocations],
            next_page_token=page.next_page_token,
            head_sequence=page.head_sequence,
        )

    async def RevokePrincipalTokens(
        self, request: pb.RevokePrincipalTokensRequest, context: Context
    ) -> pb.RevokePrincipalTokensResponse:
        """Revoke everything a principal holds (member removal, role change, key revocation)."""
        await self.app.ready()
        _internal_caller()
        done = await sessions.revoke_principal_tokens(
            self.app, request.principal, request.organization_id, request.reason, request.end_sessions
        )
        return pb.RevokePrincipalTokensResponse(
            revocation=convert.revocation(done.revocation), revoked_session_count=done.ended_sessions
        )
