"""Signing keys over gRPC: JWKS, rotation with overlap, a configured key file, encryption at rest."""

from __future__ import annotations

import dataclasses
import pathlib
import uuid

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text

from mesh.config import Settings
from mesh.jwks import StaticKeys
from mesh.tokens import TokenVerifier
from services.identity import signing
from tests.services.identity.conftest import Harness, header_of, identity_settings, pb, start_harness
from vocelio.identity.v1 import signing_key_pb2


async def test_the_first_start_publishes_one_es256_key(any_backend: Harness):
    jwks = await any_backend.jwks()
    assert len(jwks["keys"]) == 1
    key = jwks["keys"][0]
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert key["kid"] == signing.thumbprint(key)
    assert set(key) == {"kty", "crv", "x", "y", "kid", "use", "alg"}  # no private member ("d")


async def test_rotation_keeps_old_tokens_verifiable_and_signs_new_ones_with_the_new_key(any_backend: Harness):
    harness = any_backend
    admin = await harness.admin()
    await harness.sign_up("ada@example.com")
    old_token = (await harness.password_grant("ada@example.com")).access_token
    old_kid = header_of(old_token)["kid"]

    rotation = str(uuid.uuid4())
    rotated = await admin.RotateSigningKey(pb.RotateSigningKeyRequest(request_id=rotation))
    assert rotated.active_key.state == signing_key_pb2.SIGNING_KEY_STATE_ACTIVE
    assert rotated.previous_key.name == f"signing_keys/{old_kid}"
    assert rotated.previous_key.state == signing_key_pb2.SIGNING_KEY_STATE_PREVIOUS
    overlap = rotated.previous_key.retire_time.seconds - rotated.previous_key.deactivate_time.seconds
    assert overlap == 900 + 60
    again = await admin.RotateSigningKey(pb.RotateSigningKeyRequest(request_id=rotation))
    assert again.active_key.name == rotated.active_key.name  # idempotent

    jwks = await harness.jwks()
    new_kid = rotated.active_key.name.removeprefix("signing_keys/")
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    verifier = TokenVerifier(
        issuer=harness.settings.jwt_issuer, audience=harness.settings.jwt_audience, keys=StaticKeys(jwks)
    )
    assert (await verifier.verify(old_token)).subject.startswith("users/")
    new_token = (await harness.password_grant("ada@example.com")).access_token
    assert header_of(new_token)["kid"] == new_kid
    assert (await verifier.verify(new_token)).subject.startswith("users/")

    listed = await admin.ListSigningKeys(pb.ListSigningKeysRequest())
    assert [k.state for k in listed.signing_keys] == [
        signing_key_pb2.SIGNING_KEY_STATE_ACTIVE,
        signing_key_pb2.SIGNING_KEY_STATE_PREVIOUS,
    ]
    assert all(k.public_key.kid and k.creator for k in listed.signing_keys)
    events = await admin.ListAuditEvents(pb.ListAuditEventsRequest(parent="organizations/-"))
    assert [e.target for e in events.audit_events if e.target.startswith("signing_keys/")] == [rotated.active_key.name]


async def test_rotation_can_switch_to_eddsa(harness: Harness):
    admin = await harness.admin()
    rotated = await admin.RotateSigningKey(
        pb.RotateSigningKeyRequest(algorithm=signing_key_pb2.SIGNING_ALGORITHM_EDDSA)
    )
    assert rotated.active_key.algorithm == signing_key_pb2.SIGNING_ALGORITHM_EDDSA
    assert rotated.active_key.public_key.kty == "OKP" and rotated.active_key.public_key.y == ""
    token = (await harness.admin()).token
    assert header_of(token)["alg"] == "EdDSA"
    assert (await harness.verify(token)).role == "SUPER_ADMIN"


async def test_only_super_admins_touch_signing_keys(harness: Harness):
    _, _, ada = await harness.user("ada@example.com")
    for call in (
        ada.RotateSigningKey(pb.RotateSigningKeyRequest()),
        ada.ListSigningKeys(pb.ListSigningKeysRequest()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_private_keys_are_encrypted_at_rest(any_backend: Harness):
    admin = await any_backend.admin()
    await admin.RotateSigningKey(pb.RotateSigningKeyRequest())
    async with any_backend.host.database.sessions.begin() as session:
        rows = (await session.execute(text("SELECT kid, sealed_private_key FROM signing_keys"))).all()
    assert len(rows) == 2
    for _kid, sealed in rows:
        raw = bytes(sealed)
        assert b"-----BEGIN" not in raw and b"PRIVATE KEY" not in raw
        assert len(raw) > 12 + 16  # nonce, ciphertext and tag


def _write_ed25519_pem(path: pathlib.Path) -> signing.KeyMaterial:
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return signing.material(key)


async def test_a_configured_key_file_signs_every_token(sqlite_settings: Settings, tmp_path: pathlib.Path):
    expected = _write_ed25519_pem(tmp_path / "signing.pem")
    settings = identity_settings(sqlite_settings, jwt_signing_key_file=tmp_path / "signing.pem")
    async for harness in start_harness(settings):
        jwks = await harness.jwks()
        assert [(k["kid"], k["alg"], k["kty"], k["crv"]) for k in jwks["keys"]] == [
            (expected.kid, "EdDSA", "OKP", "Ed25519")
        ]
        admin = await harness.admin()
        assert header_of(admin.token) == {"alg": "EdDSA", "typ": "at+jwt", "kid": expected.kid}
        assert (await harness.verify(admin.token)).role == "SUPER_ADMIN"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.RotateSigningKey(pb.RotateSigningKeyRequest())
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "VOCELIO_JWT_SIGNING_KEY_FILE" in (caught.value.details() or "")
        async with harness.host.database.sessions.begin() as session:
            raw = (await session.execute(text("SELECT sealed_private_key FROM signing_keys"))).scalar_one()
        assert b"PRIVATE KEY" not in bytes(raw)
    # A restart with the same file changes nothing; the generated key of a start without it is demoted.
    async for harness in start_harness(settings):
        assert [k["kid"] for k in (await harness.jwks())["keys"]] == [expected.kid]


async def test_replacing_the_key_file_keeps_the_old_key_verifying(sqlite_settings: Settings, tmp_path: pathlib.Path):
    first = _write_ed25519_pem(tmp_path / "first.pem")
    async for harness in start_harness(identity_settings(sqlite_settings, jwt_signing_key_file=tmp_path / "first.pem")):
        old_token = (await harness.admin()).token
    second = _write_ed25519_pem(tmp_path / "second.pem")
    settings = identity_settings(sqlite_settings, jwt_signing_key_file=tmp_path / "second.pem")
    async for harness in start_harness(settings):
        assert [k["kid"] for k in (await harness.jwks())["keys"]] == [second.kid, first.kid]
        assert (await harness.verify(old_token)).role == "SUPER_ADMIN"


async def test_a_bad_key_file_stops_start_up_with_a_clear_error(sqlite_settings: Settings, tmp_path: pathlib.Path):
    (tmp_path / "bad.pem").write_text("not a key")
    settings = dataclasses.replace(identity_settings(sqlite_settings), jwt_signing_key_file=tmp_path / "bad.pem")
    with pytest.raises(Exception, match="VOCELIO_JWT_SIGNING_KEY_FILE"):
        async for _ in start_harness(settings):
            pass  # pragma: no cover
