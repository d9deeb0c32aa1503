"""Signing-key material: generation, PEM import, JWK form, RFC 7638 thumbprints, encryption at rest, signing.

Keys are asymmetric only: ECDSA P-256 (ES256) or Ed25519 (EdDSA, RFC 8037). Each key is
bound to exactly one algorithm (RFC 8725 §3.1). Private keys are stored as PKCS#8 PEM
sealed with AES-256-GCM under the key-encryption key from configuration, with the
``kid`` as associated data, so a sealed key cannot be moved to another row unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import os
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ES256 = "ES256"
EDDSA = "EdDSA"
ALGORITHMS = (ES256, EDDSA)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_NONCE_BYTES = 12


class KeyMaterialError(ValueError):
    """Key material cannot be used: wrong type, wrong curve, bad encryption key, tampered ciphertext."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Bytes from base64url with or without padding.

    Raises:
        KeyMaterialError: not base64url.

    """
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise KeyMaterialError("not base64url") from None


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public half of a key as the JWK members that define it (``kty``, ``crv``, ``x`` [, ``y``])."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC, OKP or RSA public JWK.

    The required members only, in lexicographic order, no whitespace (RFC 7638 §3.2;
    RFC 8037 §2 for OKP).
    """
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    try:
        members = required[jwk["kty"]]
    except KeyError:
        raise KeyMaterialError(f"no thumbprint rule for kty {jwk.get('kty')!r}") from None
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclasses.dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A signing key pair.

    Attributes:
        kid: the RFC 7638 thumbprint of the public key.
        algorithm: ``ES256`` or ``EdDSA``.
        private_key: the private key.
        jwk: the public key as published (``kid``, ``use``, ``alg`` included).

    """

    kid: str
    algorithm: str
    private_key: PrivateKey = dataclasses.field(repr=False)
    jwk: dict[str, str] = dataclasses.field(compare=False)

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWS compact token with header ``{"alg", "typ": "at+jwt", "kid"}``."""
        return jwt.encode(
            claims, self.private_key, algorithm=self.algorithm, headers={"typ": "at+jwt", "kid": self.kid}
        )

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (to be sealed before storing)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def material(key: PrivateKey) -> KeyMaterial:
    """Key material for a private key; its algorithm follows from its type."""
    algorithm = EDDSA if isinstance(key, ed25519.Ed25519PrivateKey) else ES256
    public = public_jwk(key)
    kid = thumbprint(public)
    return KeyMaterial(kid, algorithm, key, {**public, "kid": kid, "use": "sig", "alg": algorithm})


def generate(algorithm: str = ES256) -> KeyMaterial:
    """A new random key pair for ``algorithm``.

    Raises:
        KeyMaterialError: an algorithm identity does not sign with.

    """
    if algorithm == ES256:
        return material(ec.generate_private_key(ec.SECP256R1()))
    if algorithm == EDDSA:
        return material(ed25519.Ed25519PrivateKey.generate())
    raise KeyMaterialError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")


def from_pem(data: bytes) -> KeyMaterial:
    """Key material from an unencrypted PEM private key (PKCS#8 or SEC1).

    Raises:
        KeyMaterialError: not a PEM private key, encrypted, or neither EC P-256 nor Ed25519.

    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyMaterialError("the PEM key is encrypted; give an unencrypted PKCS#8 key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError("not a PEM private key") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return material(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyMaterialError(f"EC keys must use the P-256 curve, this one uses {key.curve.name}")
        return material(key)
    raise KeyMaterialError(f"{type(key).__name__} keys are not supported; use EC P-256 (ES256) or Ed25519 (EdDSA)")


def parse_key_encryption_key(text: str) -> bytes:
    """The 32-byte key-encryption key from its base64url configuration form.

    Raises:
        KeyMaterialError: not base64url, or not 32 bytes.

    """
    key = b64url_decode(text.strip())
    if len(key) != 32:
        raise KeyMaterialError(f"the key-encryption key must be 32 bytes of base64url, got {len(key)} bytes")
    return key


def seal(plaintext: bytes, key_encryption_key: bytes, kid: str) -> bytes:
    """AES-256-GCM ciphertext of ``plaintext``: a random 96-bit nonce followed by ciphertext and tag."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key_encryption_key).encrypt(nonce, plaintext, kid.encode())


def unseal(sealed: bytes, key_encryption_key: bytes, kid: str) -> bytes:
    """The plaintext of :func:`seal`'s output.

    Raises:
        KeyMaterialError: wrong key-encryption key, wrong ``kid``, or tampered ciphertext.

    """
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(key_encryption_key).decrypt(nonce, ciphertext, kid.encode())
    except InvalidTag:
        raise KeyMaterialError(
            f"signing key {kid} cannot be decrypted: the key-encryption key differs from the one it was sealed with"
        ) from None


def load_sealed(sealed: bytes, key_encryption_key: bytes, kid: str) -> KeyMaterial:
    """Key material from a sealed private key, checking that it is the key ``kid`` names.

    Raises:
        KeyMaterialError: it cannot be decrypted, or the key inside is another key.

    """
    key = from_pem(unseal(sealed, key_encryption_key, kid))
    if key.kid != kid:
        raise KeyMaterialError(f"the sealed key stored as {kid} is the key {key.kid}")
    return key
