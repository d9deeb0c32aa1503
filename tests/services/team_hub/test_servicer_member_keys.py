"""RemoveMember revokes the removed member's API keys in the organisation (developer_api)."""

from __future__ import annotations

import grpc
import pytest

from tests.services.team_hub.conftest import Harness, claims_of, pb
from tests.services.team_hub.test_servicer_members import acme


async def test_removing_a_member_revokes_their_api_keys_there(harness: Harness):
    alice, bob, _ = await acme(harness)
    await alice.RemoveMember(pb.RemoveMemberRequest(name=bob.name))
    [asked] = harness.developer_api.revocations
    assert (asked.request.organization_id, asked.request.owner, asked.request.reason) == (
        "acme",
        "users/bob",
        "owner_removed",
    )
    # Asked with team hub's own credential: the method is internal.
    assert claims_of(asked.metadata)["sub"] == "services/team_hub"


async def test_developer_api_down_means_unavailable_and_a_retry_revokes_the_keys(harness: Harness):
    alice, bob, _ = await acme(harness)
    harness.developer_api.down = True
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await alice.RemoveMember(pb.RemoveMemberRequest(name=bob.name))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert harness.developer_api.revocations == []
    harness.developer_api.down = False
    # The removal is done; the retry finds it and finishes with the keys.
    await alice.RemoveMember(pb.RemoveMemberRequest(name=bob.name))
    [asked] = harness.developer_api.revocations
    assert asked.request.owner == "users/bob"
