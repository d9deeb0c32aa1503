"""Revocation edges in identity: strictly increasing cut-offs, organisation entries, heartbeats, key revocation."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from mesh import migrations
from mesh.config import Settings
from mesh.db import ServiceDatabase
from mesh.revocations import ORGANIZATION, PRINCIPAL, RevocationSet
from mesh.tokens import Claims
from services.identity import store_log
from services.identity.domain import issue_instant
from tests.services.identity.conftest import Harness, claims_of, eventually, header_of, pb
from vocelio.identity.v1 import revocation_pb2

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
LATER = dt.timedelta(minutes=16)


@pytest.fixture
async def database(settings: Settings):
    database = ServiceDatabase(settings, "identity")
    await asyncio.to_thread(migrations.upgrade, database)
    yield database
    await database.dispose()


def _claims(subject: str, organization_id: str, iat: int) -> Claims:
    return Claims(
        subject=subject,
        organization_id=organization_id,
        role="AGENT",
        scopes=(),
        token_id=f"j{iat}",
        session_id="",
        issued_at=iat,
        expires_at=iat + 900,
        client_id="",
    )


async def _revoke(session, kind: str, principal: str, now: dt.datetime, organization_id: str = ""):
    return await store_log.append_revocation(
        session,
        kind=kind,
        now=now,
        expire_time=now + LATER,
        reason="test",
        principal=principal,
        organization_id=organization_id,
    )


async def test_two_revocations_within_one_second_do_not_spare_a_token_minted_between(database: ServiceDatabase):
    # Revoke, mint, revoke again, all in the same second (a fixed clock: 100 ms apart).
    moments = [NOW + dt.timedelta(milliseconds=100 * i) for i in range(3)]
    followers = RevocationSet(clock=lambda: NOW.timestamp())
    async with database.sessions.begin() as session:
        first = await _revoke(session, store_log.PRINCIPAL, "users/u_1", moments[0])
        iat = issue_instant(moments[1], await store_log.latest_cutoff(session, "users/u_1", moments[1], "org_1"))
        second = await _revoke(session, store_log.PRINCIPAL, "users/u_1", moments[2])
    assert first.issued_before is not None and second.issued_before is not None
    assert second.issued_before > first.issued_before  # strictly increasing, even within one second
    for row in (first, second):
        followers.add(PRINCIPAL, principal=row.principal, issued_before=row.issued_before.timestamp())
    between = _claims("users/u_1", "org_1", iat)
    assert followers.is_revoked(between)
    # A token minted after the second revocation is valid.
    async with database.sessions.begin() as session:
        after = issue_instant(moments[2], await store_log.latest_cutoff(session, "users/u_1", moments[2], "org_1"))
    assert not followers.is_revoked(_claims("users/u_1", "org_1", after))


async def test_organisation_cutoffs_pass_every_cutoff_a_member_token_could_carry(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        member = await _revoke(session, store_log.PRINCIPAL, "users/u_1", NOW)
        # The member's next token is stamped at its cut-off; the organisation's revocation must still catch it.
        iat = issue_instant(NOW, await store_log.latest_cutoff(session, "users/u_1", NOW, "org_1"))
        organization = await _revoke(session, store_log.ORGANIZATION, "organizations/org_1", NOW, "org_1")
        # A later principal revocation passes the organisation's cut-off too.
        again = await _revoke(session, store_log.PRINCIPAL, "users/u_2", NOW)
        fresh = issue_instant(NOW, await store_log.latest_cutoff(session, "users/u_9", NOW, "org_1"))
    assert member.issued_before is not None and organization.issued_before is not None
    assert again.issued_before is not None
    assert iat < organization.issued_before.timestamp()
    assert again.issued_before > organization.issued_before
    # A new token in the organisation (any member) is stamped at the organisation's cut-off, not before it.
    assert fresh >= int(organization.issued_before.timestamp())


async def test_a_principal_revocation_scoped_to_an_organisation_spares_the_principals_other_organisations():
    revocations = RevocationSet(clock=lambda: NOW.timestamp())
    cutoff = NOW.timestamp() + 1
    revocations.add(PRINCIPAL, principal="users/u_1", organization_id="org_a", issued_before=cutoff)
    old = int(NOW.timestamp())
    assert revocations.is_revoked(_claims("users/u_1", "org_a", old))
    assert not revocations.is_revoked(_claims("users/u_1", "org_b", old))
    # Unscoped: every organisation.
    revocations.add(PRINCIPAL, principal="users/u_2", issued_before=cutoff)
    assert revocations.is_revoked(_claims("users/u_2", "org_b", old))
    # An organisation entry: every principal of that organisation only.
    revocations.add(ORGANIZATION, principal="organizations/org_c", organization_id="org_c", issued_before=cutoff)
    assert revocations.is_revoked(_claims("organizations/org_c/api_keys/k1", "org_c", old))
    assert revocations.is_revoked(_claims("users/u_3", "org_c", old))
    assert not revocations.is_revoked(_claims("users/u_3", "org_d", old))
    assert not revocations.is_revoked(_claims("users/u_3", "org_c", int(cutoff)))
    assert revocations.organization_epoch("org_c") == 1


def test_entries_are_forgotten_once_no_token_they_match_can_be_unexpired():
    now = [NOW.timestamp()]
    ticks = [0.0]
    revocations = RevocationSet(clock=lambda: now[0], monotonic=lambda: ticks[0])
    until = now[0] + 930
    revocations.add(1, token_id="j1", expires_at=until)
    revocations.add(2, session="sessions/s1", expires_at=until)
    revocations.add(PRINCIPAL, principal="users/u_1", issued_before=now[0] + 1, expires_at=until)
    revocations.add(ORGANIZATION, organization_id="org_1", issued_before=now[0] + 1, expires_at=until)
    revocations.add(5, key_id="kid-1", expires_at=until)
    assert len(revocations) == 5
    now[0] = until - 1
    ticks[0] = 60.0
    revocations.heard()  # pruning runs along with the stream's messages
    assert len(revocations) == 5
    now[0] = until + 1
    ticks[0] = 120.0
    revocations.heard()
    assert len(revocations) == 0
    assert not revocations.key_revoked("kid-1")


async def test_identity_prunes_its_log_past_expire_time(database: ServiceDatabase):
    async with database.sessions.begin() as session:
        await _revoke(session, store_log.PRINCIPAL, "users/u_1", NOW)
    async with database.sessions.begin() as session:
        assert await store_log.prune_revocations(session, NOW + LATER - dt.timedelta(seconds=1)) == 0
        assert await store_log.prune_revocations(session, NOW + LATER) == 1


async def test_an_organisation_principal_writes_an_organisation_entry(harness: Harness):
    service = harness.with_token(await harness.service_token("team_hub"))
    done = await service.RevokePrincipalTokens(
        pb.RevokePrincipalTokensRequest(
            principal="organizations/org_9", organization_id="org_9", reason="organization_suspended"
        )
    )
    entry = done.revocation
    assert (entry.kind, entry.organization_id) == (revocation_pb2.REVOCATION_KIND_ORGANIZATION, "org_9")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.RevokePrincipalTokens(
            pb.RevokePrincipalTokensRequest(principal="organizations/org_9", organization_id="org_8", reason="x")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_revocation_stream_sends_heartbeats_when_idle(harness: Harness):
    token = await harness.service_token("agents")
    stream = harness.stub.StreamRevocations(
        pb.StreamRevocationsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=30
    )
    seen: list[pb.StreamRevocationsResponse] = []
    try:
        async with asyncio.timeout(25):
            async for message in stream:
                seen.append(message)
                if message.heartbeat:
                    break
    finally:
        stream.cancel()
    assert any(m.caught_up for m in seen)
    assert seen[-1].heartbeat and not seen[-1].HasField("revocation")


async def test_a_revoked_signing_key_leaves_the_jwks_and_its_tokens_are_refused(harness: Harness):
    admin = await harness.admin()
    _, tokens, user = await harness.user("ada@example.com")
    kid = (await harness.jwks())["keys"][0]["kid"]
    done = await admin.RevokeSigningKey(pb.RevokeSigningKeyRequest(name=f"signing_keys/{kid}", reason="compromised"))
    assert done.signing_key.state == 3  # RETIRED
    assert done.active_key.name != f"signing_keys/{kid}"
    assert kid not in {k["kid"] for k in (await harness.jwks())["keys"]}
    # identity's own follower drops the key on the entry: the user's token is refused at once.
    await eventually(lambda: _refused(user))
    # New tokens are signed by the replacement key and work.
    fresh = await harness.password_grant("ada@example.com")
    assert header_of(fresh.access_token)["kid"] == done.active_key.name.removeprefix("signing_keys/")
    assert claims_of(fresh.access_token)["sub"] == claims_of(tokens.access_token)["sub"]
    await harness.with_token(fresh.access_token).GetCurrentUser(pb.GetCurrentUserRequest())
    # Only the platform may revoke keys; unknown keys are NOT_FOUND.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.with_token(fresh.access_token).RevokeSigningKey(
            pb.RevokeSigningKeyRequest(name=done.active_key.name, reason="x")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The admin's own token was signed by the revoked key too: it needs a new one.
    assert await _refused(admin)
    admin = await harness.admin()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.RevokeSigningKey(pb.RevokeSigningKeyRequest(name="signing_keys/nope", reason="x"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def _refused(client) -> bool:
    try:
        await client.GetCurrentUser(pb.GetCurrentUserRequest())
    except grpc.aio.AioRpcError as error:
        return error.code() == grpc.StatusCode.UNAUTHENTICATED
    return False
