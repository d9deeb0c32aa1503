"""SignUp does not reveal which addresses are registered: a taken address gets the answer a new one gets,
its owner gets a notice, and nothing is created."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from tests.services.identity.conftest import PASSWORD, Harness, pb
from vocelio.team_hub.v1 import member_pb2

OTHER_PASSWORD = "a different passphrase, the attacker's"


def _shape(value: Any) -> Any:
    """The structure of a message as JSON: which fields are set and their types, with ids, names and
    times blanked (they differ between any two sign-ups)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def shape_of(reply: pb.SignUpResponse) -> Any:
    document = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    role, state, verified = document["role"], document["user"]["state"], document["user"].get("email_verified")
    return _shape(document), role, state, verified


def _provisions(harness: Harness) -> int:
    return sum(1 for call in harness.team_hub.calls if call.request.DESCRIPTOR.name == "ProvisionOrganizationRequest")


async def test_a_taken_address_gets_the_answer_a_new_one_gets(harness: Harness):
    owner = await harness.sign_up("ada@example.com", display_name="Ada")
    provisioned = _provisions(harness)
    again = await harness.sign_up("ADA@example.com", display_name="Mallory", password=OTHER_PASSWORD)
    fresh = await harness.sign_up("bob@example.com", display_name="Bob")
    assert shape_of(again) == shape_of(fresh)
    assert (again.role, again.user.email, again.user.display_name) == ("ADMIN", "ada@example.com", "Mallory")
    assert again.user.name != owner.user.name and again.organization_id not in ("", owner.organization_id)
    # Nothing was created: no organisation, no second user, the owner's password still the one.
    assert _provisions(harness) == provisioned + 1  # bob's only
    assert (await harness.password_grant("ada@example.com")).access_token
    with pytest.raises(grpc.aio.AioRpcError) as attacker:
        await harness.password_grant("ada@example.com", OTHER_PASSWORD)
    assert attacker.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_owner_is_told_someone_signed_up_with_their_address(harness: Harness):
    owner = await harness.sign_up("ada@example.com")
    await harness.sign_up("ada@example.com", password=OTHER_PASSWORD)
    admin = await harness.admin()
    events = await admin.ListAuditEvents(
        pb.ListAuditEventsRequest(parent="organizations/-", filter="action = SIGN_UP_WITH_EXISTING_EMAIL")
    )
    assert [(e.target, e.organization_id) for e in events.audit_events] == [(owner.user.name, owner.organization_id)]
    assert OTHER_PASSWORD not in str(events)


async def test_a_retried_sign_up_for_a_taken_address_repeats_its_answer_like_a_real_one(harness: Harness):
    await harness.sign_up("ada@example.com")
    taken_id, free_id = str(uuid.uuid4()), str(uuid.uuid4())
    first = await harness.sign_up("ada@example.com", request_id=taken_id)
    again = await harness.sign_up("ada@example.com", request_id=taken_id)
    assert (again.user.name, again.organization_id, again.user.etag) == (
        first.user.name,
        first.organization_id,
        first.user.etag,
    )
    real = await harness.sign_up("bob@example.com", request_id=free_id)
    assert (await harness.sign_up("bob@example.com", request_id=free_id)).user.name == real.user.name
    # The same id for another address is refused the same way for both.
    refusals = []
    for reused in (taken_id, free_id):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.sign_up("cy@example.com", request_id=reused)
        refusals.append((refused.value.code(), refused.value.details()))
    assert refusals[0] == refusals[1] and refusals[0][0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_invitation_for_a_taken_address_is_checked_but_not_redeemed(harness: Harness):
    harness.team_hub.add("users/u_inviter", "org_invites", member_pb2.ROLE_ADMIN)
    await harness.sign_up("cy@example.com", organization="Cy Co")
    harness.team_hub.invitations["inv-cy"] = ("org_invites", member_pb2.ROLE_AGENT, "cy@example.com")
    harness.team_hub.invitations["inv-dee"] = ("org_invites", member_pb2.ROLE_AGENT, "dee@example.com")
    taken = await harness.sign_up("cy@example.com", organization="", invitation_token="inv-cy")
    fresh = await harness.sign_up("dee@example.com", organization="", invitation_token="inv-dee")
    assert shape_of(taken) == shape_of(fresh)
    assert (taken.organization_id, taken.role) == (fresh.organization_id, fresh.role) == ("org_invites", "AGENT")
    assert taken.user.name not in harness.team_hub.memberships  # never redeemed
    # A token that does not work fails alike for a taken and a free address.
    errors = []
    for email in ("cy@example.com", "eve@example.com"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.sign_up(email, organization="", invitation_token="no-such-token")
        errors.append((refused.value.code(), refused.value.details()))
    assert errors[0] == errors[1] and errors[0][0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_signing_up_again_does_not_touch_the_owners_password(harness: Harness):
    await harness.sign_up("ada@example.com")
    await harness.sign_up("ada@example.com", password=OTHER_PASSWORD)
    assert (await harness.password_grant("ada@example.com", PASSWORD)).refresh_token
