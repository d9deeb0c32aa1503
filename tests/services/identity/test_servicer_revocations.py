"""Ending tokens: RFC 7009 revocation, logout, sessions, principal revocation, and the revocation stream."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from mesh.revocations import RevocationSet
from tests.services.identity.conftest import PASSWORD, Client, Harness, claims_of, eventually, pb
from vocelio.identity.v1 import revocation_pb2
from vocelio.team_hub.v1 import member_pb2


async def _accepted(client: Client) -> bool:
    try:
        await client.GetCurrentUser(pb.GetCurrentUserRequest())
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            return False
        raise
    return True


async def _refused(client: Client) -> bool:
    return not await _accepted(client)


async def _next(stream: Any) -> Any:
    return await asyncio.wait_for(stream.read(), timeout=10)


@pytest.mark.usefixtures("services_list_revocations")
async def test_revoked_tokens_stream_in_order_after_a_caught_up_marker(any_backend: Harness):
    harness = any_backend
    service = harness.with_token(await harness.service_token())
    stream = service.StreamRevocations(pb.StreamRevocationsRequest(after_sequence=0))
    marker = await _next(stream)
    assert marker.caught_up and not marker.HasField("revocation") and marker.head_sequence == 0

    await harness.sign_up("ada@example.com")
    first = await harness.password_grant("ada@example.com")
    second = await harness.password_grant("ada@example.com")
    await harness.anonymous.RevokeToken(pb.RevokeTokenRequest(token=first.access_token, token_type_hint="access_token"))
    await harness.anonymous.RevokeToken(pb.RevokeTokenRequest(token=second.refresh_token))
    # RFC 7009: unknown and malformed tokens are not errors, and revoke nothing.
    await harness.anonymous.RevokeToken(pb.RevokeTokenRequest(token="not-a-token"))
    await harness.anonymous.RevokeToken(pb.RevokeTokenRequest(token=first.access_token[:-4] + "AAAA"))

    token_entry = (await _next(stream)).revocation
    session_entry = (await _next(stream)).revocation
    assert (token_entry.sequence, token_entry.kind, token_entry.token_id) == (
        1,
        revocation_pb2.REVOCATION_KIND_TOKEN,
        claims_of(first.access_token)["jti"],
    )
    assert token_entry.expire_time.seconds >= claims_of(first.access_token)["exp"]
    assert (session_entry.sequence, session_entry.kind, session_entry.session) == (
        2,
        revocation_pb2.REVOCATION_KIND_SESSION,
        claims_of(second.access_token)["sid"],
    )
    stream.cancel()

    resumed = service.StreamRevocations(pb.StreamRevocationsRequest(after_sequence=1))
    replayed = await _next(resumed)
    assert replayed.revocation.sequence == 2 and not replayed.caught_up
    marker = await _next(resumed)
    assert marker.caught_up and marker.head_sequence == 2
    resumed.cancel()

    page = await service.ListRevokedTokens(pb.ListRevokedTokensRequest(page_size=1))
    assert [r.sequence for r in page.revocations] == [1] and page.next_page_token and page.head_sequence == 2
    rest = await service.ListRevokedTokens(pb.ListRevokedTokensRequest(page_size=1, page_token=page.next_page_token))
    assert [r.sequence for r in rest.revocations] == [2] and not rest.next_page_token

    # identity follows its own stream: the revoked tokens stop working there too.
    await eventually(lambda: _refused(harness.with_token(first.access_token)))
    await eventually(lambda: _refused(harness.with_token(second.access_token)))
    with pytest.raises(grpc.aio.AioRpcError) as refresh:
        await harness.refresh(second.refresh_token)
    assert refresh.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The first session's refresh token still works: only its access token was revoked.
    await harness.refresh(first.refresh_token)


async def test_internal_methods_are_refused_to_users(harness: Harness):
    _, _, ada = await harness.user("ada@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as listed:
        await ada.ListRevokedTokens(pb.ListRevokedTokensRequest())
    assert listed.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as revoked:
        await ada.RevokePrincipalTokens(pb.RevokePrincipalTokensRequest(principal="users/u_x", reason="x"))
    assert revoked.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_logout_ends_the_session_and_the_token_used(harness: Harness):
    _, tokens, ada = await harness.user("ada@example.com")
    other = await harness.password_grant("ada@example.com")
    reply = await ada.Logout(pb.LogoutRequest())
    assert reply.revoked_session_count == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.refresh(tokens.refresh_token)
    await eventually(lambda: _refused(ada))
    # The other device is still signed in, until it signs out everywhere.
    everywhere = await harness.with_token(other.access_token).Logout(pb.LogoutRequest(all_sessions=True))
    assert everywhere.revoked_session_count == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.refresh(other.refresh_token)


async def test_sessions_are_listed_and_ended_by_their_owner_or_an_org_admin(harness: Harness):
    signed_up, tokens, ada = await harness.user("ada@example.com")
    await harness.password_grant("ada@example.com")
    mine = await ada.ListSessions(pb.ListSessionsRequest())
    assert len(mine.sessions) == 2
    assert [s.current for s in mine.sessions].count(True) == 1
    current = next(s for s in mine.sessions if s.current)
    assert current.name == claims_of(tokens.access_token)["sid"]
    assert current.user == signed_up.user.name and current.grant_type == "password"
    other = next(s for s in mine.sessions if not s.current)
    await ada.DeleteSession(pb.DeleteSessionRequest(name=other.name))
    assert [s.name for s in (await ada.ListSessions(pb.ListSessionsRequest())).sessions] == [current.name]

    # A member of the organisation: the admin sees and ends their sessions, they do not see the admin's.
    harness.team_hub.invitations["t"] = ("org_1", member_pb2.ROLE_AGENT, "bob@example.com")
    bob_signed_up = await harness.sign_up("bob@example.com", organization="", invitation_token="t")
    bob = harness.with_token((await harness.password_grant("bob@example.com")).access_token)
    bobs = await ada.ListSessions(pb.ListSessionsRequest(user=bob_signed_up.user.name))
    assert len(bobs.sessions) == 1 and not bobs.sessions[0].current
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await bob.ListSessions(pb.ListSessionsRequest(user=signed_up.user.name))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as not_his:
        await bob.DeleteSession(pb.DeleteSessionRequest(name=current.name))
    assert not_his.value.code() == grpc.StatusCode.NOT_FOUND
    await ada.DeleteSession(pb.DeleteSessionRequest(name=bobs.sessions[0].name))
    await eventually(lambda: _refused(bob))


async def test_change_password_needs_the_current_one_and_ends_other_sessions(harness: Harness):
    _, tokens, ada = await harness.user("ada@example.com")
    other = await harness.password_grant("ada@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await ada.ChangePassword(
            pb.ChangePasswordRequest(current_password="not the password", new_password="a brand new password")
        )
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "current password" in (wrong.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as weak:
        await ada.ChangePassword(pb.ChangePasswordRequest(current_password=PASSWORD, new_password="short"))
    assert weak.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request_id = str(uuid.uuid4())
    change = pb.ChangePasswordRequest(
        current_password=PASSWORD, new_password="a brand new password", request_id=request_id
    )
    changed = await ada.ChangePassword(change)
    assert changed.revoked_session_count == 1
    # A retry answers the first result, although its current password is stale now.
    assert await ada.ChangePassword(change) == changed
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await ada.ChangePassword(pb.ChangePasswordRequest(current_password=PASSWORD, new_password="x", request_id="r1"))
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.refresh(other.refresh_token)
    await harness.refresh(tokens.refresh_token)  # the session it was changed in lives on
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.password_grant("ada@example.com")
    await harness.password_grant("ada@example.com", "a brand new password")


@pytest.mark.usefixtures("services_list_revocations")
async def test_principal_revocation_cuts_off_old_tokens_but_not_the_refreshed_one(any_backend: Harness):
    harness = any_backend
    signed_up, tokens, ada = await harness.user("ada@example.com")
    service = harness.with_token(await harness.service_token("team_hub"))
    # A role change in team_hub: revoke what the user holds, let refresh pick up the new role.
    harness.team_hub.set_role(signed_up.user.name, "org_1", member_pb2.ROLE_VIEWER)
    done = await service.RevokePrincipalTokens(
        pb.RevokePrincipalTokensRequest(
            principal=signed_up.user.name, organization_id="org_1", reason="role_changed", end_sessions=False
        )
    )
    assert done.revocation.kind == revocation_pb2.REVOCATION_KIND_PRINCIPAL
    assert done.revocation.issued_before.nanos == 0 and done.revoked_session_count == 0
    refreshed = await harness.refresh(tokens.refresh_token)  # within the same second, most likely
    assert claims_of(refreshed.access_token)["role"] == "VIEWER"

    # What every service's revocation set makes of the log:
    revocations = RevocationSet()
    for entry in (await service.ListRevokedTokens(pb.ListRevokedTokensRequest())).revocations:
        revocations.add(
            int(entry.kind),
            principal=entry.principal,
            issued_before=entry.issued_before.ToNanoseconds() / 1e9,
            sequence=entry.sequence,
        )
    assert revocations.is_revoked(await harness.verify(tokens.access_token))
    assert not revocations.is_revoked(await harness.verify(refreshed.access_token))
    await eventually(lambda: _refused(ada))
    assert await _accepted(harness.with_token(refreshed.access_token))

    # Removal ends the sessions as well.
    harness.team_hub.remove(signed_up.user.name, "org_1")
    removed = await service.RevokePrincipalTokens(
        pb.RevokePrincipalTokensRequest(
            principal=signed_up.user.name, organization_id="org_1", reason="member_removed", end_sessions=True
        )
    )
    assert removed.revoked_session_count == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.refresh(refreshed.refresh_token)
    admin = await harness.admin()
    listed = await admin.ListUsers(pb.ListUsersRequest(parent="organizations/org_1"))
    assert listed.users == []
