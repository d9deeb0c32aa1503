"""Sign-up and the three grants against a real identity server."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from google.protobuf import timestamp_pb2

from tests.services.identity.conftest import (
    PASSWORD,
    Harness,
    claims_of,
    error_info,
    header_of,
    oauth_error,
    pb,
    service_secret,
)
from tests.support.crud_suite import violations
from vocelio.developer_api.v1 import developer_api_service_pb2
from vocelio.identity.v1 import user_pb2
from vocelio.team_hub.v1 import member_pb2

BAD_CREDENTIALS = "the e-mail address or the password is wrong"


@pytest.mark.usefixtures("services_list_revocations")
async def test_sign_up_password_grant_refresh_rotation_and_reuse_detection(any_backend: Harness):
    harness = any_backend
    signed_up = await harness.sign_up(" Ada@Example.com ", organization="Analytical Engines")
    assert signed_up.user.email == "ada@example.com"
    assert signed_up.user.state == user_pb2.USER_STATE_ACTIVE
    assert signed_up.role == "ADMIN" and signed_up.organization_id == "org_1"
    assert signed_up.user.organization_id == "org_1"
    provision = harness.team_hub.calls[-1]
    assert provision.request.admin_user == signed_up.user.name
    assert provision.request.organization.display_name == "Analytical Engines"
    # identity asks team_hub with its own service token, which any service can verify.
    caller = await harness.verify(provision.metadata["authorization"].removeprefix("Bearer "))
    assert (caller.subject, caller.role, caller.organization_id) == ("services/identity", "SERVICE", "")

    first = await harness.password_grant("ADA@example.com")
    assert first.token_type == "Bearer" and first.expires_in == 900
    assert first.organization_id == "org_1" and first.refresh_token and first.refresh_token_expires_in > 0
    assert header_of(first.access_token)["typ"] == "at+jwt"
    claims = await harness.verify(first.access_token)
    assert (claims.subject, claims.organization_id, claims.role) == (signed_up.user.name, "org_1", "ADMIN")
    assert claims.session_id.startswith("sessions/s_")
    assert claims.expires_at - claims.issued_at == 900
    assert claims.scopes == ()

    second = await harness.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    rotated = await harness.verify(second.access_token)
    assert rotated.session_id == claims.session_id and rotated.token_id != claims.token_id

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await harness.refresh(first.refresh_token)
    assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert oauth_error(reused.value) == "invalid_grant"
    assert error_info(reused.value).domain == "identity.vocelio.com"
    assert "already used" in (reused.value.details() or "")
    # The whole family is gone, the successor too.
    with pytest.raises(grpc.aio.AioRpcError) as successor:
        await harness.refresh(second.refresh_token)
    assert oauth_error(successor.value) == "invalid_grant"
    # ... and the session's access tokens are on the revocation log.
    service = harness.with_token(await harness.service_token())
    page = await service.ListRevokedTokens(pb.ListRevokedTokensRequest())
    assert [(r.session, r.reason) for r in page.revocations] == [(claims.session_id, "refresh_token_reuse")]
    admin = await harness.admin()
    events = await admin.ListAuditEvents(
        pb.ListAuditEventsRequest(parent="organizations/-", filter="action = REFRESH_TOKEN_REUSE_DETECTED")
    )
    assert [e.target for e in events.audit_events] == [claims.session_id]


async def test_a_failed_organisation_leaves_no_account_behind(harness: Harness):
    harness.team_hub.fail_provision = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.sign_up("bob@example.com")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as grant:
        await harness.password_grant("bob@example.com")
    assert grant.value.details() == BAD_CREDENTIALS
    harness.team_hub.fail_provision = False
    signed_up = await harness.sign_up("bob@example.com")
    assert signed_up.organization_id


async def test_sign_up_with_an_invitation_joins_with_the_invited_role(harness: Harness):
    harness.team_hub.add("users/u_someone", "org_invites", member_pb2.ROLE_ADMIN)
    harness.team_hub.invitations["inv-token"] = ("org_invites", member_pb2.ROLE_AGENT, "cy@example.com")
    signed_up = await harness.sign_up("cy@example.com", organization="", invitation_token="inv-token")
    assert (signed_up.organization_id, signed_up.role) == ("org_invites", "AGENT")
    # The token went to the inviter, not through the invitee's mailbox: the address is not proven.
    assert not signed_up.user.email_verified
    redeem = harness.team_hub.calls[-1].request
    assert (redeem.invitation_token, redeem.user, redeem.email) == ("inv-token", signed_up.user.name, "cy@example.com")
    token = await harness.password_grant("cy@example.com")
    assert claims_of(token.access_token)["role"] == "AGENT"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.sign_up("dee@example.com", organization="", invitation_token="inv-token")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "another address" in (caught.value.details() or "")


async def test_sign_up_checks_its_input(harness: Harness):
    # A taken address is not refused: see test_signup_enumeration.py.
    with pytest.raises(grpc.aio.AioRpcError) as weak:
        await harness.sign_up("eve@example.com", password="eve@example.com")
    assert weak.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "e-mail" in (weak.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as terms:
        await harness.anonymous.SignUp(
            pb.SignUpRequest(email="f@example.com", password=PASSWORD, display_name="F", organization_display_name="F")
        )
    assert "terms" in (terms.value.details() or "")


async def test_sign_up_is_idempotent_with_a_request_id(harness: Harness):
    request_id = str(uuid.uuid4())
    first = await harness.sign_up("ada@example.com", request_id=request_id)
    again = await harness.sign_up("ada@example.com", request_id=request_id)
    assert again.user.name == first.user.name and again.organization_id == first.organization_id
    assert again.role == "ADMIN"
    provisions = [
        call.request for call in harness.team_hub.calls if call.request.DESCRIPTOR.name.startswith("Provision")
    ]
    assert len(provisions) == 1
    # What identity sends on is an AIP-155 UUID4 too, derived from the user so a retry repeats it.
    assert uuid.UUID(provisions[0].request_id).version == 4
    for reused, code in ((request_id, grpc.StatusCode.INVALID_ARGUMENT), ("r-1", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.sign_up("bob@example.com", request_id=reused)
        assert refused.value.code() == code
        assert violations(refused.value) == {"request_id"}


async def test_the_address_limit_counts_the_address_the_edge_vouches_for(harness: Harness):
    hop = await harness.via_edge("198.51.100.7")
    codes = []
    # 30 a minute: the bucket refills while the attempts run, so allow a few more before the limit shows.
    for index in range(60):
        request = pb.IssueTokenRequest(grant_type="password", username=f"p{index}@example.com", password="x" * 12)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.anonymous.IssueToken(request, metadata=hop)
        codes.append(caught.value.code())
        if codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
    assert codes[:30] == [grpc.StatusCode.UNAUTHENTICATED] * 30
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value).metadata["limit"] == "per_address"
    assert error_info(caught.value).reason == "RATE_LIMITED"
    # Another address is not limited.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await harness.password_grant("p0@example.com", "x" * 12)
    assert other.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("request_fields", "reason", "code"),
    [
        ({"grant_type": ""}, "invalid_request", grpc.StatusCode.INVALID_ARGUMENT),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type", grpc.StatusCode.INVALID_ARGUMENT),
        ({"grant_type": "password", "username": "a@example.com"}, "invalid_request", grpc.StatusCode.INVALID_ARGUMENT),
        ({"grant_type": "refresh_token"}, "invalid_request", grpc.StatusCode.INVALID_ARGUMENT),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant", grpc.StatusCode.UNAUTHENTICATED),
        (
            {"grant_type": "client_credentials", "client_id": "services/agents"},
            "invalid_request",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_grant_errors_carry_rfc_6749_codes(harness: Harness, request_fields, reason, code):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.anonymous.IssueToken(pb.IssueTokenRequest(**request_fields))
    assert caught.value.code() == code
    assert oauth_error(caught.value) == reason
    assert caught.value.details()


async def test_services_get_tokens_with_their_own_credential(harness: Harness):
    reply = await harness.anonymous.IssueToken(
        pb.IssueTokenRequest(
            grant_type="client_credentials", client_id="services/agents", client_secret=service_secret("agents")
        )
    )
    assert reply.refresh_token == "" and reply.organization_id == "" and reply.refresh_token_expires_in == 0
    claims = await harness.verify(reply.access_token)
    assert (claims.subject, claims.role, claims.organization_id, claims.session_id) == (
        "services/agents",
        "SERVICE",
        "",
        "",
    )
    assert claims.client_id == "services/agents"
    for client_id, secret in (
        ("services/agents", "wrong-secret"),
        ("services/nonexistent", service_secret("nonexistent")),
        ("services/team_hub", service_secret("agents")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.anonymous.IssueToken(
                pb.IssueTokenRequest(grant_type="client_credentials", client_id=client_id, client_secret=secret)
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert oauth_error(caught.value) == "invalid_client"


async def test_api_keys_get_scoped_tokens_that_do_not_outlive_them(harness: Harness):
    expiry = timestamp_pb2.Timestamp()
    expiry.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    harness.developer_api.keys["vk_live_secret"] = developer_api_service_pb2.VerifyApiKeyResponse(
        api_key="organizations/org_9/api_keys/k_1",
        organization_id="org_9",
        scopes=["calls.get", "calls.create"],
        expire_time=expiry,
        display_name="CRM sync",
    )
    reply = await harness.anonymous.IssueToken(
        pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_live_secret", scope="calls.get")
    )
    claims = await harness.verify(reply.access_token)
    assert (claims.subject, claims.organization_id, claims.role, claims.scopes) == (
        "organizations/org_9/api_keys/k_1",
        "org_9",
        "",
        ("calls.get",),
    )
    assert claims.expires_at <= expiry.seconds and reply.expires_in <= 300
    assert reply.scope == "calls.get" and reply.refresh_token == ""
    assert harness.developer_api.calls[-1].request.secret == "vk_live_secret"
    by_name = await harness.anonymous.IssueToken(
        pb.IssueTokenRequest(
            grant_type="client_credentials",
            client_id="organizations/org_9/api_keys/k_1",
            client_secret="vk_live_secret",
        )
    )
    assert claims_of(by_name.access_token)["scope"] == "calls.get calls.create"
    for request in (
        pb.IssueTokenRequest(
            grant_type="client_credentials",
            client_id="organizations/org_9/api_keys/k_2",
            client_secret="vk_live_secret",
        ),
        pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_unknown"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.anonymous.IssueToken(request)
        assert oauth_error(caught.value) == "invalid_client"
    with pytest.raises(grpc.aio.AioRpcError) as scope:
        await harness.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_live_secret", scope="calls.delete")
        )
    assert oauth_error(scope.value) == "invalid_scope"


async def test_users_choose_among_their_organisations_and_refresh_rereads_the_role(harness: Harness):
    signed_up, tokens, _ = await harness.user("ada@example.com")
    user = signed_up.user.name
    harness.team_hub.add(user, "org_other", member_pb2.ROLE_VIEWER)
    other = await harness.password_grant("ada@example.com", organization_id="org_other")
    assert claims_of(other.access_token)["role"] == "VIEWER" and other.organization_id == "org_other"
    with pytest.raises(grpc.aio.AioRpcError) as stranger:
        await harness.password_grant("ada@example.com", organization_id="org_unknown")
    assert oauth_error(stranger.value) == "invalid_grant"
    harness.team_hub.set_role(user, "org_1", member_pb2.ROLE_MANAGER)
    refreshed = await harness.refresh(tokens.refresh_token)
    assert claims_of(refreshed.access_token)["role"] == "MANAGER"
    switched = await harness.refresh(refreshed.refresh_token, organization_id="org_other")
    assert claims_of(switched.access_token)["org"] == "org_other"
    harness.team_hub.remove(user, "org_other")
    with pytest.raises(grpc.aio.AioRpcError) as removed:
        await harness.refresh(switched.refresh_token)
    assert oauth_error(removed.value) == "invalid_grant"


async def test_down_scoped_user_tokens_keep_their_scope_on_refresh(harness: Harness):
    await harness.sign_up("ada@example.com")
    tokens = await harness.password_grant("ada@example.com", scope="agents.get agents.list")
    assert claims_of(tokens.access_token)["scope"] == "agents.get agents.list"
    refreshed = await harness.refresh(tokens.refresh_token)
    assert claims_of(refreshed.access_token)["scope"] == "agents.get agents.list"
    with pytest.raises(grpc.aio.AioRpcError) as wider:
        await harness.refresh(refreshed.refresh_token, scope="agents.delete")
    assert oauth_error(wider.value) == "invalid_scope"
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await harness.password_grant("ada@example.com", scope="signing_keys.rotate")
    assert oauth_error(unknown.value) == "invalid_scope"


async def test_the_bootstrap_super_admin_signs_in_without_an_organisation(any_backend: Harness):
    admin = await any_backend.password_grant("ROOT@vocelio.example", "bootstrap-password-42")
    claims = await any_backend.verify(admin.access_token)
    assert (claims.role, claims.organization_id) == ("SUPER_ADMIN", "")
    me = await any_backend.with_token(admin.access_token).GetCurrentUser(pb.GetCurrentUserRequest())
    assert me.user.platform_admin and me.role == "SUPER_ADMIN" and me.user.email_verified
    in_org = await any_backend.password_grant("root@vocelio.example", "bootstrap-password-42", organization_id="org_x")
    assert claims_of(in_org.access_token)["org"] == "org_x"
    assert claims_of(in_org.access_token)["role"] == "SUPER_ADMIN"


async def test_password_reset_and_email_verification_say_they_need_email_delivery(harness: Harness):
    for call in (
        harness.anonymous.RequestPasswordReset(pb.RequestPasswordResetRequest(email="a@example.com")),
        harness.anonymous.ResetPassword(pb.ResetPasswordRequest(reset_token="t", new_password=PASSWORD)),
        harness.anonymous.VerifyEmail(pb.VerifyEmailRequest(verification_token="t")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "e-mail delivery" in (caught.value.details() or "")


async def test_failed_client_credentials_are_limited_but_never_block_the_right_secret(harness: Harness):
    hop = await harness.via_edge("198.51.100.9")
    wrong = pb.IssueTokenRequest(grant_type="client_credentials", client_id="services/agents", client_secret="guess")
    codes = []
    for _ in range(60):  # 30 a minute; the bucket refills a little while the attempts run
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.anonymous.IssueToken(wrong, metadata=hop)
        codes.append(caught.value.code())
        if codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
    assert codes[:30] == [grpc.StatusCode.UNAUTHENTICATED] * 30
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    right = pb.IssueTokenRequest(
        grant_type="client_credentials", client_id="services/agents", client_secret=service_secret("agents")
    )
    assert (await harness.anonymous.IssueToken(right, metadata=hop)).access_token
    with pytest.raises(grpc.aio.AioRpcError) as keys:
        await harness.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_secret="vk_guess"), metadata=hop
        )
    assert keys.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert harness.developer_api.calls == []  # limited before asking developer_api
