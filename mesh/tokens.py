"""Access-token verification, by the book (RFC 8725, RFC 9068).

Every check a hostile token could slip past is explicit: size cap, algorithm
allow-list (asymmetric only; ``none`` and HMAC never), ``typ: at+jwt``, no ``crit``
extension, no key or key-URL headers (``jku``, ``x5u``, ``jwk``, ``x5c``) — nothing is
ever fetched from a URL a token names — ``kid`` looked up in identity's key set only, the
key's own algorithm must equal the header's, signature, ``iss``, ``aud``, ``exp``, ``nbf``
and ``iat`` with a small leeway, required claims, and revocation (token id, session,
or everything a principal held before a moment). Every failure is :class:`InvalidToken`
whose reason goes to the log, never to the caller.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
from typing import Any, Protocol

import jwt

from mesh.restrictions import CLAIM as RESTRICTIONS_CLAIM
from mesh.restrictions import NO_RESTRICTIONS, KeyRestrictions, MalformedRestrictions

ALLOWED_ALGORITHMS = ("ES256", "EdDSA")
MAX_TOKEN_BYTES = 8192
LEEWAY_SECONDS = 30
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256")
_KID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_REQUIRED = ("iss", "aud", "sub", "exp", "iat", "nbf", "jti")


class InvalidToken(Exception):
    """A token failed verification; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Claims:
    """What a verified access token says.

    Attributes:
        subject: ``sub`` (``users/…``, ``api_keys/…``, ``services/…``).
        organization_id: ``org``; ``""`` for services and platform administrators.
        role: ``role`` (``"ADMIN"``, ``"SERVICE"`` …).
        scopes: ``scope`` split on spaces; empty means "what the role allows".
        token_id: ``jti``.
        session_id: ``sid`` (the refresh-token family), if any.
        issued_at: ``iat``, seconds since the epoch.
        expires_at: ``exp``, seconds since the epoch.
        client_id: ``client_id``, if any.
        restrictions: an API key's limits (``vocelio_restrictions``, tokens minted from a key).

    """

    subject: str
    organization_id: str
    role: str
    scopes: tuple[str, ...]
    token_id: str
    session_id: str
    issued_at: int
    expires_at: int
    client_id: str = ""
    restrictions: KeyRestrictions = NO_RESTRICTIONS


class KeySource(Protocol):
    """Where verification keys come from (identity's JWKS)."""

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The public key with this ``kid``, or ``None``."""


class RevocationCheck(Protocol):
    """Answers whether verified claims have been revoked."""

    def is_revoked(self, claims: Claims) -> bool:
        """Whether the token, its session or its principal was revoked."""


class NoRevocations:
    """A revocation check that revokes nothing (identity's own bootstrap, tests)."""

    def is_revoked(self, claims: Claims) -> bool:
        """Nothing is revoked."""
        return False


class TokenVerifier:
    """Verifies access tokens issued by identity."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        revocations: RevocationCheck | None = None,
        leeway: int = LEEWAY_SECONDS,
        clock: Any = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.revocations = revocations or NoRevocations()
        self.leeway = leeway
        self.clock = clock

    async def verify(self, token: str) -> Claims:
        """Verify a token and return its claims.

        Raises:
            InvalidToken: for any reason at all.

        """
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token larger than the size cap")
        header = _header(token)
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken(f"typ {typ!r} is not at+jwt")
        if "crit" in header:
            raise InvalidToken("crit header names extensions this verifier does not understand")
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise InvalidToken(f"{name} header is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.match(kid):
            raise InvalidToken("kid missing or malformed")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"key {kid} is for {key.algorithm_name}, token says {algorithm}")
        try:
            payload = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": list(_REQUIRED), "verify_iat": True, "strict_aud": False},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None
        now = self.clock()
        iat = payload["iat"]
        if not isinstance(iat, int) or iat > now + self.leeway:
            raise InvalidToken("iat in the future")
        claims = _claims(payload)
        if self.revocations.is_revoked(claims):
            raise InvalidToken("token revoked")
        return claims


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidToken("not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise InvalidToken("header is not a JSON object")
    return header


def _string(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name, "")
    if not isinstance(value, str):
        raise InvalidToken(f"claim {name} is not a string")
    return value


def _claims(payload: dict[str, Any]) -> Claims:
    subject = _string(payload, "sub")
    if not subject:
        raise InvalidToken("empty sub")
    scope = _string(payload, "scope")
    expires = payload["exp"]
    if not isinstance(expires, int):
        raise InvalidToken("exp is not an integer")
    return Claims(
        subject=subject,
        organization_id=_string(payload, "org"),
        role=_string(payload, "role"),
        scopes=tuple(s for s in scope.split(" ") if s),
        token_id=_string(payload, "jti"),
        session_id=_string(payload, "sid"),
        issued_at=int(payload["iat"]),
        expires_at=expires,
        client_id=_string(payload, "client_id"),
        restrictions=_restrictions(payload),
    )


def _restrictions(payload: dict[str, Any]) -> KeyRestrictions:
    if RESTRICTIONS_CLAIM not in payload:
        return NO_RESTRICTIONS
    try:
        return KeyRestrictions.from_claim(payload[RESTRICTIONS_CLAIM])
    except MalformedRestrictions as error:
        raise InvalidToken(str(error)) from None
