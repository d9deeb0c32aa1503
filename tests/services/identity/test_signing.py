"""Key material: RFC 7638 thumbprints against published vectors, PEM import, sealing, signing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mesh.jwks import StaticKeys
from mesh.tokens import InvalidToken, TokenVerifier
from services.identity import signing
from tests.support import tokens as support_tokens

KEK = os.urandom(32)


def test_thumbprint_matches_the_rfc_7638_example():
    # RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
            "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZ"
            "Hzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kE"
            "gU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert signing.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_matches_the_rfc_8037_ed25519_example():
    # RFC 8037 Appendix A.3.
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert signing.thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_ec_thumbprints_hash_the_canonical_members_only():
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).decode().rstrip("=")

    # Computed independently: members in lexicographic order, no whitespace (RFC 7638 §3.2-3.3).
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{b64(numbers.x)}","y":"{b64(numbers.y)}"}}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")
    material = signing.material(key)
    assert material.kid == expected
    assert material.kid == support_tokens.thumbprint(material.jwk)
    assert material.jwk == {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x),
        "y": b64(numbers.y),
        "kid": expected,
        "use": "sig",
        "alg": "ES256",
    }


@pytest.mark.parametrize("algorithm", [signing.ES256, signing.EDDSA])
async def test_signed_tokens_verify_with_the_published_jwk(algorithm):
    key = signing.generate(algorithm)
    now = int(time.time())
    claims = {"iss": "i", "aud": "a", "sub": "users/u_1", "iat": now, "nbf": now, "exp": now + 60, "jti": "j"}
    token = key.sign({**claims, "org": "org_a", "role": "ADMIN"})
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": algorithm, "typ": "at+jwt", "kid": key.kid}
    verifier = TokenVerifier(issuer="i", audience="a", keys=StaticKeys({"keys": [key.jwk]}))
    verified = await verifier.verify(token)
    assert verified.subject == "users/u_1" and verified.role == "ADMIN"
    other = signing.generate(algorithm)
    with pytest.raises(InvalidToken):
        await TokenVerifier(
            issuer="i", audience="a", keys=StaticKeys({"keys": [{**other.jwk, "kid": key.kid}]})
        ).verify(token)


def test_pem_import_accepts_p256_and_ed25519_only():
    for key in (ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        assert signing.from_pem(pem).kid == signing.material(key).kid
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert signing.from_pem(sec1).algorithm == signing.ES256
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(signing.KeyMaterialError, match="P-256"):
        signing.from_pem(p384)
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(signing.KeyMaterialError, match="not supported"):
        signing.from_pem(rsa_pem)
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(signing.KeyMaterialError, match="encrypted"):
        signing.from_pem(encrypted)
    with pytest.raises(signing.KeyMaterialError):
        signing.from_pem(b"-----BEGIN NOTHING-----\n")


def test_sealed_keys_hold_no_pem_and_open_only_with_the_same_kek_and_kid():
    key = signing.generate()
    sealed = signing.seal(key.private_pem(), KEK, key.kid)
    assert b"PRIVATE KEY" not in sealed and b"-----BEGIN" not in sealed
    assert signing.load_sealed(sealed, KEK, key.kid).kid == key.kid
    with pytest.raises(signing.KeyMaterialError, match="key-encryption key"):
        signing.unseal(sealed, os.urandom(32), key.kid)
    with pytest.raises(signing.KeyMaterialError):
        signing.unseal(sealed, KEK, "another-kid")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(signing.KeyMaterialError):
        signing.unseal(tampered, KEK, key.kid)
    # Two seals of the same key differ (fresh nonce each time).
    assert signing.seal(key.private_pem(), KEK, key.kid) != sealed


def test_the_key_encryption_key_must_be_32_bytes_of_base64url():
    text = base64.urlsafe_b64encode(KEK).decode().rstrip("=")
    assert signing.parse_key_encryption_key(text) == KEK
    with pytest.raises(signing.KeyMaterialError, match="32 bytes"):
        signing.parse_key_encryption_key(base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(signing.KeyMaterialError):
        signing.parse_key_encryption_key("%%%")
