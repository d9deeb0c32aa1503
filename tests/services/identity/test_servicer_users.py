"""Users and the security audit log over gRPC."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from mesh.config import Settings
from tests.services.identity.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    SERVICE_SECRET,
    Client,
    Harness,
    eventually,
    identity_settings,
    oauth_error,
    pb,
    start_harness,
)
from tests.support.crud_suite import violations
from vocelio.identity.v1 import audit_event_pb2, user_pb2
from vocelio.team_hub.v1 import member_pb2

ORG_1 = "organizations/org_1"
EVERY_ORG = "organizations/-"


async def _team(harness: Harness) -> tuple[str, Client, str, Client]:
    """Ada (ADMIN of org_1) and Bob (AGENT in org_1), signed in."""
    ada_signed_up, _, ada = await harness.user("ada@example.com")
    harness.team_hub.invitations["bob-invite"] = ("org_1", member_pb2.ROLE_AGENT, "bob@example.com")
    bob_signed_up = await harness.sign_up("bob@example.com", organization="", invitation_token="bob-invite")
    bob = harness.with_token((await harness.password_grant("bob@example.com")).access_token)
    return ada_signed_up.user.name, ada, bob_signed_up.user.name, bob


async def test_the_current_user_comes_with_every_membership(harness: Harness):
    signed_up, _, ada = await harness.user("ada@example.com")
    harness.team_hub.add(signed_up.user.name, "org_more", member_pb2.ROLE_VIEWER)
    me = await ada.GetCurrentUser(pb.GetCurrentUserRequest())
    assert me.user.name == signed_up.user.name and (me.organization_id, me.role) == ("org_1", "ADMIN")
    assert [(m.organization_id, m.role, m.organization_display_name) for m in me.memberships] == [
        ("org_1", "ADMIN", "org_1 Inc"),
        ("org_more", "VIEWER", "org_more Inc"),
    ]
    # While team_hub is down, what identity learnt last.
    harness.team_hub.down = True
    cached = await ada.GetCurrentUser(pb.GetCurrentUserRequest())
    assert {m.organization_id for m in cached.memberships} == {"org_1", "org_more"}
    assert (await ada.GetUser(pb.GetUserRequest(name="users/me"))).user.email == "ada@example.com"


async def test_users_see_only_users_who_share_their_organisation(harness: Harness):
    ada_name, ada, bob_name, bob = await _team(harness)
    _, _, eve = await harness.user("eve@example.com", organization="Elsewhere")
    assert (await bob.GetUser(pb.GetUserRequest(name=ada_name))).user.email == "ada@example.com"
    for name in (ada_name, "users/u_doesnotexist"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await eve.GetUser(pb.GetUserRequest(name=name))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == f"{name} not found"
    listed = await ada.ListUsers(pb.ListUsersRequest(parent=ORG_1))
    assert [u.email for u in listed.users] == ["ada@example.com", "bob@example.com"]
    first = await ada.ListUsers(pb.ListUsersRequest(parent=ORG_1, page_size=1))
    second = await ada.ListUsers(pb.ListUsersRequest(parent=ORG_1, page_size=1, page_token=first.next_page_token))
    assert [u.name for u in [*first.users, *second.users]] == [ada_name, bob_name] and not second.next_page_token
    filtered = await ada.ListUsers(pb.ListUsersRequest(parent=ORG_1, filter='email : "bob@"'))
    assert [u.name for u in filtered.users] == [bob_name]
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await ada.ListUsers(pb.ListUsersRequest(parent="organizations/org_2"))
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin = await harness.admin()
    assert len((await admin.ListUsers(pb.ListUsersRequest(parent="organizations/-"))).users) == 4  # with the admin
    assert [u.email for u in (await admin.ListUsers(pb.ListUsersRequest(parent="organizations/org_2"))).users] == [
        "eve@example.com"
    ]


async def test_profiles_are_changed_by_their_user_or_an_org_admin(harness: Harness):
    ada_name, ada, bob_name, bob = await _team(harness)
    mine = await ada.UpdateUser(
        pb.UpdateUserRequest(
            user=user_pb2.User(name="users/me", display_name="Ada L.", time_zone="Europe/London", locale="en-GB"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "time_zone", "locale"]),
        )
    )
    assert (mine.user.display_name, mine.user.time_zone, mine.user.locale) == ("Ada L.", "Europe/London", "en-GB")
    assert mine.user.audit.last_modifier == ada_name
    theirs = await ada.UpdateUser(pb.UpdateUserRequest(user=user_pb2.User(name=bob_name, display_name="Robert")))
    assert theirs.user.display_name == "Robert"
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await bob.UpdateUser(pb.UpdateUserRequest(user=user_pb2.User(name=ada_name, display_name="Hacked")))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Etags are opaque (they do not show the version) and change with every change.
    first_etag = (await ada.GetUser(pb.GetUserRequest(name=ada_name))).user.etag
    assert first_etag == mine.user.etag and len(first_etag) == 16 and first_etag not in ('"1"', '"2"', "1", "2")
    fresh = await ada.UpdateUser(
        pb.UpdateUserRequest(user=user_pb2.User(name="users/me", display_name="Ada", etag=first_etag))
    )
    assert fresh.user.etag != first_etag
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await ada.UpdateUser(
            pb.UpdateUserRequest(user=user_pb2.User(name="users/me", display_name="X", etag=first_etag))
        )
    assert stale.value.code() == grpc.StatusCode.ABORTED
    for user, paths in (
        (user_pb2.User(name="users/me", time_zone="Mars/Olympus"), ["time_zone"]),
        (user_pb2.User(name="users/me", email="new@example.com"), ["email"]),
        (user_pb2.User(name="users/me", avatar_uri="http://insecure.example/a.png"), ["avatar_uri"]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await ada.UpdateUser(pb.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=paths)))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_disabling_is_for_super_admins_and_ends_every_session(harness: Harness):
    _, ada, bob_name, bob = await _team(harness)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await ada.DisableUser(pb.DisableUserRequest(name=bob_name, reason="no"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    bob_refresh = (await harness.password_grant("bob@example.com")).refresh_token
    admin = await harness.admin()
    disabled = await admin.DisableUser(pb.DisableUserRequest(name=bob_name, reason="left the company"))
    assert disabled.user.state == user_pb2.USER_STATE_DISABLED
    assert disabled.user.disabled_reason == "left the company"
    with pytest.raises(grpc.aio.AioRpcError) as grant:
        await harness.password_grant("bob@example.com")
    assert oauth_error(grant.value) == "invalid_grant" and "disabled" in (grant.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.refresh(bob_refresh)

    async def refused() -> bool:
        try:
            await bob.GetCurrentUser(pb.GetCurrentUserRequest())
        except grpc.aio.AioRpcError as error:
            return error.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    await eventually(refused)
    enabled = await admin.EnableUser(pb.EnableUserRequest(name=bob_name))
    assert enabled.user.state == user_pb2.USER_STATE_ACTIVE
    await harness.password_grant("bob@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as not_locked:
        await admin.UnlockUser(pb.UnlockUserRequest(name=bob_name))
    assert not_locked.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_audit_log_records_who_what_and_where_and_never_a_secret(any_backend: Harness):
    harness = any_backend
    where = (*await harness.via_edge("203.0.113.5"), ("x-user-agent", "console/1.0"))
    await harness.anonymous.SignUp(
        pb.SignUpRequest(
            email="ada@example.com",
            password=PASSWORD,
            display_name="Ada",
            organization_display_name="Acme",
            terms_accepted=True,
        ),
        metadata=where,
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="password", username="ada@example.com", password="wrong password 1"),
            metadata=where,
        )
    tokens = await harness.anonymous.IssueToken(
        pb.IssueTokenRequest(grant_type="password", username="ada@example.com", password=PASSWORD), metadata=where
    )
    await harness.anonymous.RevokeToken(pb.RevokeTokenRequest(token=tokens.refresh_token))
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.anonymous.IssueToken(
            pb.IssueTokenRequest(grant_type="client_credentials", client_id="services/agents", client_secret="guess")
        )
    _, _, eve = await harness.user("eve@example.com", organization="Elsewhere")

    ada = harness.with_token((await harness.password_grant("ada@example.com")).access_token)
    own = (await ada.ListAuditEvents(pb.ListAuditEventsRequest(parent=ORG_1))).audit_events
    assert {e.organization_id for e in own} == {"org_1"}
    actions = [audit_event_pb2.AuditAction.Name(e.action).removeprefix("AUDIT_ACTION_") for e in own]
    assert actions[::-1] == [
        "USER_SIGNED_UP",
        "SIGN_IN_FAILED",
        "SIGN_IN_SUCCEEDED",
        "TOKEN_REVOKED",
        "SIGN_IN_SUCCEEDED",
    ]
    failed = next(e for e in own if e.action == audit_event_pb2.AUDIT_ACTION_SIGN_IN_FAILED)
    assert (failed.client_address, failed.user_agent) == ("203.0.113.5", "console/1.0")
    assert failed.outcome == audit_event_pb2.AUDIT_OUTCOME_FAILURE and failed.details["failure"] == "bad_password"
    assert failed.actor.principal.startswith("users/") and failed.actor.display_name == "ada@example.com"
    assert failed.source_service == "identity" and failed.event_time.seconds > 0
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await ada.ListAuditEvents(pb.ListAuditEventsRequest(parent="organizations/org_2"))
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as agent:
        await eve.ListAuditEvents(pb.ListAuditEventsRequest(parent="organizations/org_1"))
    assert agent.value.code() == grpc.StatusCode.PERMISSION_DENIED

    admin = await harness.admin()
    everything = (await admin.ListAuditEvents(pb.ListAuditEventsRequest(parent=EVERY_ORG, page_size=200))).audit_events
    assert {"org_1", "org_2", ""} <= {e.organization_id for e in everything}
    failures = await admin.ListAuditEvents(
        pb.ListAuditEventsRequest(
            parent=EVERY_ORG, filter='action = SIGN_IN_FAILED AND event_time >= "2000-01-01T00:00:00Z"'
        )
    )
    assert {e.details["failure"] for e in failures.audit_events} == {"bad_password", "bad_client_secret"}
    text = json_format.MessageToJson(pb.ListAuditEventsResponse(audit_events=everything))
    for secret in (PASSWORD, "wrong password 1", "guess", SERVICE_SECRET, ADMIN_PASSWORD, tokens.refresh_token):
        assert secret not in text
    assert tokens.access_token.split(".")[2] not in text


async def test_services_record_audit_events_once_per_request_id(harness: Harness):
    service = harness.with_token(await harness.service_token("team_hub"))
    event = audit_event_pb2.AuditEvent(
        actor=audit_event_pb2.Actor(principal="users/u_1", kind=audit_event_pb2.PRINCIPAL_KIND_USER, role="ADMIN"),
        action=audit_event_pb2.AUDIT_ACTION_ROLE_CHANGED,
        outcome=audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
        target="organizations/org_1/members/m_1",
        details={"old_role": "AGENT", "new_role": "MANAGER", "invitation_token": "leaked?"},
    )
    request_id = str(uuid.uuid4())
    request = pb.RecordAuditEventRequest(audit_event=event, organization_id="org_1", request_id=request_id)
    first = await service.RecordAuditEvent(request)
    again = await service.RecordAuditEvent(request)
    assert again.audit_event.name == first.audit_event.name
    stored = first.audit_event
    assert stored.name.startswith("organizations/org_1/audit_events/")
    assert (stored.source_service, stored.organization_id, stored.target) == (
        "team_hub",
        "org_1",
        "organizations/org_1/members/m_1",
    )
    assert dict(stored.details) == {"old_role": "AGENT", "new_role": "MANAGER", "invitation_token": "[redacted]"}
    admin = await harness.admin()
    listed = await admin.ListAuditEvents(
        pb.ListAuditEventsRequest(parent="organizations/org_1", filter='source_service = "team_hub"')
    )
    assert [e.name for e in listed.audit_events] == [stored.name]
    # The same id for a different event is a mistake, not a retry.
    changed = audit_event_pb2.AuditEvent()
    changed.CopyFrom(event)
    changed.target = "organizations/org_1/members/m_2"
    for bad in (
        pb.RecordAuditEventRequest(audit_event=changed, organization_id="org_1", request_id=request_id),
        pb.RecordAuditEventRequest(audit_event=event, organization_id="org_1", request_id="team_hub:e1"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.RecordAuditEvent(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(refused.value) == {"request_id"}
    # Without a request_id nothing is deduplicated.
    unkeyed = pb.RecordAuditEventRequest(audit_event=event, organization_id="org_1")
    names = {(await service.RecordAuditEvent(unkeyed)).audit_event.name for _ in range(2)}
    assert len(names) == 2
    _, _, ada = await harness.user("ada@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as user:
        await ada.RecordAuditEvent(request)
    assert user.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_one_request_id_in_two_organisations_records_two_events_each_seen_only_by_its_own(harness: Harness):
    service = harness.with_token(await harness.service_token("team_hub"))
    request_id = str(uuid.uuid4())
    stored = {}
    for organization in ("org_1", "org_2"):
        event = audit_event_pb2.AuditEvent(
            action=audit_event_pb2.AUDIT_ACTION_MEMBER_REMOVED,
            outcome=audit_event_pb2.AUDIT_OUTCOME_SUCCESS,
            target=f"organizations/{organization}/members/m_same",
        )
        reply = await service.RecordAuditEvent(
            pb.RecordAuditEventRequest(audit_event=event, organization_id=organization, request_id=request_id)
        )
        stored[organization] = reply.audit_event
    assert stored["org_1"].name != stored["org_2"].name
    assert stored["org_2"].name.startswith("organizations/org_2/audit_events/")
    _, _, ada = await harness.user("ada@example.com", organization="Ada Co")
    _, _, eve = await harness.user("eve@example.com", organization="Eve Co")
    ada_org = (await ada.GetCurrentUser(pb.GetCurrentUserRequest())).organization_id
    eve_org = (await eve.GetCurrentUser(pb.GetCurrentUserRequest())).organization_id
    for client, organization in ((ada, ada_org), (eve, eve_org)):
        seen = await client.ListAuditEvents(
            pb.ListAuditEventsRequest(parent=f"organizations/{organization}", filter="action = MEMBER_REMOVED")
        )
        assert [e.name for e in seen.audit_events] == [stored[organization].name]
    # Another organisation's log, or every organisation's, is refused the same way whether or not it exists.
    answers = set()
    for parent in (f"organizations/{eve_org}", "organizations/org_never", "organizations/-"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ada.ListAuditEvents(pb.ListAuditEventsRequest(parent=parent))
        answers.add((refused.value.code(), (refused.value.details() or "").replace(parent, "…")))
    assert len(answers) == 1


async def test_the_bootstrap_admin_is_created_once(sqlite_settings: Settings):
    settings = identity_settings(sqlite_settings)
    for _ in range(2):
        async for harness in start_harness(settings):
            admin = await harness.admin()
            found = await admin.ListUsers(
                pb.ListUsersRequest(parent="organizations/-", filter=f'email = "{ADMIN_EMAIL}"')
            )
            assert len(found.users) == 1 and found.users[0].platform_admin


async def test_page_tokens_are_bound_to_their_query_and_bad_lists_are_invalid_arguments(harness: Harness):
    _, ada, _, _ = await _team(harness)
    first = await ada.ListUsers(pb.ListUsersRequest(parent=ORG_1, page_size=1))
    assert first.next_page_token
    admin = await harness.admin()
    events = await admin.ListAuditEvents(pb.ListAuditEventsRequest(parent=EVERY_ORG, page_size=1))
    assert events.next_page_token
    forged = first.next_page_token[:-2] + ("AA" if not first.next_page_token.endswith("AA") else "BB")
    bad_requests = [
        # another filter, or another list's token, or an edited one
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, filter="state = ACTIVE", page_token=first.next_page_token)),
        (admin.ListUsers, pb.ListUsersRequest(parent=EVERY_ORG, page_token=first.next_page_token)),
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, page_token=events.next_page_token)),
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, page_token=forged)),
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, page_token="not a token")),
        (ada.ListSessions, pb.ListSessionsRequest(page_token=first.next_page_token)),
        (admin.ListSigningKeys, pb.ListSigningKeysRequest(page_token="e30.e30")),
        # filters and parents that are not valid
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, filter='email = "a\\u0000b"')),
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, filter="email = ")),
        (
            admin.ListAuditEvents,
            pb.ListAuditEventsRequest(parent=EVERY_ORG, filter='event_time > "9999-12-31T23:59:59-23:59"'),
        ),
        (ada.ListUsers, pb.ListUsersRequest(parent="org_1")),
        (ada.ListUsers, pb.ListUsersRequest()),
        (ada.ListUsers, pb.ListUsersRequest(parent=ORG_1, page_size=-1)),
    ]
    for method, request in bad_requests:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, caught.value.details())
    second = await ada.ListUsers(pb.ListUsersRequest(parent=ORG_1, page_size=1, page_token=first.next_page_token))
    assert len(second.users) == 1 and second.users[0].name != first.users[0].name
