"""Keys have an owner; they die with the owner's membership unless an ADMIN transfers them first."""

from __future__ import annotations

import datetime

import grpc

from tests.services.developer_api.conftest import ISSUER, Harness, bearer
from tests.services.developer_api.test_servicer import (
    ADMIN_A,
    ADMIN_B,
    SERVICE,
    create,
    refused,
    timestamp_in,
    verify,
)
from vocelio.developer_api.v1 import api_key_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb
from vocelio.team_hub.v1 import member_pb2

BEA_ADMIN_A = bearer(ISSUER.mint(subject="users/u_bea", role="ADMIN", org="org_a"))
VIC_VIEWER_A = bearer(ISSUER.mint(subject="users/u_vic", role="VIEWER", org="org_a"))


async def revoke_owned(harness: Harness, owner: str, organization_id: str = "org_a", metadata=SERVICE):
    return await harness.stub.RevokeOwnerApiKeys(
        pb.RevokeOwnerApiKeysRequest(organization_id=organization_id, owner=owner),
        metadata=metadata,
        timeout=10,
    )


async def transfer(harness: Harness, name: str, new_owner: str, metadata=ADMIN_A, **fields):
    request = pb.TransferApiKeyRequest(name=name, new_owner=new_owner, **fields)
    return await harness.stub.TransferApiKey(request, metadata=metadata, timeout=10)


async def test_a_removed_members_keys_are_revoked_and_a_transferred_key_survives(harness: Harness):
    harness.team_hub.members[("users/u_bea", "org_a")] = member_pb2.ROLE_ADMIN
    kept = await create(harness, display_name="kept")
    lost = await create(harness, display_name="lost")
    others = await create(harness, metadata=BEA_ADMIN_A, display_name="bea's")
    elsewhere = await create(harness, metadata=ADMIN_B, display_name="other org")
    assert kept.api_key.owner == "users/u_admin_a"

    moved = await transfer(harness, kept.api_key.name, "users/u_bea")
    assert moved.api_key.owner == "users/u_bea"
    assert moved.api_key.audit.creator == "users/u_admin_a"

    # The ADMIN leaves org_a: team_hub asks developer_api to revoke what they own there.
    reply = await revoke_owned(harness, "users/u_admin_a")
    assert list(reply.revoked_api_keys) == [lost.api_key.name]
    assert (await revoke_owned(harness, "users/u_admin_a")).revoked_api_keys == []  # a retry: nothing left
    for dead in (lost,):
        error = await refused(verify(harness, dead.secret))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    for alive in (kept, others):
        assert (await verify(harness, alive.secret)).api_key == alive.api_key.name
    # Another organisation's key by the same name of user (u_admin_b is someone else anyway) lives on.
    assert (await verify(harness, elsewhere.secret)).api_key == elsewhere.api_key.name
    revoked = (await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=lost.api_key.name), metadata=BEA_ADMIN_A)).api_key
    assert revoked.state == api_key_pb2.API_KEY_STATE_REVOKED
    assert revoked.revoke_reason == "owner_removed"
    # Identity revoked the tokens minted from it.
    assert [r.request.principal for r in harness.identity.revocations] == [lost.api_key.name]


async def test_transfer_rules(harness: Harness):
    harness.team_hub.members[("users/u_bea", "org_a")] = member_pb2.ROLE_ADMIN
    harness.team_hub.members[("users/u_vic", "org_a")] = member_pb2.ROLE_VIEWER
    harness.team_hub.members[("users/u_out", "org_b")] = member_pb2.ROLE_ADMIN
    key = (await create(harness)).api_key  # calls.create, calls.get, agents.list
    # Only to an active member of the key's organisation …
    error = await refused(transfer(harness, key.name, "users/u_out"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    # … who holds every scope of the key (a VIEWER cannot create calls).
    error = await refused(transfer(harness, key.name, "users/u_vic"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "calls.create" in (error.details() or "")
    error = await refused(transfer(harness, key.name, "bea"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A VIEWER may not transfer at all (api_keys.transfer is an ADMIN's), nor may another organisation.
    error = await refused(transfer(harness, key.name, "users/u_bea", metadata=VIC_VIEWER_A))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(transfer(harness, key.name, "users/u_bea", metadata=ADMIN_B))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    stale = await refused(transfer(harness, key.name, "users/u_bea", etag="0123456789abcdef"))
    assert stale.code() == grpc.StatusCode.ABORTED
    moved = await transfer(harness, key.name, "users/u_bea", etag=key.etag)
    assert moved.api_key.owner == "users/u_bea"
    assert (await transfer(harness, key.name, "users/u_bea")).api_key.owner == "users/u_bea"  # idempotent
    # Rotation keeps the owner.
    rotated = await harness.stub.RotateApiKey(pb.RotateApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)
    assert rotated.api_key.owner == "users/u_bea"


async def test_only_services_revoke_an_owners_keys(harness: Harness):
    error = await refused(revoke_owned(harness, "users/u_admin_a", metadata=ADMIN_A))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(revoke_owned(harness, "u_admin_a"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_restricted_key_creates_only_keys_at_least_as_restricted_as_itself(harness_with_api_keys: Harness):
    harness = harness_with_api_keys
    month = timestamp_in(datetime.timedelta(days=30))
    parent = await create(
        harness,
        scopes=["api_keys.create", "calls.get"],
        restrictions=api_key_pb2.ApiKeyRestrictions(allowed_ip_ranges=["127.0.0.0/8"]),
        expire_time=month,
    )
    as_parent = bearer(parent.secret)
    # Unrestricted, or wider: refused.
    for restrictions in (
        api_key_pb2.ApiKeyRestrictions(),
        api_key_pb2.ApiKeyRestrictions(allowed_ip_ranges=["0.0.0.0/0"]),
    ):
        error = await refused(create(harness, metadata=as_parent, scopes=["calls.get"], restrictions=restrictions))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Outliving it: refused; no expiry of its own: the parent's.
    error = await refused(
        create(
            harness,
            metadata=as_parent,
            scopes=["calls.get"],
            restrictions=api_key_pb2.ApiKeyRestrictions(allowed_ip_ranges=["127.0.0.1/32"]),
            expire_time=timestamp_in(datetime.timedelta(days=60)),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    child = await create(
        harness,
        metadata=as_parent,
        scopes=["calls.get"],
        restrictions=api_key_pb2.ApiKeyRestrictions(allowed_ip_ranges=["127.0.0.1/32"]),
    )
    assert list(child.api_key.restrictions.allowed_ip_ranges) == ["127.0.0.1/32"]
    assert child.api_key.expire_time.seconds == month.seconds
