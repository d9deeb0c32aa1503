"""Access-token verification, by the book (RFC 8725, RFC 9068).

Every check a hostile token could slip past is explicit: size caps, base64url without
padding only (RFC 7515 §2), JSON that is UTF-8, at most eight levels deep and free of
duplicate member names (RFC 7515 §5.2, RFC 8725 §2.6) — the header and the claims are
parsed here, strictly, and PyJWT only checks the signature — algorithm
allow-list (asymmetric only; ``none`` and HMAC never), ``typ: at+jwt``, no ``crit``
extension, no key or key-URL headers (``jku``, ``x5u``, ``jwk``, ``x5c``) — nothing is
ever fetched from a URL a token names — ``kid`` looked up in identity's key set only, the
key's own algorithm must equal the header's, signature, ``iss``, ``aud``, ``exp``, ``nbf``
and ``iat`` with a small leeway, a lifetime (``exp − iat``) no longer than the issuer's,
required claims, a non-empty bounded ``jti``, and revocation (token id, session,
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
MAX_HEADER_BYTES = 1024  # the encoded header; identity's is about 110
MAX_JSON_DEPTH = 8  # identity's claims are two levels deep (``aud`` may be a list)
MAX_LIFETIME_SECONDS = 900  # the longest access-token lifetime the configuration allows
MAX_TOKEN_ID_LENGTH = 128
LEEWAY_SECONDS = 30
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256")
# Used with fullmatch: "$" would also match before a trailing newline.
_KID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_JSON_STRUCTURE = re.compile(r'[\\"\[\]{}]')
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
    """Verifies access tokens issued by identity.

    ``max_lifetime`` is the longest ``exp − iat`` accepted (identity's configured
    access-token lifetime); ``None`` accepts any lifetime (benchmarks only).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        revocations: RevocationCheck | None = None,
        leeway: int = LEEWAY_SECONDS,
        max_lifetime: int | None = MAX_LIFETIME_SECONDS,
        clock: Any = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.revocations = revocations or NoRevocations()
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.clock = clock

    async def verify(self, token: str) -> Claims:
        """Verify a token and return its claims.

        Raises:
            InvalidToken: for any reason at all.

        """
        header_bytes, payload_bytes = _segments(token)
        header = _json_object(header_bytes, "header")
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
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise InvalidToken("kid missing or malformed")
        # Parsed (strictly) before any key is looked up, so a malformed token costs no lookup.
        payload = _json_object(payload_bytes, "payload")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"key {kid} is for {key.algorithm_name}, token says {algorithm}")
        try:
            # The signature only: the claims checked below are the ones parsed above.
            jwt.PyJWS().decode_complete(token, key=key.key, algorithms=[algorithm])
        except jwt.PyJWTError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None
        self._check_claims(payload)
        claims = _claims(payload)
        if self.revocations.is_revoked(claims):
            raise InvalidToken("token revoked")
        return claims

    def _check_claims(self, payload: dict[str, Any]) -> None:
        for name in _REQUIRED:
            if name not in payload:
                raise InvalidToken(f"claim {name} missing")
        if payload["iss"] != self.issuer:
            raise InvalidToken("wrong issuer")
        audience = payload["aud"]
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences or not all(isinstance(a, str) for a in audiences):
            raise InvalidToken("wrong audience")
        now = self.clock()
        issued, not_before, expires = (_numeric_date(payload, name) for name in ("iat", "nbf", "exp"))
        if issued > now + self.leeway:
            raise InvalidToken("iat in the future")
        if not_before > now + self.leeway:
            raise InvalidToken("not valid yet (nbf)")
        if expires <= now - self.leeway:
            raise InvalidToken("expired")
        if self.max_lifetime is not None and expires - issued > self.max_lifetime + self.leeway:
            raise InvalidToken(f"lifetime {expires - issued} s is longer than {self.max_lifetime} s")
        token_id = payload["jti"]
        if not isinstance(token_id, str) or not 0 < len(token_id) <= MAX_TOKEN_ID_LENGTH:
            raise InvalidToken("jti empty, too long or not a string")


def _segments(token: str) -> tuple[bytes, bytes]:
    """The decoded header and payload of a compact JWS, checked for size and encoding.

    RFC 7515 §2: base64url without padding. Python's decoder would skip ``=`` and
    characters outside the alphabet and ignore stray low bits, so one token would have
    many spellings; only the canonical one is accepted, for every segment.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("token larger than the size cap")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidToken("not a compact JWS")
    if len(parts[0]) > MAX_HEADER_BYTES:
        raise InvalidToken("header larger than the size cap")
    decoded = []
    for part in parts:
        if not _BASE64URL.fullmatch(part):
            raise InvalidToken("a segment is not unpadded base64url")
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            raise InvalidToken("a segment is not base64url") from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != part.encode():
            raise InvalidToken("a segment is not canonical base64url")
        decoded.append(raw)
    return decoded[0], decoded[1]


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Decoded bytes as a JSON object: UTF-8, shallow, no duplicate members, no NaN."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidToken(f"{what} is not UTF-8") from None
    if _deeper_than(text, MAX_JSON_DEPTH):
        raise InvalidToken(f"{what} JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        document = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:
        raise InvalidToken(f"{what} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidToken(f"{what} is not a JSON object")
    return document


def _deeper_than(text: str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep, without parsing it.

    Only quotes, backslashes and brackets matter; brackets inside strings do not count.
    """
    depth = 0
    in_string = False
    escaped = -1  # the position a backslash escapes
    for match in _JSON_STRUCTURE.finditer(text):
        position, character = match.start(), match.group()
        if in_string:
            if position == escaped:
                continue
            if character == "\\":
                escaped = position + 1
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            if depth > limit:
                return True
        elif character in "]}":
            depth -= 1
    return False


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate member names")
    return document


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _numeric_date(payload: dict[str, Any], name: str) -> int:
    value = payload[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken(f"claim {name} is not an integer NumericDate")
    return value


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
    return Claims(
        subject=subject,
        organization_id=_string(payload, "org"),
        role=_string(payload, "role"),
        scopes=tuple(s for s in scope.split(" ") if s),
        token_id=_string(payload, "jti"),
        session_id=_string(payload, "sid"),
        issued_at=payload["iat"],
        expires_at=payload["exp"],
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
