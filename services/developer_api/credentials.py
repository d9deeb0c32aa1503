"""API key secrets: how they look, how they are stored, and the short-lived sealed copy.

A secret is ``vk_live_`` or ``vk_test_`` followed by 40 base62 characters (about 238
bits from the operating system's CSPRNG). Because it is that random, a single SHA-256
is the right way to store it — a slow password hash would add nothing but latency to
every request — and the lookup by hash is followed by a constant-time comparison. The
first 16 characters are kept in the clear as the visible prefix.

For idempotent retries of CreateApiKey and RotateApiKey the secret is also kept, for 24
hours only, sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the mesh
key-encryption key; the key's name is the associated data, so a sealed secret cannot be
moved to another key's row.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import string

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.developer_api.domain import Environment

SECRET_PREFIXES = {Environment.LIVE: "vk_live_", Environment.TEST: "vk_test_"}
SECRET_BODY_LENGTH = 40
VISIBLE_PREFIX_LENGTH = 16
_BASE62 = string.ascii_letters + string.digits
_SECRET = re.compile(r"^vk_(live|test)_[A-Za-z0-9]{40}$")
_NONCE_BYTES = 12
_HKDF_INFO = b"vocelio developer_api sealed api key secrets v1"


def new_secret(environment: Environment) -> str:
    """A fresh secret for a key of this environment."""
    body = "".join(secrets.choice(_BASE62) for _ in range(SECRET_BODY_LENGTH))
    return SECRET_PREFIXES[environment] + body


def looks_like_secret(value: str) -> bool:
    """Whether a string has the shape of a secret (checked before any database work)."""
    return bool(_SECRET.match(value))


def secret_hash(secret: str) -> str:
    """The stored form of a secret: SHA-256, lower-case hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hashes_match(stored: str, presented: str) -> bool:
    """Compare two hashes in constant time."""
    return hmac.compare_digest(stored.encode(), presented.encode())


def visible_prefix(secret: str) -> str:
    """The part of a secret that may be shown ("vk_live_3fA9c1D2")."""
    return secret[:VISIBLE_PREFIX_LENGTH]


class SecretBox:
    """Seals secrets with AES-256-GCM for the idempotency window."""

    def __init__(self, key_encryption_key: str) -> None:
        if not key_encryption_key:
            raise ValueError("a key-encryption key is required")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(key_encryption_key.encode())
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<sealed>)"

    def seal(self, secret: str, associated: str) -> bytes:
        """Nonce followed by ciphertext and tag."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), associated.encode())

    def open(self, sealed: bytes, associated: str) -> str | None:
        """The secret, or ``None`` if the blob was tampered with or sealed under another key."""
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], associated.encode()).decode()
        except (InvalidTag, ValueError):
            return None
