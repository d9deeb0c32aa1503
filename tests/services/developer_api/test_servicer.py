"""DeveloperApiService over real gRPC: key lifecycle, verification, tenancy and identity's part."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from sqlalchemy import select, text

from mesh.kit import outbox
from mesh.kit.tables import OutboxRow
from services.developer_api import credentials, domain
from tests.services.developer_api.conftest import ISSUER, Harness, bearer, claims_of
from vocelio.developer_api.v1 import api_key_pb2, developer_api_events_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb
from vocelio.identity.v1 import audit_event_pb2

ADMIN_A = bearer(ISSUER.mint(subject="users/u_admin_a", role="ADMIN", org="org_a"))
ADMIN_B = bearer(ISSUER.mint(subject="users/u_admin_b", role="ADMIN", org="org_b"))
AGENT_A = bearer(ISSUER.mint(subject="users/u_agent_a", role="AGENT", org="org_a"))
ROOT = bearer(ISSUER.mint(subject="users/u_root", role="SUPER_ADMIN", org=""))
SERVICE = bearer(ISSUER.mint(subject="services/identity", role="SERVICE", org="", sid=""))
LIVE = api_key_pb2.API_KEY_ENVIRONMENT_LIVE
ORG_A = "organizations/org_a"
ORG_B = "organizations/org_b"
PARENTS = {ADMIN_A: ORG_A, ADMIN_B: ORG_B, AGENT_A: ORG_A}


def new_key(**fields) -> api_key_pb2.ApiKey:
    values: dict[str, Any] = {
        "display_name": "CRM sync",
        "environment": LIVE,
        "scopes": ["calls.create", "calls.get", "agents.list"],
    }
    values.update(fields)
    return api_key_pb2.ApiKey(**values)


async def create(harness: Harness, metadata=ADMIN_A, request_id="", parent="", api_key_id="", **fields) -> Any:
    request = pb.CreateApiKeyRequest(
        parent=parent or PARENTS.get(metadata, ORG_A),
        api_key=new_key(**fields),
        request_id=request_id,
        api_key_id=api_key_id,
    )
    return await harness.stub.CreateApiKey(request, metadata=metadata, timeout=10)


async def list_keys(harness: Harness, metadata=ADMIN_A, parent="", **fields) -> Any:
    request = pb.ListApiKeysRequest(parent=parent or PARENTS.get(metadata, ORG_A), **fields)
    return await harness.stub.ListApiKeys(request, metadata=metadata, timeout=10)


async def verify(harness: Harness, secret: str, **fields) -> Any:
    return await harness.stub.VerifyApiKey(
        pb.VerifyApiKeyRequest(secret=secret, **fields), metadata=SERVICE, timeout=10
    )


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def let_time_pass(harness: Harness, key_name: str) -> None:
    """Move a key's expiry into the past, as if its time had run out."""
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    organization_id, key_id = domain.parse_key_name(key_name)
    async with harness.host.database.sessions.begin() as session:
        await session.execute(
            text("UPDATE api_keys SET expire_time = :past WHERE organization_id = :org AND id = :id"),
            {"past": past, "org": organization_id, "id": key_id},
        )


def timestamp_in(delta: datetime.timedelta) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(datetime.datetime.now(datetime.UTC) + delta)
    return value


async def test_lifecycle_create_verify_update_rotate_revoke(any_backend: Harness):
    harness = any_backend
    created = await create(harness, labels={"system": "crm"})
    key, secret = created.api_key, created.secret
    assert credentials.looks_like_secret(secret)
    assert secret.startswith("vk_live_")
    assert key.prefix == secret[:16]
    assert key.state == api_key_pb2.API_KEY_STATE_ACTIVE
    assert key.organization_id == "org_a"
    assert key.name.startswith("organizations/org_a/api_keys/k_")
    assert key.audit.creator == "users/u_admin_a"
    assert list(key.scopes) == ["agents.list", "calls.create", "calls.get"]
    assert secret not in str(key)

    # The secret is shown once: reads never return it.
    fetched = await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)
    assert secret[16:] not in fetched.SerializeToString().decode("utf-8", "replace")

    verified = await verify(harness, secret, client_address="ipv4:203.0.113.9:40000")
    assert verified.api_key == key.name
    assert verified.organization_id == "org_a"
    assert list(verified.scopes) == ["agents.list", "calls.create", "calls.get"]
    assert verified.environment == LIVE
    assert verified.key_type == api_key_pb2.API_KEY_TYPE_SECRET
    assert verified.display_name == "CRM sync"
    # Every key expires: without an expiry of its own, after the maximum lifetime (365 days by default).
    lifetime = verified.expire_time.ToDatetime(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=364) < lifetime <= datetime.timedelta(days=365)
    used = (await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)).api_key
    assert used.HasField("last_used_time")
    assert used.last_used_time.seconds % 60 == 0
    assert used.last_used_address == "203.0.113.9"

    updated = await harness.stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(
            api_key=api_key_pb2.ApiKey(name=key.name, display_name="CRM sync (read)", scopes=["calls.get"]),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "scopes"]),
        ),
        metadata=ADMIN_A,
        timeout=10,
    )
    assert updated.api_key.display_name == "CRM sync (read)"
    assert list(updated.api_key.scopes) == ["calls.get"]
    assert updated.api_key.etag != key.etag
    assert list((await verify(harness, secret)).scopes) == ["calls.get"]

    rotated = await harness.stub.RotateApiKey(pb.RotateApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)
    assert rotated.secret != secret
    assert rotated.api_key.rotated_from == key.name
    assert list(rotated.api_key.scopes) == ["calls.get"]
    assert rotated.api_key.display_name == "CRM sync (read)"
    assert dict(rotated.api_key.labels) == {"system": "crm"}
    assert rotated.previous_api_key.rotated_to == rotated.api_key.name
    overlap = rotated.previous_api_key.expire_time.ToDatetime(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23) < overlap <= datetime.timedelta(hours=24)
    # During the overlap both secrets work …
    assert (await verify(harness, secret)).api_key == key.name
    assert (await verify(harness, rotated.secret)).api_key == rotated.api_key.name
    # … and once it is over, only the new one.
    await let_time_pass(harness, key.name)
    error = await refused(verify(harness, secret))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid API key"
    old = (await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)).api_key
    assert old.state == api_key_pb2.API_KEY_STATE_EXPIRED

    revoked = await harness.stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(name=rotated.api_key.name, reason="leaked in a public repository"),
        metadata=ADMIN_A,
        timeout=10,
    )
    assert revoked.api_key.state == api_key_pb2.API_KEY_STATE_REVOKED
    assert revoked.api_key.HasField("revoke_time")
    assert revoked.api_key.revoke_reason == "leaked in a public repository"
    error = await refused(verify(harness, rotated.secret))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid API key"

    # Identity revoked the key's tokens and logged every step, as this service, never with a secret.
    [revocation] = harness.identity.revocations
    assert revocation.request.principal == rotated.api_key.name
    assert revocation.request.organization_id == "org_a"
    assert revocation.request.reason == "api_key_revoked"
    assert harness.identity.actions() == [
        audit_event_pb2.AUDIT_ACTION_API_KEY_CREATED,
        audit_event_pb2.AUDIT_ACTION_API_KEY_UPDATED,
        audit_event_pb2.AUDIT_ACTION_API_KEY_ROTATED,
        audit_event_pb2.AUDIT_ACTION_API_KEY_REVOKED,
    ]
    for call in [*harness.identity.audit, revocation]:
        assert claims_of(call.metadata)["sub"] == "services/developer_api"
        assert secret not in str(call.request)
        assert rotated.secret not in str(call.request)
    created_event = harness.identity.audit[0].request
    assert created_event.organization_id == "org_a"
    # Internal callers send AIP-155 request ids, the same one for every retry of an event.
    assert uuid.UUID(created_event.request_id).version == 4
    assert len({call.request.request_id for call in harness.identity.audit}) == 4
    assert created_event.audit_event.actor.principal == "users/u_admin_a"
    assert created_event.audit_event.actor.kind == audit_event_pb2.PRINCIPAL_KIND_USER
    assert created_event.audit_event.target == key.name
    assert created_event.audit_event.details["scopes"] == "agents.list calls.create calls.get"
    rotated_event = harness.identity.audit[2].request.audit_event
    assert rotated_event.details["successor"] == rotated.api_key.name


async def test_a_retried_create_returns_the_same_key_but_never_the_secret_again(harness: Harness):
    request_id = str(uuid.uuid4())
    first = await create(harness, request_id=request_id)
    assert first.secret and not first.secret_withheld
    again = await create(harness, request_id=request_id)
    assert again.api_key.name == first.api_key.name
    # Shown once: the replay withholds it, and says so.
    assert (again.secret, again.secret_withheld) == ("", True)
    assert first.secret[16:] not in again.SerializeToString().decode("utf-8", "replace")
    listed = await list_keys(harness)
    assert len(listed.api_keys) == 1
    # At rest: the hash and the visible prefix and the first response without its secret; no copy
    # of the secret for retries.
    async with harness.host.database.engine.connect() as connection:
        raw = [
            row
            for table in ("api_keys", "idempotency_keys", "sealed_secrets", "identity_calls", "outbox")
            for row in (await connection.execute(text(f"SELECT * FROM {table}"))).all()
        ]
        sealed = (await connection.execute(text("SELECT count(*) FROM sealed_secrets"))).scalar_one()
    assert sealed == 0
    assert len(raw) >= 4
    for row in raw:
        for value in row:
            stored = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
            assert first.secret[16:].encode() not in stored
    assert harness.identity.actions() == [audit_event_pb2.AUDIT_ACTION_API_KEY_CREATED]

    error = await refused(create(harness, request_id=request_id, display_name="Another"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Request ids are UUID4s (AIP-155).
    error = await refused(create(harness, request_id="req-1"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The same request_id from another organisation is another request.
    other = await create(harness, metadata=ADMIN_B, request_id=request_id)
    assert other.api_key.name != first.api_key.name
    assert other.secret and not other.secret_withheld

    # After 24 hours the request_id is free again.
    past = datetime.datetime(2000, 1, 1)
    async with harness.host.database.sessions.begin() as session:
        await session.execute(text("UPDATE idempotency_keys SET create_time = :past"), {"past": past})
    later = await create(harness, request_id=request_id)
    assert later.api_key.name != first.api_key.name
    assert later.secret


async def test_scopes_must_be_held_by_the_creator(harness: Harness):
    error = await refused(create(harness, scopes=["calls.get", "signing_keys.rotate", "organizations.suspend"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "signing_keys.rotate" in (error.details() or "")
    assert "organizations.suspend" in (error.details() or "")
    assert "calls.get" not in (error.details() or "")

    error = await refused(create(harness, scopes=["*"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    for scopes in ([], ["calls.teleport"], ["api_keys.verify"]):
        error = await refused(create(harness, scopes=scopes))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    error = await refused(create(harness, metadata=AGENT_A))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # AGENT does not hold api_keys.create
    assert harness.identity.audit == []


async def test_creation_rules(harness: Harness):
    for fields in (
        {"display_name": ""},
        {"environment": api_key_pb2.API_KEY_ENVIRONMENT_UNSPECIFIED},
        {"expire_time": timestamp_in(datetime.timedelta(minutes=5))},
        {"expire_time": timestamp_in(datetime.timedelta(days=400))},
        {"key_type": api_key_pb2.API_KEY_TYPE_PUBLISHABLE, "scopes": ["calls.create"]},
        {"restrictions": api_key_pb2.ApiKeyRestrictions(allowed_ip_ranges=["not-a-range"])},
    ):
        error = await refused(create(harness, **fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
    test_key = await create(
        harness,
        environment=api_key_pb2.API_KEY_ENVIRONMENT_TEST,
        key_type=api_key_pb2.API_KEY_TYPE_PUBLISHABLE,
        scopes=["calls.create"],
        restrictions=api_key_pb2.ApiKeyRestrictions(allowed_origins=["https://app.example.com"]),
        expire_time=timestamp_in(datetime.timedelta(days=30)),
    )
    assert test_key.secret.startswith("vk_test_")
    chosen = await create(harness, api_key_id="crm-sync")
    assert chosen.api_key.name == "organizations/org_a/api_keys/crm-sync"
    error = await refused(create(harness, api_key_id="crm-sync"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    for parent in ("", "organizations/-", "api_keys", "organizations/org_a/api_keys"):
        error = await refused(
            harness.stub.CreateApiKey(pb.CreateApiKeyRequest(parent=parent, api_key=new_key()), metadata=ADMIN_A)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, parent
    # Allowed agents are the key's own organisation's.
    error = await refused(
        create(harness, restrictions=api_key_pb2.ApiKeyRestrictions(allowed_agents=["organizations/org_b/agents/a1"]))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    limited = await create(
        harness, restrictions=api_key_pb2.ApiKeyRestrictions(allowed_agents=["organizations/org_a/agents/a1"])
    )
    assert list(limited.api_key.restrictions.allowed_agents) == ["organizations/org_a/agents/a1"]


async def test_another_organisations_key_answers_not_found(harness: Harness):
    key = (await create(harness)).api_key
    missing = "organizations/org_a/api_keys/k_aaaaaaaaaaaaaaaa"
    calls = [
        lambda name: harness.stub.GetApiKey(pb.GetApiKeyRequest(name=name), metadata=ADMIN_B, timeout=10),
        lambda name: harness.stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(api_key=api_key_pb2.ApiKey(name=name, display_name="mine")),
            metadata=ADMIN_B,
            timeout=10,
        ),
        lambda name: harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=name), metadata=ADMIN_B, timeout=10),
        lambda name: harness.stub.RotateApiKey(pb.RotateApiKeyRequest(name=name), metadata=ADMIN_B, timeout=10),
        lambda name: harness.stub.ListApiKeyUsage(
            pb.ListApiKeyUsageRequest(parent=name, start_time=timestamp_in(-datetime.timedelta(days=1))),
            metadata=ADMIN_B,
            timeout=10,
        ),
    ]
    for call in calls:
        theirs = await refused(call(key.name))
        nothing = await refused(call(missing))
        assert theirs.code() == nothing.code() == grpc.StatusCode.NOT_FOUND
        assert (theirs.details() or "").replace(key.name, "X") == (nothing.details() or "").replace(missing, "X")
        assert theirs.trailing_metadata() == nothing.trailing_metadata()
    listed = await list_keys(harness, metadata=ADMIN_B, show_inactive=True)
    assert list(listed.api_keys) == []
    # Another organisation's list is refused the same way whether or not it exists.
    for parent in (ORG_A, "organizations/org_nobody", "organizations/-"):
        error = await refused(list_keys(harness, metadata=ADMIN_B, parent=parent))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "the caller may not act in the organisation named by parent",
        )
        error = await refused(create(harness, metadata=ADMIN_B, parent=parent))
        assert error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)
    # A platform administrator reads another organisation's keys but does not change them.
    error = await refused(harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.name), metadata=ROOT, timeout=10))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # A platform administrator sees every organisation's keys.
    everything = await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=key.name), metadata=ROOT, timeout=10)
    assert everything.api_key.organization_id == "org_a"
    across = await list_keys(harness, metadata=ROOT, parent="organizations/-")
    assert [k.name for k in across.api_keys] == [key.name]
    assert harness.identity.revocations == []


async def test_two_organisations_may_use_the_same_key_id(harness: Harness):
    ours = await create(harness, api_key_id="crm-sync", display_name="A's CRM")
    theirs = await create(harness, metadata=ADMIN_B, api_key_id="crm-sync", display_name="B's CRM")
    assert ours.api_key.name == "organizations/org_a/api_keys/crm-sync"
    assert theirs.api_key.name == "organizations/org_b/api_keys/crm-sync"
    assert (await verify(harness, ours.secret)).api_key == ours.api_key.name
    assert (await verify(harness, theirs.secret)).organization_id == "org_b"
    for metadata, parent, name, display in (
        (ADMIN_A, ORG_A, ours.api_key.name, "A's CRM"),
        (ADMIN_B, ORG_B, theirs.api_key.name, "B's CRM"),
    ):
        listed = await list_keys(harness, metadata=metadata, parent=parent)
        assert [(k.name, k.display_name) for k in listed.api_keys] == [(name, display)]
        got = await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=name), metadata=metadata, timeout=10)
        assert got.api_key.display_name == display
    # Each organisation's changes touch only its own key.
    await harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=theirs.api_key.name), metadata=ADMIN_B, timeout=10)
    assert (await verify(harness, ours.secret)).api_key == ours.api_key.name
    assert (await refused(verify(harness, theirs.secret))).code() == grpc.StatusCode.UNAUTHENTICATED
    mine = await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=ours.api_key.name), metadata=ADMIN_A, timeout=10)
    assert mine.api_key.state == api_key_pb2.API_KEY_STATE_ACTIVE


async def test_every_verification_failure_looks_the_same(harness: Harness):
    limited = await create(
        harness,
        restrictions=api_key_pb2.ApiKeyRestrictions(
            allowed_ip_ranges=["203.0.113.0/24"], allowed_origins=["https://app.example.com"]
        ),
    )
    assert (await verify(harness, limited.secret, client_address="203.0.113.5")).api_key == limited.api_key.name
    revoked = await create(harness)
    await harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=revoked.api_key.name), metadata=ADMIN_A, timeout=10)
    expired = await create(harness)
    await let_time_pass(harness, expired.api_key.name)
    attempts = [
        {"secret": "vk_live_" + "A" * 40},
        {"secret": "not even a key"},
        {"secret": revoked.secret},
        {"secret": expired.secret},
        {"secret": limited.secret, "client_address": "198.51.100.7"},
        {"secret": limited.secret},  # no address: IP ranges fail closed
        {"secret": limited.secret, "client_address": "203.0.113.5", "origin": "https://evil.example.com"},
    ]
    for attempt in attempts:
        error = await refused(
            harness.stub.VerifyApiKey(pb.VerifyApiKeyRequest(**attempt), metadata=SERVICE, timeout=10)
        )
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid API key"), attempt


async def test_verify_is_internal(harness: Harness):
    key = await create(harness)
    error = await refused(
        harness.stub.VerifyApiKey(pb.VerifyApiKeyRequest(secret=key.secret), metadata=ADMIN_A, timeout=10)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


UPDATER_ONLY_A = bearer(
    ISSUER.mint(subject="users/u_admin_a", role="ADMIN", org="org_a", scope="api_keys.update api_keys.get")
)


async def test_updates_tighten_freely_and_loosen_only_with_authority(harness_with_api_keys: Harness):
    harness = harness_with_api_keys
    key = (
        await create(
            harness,
            expire_time=timestamp_in(datetime.timedelta(days=30)),
            restrictions=api_key_pb2.ApiKeyRestrictions(
                allowed_ip_ranges=["203.0.113.0/24"], allowed_origins=["https://a.example.com"]
            ),
        )
    ).api_key

    async def update(mask, metadata=ADMIN_A, **fields):
        return await harness.stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(
                api_key=api_key_pb2.ApiKey(name=key.name, **fields), update_mask=field_mask_pb2.FieldMask(paths=mask)
            ),
            metadata=metadata,
            timeout=10,
        )

    def limits(ip=(), origins=()):
        return api_key_pb2.ApiKeyRestrictions(allowed_ip_ranges=list(ip), allowed_origins=list(origins))

    # Malformed whoever asks.
    for mask, fields in (
        (["scopes"], {"scopes": []}),
        (["expire_time"], {}),
        (["expire_time"], {"expire_time": timestamp_in(datetime.timedelta(days=400))}),
        (["environment"], {"environment": api_key_pb2.API_KEY_ENVIRONMENT_TEST}),
    ):
        error = await refused(update(mask, **fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (mask, fields)

    # Someone who may update but not create keys (a token down-scoped to api_keys.update) may tighten …
    narrower = limits(ip=["203.0.113.0/25"], origins=["https://a.example.com"])
    tightened = await update(["restrictions", "scopes"], UPDATER_ONLY_A, restrictions=narrower, scopes=["calls.get"])
    assert list(tightened.api_key.restrictions.allowed_ip_ranges) == ["203.0.113.0/25"]
    assert list(tightened.api_key.scopes) == ["calls.get"]
    sooner = timestamp_in(datetime.timedelta(days=20))
    shortened = await update(["expire_time"], UPDATER_ONLY_A, expire_time=sooner)
    assert shortened.api_key.expire_time.seconds == sooner.seconds
    # … but not loosen: no widening or removing a restriction, no added scope, no later expiry.
    loosenings: list[tuple[list[str], dict[str, Any]]] = [
        (["restrictions"], {"restrictions": limits(origins=["https://a.example.com"])}),  # IP ranges removed
        (["restrictions"], {"restrictions": limits(ip=["203.0.113.0/24"], origins=["https://a.example.com"])}),
        (["restrictions"], {"restrictions": limits(ip=["203.0.113.0/25"])}),  # origins removed
        (
            ["restrictions"],
            {"restrictions": limits(ip=["203.0.113.0/25"], origins=["https://a.example.com", "https://b.example"])},
        ),
        (["scopes"], {"scopes": ["calls.get", "calls.create"]}),
        (["expire_time"], {"expire_time": timestamp_in(datetime.timedelta(days=25))}),
    ]
    for loosen_mask, loosen in loosenings:
        error = await refused(update(loosen_mask, UPDATER_ONLY_A, **loosen))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (loosen_mask, loosen)
    # Nor may an API key loosen anything, whatever its scopes.
    admin_key = await create(harness, scopes=["api_keys.update", "api_keys.create", "calls.get", "calls.create"])
    as_key = bearer(admin_key.secret)
    error = await refused(update(["scopes"], as_key, scopes=["calls.get", "calls.create"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not an API key" in (error.details() or "")

    # An ADMIN, who could create the key as it would become, may loosen …
    widened = await update(["restrictions"], restrictions=limits(origins=["https://b.example"]))
    assert list(widened.api_key.restrictions.allowed_ip_ranges) == []
    assert list(widened.api_key.restrictions.allowed_origins) == ["https://b.example"]
    more = await update(["scopes"], scopes=["calls.get", "calls.create", "agents.list"])
    assert list(more.api_key.scopes) == ["agents.list", "calls.create", "calls.get"]
    later = timestamp_in(datetime.timedelta(days=200))
    extended = await update(["expire_time"], expire_time=later)
    assert extended.api_key.expire_time.seconds == later.seconds
    # … never beyond their own permissions, though.
    beyond = await refused(update(["scopes"], scopes=["calls.get", "signing_keys.list"]))
    assert beyond.code() == grpc.StatusCode.PERMISSION_DENIED

    stale = await refused(update(["display_name"], display_name="x", etag=key.etag))
    assert stale.code() == grpc.StatusCode.ABORTED
    # Without a mask, the fields the request sets change (a PATCH).
    patched = await harness.stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(api_key=api_key_pb2.ApiKey(name=key.name, labels={"team": "ops"})),
        metadata=ADMIN_A,
        timeout=10,
    )
    assert dict(patched.api_key.labels) == {"team": "ops"}
    assert patched.api_key.display_name == "CRM sync"


async def test_rotation_rules(harness: Harness):
    request_id = str(uuid.uuid4())
    key = (await create(harness, request_id=request_id)).api_key
    # The same request_id on another method is another request.
    secret_less = await harness.stub.RotateApiKey(
        pb.RotateApiKeyRequest(name=key.name, overlap=duration_pb2.Duration(seconds=0), request_id=request_id),
        metadata=ADMIN_A,
        timeout=10,
    )
    again = await harness.stub.RotateApiKey(
        pb.RotateApiKeyRequest(name=key.name, overlap=duration_pb2.Duration(seconds=0), request_id=request_id),
        metadata=ADMIN_A,
        timeout=10,
    )
    assert secret_less.secret and not secret_less.secret_withheld
    assert (again.api_key.name, again.secret, again.secret_withheld) == (secret_less.api_key.name, "", True)
    assert again.previous_api_key.name == key.name
    old = (await harness.stub.GetApiKey(pb.GetApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)).api_key
    assert old.state == api_key_pb2.API_KEY_STATE_EXPIRED  # overlap 0: at once
    twice = await refused(
        harness.stub.RotateApiKey(pb.RotateApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)
    )
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION
    fresh = (await create(harness)).api_key
    too_long = await refused(
        harness.stub.RotateApiKey(
            pb.RotateApiKeyRequest(name=fresh.name, overlap=duration_pb2.Duration(seconds=8 * 86400)),
            metadata=ADMIN_A,
            timeout=10,
        )
    )
    assert too_long.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.identity.actions().count(audit_event_pb2.AUDIT_ACTION_API_KEY_ROTATED) == 1


async def test_lists_filter_and_page(harness: Harness):
    names = [(await create(harness, display_name=f"key {i}")).api_key.name for i in range(5)]
    test_key = await create(harness, environment=api_key_pb2.API_KEY_ENVIRONMENT_TEST, scopes=["calls.get"])
    await harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=names[0]), metadata=ADMIN_A, timeout=10)

    async def listed(**fields):
        seen, token = [], ""
        while True:
            page = await list_keys(harness, page_size=2, page_token=token, **fields)
            seen += [k.name for k in page.api_keys]
            token = page.next_page_token
            if not token:
                return seen

    active = await listed()
    assert active == [test_key.api_key.name, *reversed(names[1:])]
    assert len(await listed(show_inactive=True)) == 6
    assert await listed(filter="state = REVOKED") == [names[0]]
    assert await listed(filter="environment = TEST") == [test_key.api_key.name]
    assert len(await listed(filter="scopes:calls.create")) == 4
    error = await refused(list_keys(harness, filter="secret_hash = x"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A page token belongs to its query: another filter or another parent refuses it.
    token = (await list_keys(harness, page_size=1)).next_page_token
    for other in ({"filter": "environment = TEST"}, {"metadata": ROOT, "parent": "organizations/-"}):
        error = await refused(list_keys(harness, page_size=1, page_token=token, **other))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_identity_down(harness: Harness):
    # The audit entry is saved with the key and delivered once identity is back.
    harness.identity.unavailable = True
    first = await create(harness)
    assert harness.identity.audit == []
    harness.identity.unavailable = False
    key = await create(harness)
    assert [r.request.audit_event.target for r in harness.identity.audit] == [first.api_key.name, key.api_key.name]

    harness.identity.unavailable = True
    error = await refused(harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.api_key.name), metadata=ADMIN_A))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # The key is dead at once anyway; a retry finishes identity's part.
    assert (await refused(verify(harness, key.secret))).code() == grpc.StatusCode.UNAUTHENTICATED
    harness.identity.unavailable = False
    await harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.api_key.name), metadata=ADMIN_A, timeout=10)
    assert [r.request.principal for r in harness.identity.revocations] == [key.api_key.name]
    assert harness.identity.actions().count(audit_event_pb2.AUDIT_ACTION_API_KEY_REVOKED) == 1
    # Once identity has it, a further retry owes nothing.
    await harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.api_key.name), metadata=ADMIN_A, timeout=10)
    assert len(harness.identity.revocations) == 1


async def test_a_key_authenticates_calls_as_bearer_and_x_api_key(harness_with_api_keys: Harness):
    harness = harness_with_api_keys
    reader = await create(harness, scopes=["api_keys.list", "api_keys.get"])
    for metadata in ((("authorization", f"Bearer {reader.secret}"),), (("x-api-key", reader.secret),)):
        listed = await list_keys(harness, metadata=metadata, parent=ORG_A)
        assert [k.name for k in listed.api_keys] == [reader.api_key.name]
        error = await refused(create(harness, metadata=metadata))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    creator = await create(harness, scopes=["api_keys.create", "calls.get"])
    as_key = (("x-api-key", creator.secret),)
    narrower = await create(harness, metadata=as_key, scopes=["calls.get"])
    assert narrower.api_key.audit.creator == creator.api_key.name
    error = await refused(create(harness, metadata=as_key, scopes=["calls.create"]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "calls.create" in (error.details() or "")


async def test_tokens_issued_to_a_key_carry_its_organisation_scoped_name(harness: Harness):
    key = (await create(harness, scopes=["api_keys.list"])).api_key

    def token(subject: str, org: str = "org_a") -> Any:
        return bearer(ISSUER.mint(subject=subject, role="", org=org, scope="api_keys.list", sid=""))

    listed = await list_keys(harness, metadata=token(key.name))
    assert [k.name for k in listed.api_keys] == [key.name]
    # A token whose key lives in another organisation than the token claims, or that uses the
    # global name of before, is not a key's token.
    for wrong in (token(key.name, org="org_b"), token("api_keys/" + key.name.rsplit("/", 1)[1])):
        error = await refused(list_keys(harness, metadata=wrong, parent=ORG_A))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_changes_are_recorded_as_typed_events(harness: Harness):
    created = await create(harness)
    key = created.api_key
    await harness.stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(api_key=api_key_pb2.ApiKey(name=key.name, display_name="renamed")),
        metadata=ADMIN_A,
        timeout=10,
    )
    rotated = await harness.stub.RotateApiKey(pb.RotateApiKeyRequest(name=key.name), metadata=ADMIN_A, timeout=10)
    await harness.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=rotated.api_key.name), metadata=ADMIN_A, timeout=10)
    async with harness.host.database.sessions.begin() as session:
        rows = (await session.execute(select(OutboxRow).order_by(OutboxRow.occurred_at))).scalars().all()
        events = [(row.stream, outbox.decode(row)) for row in rows]
    assert [type(event).__name__ for _, event in events] == [
        "ApiKeyCreatedEvent",
        "ApiKeyUpdatedEvent",
        "ApiKeyRotatedEvent",
        "ApiKeyCreatedEvent",
        "ApiKeyRevokedEvent",
    ]
    stream, updated = events[1]
    assert stream == "api_keys-org_a-" + key.name.rsplit("/", 1)[1]
    assert isinstance(updated, developer_api_events_pb2.ApiKeyUpdatedEvent)
    assert (updated.api_key.display_name, list(updated.changed)) == ("renamed", ["display_name"])
    revoked = events[4][1]
    assert isinstance(revoked, developer_api_events_pb2.ApiKeyRevokedEvent)
    assert revoked.previous_state == api_key_pb2.API_KEY_STATE_ACTIVE
    for _, event in events:
        assert created.secret[16:] not in str(event)
        assert rotated.secret[16:] not in str(event)
