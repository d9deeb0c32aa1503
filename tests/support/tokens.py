"""Mint access tokens in tests, signed with a throw-away key that the test's services trust.

``TestIssuer().mint(role="ADMIN", org="org_a")`` gives a token in exactly the shape
identity issues (RFC 9068 ``at+jwt``, ES256, ``kid`` = RFC 7638 thumbprint); ``jwks``
is the key set to give the services under test (``StaticKeys(issuer.jwks)``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://identity.vocelio.local"
AUDIENCE = "vocelio"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC or OKP public JWK."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


class TestIssuer:
    """An ES256 key pair and a token factory."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.private_key.public_key().public_numbers()
        public = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        self.kid = thumbprint(public)
        self.public_jwk = {**public, "kid": self.kid, "use": "sig", "alg": "ES256"}
        self.jwks = {"keys": [self.public_jwk]}

    def mint(
        self,
        *,
        subject: str = "users/u_test",
        role: str = "ADMIN",
        org: str = "org_a",
        scope: str = "",
        lifetime: int = 900,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A signed token; keyword arguments override or add claims."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "sid": uuid.uuid4().hex,
            "org": org,
            "role": role,
        }
        if scope:
            payload["scope"] = scope
        payload.update(claims)
        header = {"typ": "at+jwt", "kid": self.kid, **(headers or {})}
        return jwt.encode(payload, self.private_key, algorithm="ES256", headers=header)

    def mint_service(self, name: str, *, scope: str | None = None, **claims: Any) -> str:
        """A token of ``services/<name>`` as identity issues it: the permissions its declared calls need.

        ``scope`` overrides them (``every_permission()`` for a caller that may call anything).
        """
        if scope is None:
            scope = service_scope(name)
        return self.mint(subject=f"services/{name}", role="SERVICE", org="", sid="", scope=scope, **claims)


def service_scope(name: str) -> str:
    """The scope identity gives ``services/<name>`` (from the contract's ``calls``)."""
    from mesh.registry import default_registry

    try:
        return " ".join(sorted(default_registry().service_permissions(name)))
    except KeyError:
        return ""


def every_permission(service: Any) -> str:
    """Every permission a ``ServiceSpec``'s methods need, as a scope (a test caller allowed all of them)."""
    return " ".join(sorted({m.policy.permission for m in service.methods if m.policy and m.policy.permission}))
